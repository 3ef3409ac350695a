"""MLflow pyfunc wrapper: raw strings -> label, class probabilities, per-token attention.

Loaded through ``model_code.py`` (models from code); it imports only what serving needs
(Keras, NumPy, pandas) and the attnlab layers (registered for loading). The ``attention`` it
returns is the last block's, as the run's attention metrics are.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd


# Texts per forward pass: the attention maps of a batch are (batch, heads, T, T) floats.
BATCH = 256


def _bad_input(msg: str) -> Exception:
    from mlflow.exceptions import MlflowException

    # INVALID_PARAMETER_VALUE: the scoring server answers 400 with this message, not 500.
    return MlflowException.invalid_parameter_value(msg)


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


def _texts(model_input: Any) -> list[str]:
    """Raw strings from what MLflow hands over: a DataFrame (column ``text``, else its only
    column), a Series, a list/array of strings, one string, or ``{"text": [...]}``."""
    if isinstance(model_input, pd.DataFrame):
        if "text" in model_input.columns:
            values = model_input["text"].tolist()
        elif model_input.shape[1] == 1:
            values = model_input.iloc[:, 0].tolist()
        else:
            raise _bad_input(f"input has columns {[str(c) for c in model_input.columns]}; "
                             f"name the column of raw texts 'text'")
    elif isinstance(model_input, pd.Series):
        values = model_input.tolist()
    elif isinstance(model_input, dict):
        if "text" in model_input:
            values = model_input["text"]
        elif len(model_input) == 1:
            values = next(iter(model_input.values()))
        else:
            raise _bad_input(f"input has keys {sorted(map(str, model_input))}; name the list of raw texts 'text'")
        values = [values] if isinstance(values, str) else list(np.asarray(values, dtype=object).ravel())
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        values = list(np.asarray(model_input, dtype=object).ravel())
    return [_cell(v) for v in values]


def _import_component_modules(modules: list[str]) -> None:
    """Import the user's component modules (their layers register themselves for loading)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise _bad_input(f"this model uses components from module {name!r}, which cannot be imported "
                             f"({e}); put its package on PYTHONPATH where the model is loaded") from e


class AttnlabPyfunc(mlflow.pyfunc.PythonModel):
    """Serves a saved attnlab Keras model with attention explanations."""

    def load_context(self, context: Any) -> None:
        import keras

        import attnlab.layers  # noqa: F401 - registers the custom layers for deserialisation
        from attnlab.fitting import compiled_explain
        from attnlab.models import vocabulary

        with open(context.artifacts["meta"]) as f:
            self.meta = json.load(f)
        _import_component_modules(self.meta.get("modules", []))
        self.model = keras.models.load_model(context.artifacts["keras_model"], safe_mode=True)
        # Traced once for any batch size: called eagerly, the BiLSTM model cost 6.4x more over
        # TREC's 500 test questions and 50x more on a 3-text request (measured on 2 CPU cores).
        self.explain = compiled_explain(self.model)
        self.vocab = vocabulary(self.model)
        self.classes = list(self.meta["classes"])

    def predict_raw(self, texts: list[str]) -> dict[str, Any]:
        """Arrays for ``texts``: probs (N, C), weights (N, H, T, T) of the last block, maps
        (N, L, H, T, T) of every block, ids (N, T), tokens, importance (N, T)."""
        import tensorflow as tf

        from attnlab.analysis import token_importance, tokens_for

        if not texts:
            return {"probs": np.zeros((0, len(self.classes))), "weights": np.zeros((0, 1, 0, 0)),
                    "maps": np.zeros((0, 1, 1, 0, 0)), "ids": np.zeros((0, 0), dtype=np.int64),
                    "tokens": [], "importance": np.zeros((0, 0))}
        # Keras 3 refuses NumPy string arrays; a (batch, 1) string tensor is what the model takes.
        out = self.explain(tf.constant(texts)[:, None])
        probs, maps, ids = np.asarray(out["probs"]), np.asarray(out["weights"]), np.asarray(out["ids"])
        weights = maps[:, -1]
        lower = self.meta.get("lowercase", True)
        return {
            "probs": probs,
            "weights": weights,
            "maps": maps,
            "ids": ids,
            "tokens": tokens_for(texts, ids, self.vocab, lowercase=lower),
            "importance": token_importance(weights, ids),
        }

    # pd.DataFrame is the hint MLflow derives no schema from (the signature is given) and validates
    # nothing against; without any hint MLflow warns on every run ("Add type hints ...", a warning
    # no filter can catch). The input may also be a list, dict or string: see _texts.
    def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: ARG002
        texts = _texts(model_input)
        rows = []
        for start in range(0, len(texts), BATCH):
            raw = self.predict_raw(texts[start : start + BATCH])
            for i, toks in enumerate(raw["tokens"]):
                p = raw["probs"][i]
                # Plain Python floats/strings: the scoring server's JSON answer stays clean.
                rows.append(
                    {
                        "label": self.classes[int(np.argmax(p))],
                        "probabilities": [float(x) for x in p],
                        "tokens": [str(t) for t in toks],
                        "attention": [float(x) for x in raw["importance"][i][: len(toks)]],
                    }
                )
        return pd.DataFrame(rows, columns=["label", "probabilities", "tokens", "attention"])
