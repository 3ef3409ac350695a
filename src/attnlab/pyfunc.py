"""MLflow pyfunc wrapper: raw strings -> label, class probabilities, per-token attention.

Loaded through ``pyfunc_model.py`` (models from code); it imports only
what serving needs (Keras, NumPy, pandas) and the attnlab layers (registered for loading).
"""

from __future__ import annotations

import json
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd


def _texts(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        col = "text" if "text" in model_input.columns else model_input.columns[0]
        values = model_input[col].tolist()
    elif isinstance(model_input, pd.Series):
        values = model_input.tolist()
    elif isinstance(model_input, dict):
        values = list(model_input.get("text", next(iter(model_input.values()))))
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        values = list(np.asarray(model_input).ravel())
    return ["" if v is None else str(v) for v in values]


class AttnlabPyfunc(mlflow.pyfunc.PythonModel):
    """Serves a saved attnlab Keras model with attention explanations."""

    def load_context(self, context: Any) -> None:
        import keras

        import attnlab.layers  # noqa: F401 - registers the custom layers for deserialisation
        from attnlab.models import explain_model, vocabulary

        self.model = keras.models.load_model(context.artifacts["keras_model"], safe_mode=True)
        self.explain = explain_model(self.model)
        self.vocab = vocabulary(self.model)
        with open(context.artifacts["meta"]) as f:
            self.meta = json.load(f)
        self.classes = list(self.meta["classes"])

    def predict_raw(self, texts: list[str]) -> dict[str, Any]:
        """Arrays for ``texts``: probs (N, C), weights (N, H, T, T), ids (N, T), tokens, importance (N, T)."""
        import tensorflow as tf

        from attnlab.attention import token_importance, tokens_for

        if not texts:
            return {"probs": np.zeros((0, len(self.classes))), "tokens": [], "importance": np.zeros((0, 0))}
        # Keras 3 refuses NumPy string arrays; a (batch, 1) string tensor is what the model takes.
        probs, weights, ids = self.explain(tf.constant(texts)[:, None], training=False)
        probs, weights, ids = np.asarray(probs), np.asarray(weights), np.asarray(ids)
        lower = self.meta.get("lowercase", True)
        return {
            "probs": probs,
            "weights": weights,
            "ids": ids,
            "tokens": tokens_for(texts, ids, self.vocab, lowercase=lower),
            "importance": token_importance(weights, ids),
        }

    # No type hints here: MLflow would try to derive a schema from them (the signature is given).
    def predict(self, context, model_input, params=None):  # noqa: ARG002
        texts = _texts(model_input)
        raw = self.predict_raw(texts)
        rows = []
        for i, toks in enumerate(raw["tokens"]):
            p = raw["probs"][i]
            rows.append(
                {
                    "label": self.classes[int(np.argmax(p))],
                    "probabilities": [float(x) for x in p],
                    "tokens": list(toks),
                    "attention": [float(x) for x in raw["importance"][i][: len(toks)]],
                }
            )
        return pd.DataFrame(rows, columns=["label", "probabilities", "tokens", "attention"])
