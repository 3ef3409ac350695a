"""The Keras side of a run: runtime settings, input pipelines, fit, and evaluation passes.

Selection (early stopping, the value a sweep optimises) uses validation data only; test is
predicted once, after training, by :func:`evaluate`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from attnlab.analysis import AttentionStats, token_importance
from attnlab.data import Dataset

log = logging.getLogger(__name__)


def configure_runtime(train_cfg: Mapping[str, Any], seed: int) -> None:
    """Seeds, op determinism and thread counts (see README, "Determinism")."""
    import keras
    import tensorflow as tf

    threads = int(train_cfg["threads"])
    if threads > 0:
        try:  # only possible before TensorFlow's runtime starts; later runs in-process keep the first
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            log.debug("thread counts already fixed for this process")
    if train_cfg["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    keras.backend.clear_session()  # several in-process runs (sweeps) must not share graphs or name counters
    keras.utils.set_random_seed(int(seed))


def text_dataset(texts: Sequence[str], labels: np.ndarray, batch_size: int, shuffle_seed: int | None):
    """A batched ``tf.data`` pipeline of (strings (B, 1), int64 labels); shuffled when seeded."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(texts))[:, None], labels.astype("int64")))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(2)


@dataclass
class FitResult:
    epochs_completed: int
    best: float  # best validation value of the monitor (what early stopping restored)
    best_epoch: int
    pruned_at_epoch: int | None


def fit(model: Any, dataset: Dataset, train_cfg: Mapping[str, Any], seed: int, trial: Any = None,
        extra_callbacks: Sequence[Any] = (), verbose: int | None = None) -> FitResult:
    """Train with per-epoch MLflow metrics, early stopping on validation and (under a sweep) pruning.

    ``extra_callbacks`` run after those (the console, per-epoch pictures); ``verbose`` is Keras'
    verbosity (None: ``train.verbose``)."""
    import keras

    from attnlab.callbacks import MLflowMetrics, OptunaPruning

    es = train_cfg["early_stopping"]
    metrics_cb = MLflowMetrics()
    # TerminateOnNaN first: a non-finite batch loss stops training before more epochs are wasted.
    callbacks = [keras.callbacks.TerminateOnNaN(), metrics_cb, keras.callbacks.EarlyStopping(
        monitor=es["monitor"], mode=es["mode"], patience=int(es["patience"]),
        restore_best_weights=bool(es["restore_best_weights"]))]
    pruner = OptunaPruning(trial, es["monitor"]) if trial is not None else None
    callbacks += [pruner] if pruner is not None else []
    callbacks += list(extra_callbacks)
    bs = int(train_cfg["batch_size"])
    history = model.fit(
        text_dataset(dataset.train.texts, dataset.train.labels, bs, seed),
        validation_data=text_dataset(dataset.val.texts, dataset.val.labels, bs, None),
        epochs=int(train_cfg["epochs"]), callbacks=callbacks,
        verbose=int(train_cfg["verbose"]) if verbose is None else verbose,
        shuffle=False,  # the tf.data pipeline shuffles (seeded)
    )
    check_finite(history.history, "during training")
    hist = history.history.get(es["monitor"], [])
    pick = np.argmax if es["mode"] == "max" else np.argmin
    best_i = int(pick(hist)) if hist else -1
    return FitResult(metrics_cb.epochs_completed, float(hist[best_i]) if hist else float("nan"), best_i + 1,
                     pruner.pruned_at_epoch if pruner is not None else None)


def check_finite(values: Mapping[str, Any], when: str) -> None:
    """Raise :class:`attnlab.errors.DivergedError` naming the first non-finite loss or metric.

    ``values`` maps names to a number or a per-epoch list (Keras' history). A run whose loss or
    metrics are NaN/inf decided nothing: it must end FAILED, never FINISHED with gaps."""
    import math

    from attnlab.errors import DivergedError

    for name, v in values.items():
        seq = v if isinstance(v, (list, tuple)) else [v]
        for i, x in enumerate(seq):
            if isinstance(x, (int, float, np.floating, np.integer)) and not math.isfinite(float(x)):
                at = f" at epoch {i + 1}" if isinstance(v, (list, tuple)) else ""
                raise DivergedError(f"{name}={float(x)} {when}{at}: training diverged; the run is FAILED "
                                    f"(lower train.learning_rate or set train.clipnorm)")


def compiled_explain(model: Any) -> Any:
    """:func:`attnlab.models.explain_model`, traced once for any batch size. Called eagerly batch
    by batch, the BiLSTM model cost ~30x more (`attnlab bench harness`: 26 s vs 0.9 s on MR)."""
    import tensorflow as tf

    from attnlab.models import explain_model

    explain = explain_model(model)
    fn = tf.function(lambda x: explain(x, training=False),
                     input_signature=[tf.TensorSpec((None, 1), tf.string)], reduce_retracing=True)
    return fn


