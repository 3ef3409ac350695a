"""TF-IDF + logistic regression (scikit-learn): the baseline beside the attention models.

Same data, splits and seeds as a Keras run (the run seed carves validation and seeds the
solver); the same metric names (``val_accuracy``, ``val_macro_f1``, ``val_loss``,
``test_accuracy``, ``test_macro_f1``, ``best_<monitor>``), no attention metrics. It reads
``model``, ``data``, ``seed`` and ``tracking`` (not its attention/probe keys); ``train``
(epochs, optimizer, early stopping but its monitor) is ignored and left out of the params.
The served model is :class:`attnlab.serving.tfidf.TfidfPyfunc`: the fitted vocabulary, idf
and weights as plain arrays (no pickle), raw strings in.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from attnlab import checks, tracking
from attnlab.errors import ConfigError

# Metrics computed on validation: what train.early_stopping.monitor may name.
VALIDATION_METRICS = ("val_accuracy", "val_macro_f1", "val_loss")


class TfidfLogisticRegression:
    """``TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf, min_df, max_features,
    token_pattern)`` -> ``LogisticRegression(C, max_iter)`` (lbfgs, multinomial)."""

    ignores: tuple[str, ...] = ("train",)

    def __init__(self, *, name: str, ngram_max: int, C: float, sublinear_tf: bool, min_df: int,
                 max_features: int | None, max_iter: int, token_pattern: str) -> None:
        checks.check_tfidf_lr(name=name, ngram_max=ngram_max, C=C, sublinear_tf=sublinear_tf, min_df=min_df,
                              max_features=max_features, max_iter=max_iter, token_pattern=token_pattern)
        self.vectorizer_args = {"ngram_range": (1, int(ngram_max)), "sublinear_tf": bool(sublinear_tf),
                                "min_df": int(min_df), "max_features": max_features, "lowercase": True,
                                "token_pattern": token_pattern}
        self.C, self.max_iter = float(C), int(max_iter)

    def configure_runtime(self, config: Mapping[str, Any], seed: int) -> None:
        """Nothing to set: the solver is seeded by :meth:`fit`, and no TensorFlow is loaded."""

    def fit(self, texts: Sequence[str], labels: np.ndarray, seed: int) -> Any:
        """The fitted scikit-learn pipeline."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        pipe = make_pipeline(TfidfVectorizer(**self.vectorizer_args),
                             LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=int(seed)))
        return pipe.fit(list(texts), np.asarray(labels))

    def run(self, spec: Any, dataset: Any, trial: Any, phases: Any, view: Any) -> dict[str, float]:
        """Fit on train, score validation and (once) test, log metrics and the served model."""
        if spec.monitor not in VALIDATION_METRICS:
            raise ConfigError(f"train.early_stopping.monitor={spec.monitor!r}: model=tfidf_lr computes "
                              f"{', '.join(VALIDATION_METRICS)}")
        with phases("fit"):
            pipe = self.fit(dataset.train.texts, dataset.train.labels, spec.seed)
        lr = pipe[-1]
        if len(lr.classes_) != len(dataset.classes):
            raise ConfigError(f"model=tfidf_lr: the training texts hold {len(lr.classes_)} of the "
                              f"{len(dataset.classes)} classes (data.max_train_samples too small?)")
        tracking.log_params_flat({"model.n_params": int(lr.coef_.size + lr.intercept_.size),
                                  "model.n_features": int(lr.coef_.shape[1])})
        with phases("eval"):
            metrics = evaluate(pipe, dataset)
        metrics[f"best_{spec.monitor}"] = metrics[spec.monitor]
        tracking.log_metrics(metrics, step=0)
        if spec.config["tracking"]["log_model"]:
            with phases("log_model"):
                from attnlab.serving.tfidf import log_tfidf_model

                log_tfidf_model(pipe, dataset.classes, {"lowercase": bool(spec.config["data"]["lowercase"])})
        return metrics


def evaluate(pipe: Any, dataset: Any) -> dict[str, float]:
    """Validation and test metrics under the Keras path's names."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    out: dict[str, float] = {}
    for split in ("val", "test"):
        part = getattr(dataset, split)
        probs = pipe.predict_proba(list(part.texts))
        pred = probs.argmax(1)
        out[f"{split}_accuracy"] = float(accuracy_score(part.labels, pred))
        out[f"{split}_macro_f1"] = float(f1_score(part.labels, pred, average="macro"))
        if split == "val":
            out["val_loss"] = float(log_loss(part.labels, probs, labels=list(range(len(dataset.classes)))))
    return out
