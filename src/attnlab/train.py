"""``train(cfg)``: the one function the CLI, the Optuna sweeper and ``reproduce`` call.

describe the run -> load data -> open the MLflow run -> the learner (:mod:`attnlab.learners`:
Keras, or the model node's ``_target_``) builds, fits, evaluates, analyses attention and logs
the model -> :class:`RunResult`. Selection (early stopping, the value a sweep
optimises) uses validation data only; test is evaluated once, after training.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator

from attnlab import data, datasets, learners, tracking, watch
from attnlab.data import sanity
from attnlab.run_spec import describe

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run hands back: its MLflow id, final metrics, and the selection value."""

    run_id: str
    metrics: dict[str, float]
    value: float  # best validation value of train.early_stopping.monitor (what sweeps optimise)


class Phases:
    """Wall time of named phases (``time_<name>`` seconds), plus ``time_total`` since creation."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[f"time_{name}"] = self.seconds.get(f"time_{name}", 0.0) + time.perf_counter() - t

    def total(self) -> dict[str, float]:
        return {**self.seconds, "time_total": time.perf_counter() - self._start}


def train(cfg: Any, trial: Any = None) -> RunResult:
    """Train and evaluate one configuration, recording everything in one MLflow run.

    Args:
        cfg: the composed config (``conf/config.yaml`` and its groups), or its plain dict.
        trial: the Optuna trial of a sweep's job (:mod:`attnlab.trial`): per-epoch reports,
            pruning, and the study's parent run. None for a plain run.
    """
    phases = Phases()
    # Every config check, before data is read or TensorFlow is imported; a replicate's own
    # values (seed=1, data.inner_fold=2) join the job's overrides.
    spec = describe(cfg, trial.overrides if trial is not None else None)
    tracking.probe(tracking.resolve_uri(spec.config["tracking"]))  # an unusable store fails in seconds
    learner = learners.for_model(spec.config["model"])  # Keras, or the model node's _target_
    with phases("data"):
        dataset = data.load(spec.config["data"], spec.seed)
    with phases("setup"):
        exp_id = tracking.setup(spec.config["tracking"])
        learner.configure_runtime(spec.config, spec.seed)
    from attnlab import device

    tags = {**spec.tags, **{f"attnlab.data.sha256.{k}": v for k, v in dataset.sha256.items()},
            **sanity.warn(sanity.dataset_warnings(dataset)),
            **device.describe(), **(trial.tags if trial is not None else {})}
    if learner.ignores:
        tags["attnlab.ignored_config"] = ",".join(learner.ignores)
    parent = trial.parent_run_id if trial is not None else spec.config["tracking"]["parent_run_id"]
    view = watch.start(spec.config, dataset, spec.run_name, exp_id)  # console, pictures, UI view
    with tracking.run_lifecycle(exp_id, spec.run_name, tags, parent_run_id=parent) as run, \
            watch.system_metrics(run.info.run_id, spec.config["tracking"]):
        if trial is not None:
            tracking.retry.call(trial.record_run, run.info.run_id, run.info.experiment_id)
        tracking.log_config({k: v for k, v in spec.config.items() if k not in learner.ignores},
                            spec.composed_yaml, dataset.sizes())
        with phases("inputs"):
            datasets.log_inputs(dataset, spec.seed)
        metrics = learner.run(spec, dataset, trial, phases, view)
        tracking.log_metrics({**phases.total(), **view.costs()})
        log.info("run %s (%s): val_accuracy=%.4f test_accuracy=%.4f", run.info.run_id, spec.run_name,
                 metrics["val_accuracy"], metrics["test_accuracy"])
    return RunResult(run.info.run_id, metrics, float(metrics[f"best_{spec.monitor}"]))