@dataclass
class Pass:
    """One prediction pass over a split: probabilities, token ids, the first maps, attention stats."""

    probs: np.ndarray  # (N, C)
    ids: np.ndarray  # (N, T)
    maps: np.ndarray  # (k, L, H, T, T): the first k texts' attention, every block
    stats: dict[str, float]
    importance: np.ndarray  # (N, T): attention each token receives in the last block


def predict_pass(explain: Any, texts: Sequence[str], batch_size: int, keep_maps: int = 0,
                 rationale: Sequence[np.ndarray] | None = None) -> Pass:
    """Predict ``texts`` batch by batch (maps are never all in memory), accumulating attention
    statistics over the whole set in the same pass."""
    import tensorflow as tf

    probs, ids, maps, importance = [], [], [], []
    stats = AttentionStats()
    for i in range(0, len(texts), batch_size):
        out = explain(tf.constant(list(texts[i : i + batch_size]))[:, None])
        w = np.asarray(out["weights"])
        probs.append(np.asarray(out["probs"]))
        ids.append(np.asarray(out["ids"]))
        importance.append(token_importance(w[:, -1], ids[-1]))
        stats.add(w, ids[-1], None if rationale is None else rationale[i : i + batch_size],
                  np.asarray(out["max_logits"]) if "max_logits" in out else None)
        kept = sum(len(m) for m in maps)
        if kept < keep_maps:
            maps.append(w[: keep_maps - kept])
    return Pass(np.concatenate(probs), np.concatenate(ids), np.concatenate(maps) if maps else np.zeros((0,)),
                stats.means(), np.concatenate(importance))


def evaluate(model: Any, dataset: Dataset, batch_size: int, n_maps: int) -> tuple[dict[str, float], Pass]:
    """Validation (metrics + attention) and test (once) metrics, and the validation pass."""
    from sklearn.metrics import accuracy_score, f1_score

    explain = compiled_explain(model)
    val = predict_pass(explain, dataset.val.texts, batch_size, n_maps, dataset.val.rationale)
    test = predict_pass(explain, dataset.test.texts, batch_size)
    check_finite({"val probabilities": float(val.probs.sum()), "test probabilities": float(test.probs.sum())},
                 "after training")
    val_pred, test_pred = val.probs.argmax(1), test.probs.argmax(1)
    metrics = {
        **attention_scales(model, val.ids),
        "attention_permutation_tvd": permutation_tvd(model, dataset.val.texts, val.probs, batch_size, seed=0),
        "val_accuracy": float(accuracy_score(dataset.val.labels, val_pred)),
        "val_macro_f1": float(f1_score(dataset.val.labels, val_pred, average="macro")),
        # Test is evaluated once, after every selection decision was made on validation.
        "test_accuracy": float(accuracy_score(dataset.test.labels, test_pred)),
        "test_macro_f1": float(f1_score(dataset.test.labels, test_pred, average="macro")),
        **val.stats,
    }
    return metrics, val


def attention_scales(model: Any, ids: np.ndarray) -> dict[str, float]:
    """``attention_scale`` (the last block's) and ``attention_scale/block_<i>``: the factor each
    attention block multiplies its query-key similarity by (the learned value for learned and
    qk_norm; for log_n, at the mean number of real tokens of ``ids``)."""
    from attnlab.models import effective_scales

    n_keys = float((np.asarray(ids) != 0).sum(axis=1).mean()) if len(ids) else None
    scales = effective_scales(model, n_keys)
    out = {f"attention_scale/block_{b}": s for b, s in enumerate(scales)}
    if scales:
        out["attention_scale"] = scales[-1]
    return out


def permutation_tvd(model: Any, texts: Sequence[str], probs: np.ndarray, batch_size: int, seed: int) -> float:
    """Jain & Wallace (2019)'s permutation test: every attention row's weights permuted among its
    real keys (in every block at once); the median over texts of the total-variation distance
    between the output distributions before and after (0: the order of the weights is ignored)."""
    from attnlab.models import attention_layers

    layers = attention_layers(model)
    for layer in layers:
        layer.permute_keys = seed
    try:
        permuted = predict_pass(compiled_explain(model), texts, batch_size).probs  # traced anew: permuted
    finally:
        for layer in layers:
            layer.permute_keys = None
    return float(np.median(0.5 * np.abs(permuted - probs).sum(axis=1)))


def faithfulness(model: Any, dataset: Dataset, val: Pass, cfg: Mapping[str, Any]) -> Any:
    """ERASER/Jain-Wallace measures of the attention (and of gradient, leave-one-out and random
    baselines) on a fixed, seeded sample of ``cfg['n']`` validation texts
    (:func:`attnlab.faithfulness.evaluate`); the attention scores come from the validation pass."""
    from attnlab import faithfulness as faith
    from attnlab.explain import KerasView

    return faith.evaluate(KerasView(model), val.ids, val.importance, rationale=dataset.val.rationale,
                          n=int(cfg["n"]), seed=int(cfg["seed"]))
