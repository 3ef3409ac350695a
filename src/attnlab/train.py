"""``train(cfg)``: the one function the CLI, the Optuna sweeper and ``reproduce`` call.

seed -> tracking store -> data -> MLflow run { params, config, model, fit with per-epoch
metrics (and pruning under a sweeper), validation metrics, test once, attention analysis,
heatmaps, model } -> returns the validation metric. Selection (early stopping, the return
value a sweeper optimises) uses validation data only; test is evaluated once at the end.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from omegaconf import DictConfig, OmegaConf

from attnlab import sweep_context, tracking
from attnlab.config import flatten, to_plain
from attnlab.errors import ConfigError

log = logging.getLogger(__name__)

# Short names for run names and variant tags: the last key component unless listed here.
_SHORT = {
    "model.attention.scale": "scale",
    "model.attention.mask": "mask",
    "model.attention.units": "units",
    "model.attention.heads": "heads",
    "model.pooling.type": "pool",
    "model.encoder.type": "encoder",
    "model.encoder.units": "encoder_units",
    "train.learning_rate": "lr",
}
# Overrides that do not change what is being compared (where results go, verbosity, how many
# CPU threads run it, ...): runs of one variant launched with different settings group together.
_NOT_VARIANT_PREFIXES = ("hydra.", "tracking.", "train.verbose", "train.threads", "paths.", "hparams_search",
                         "experiment")


def validate(cfg: Mapping[str, Any]) -> None:
    """Cross-field checks the schema cannot express; raise ConfigError naming the key."""
    m, t = cfg["model"], cfg["train"]
    att = m["attention"]
    checks = [
        (int(att["units"]) >= 1, f"model.attention.units={att['units']}: must be >= 1"),
        (int(att["heads"]) >= 1, f"model.attention.heads={att['heads']}: must be >= 1"),
        (int(att["heads"]) < 1 or int(att["units"]) % max(int(att["heads"]), 1) == 0,
         f"model.attention.units={att['units']} is not divisible by model.attention.heads={att['heads']}"),
        (att["type"] != "seed" or int(att["heads"]) == 1, "model.attention.type=seed has one head: set model.attention.heads=1"),
        (float(att["scale_constant"]) > 0, f"model.attention.scale_constant={att['scale_constant']}: must be > 0"),
        (0.0 <= float(att["dropout"]) < 1.0, f"model.attention.dropout={att['dropout']}: must be in [0, 1)"),
        (int(m["max_len"]) >= 1, f"model.max_len={m['max_len']}: must be >= 1"),
        (int(m["max_tokens"]) >= 3, f"model.max_tokens={m['max_tokens']}: must be >= 3 (padding, OOV and a word)"),
        (int(m["embedding_dim"]) >= 1, f"model.embedding_dim={m['embedding_dim']}: must be >= 1"),
        (m["encoder"]["type"] == "none" or int(m["encoder"]["units"]) >= 1, f"model.encoder.units={m['encoder']['units']}: must be >= 1"),
        (m["encoder"]["type"] != "cnn" or (len(m["encoder"]["kernel_sizes"]) > 0 and all(int(k) >= 1 for k in m["encoder"]["kernel_sizes"])),
         f"model.encoder.kernel_sizes={list(m['encoder']['kernel_sizes'])}: needs at least one width, each >= 1"),
        (0.0 <= float(m["encoder"]["dropout"]) < 1.0, f"model.encoder.dropout={m['encoder']['dropout']}: must be in [0, 1)"),
        (int(m["head"]["hidden"]) >= 0, f"model.head.hidden={m['head']['hidden']}: must be >= 0"),
        (int(t["epochs"]) >= 1, f"train.epochs={t['epochs']}: must be >= 1"),
        (int(t["batch_size"]) >= 1, f"train.batch_size={t['batch_size']}: must be >= 1"),
        (float(t["learning_rate"]) > 0, f"train.learning_rate={t['learning_rate']}: must be > 0"),
        (int(cfg["tracking"]["n_attention_examples"]) >= 0,
         f"tracking.n_attention_examples={cfg['tracking']['n_attention_examples']}: must be >= 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def configure_runtime(train_cfg: Mapping[str, Any], seed: int) -> None:
    """Seeds, op determinism and thread counts (see README, "Determinism")."""
    import keras
    import tensorflow as tf

    threads = int(train_cfg.get("threads") or 0)
    if threads > 0:
        try:  # only possible before TensorFlow's runtime starts; later runs in-process keep the first
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            log.debug("thread counts already fixed for this process")
    if train_cfg.get("deterministic"):
        tf.config.experimental.enable_op_determinism()
    keras.backend.clear_session()  # several in-process runs (sweeps) must not share graphs or name counters
    keras.utils.set_random_seed(int(seed))


def hydra_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - not running under Hydra (tests, reproduce)
        return []


def variant_items(cfg: Mapping[str, Any], overrides: list[str]) -> list[tuple[str, str]]:
    """(short key, value) pairs that say what this run varies, for run names and tags."""
    items: dict[str, str] = {}
    ablation = cfg.get("ablation") or {}
    keys = list(ablation.get("variant_keys") or [])
    extra: list[str] = []
    for ov in overrides:
        key = ov.split("=", 1)[0].lstrip("+~")
        # Seed and fold are replicates, not variants (their own tags; run names append them).
        if key in ("seed", "data.fold") or key.startswith(_NOT_VARIANT_PREFIXES) or key in keys or key in extra:
            continue
        if key.startswith("data."):
            continue
        if ablation and key == "data":
            # An ablation's runs are grouped by variant across datasets' own tags (`attnlab report`).
            continue
        extra.append(key)
    # Ablation runs: extra overrides sorted, so separate launches give the same variant string.
    keys += sorted(extra) if ablation else extra
    plain = flatten(cfg)
    for key in keys:
        if key in plain:
            value = plain[key]
        elif key in cfg:  # a config group choice such as model=seed
            value = cfg[key].get("name", "?") if isinstance(cfg[key], dict) else cfg[key]
        else:
            continue
        short = _SHORT.get(key, key.split(".")[-1])
        # Two keys with one short name (model.attention.units, model.encoder.units): the
        # later keeps its full key, so neither value is lost from the variant.
        items[key if short in items else short] = str(value)
    if ablation.get("variant_keys"):
        return list(items.items())  # exactly the keys the ablation varies (plus extra overrides)
    att = cfg["model"]["attention"]
    items.setdefault("scale", str(att["scale"] if att["type"] == "self" else "seed"))
    items.setdefault("pool", str(cfg["model"]["pooling"]["type"]))
    return list(items.items())


def run_name_for(cfg: Mapping[str, Any], overrides: list[str]) -> str:
    parts = [f"{k}={v}" for k, v in variant_items(cfg, overrides)]
    if cfg["data"]["name"] == "mr":
        parts.append(f"fold={cfg['data']['fold']}")
    parts.append(f"seed={cfg['seed']}")
    return ",".join(parts)


def _dataset_tf(texts: list[str], labels: np.ndarray, batch_size: int, shuffle_seed: int | None):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(texts)[:, None], labels.astype("int64")))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(texts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(2)


def _compiled(explain):
    """``explain`` traced once for any batch size: called eagerly batch by batch, the BiLSTM
    model cost ~30x more (`attnlab bench harness`: 26 s vs 0.9 s over MR's validation set)."""
    import tensorflow as tf

    fn = tf.function(lambda x: explain(x, training=False),
                     input_signature=[tf.TensorSpec((None, 1), tf.string)], reduce_retracing=True)
    return lambda x, training=False: fn(x)


def _predict(explain, texts: list[str], batch_size: int, keep_maps: int, rationale=None,
             stats: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities (N, C), the first ``keep_maps`` attention maps (k, H, T, T), ids (N, T).

    With ``stats`` (a dict), also fills it with the attention metrics over the whole set,
    batch by batch (maps are never all in memory), in the same pass over the data.
    """
    import tensorflow as tf

    from attnlab.attention import attention_metrics

    probs, maps, ids = [], [], []
    kept = 0
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for i in range(0, len(texts), batch_size):
        p, w, t = explain(tf.constant(texts[i : i + batch_size])[:, None], training=False)
        probs.append(np.asarray(p))
        ids.append(np.asarray(t))
        if stats is not None:
            r = rationale[i : i + batch_size] if rationale is not None else None
            for k, v in attention_metrics(np.asarray(w), ids[-1], r).items():
                if np.isfinite(v):
                    sums[k] = sums.get(k, 0.0) + v * len(ids[-1])
                    counts[k] = counts.get(k, 0) + len(ids[-1])
        if kept < keep_maps:
            w = np.asarray(w)[: keep_maps - kept]
            maps.append(w)
            kept += len(w)
    if stats is not None:
        stats.update({k: sums[k] / counts[k] for k in sums})
    return np.concatenate(probs), (np.concatenate(maps) if maps else np.zeros((0,))), np.concatenate(ids)


def train(cfg: DictConfig | Mapping[str, Any]) -> float:
    """Train and evaluate one configuration, recording everything in one MLflow run.

    Args:
        cfg: the composed config (``conf/config.yaml`` and its groups).

    Returns:
        The best validation value of ``train.early_stopping.monitor`` (what sweeps optimise).
    """
    # TensorFlow/Keras (seconds to import) come after the config and data checks, so a
    # bad value or file fails in about a second with one line and nothing on disk.
    from attnlab import data as data_mod

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    composed_yaml = OmegaConf.to_yaml(cfg) if OmegaConf.is_config(cfg) else None
    plain = to_plain(cfg)
    validate(plain)
    seed = int(plain["seed"])
    tcfg, mcfg, trk = plain["train"], plain["model"], plain["tracking"]
    overrides = hydra_overrides()

    t = time.perf_counter()
    dataset = data_mod.load(plain["data"], seed)  # seeded explicitly: independent of the runtime seed
    timings["time_data"] = time.perf_counter() - t

    exp_id = tracking.setup(trk)
    configure_runtime(tcfg, seed)
    import keras

    from attnlab.callbacks import MLflowMetrics, OptunaPruning
    from attnlab.models import build_model, explain_model

    timings["time_setup"] = time.perf_counter() - t0 - timings["time_data"]

    ctx = sweep_context.current()
    variant = variant_items(plain, overrides)
    tags: dict[str, Any] = {
        "attnlab.data": plain["data"]["name"],
        "attnlab.model": mcfg.get("name", ""),
        "attnlab.variant": ",".join(f"{k}={v}" for k, v in variant),
        "attnlab.seed": seed,
        "attnlab.overrides": " ".join(overrides)[:5000],
        **{f"attnlab.data.sha256.{k}": v for k, v in dataset.sha256.items()},
        **{str(k): v for k, v in (trk.get("tags") or {}).items()},
    }
    if plain["data"]["name"] == "mr":
        tags["attnlab.fold"] = plain["data"]["fold"]
    if plain.get("ablation"):
        tags["attnlab.ablation"] = plain["ablation"].get("name", "")
    parent = trk.get("parent_run_id")
    if ctx is not None:
        tags.update({"optuna.study": ctx.study_name, "optuna.trial": ctx.trial.number, **ctx.tags})
        parent = ctx.parent_run_id or parent
    run_name = trk.get("run_name") or run_name_for(plain, overrides)
    monitor = tcfg["early_stopping"]["monitor"]

    with tracking.run_lifecycle(exp_id, run_name, tags, parent_run_id=parent) as run:
        import mlflow

        if ctx is not None:
            ctx.trial.set_user_attr("mlflow_run_id", run.info.run_id)
        tracking.log_params_flat(flatten({k: v for k, v in plain.items() if k != "paths"}))
        # Sizes as loaded, under their own prefix: `data.n_train` etc. are config keys (null for
        # MR/TREC, or differing under max_train_samples) and MLflow refuses to change a param.
        mlflow.log_params({"dataset.n_train": len(dataset.train.texts), "dataset.n_val": len(dataset.val.texts),
                           "dataset.n_test": len(dataset.test.texts), "dataset.n_classes": len(dataset.classes)})
        mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(plain)), "config.yaml")
        if composed_yaml is not None:
            # Unresolved: `attnlab reproduce` re-resolves paths on the machine it runs on.
            mlflow.log_text(composed_yaml, "config_composed.yaml")

        t = time.perf_counter()
        model = build_model(mcfg, len(dataset.classes), dataset.train.texts, tcfg)
        timings["time_build"] = time.perf_counter() - t
        mlflow.log_param("model.n_params", int(model.count_params()))

        es = tcfg["early_stopping"]
        metrics_cb = MLflowMetrics()
        callbacks: list[keras.callbacks.Callback] = [
            metrics_cb,
            keras.callbacks.EarlyStopping(monitor=es["monitor"], mode=es["mode"], patience=int(es["patience"]),
                                          restore_best_weights=bool(es["restore_best_weights"])),
        ]
        pruner = None
        if ctx is not None:
            pruner = OptunaPruning(ctx.trial, monitor)
            callbacks.append(pruner)

        bs = int(tcfg["batch_size"])
        t = time.perf_counter()
        history = model.fit(
            _dataset_tf(dataset.train.texts, dataset.train.labels, bs, seed),
            validation_data=_dataset_tf(dataset.val.texts, dataset.val.labels, bs, None),
            epochs=int(tcfg["epochs"]),
            callbacks=callbacks,
            verbose=int(tcfg["verbose"]),
            shuffle=False,  # the tf.data pipeline shuffles (seeded)
        )
        timings["time_fit"] = time.perf_counter() - t
        hist = history.history.get(monitor, [])
        best = (max if es["mode"] == "max" else min)(hist) if hist else float("nan")
        best_epoch = int((np.argmax if es["mode"] == "max" else np.argmin)(hist)) + 1 if hist else 0
        mlflow.log_metrics({"epochs_completed": metrics_cb.epochs_completed, "best_epoch": best_epoch})
        if pruner is not None and pruner.pruned_at_epoch is not None:
            import optuna

            mlflow.set_tag(tracking.PRUNED_EPOCH_TAG, pruner.pruned_at_epoch)
            raise optuna.TrialPruned(f"pruned at epoch {pruner.pruned_at_epoch} ({monitor}={hist[-1]:.4f})")

        t = time.perf_counter()
        from sklearn.metrics import accuracy_score, f1_score

        explain = _compiled(explain_model(model))
        n_maps = int(trk["n_attention_examples"])
        att_stats: dict[str, float] = {}
        # One pass over validation gives predictions, the maps drawn and the attention metrics.
        val_probs, val_maps, val_ids = _predict(explain, dataset.val.texts, bs, n_maps, dataset.val.rationale, att_stats)
        test_probs, _, _ = _predict(explain, dataset.test.texts, bs, 0)
        val_pred, test_pred = val_probs.argmax(1), test_probs.argmax(1)
        final = {
            "val_accuracy": float(accuracy_score(dataset.val.labels, val_pred)),
            "val_macro_f1": float(f1_score(dataset.val.labels, val_pred, average="macro")),
            # Test is evaluated once, after every selection decision was made on validation.
            "test_accuracy": float(accuracy_score(dataset.test.labels, test_pred)),
            "test_macro_f1": float(f1_score(dataset.test.labels, test_pred, average="macro")),
            f"best_{monitor}": float(best),
        }
        timings["time_eval"] = time.perf_counter() - t

        t = time.perf_counter()
        final.update(att_stats)
        # After the per-epoch steps, so a metric's latest value is the final (restored-best) one.
        mlflow.log_metrics(final, step=metrics_cb.epochs_completed)
        if n_maps > 0:
            _log_attention_artifacts(model, dataset, val_probs[: len(val_maps)], val_maps, val_ids[: len(val_maps)])
        timings["time_attention"] = time.perf_counter() - t

        if trk.get("log_model", True):
            t = time.perf_counter()
            tracking.log_model(model, dataset.classes, {"lowercase": bool(plain["data"].get("lowercase", True)),
                                                        "max_len": int(mcfg["max_len"])})
            timings["time_log_model"] = time.perf_counter() - t
        timings["time_total"] = time.perf_counter() - t0
        mlflow.log_metrics(timings)
        log.info("run %s (%s): val_accuracy=%.4f test_accuracy=%.4f", run.info.run_id, run_name,
                 final["val_accuracy"], final["test_accuracy"])
        _last_run["id"] = run.info.run_id
        _last_run["metrics"] = final

    # Selection value: the monitor's best validation value (what early stopping restored).
    value = final.get(monitor, best) if monitor in final else best
    return float(value)


# id and metrics of the last finished run in this process (printed by the CLI, read by tests).
_last_run: dict[str, Any] = {}


def last_run() -> dict[str, Any]:
    return dict(_last_run)


def _log_attention_artifacts(model, dataset, probs: np.ndarray, maps: np.ndarray, ids: np.ndarray) -> None:
    import mlflow

    from attnlab.attention import plot_heatmap, save_maps, tokens_for
    from attnlab.models import vocabulary

    k = len(maps)
    texts = dataset.val.texts[:k]
    tokens = tokens_for(texts, ids, vocabulary(model))
    classes = dataset.classes
    pad_shown = int(os.environ.get("ATTNLAB_HEATMAP_PAD", "4"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "attention"
        out.mkdir()
        for i in range(k):
            true, pred = classes[int(dataset.val.labels[i])], classes[int(probs[i].argmax())]
            plot_heatmap(maps[i], tokens[i], out / f"val_{i:03d}.png",
                         title=f"val #{i}  true={true}  pred={pred} ({probs[i].max():.2f})", show_padding=pad_shown)
        extra = {"labels": dataset.val.labels[:k], "probs": probs.astype(np.float32), "classes": np.array(classes, dtype=str)}
        if dataset.val.rationale is not None:
            T = ids.shape[1]
            extra["rationale"] = np.array([np.pad(np.asarray(r[:T], np.int8), (0, T - min(len(r), T)))
                                           for r in dataset.val.rationale[:k]])
        save_maps(out / "maps.npz", maps, ids, tokens, **extra)
        mlflow.log_artifacts(str(out), "attention")
