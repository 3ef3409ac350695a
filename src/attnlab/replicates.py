"""A sweep trial averaged over replicates (``hydra.sweeper.replicates``): the job's side.

The trial's job runs one ``train`` per replicate, one after another in its own process: the
trial's config with ``seed=<s>`` for each seed, or with ``data.inner_folds=K
data.inner_fold=<i>`` for each of K folds inside the training part. Each replicate is its own
MLflow run, nested under the study's parent and tagged with the trial (``optuna.trial``) and
``attnlab.replicate=<i>/<n>``; a single ``attnlab train ... seed=1`` (or ``data.inner_folds=3
data.inner_fold=1``) run reproduces it.

Pruning works on the running mean: after replicate ``i`` the trial reports the mean of the
finished replicates' values at step ``i`` and asks its pruner (epochs are not reported: a
replicate's epoch curve would mix with the others' at the same steps). The trial's value is the
mean; its user attrs hold the std and each replicate's value and run, and every replicate run
gets the metrics ``trial_<monitor>_mean`` and ``trial_<monitor>_std`` once the trial ends.
"""

from __future__ import annotations

import copy
import logging
import statistics
from typing import Any, Mapping

log = logging.getLogger(__name__)


def with_values(cfg: Any, values: Mapping[str, Any]) -> Any:
    """A copy of the composed config with ``values`` (dotted keys) set, as overrides would."""
    from omegaconf import OmegaConf, open_dict

    out = copy.deepcopy(cfg)
    with open_dict(out):
        for key, value in values.items():
            OmegaConf.update(out, key, value, merge=False)
    return out


def objective(result: Any, monitor: str) -> float:
    """A replicate's value: its run's final ``<monitor>`` (the kept model scored on validation, the
    number the run shows), or ``best_<monitor>`` when the evaluation pass does not compute it."""
    return float(result.metrics.get(monitor, result.value))


def run_trial(cfg: Any, trial: Any) -> float:
    """Train every replicate of ``trial`` (:class:`attnlab.trial.JobTrial`); the mean value.

    Raises:
        optuna.TrialPruned: the pruner stopped the trial after a replicate (not after the last).
    """
    import optuna

    from attnlab.config import to_plain
    from attnlab.train import train
    from attnlab.watch import finished_lines

    monitor = str(cfg.train.early_stopping.monitor)
    n = len(trial.replicates)
    values: list[float] = []
    run_ids: list[str] = []
    for i, rep_values in enumerate(trial.replicates):
        result = train(with_values(cfg, rep_values), trial=trial.replicate(i))
        print("\n".join(finished_lines(result.run_id, result.metrics, to_plain(cfg.tracking))), flush=True)
        values.append(objective(result, monitor))
        run_ids.append(result.run_id)
        trial.record_replicates(values, run_ids)
        mean = statistics.fmean(values)
        trial.report(mean, step=i)
        if i + 1 < n and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after replicate {i + 1} of {n} (running mean {monitor}={mean:.4f})")
    std = statistics.stdev(values) if n > 1 else 0.0
    _log_trial_metrics(run_ids, monitor, statistics.fmean(values), std)
    print(f"trial {trial.number}: {monitor} {statistics.fmean(values):.4f} ± {std:.4f} over {n} replicates "
          f"{[round(v, 4) for v in values]}", flush=True)
    return statistics.fmean(values)


def _log_trial_metrics(run_ids: list[str], monitor: str, mean: float, std: float) -> None:
    """The trial's mean and std on each of its replicate runs (sortable in the runs table)."""
    import time

    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    for run_id in run_ids:
        try:
            client.log_batch(run_id, metrics=[Metric(f"trial_{monitor}_mean", mean, now, 0),
                                              Metric(f"trial_{monitor}_std", std, now, 0)])
        except Exception as e:  # noqa: BLE001 - the trial's value stands without these copies
            log.warning("could not log the trial's mean and std on run %s: %s", run_id, e)
