"""The Keras learner: build the model of :mod:`attnlab.models`, fit with early stopping on
validation, evaluate (attention metrics per block), analyse attention, log the served model."""

from __future__ import annotations

from typing import Any, Mapping

from attnlab import data, tracking
from attnlab.data import sanity

# The final metrics that decide anything (selection, register, report): non-finite = FAILED run.
_DECIDING = ("val_loss", "val_accuracy", "test_loss", "test_accuracy")


class KerasLearner:
    """Every Keras model config (a ``model`` node without ``_target_``); reads every section."""

    ignores: tuple[str, ...] = ()

    def configure_runtime(self, config: Mapping[str, Any], seed: int) -> None:
        from attnlab import fitting

        fitting.configure_runtime(config["train"], seed)

    def run(self, spec: Any, dataset: data.Dataset, trial: Any, phases: Any, view: Any) -> dict[str, float]:
        """Inside the MLflow run: build, fit, evaluate, analyse, log the model; the final metrics."""
        from attnlab import fitting
        from attnlab.models import build_model, component_modules, token_ids

        cfg, trk = spec.config, spec.config["tracking"]
        with phases("build"):
            model = build_model(cfg["model"], len(dataset.classes), dataset.train.texts, cfg["train"])
        tracking.log_params_flat({"model.n_params": int(model.count_params())})
        tracking.set_tags(sanity.warn(sanity.short_texts(token_ids(model, dataset.train.texts), "train",
                                                         dataset.train.texts)))
        with phases("fit"):
            fitted = fitting.fit(model, dataset, cfg["train"], spec.seed, trial, view.callbacks(), view.keras_verbose())
        tracking.log_metrics({"epochs_completed": fitted.epochs_completed, "best_epoch": fitted.best_epoch})
        if fitted.pruned_at_epoch is not None:
            _prune(fitted, spec.monitor)
        n_maps = int(trk["n_attention_examples"])
        with phases("eval"):
            metrics, val = fitting.evaluate(model, dataset, int(cfg["train"]["batch_size"]), n_maps)
        metrics[f"best_{spec.monitor}"] = fitted.best
        fitting.check_finite({k: v for k, v in metrics.items() if k in _DECIDING or k.startswith("best_")},
                             "after training")
        if trk["faithfulness"]["enabled"]:
            with phases("faithfulness"):
                metrics.update(_log_faithfulness(model, dataset, val, trk["faithfulness"]))
        # After the per-epoch steps, so a metric's latest value is the final (restored-best) one.
        tracking.log_metrics(metrics, step=fitted.epochs_completed)
        with phases("attention"):
            if n_maps > 0:
                _log_attention(model, dataset, val)
            view.log_pictures(model, metrics)
        if trk["log_model"]:
            with phases("log_model"):
                tracking.log_model(model, dataset.classes, {"lowercase": bool(cfg["data"]["lowercase"]),
                                                            "max_len": int(cfg["model"]["max_len"]),
                                                            "modules": component_modules(cfg["model"])})
        return metrics


def _log_faithfulness(model: Any, dataset: data.Dataset, val: Any, cfg: dict[str, Any]) -> dict[str, float]:
    """The faithfulness measures (metrics ``faith/<method>/<measure>``) and ``faithfulness.json``."""
    from attnlab import fitting

    result = fitting.faithfulness(model, dataset, val, cfg)
    tracking.log_dict(result.to_json(), "faithfulness/faithfulness.json")
    if cfg["eraser"]:
        from attnlab.analysis import tokens_for
        from attnlab.faithfulness import write_eraser
        from attnlab.models import vocabulary

        with tracking.artifact_dir("faithfulness/eraser") as out:
            tokens = tokens_for(dataset.val.texts, val.ids, vocabulary(model))
            write_eraser(result, out, tokens, dataset.val.labels, dataset.classes, force=True)
    return result.metrics()


def _prune(fitted: Any, monitor: str) -> None:
    import optuna

    tracking.set_tags({tracking.PRUNED_EPOCH_TAG: fitted.pruned_at_epoch})
    raise optuna.TrialPruned(f"pruned at epoch {fitted.pruned_at_epoch} (best {monitor}={fitted.best:.4f})")


def _log_attention(model: Any, dataset: data.Dataset, val: Any) -> None:
    """The raw maps (every block and head) of the first validation texts, ``attention/maps.npz``
    (the pictures a person reads are the probe texts', :mod:`attnlab.watch`)."""
    from attnlab.analysis import save_maps, tokens_for
    from attnlab.models import vocabulary

    k = len(val.maps)
    ids, probs, labels = val.ids[:k], val.probs[:k], dataset.val.labels[:k]
    tokens = tokens_for(dataset.val.texts[:k], ids, vocabulary(model))
    with tracking.artifact_dir("attention") as out:
        extra = {"labels": labels, "probs": probs.astype("float32"), "classes": dataset.classes}
        if dataset.val.rationale is not None:
            extra["rationale"] = dataset.val.rationale_matrix(ids.shape[1])[:k]
        save_maps(out / "maps.npz", val.maps, ids, tokens, **extra)
