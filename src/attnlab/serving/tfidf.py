"""Serving ``model=tfidf_lr``: the fitted TF-IDF vocabulary, idf and logistic-regression weights
as plain files (JSON and a NumPy archive read with ``allow_pickle=False``), so loading the model
unpickles nothing, like the Keras models' ``safe_mode=True``.

:class:`TfidfPyfunc` answers like :class:`attnlab.serving.pyfunc.AttnlabPyfunc` (label,
probabilities, tokens, a weight per token) so ``attnlab predict``, ``register`` and ``mlflow
models serve`` take it unchanged. It has no attention: the weight of a token is its share of
the evidence for the predicted class (its TF-IDF value times the class's coefficient, the
positive part, normalised to sum 1 over the text's tokens).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from attnlab.serving.pyfunc import AttnlabPyfunc


@dataclass
class TfidfScorer:
    """A fitted TF-IDF + LR pipeline as arrays: features and probabilities equal the pipeline's."""

    terms: list[str]
    idf: np.ndarray  # (F,)
    coef: np.ndarray  # (1, F) for two classes, else (C, F)
    intercept: np.ndarray  # (1,) or (C,)
    ngram_max: int
    sublinear_tf: bool
    token_pattern: str

    def __post_init__(self) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        self.counter = CountVectorizer(vocabulary={t: i for i, t in enumerate(self.terms)}, lowercase=True,
                                       ngram_range=(1, self.ngram_max), token_pattern=self.token_pattern)
        self.words = CountVectorizer(lowercase=True, token_pattern=self.token_pattern).build_analyzer()

    @classmethod
    def from_pipeline(cls, pipe: Any) -> "TfidfScorer":
        vec, lr = pipe[0], pipe[-1]
        return cls([str(t) for t in vec.get_feature_names_out()], np.asarray(vec.idf_, dtype=np.float64),
                   np.asarray(lr.coef_, dtype=np.float64), np.asarray(lr.intercept_, dtype=np.float64),
                   int(vec.ngram_range[1]), bool(vec.sublinear_tf), str(vec.token_pattern))

    def save(self, folder: Path) -> dict[str, Path]:
        """The artifact files: ``tfidf_terms.json``, ``tfidf.npz``, ``tfidf.json`` (settings)."""
        files = {"tfidf_terms": folder / "tfidf_terms.json", "tfidf_arrays": folder / "tfidf.npz",
                 "tfidf_settings": folder / "tfidf.json"}
        files["tfidf_terms"].write_text(json.dumps(self.terms, ensure_ascii=False))
        np.savez_compressed(files["tfidf_arrays"], idf=self.idf, coef=self.coef, intercept=self.intercept)
        files["tfidf_settings"].write_text(json.dumps({"ngram_max": self.ngram_max, "sublinear_tf": self.sublinear_tf,
                                                       "token_pattern": self.token_pattern}))
        return files

    @classmethod
    def load(cls, files: Mapping[str, str]) -> "TfidfScorer":
        terms = json.loads(Path(files["tfidf_terms"]).read_text())
        settings = json.loads(Path(files["tfidf_settings"]).read_text())
        with np.load(files["tfidf_arrays"], allow_pickle=False) as z:
            return cls(terms, z["idf"], z["coef"], z["intercept"], **settings)

    def features(self, texts: Sequence[str]) -> Any:
        """(N, F) sparse rows: counts -> (1 + log) if sublinear -> times idf -> unit L2 norm."""
        from sklearn.preprocessing import normalize

        x = self.counter.transform(list(texts)).astype(np.float64)
        if self.sublinear_tf:
            x.data = 1.0 + np.log(x.data)
        return normalize(x.multiply(self.idf[None, :]).tocsr())

    def class_weights(self) -> np.ndarray:
        """(C, F): each class's coefficients (two classes: -w and w, as the binary model scores)."""
        return np.concatenate([-self.coef, self.coef]) if self.coef.shape[0] == 1 else self.coef

    def probs(self, x: Any) -> np.ndarray:
        z = np.asarray(x @ self.coef.T) + self.intercept
        if self.coef.shape[0] == 1:
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p, p], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def explain(self, texts: Sequence[str]) -> tuple[np.ndarray, list[list[str]], list[np.ndarray]]:
        """Probabilities, each text's word tokens, and each token's share of the predicted class's evidence."""
        x = self.features(texts)
        probs = self.probs(x)
        weights = self.class_weights()
        tokens, shares = [], []
        for i, text in enumerate(texts):
            words = self.words(text)
            row, c = x.getrow(i), int(probs[i].argmax())
            value = dict(zip(row.indices.tolist(), row.data.tolist()))
            ids = [self.counter.vocabulary_.get(w) for w in words]
            share = np.array([max(0.0, value.get(j, 0.0) * weights[c, j]) if j is not None else 0.0 for j in ids])
            tokens.append(words)
            shares.append(share / share.sum() if share.sum() > 0 else share)
        return probs, tokens, shares


class TfidfPyfunc(AttnlabPyfunc):
    """Serves ``model=tfidf_lr``: raw strings -> label, probabilities, tokens, evidence per token."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["meta"]) as f:
            self.meta = json.load(f)
        self.classes = list(self.meta["classes"])
        self.scorer = TfidfScorer.load(context.artifacts)

    def predict_raw(self, texts: list[str]) -> dict[str, Any]:
        """probs (N, C), tokens, importance (per token); no attention maps (``weights`` is None)."""
        if not texts:
            return {"probs": np.zeros((0, len(self.classes))), "tokens": [], "importance": [], "weights": None}
        probs, tokens, shares = self.scorer.explain(texts)
        return {"probs": probs, "tokens": tokens, "importance": shares, "weights": None}


def log_tfidf_model(pipe: Any, classes: list[str], meta: Mapping[str, Any]) -> Any:
    """Log the fitted pipeline as the run's pyfunc ``model`` (logged from ``tfidf_code.py``)."""
    from attnlab import tracking

    requirements = tracking.pip_requirements(("mlflow", "scikit-learn", "scipy", "numpy", "pandas"))
    with tempfile.TemporaryDirectory() as tmp:
        files = TfidfScorer.from_pipeline(pipe).save(Path(tmp))
        return tracking.log_pyfunc("tfidf_code.py", files, classes, {**meta, "kind": "tfidf_lr"}, requirements)
