"""The job's side of an Optuna trial, reopened from the study's storage by its number.

The attnlab sweeper asks the study for a trial and hands the job its identity in the config
node ``trial`` (:class:`TrialRef`); the job, in the sweeper's process or another one on any
host that reaches the storage, calls :func:`open_trial` and passes the result to
``train(cfg, trial=...)``, which reports each epoch's validation value, asks the pruner
(rebuilt in the job from ``trial.pruner``) whether to stop, links its MLflow run to the
trial and nests it under the study's parent run. Outside a sweep ``cfg.trial`` is null and
:func:`open_trial` returns None.

With ``hydra.sweeper.replicates`` the node also holds the replicates: the job runs one ``train``
per replicate (:mod:`attnlab.replicates`), each through a :class:`ReplicateRun` view of the
trial, and reports the running mean after each replicate instead of each epoch.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from attnlab.errors import AttnlabError, ConfigError
from attnlab.tracking.sweeps import (REPLICATE_RUNS_ATTR, REPLICATE_TAG, REPLICATE_VALUES_ATTR, ROLE_TAG, RUN_ID_ATTR,
                                     RUN_URL_ATTR, STUDY_TAG, VALUE_STD_ATTR, run_url)

PID_TAG = "attnlab.pid"  # the process that ran the job (≠ the sweeper's under a process launcher)
HOST_TAG = "attnlab.host"


@dataclass(frozen=True)
class TrialRef:
    """What a job needs to reopen its trial: the ``trial`` config node."""

    study_name: str
    storage: str  # SQLAlchemy URL of the Optuna storage
    number: int  # the trial's number in the study
    parent_run_id: Optional[str] = None  # the study's parent MLflow run
    pruner: Optional[dict] = None  # a `_target_` node (hydra.sweeper.pruner); null: never prune
    replicates: Optional[dict] = None  # hydra.sweeper.replicates: {seeds: [...]} or {folds: K}; null: one run

    @classmethod
    def from_node(cls, node: Any) -> "TrialRef":
        from omegaconf import OmegaConf

        d = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, Mapping) or set(d) - names:
            raise ConfigError(f"trial={d!r}: set by the Optuna sweeper; allowed keys: {sorted(names)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"trial={d!r}: {e}") from e


def optuna_checked(what: str, build: Callable[[], Any]) -> Any:
    """``build()``, with Optuna's (and Python's) complaints, warnings included, as one ConfigError line."""
    from hydra.errors import InstantiationException

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            return build()
    except (TypeError, ValueError, UserWarning, InstantiationException) as e:
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ is not None else e
        text = "; ".join(line.strip() for line in str(cause).splitlines() if line.strip())
        raise ConfigError(f"{what}: {text.replace(':;', ':')[:300] or type(cause).__name__}") from e


def build_pruner(cfg: Optional[Mapping[str, Any]], key: str = "hydra.sweeper.pruner"):
    """The pruner of a ``_target_`` node (``hydra/sweeper/pruner``); null: none (NopPruner)."""
    import optuna
    from hydra.utils import instantiate

    if not cfg:
        return optuna.pruners.NopPruner()
    return optuna_checked(f"{key} ({cfg.get('_target_')})", lambda: instantiate(cfg))


def rdb_storage(url: str, **kwargs: Any):
    """An Optuna RDB storage; SQLite waits up to 60 s for a lock (several processes, one file)."""
    from optuna.storages import RDBStorage

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)


def replicate_values(replicates: Optional[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The config values of each replicate: ``{seed: s}`` per seed, or ``{data.inner_folds: K,
    data.inner_fold: i}`` per fold; ``[]`` without replicates."""
    if not replicates:
        return []
    if replicates.get("seeds") is not None:
        return [{"seed": int(s)} for s in replicates["seeds"]]
    k = int(replicates["folds"])
    return [{"data.inner_folds": k, "data.inner_fold": i} for i in range(k)]


class JobTrial:
    """One RUNNING trial as a job sees it: report, ask the pruner, link the MLflow run."""

    def __init__(self, ref: TrialRef, study: Any, trial: Any) -> None:
        self.ref = ref
        self.study = study
        self._trial = trial

    @property
    def number(self) -> int:
        return self.ref.number

    @property
    def parent_run_id(self) -> Optional[str]:
        return self.ref.parent_run_id

    @property
    def replicates(self) -> list[dict[str, Any]]:
        return replicate_values(self.ref.replicates)

    @property
    def overrides(self) -> Optional[list[str]]:
        """The run's overrides: None, i.e. the Hydra job's own (a replicate adds its values)."""
        return None

    def replicate(self, index: int) -> "ReplicateRun":
        return ReplicateRun(self, index)

    def record_replicates(self, values: list[float], run_ids: list[str]) -> None:
        """The finished replicates' values, runs and std (n-1; 0 for one) as the trial's user attrs."""
        import statistics

        self._trial.set_user_attr(REPLICATE_VALUES_ATTR, [float(v) for v in values])
        self._trial.set_user_attr(REPLICATE_RUNS_ATTR, list(run_ids))
        self._trial.set_user_attr(VALUE_STD_ATTR, statistics.stdev(values) if len(values) > 1 else 0.0)

    @property
    def tags(self) -> dict[str, str]:
        """MLflow tags of the trial's run (the trial's identity, who ran it)."""
        return {"optuna.study": self.ref.study_name, "optuna.trial": str(self.number), ROLE_TAG: "child",
                STUDY_TAG: self.ref.study_name, PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}

    def report(self, value: float, step: int) -> None:
        self._trial.report(float(value), step=int(step))

    def should_prune(self) -> bool:
        return bool(self._trial.should_prune())

    def record_run(self, run_id: str, experiment_id: Optional[str] = None) -> None:
        """The trial's user attrs point at its MLflow run: id and page URL."""
        import mlflow

        if experiment_id is None:
            experiment_id = mlflow.get_run(run_id).info.experiment_id
        self._trial.set_user_attr(RUN_ID_ATTR, run_id)
        self._trial.set_user_attr(RUN_URL_ATTR, run_url(mlflow.get_tracking_uri(), experiment_id, run_id))

    def close(self) -> None:
        storage = self.study._storage
        getattr(storage, "_backend", storage).engine.dispose()


class ReplicateRun:
    """Replicate ``index`` of a trial, as ``train`` sees it: the trial's tags (plus
    ``attnlab.replicate=<i>/<n>``), parent run and run link, the replicate's values as overrides,
    and no per-epoch reports (the trial reports the running mean after each replicate)."""

    def __init__(self, trial: JobTrial, index: int) -> None:
        self.trial = trial
        self.index = index
        self.values = trial.replicates[index]

    @property
    def parent_run_id(self) -> Optional[str]:
        return self.trial.parent_run_id

    @property
    def tags(self) -> dict[str, str]:
        return {**self.trial.tags, REPLICATE_TAG: f"{self.index}/{len(self.trial.replicates)}"}

    @property
    def overrides(self) -> list[str]:
        """The job's overrides with this replicate's values last: ``attnlab reproduce`` and the
        ``attnlab.overrides`` tag show e.g. ``seed=1``."""
        from attnlab.run_spec import hydra_overrides

        own = [o for o in hydra_overrides() if o.split("=", 1)[0].lstrip("+~") not in self.values]
        return [*own, *(f"{k}={v}" for k, v in self.values.items())]

    def report(self, value: float, step: int) -> None:
        """Per-epoch reports are off: a replicated trial's steps are its replicates."""

    def should_prune(self) -> bool:
        return False

    def record_run(self, run_id: str, experiment_id: Optional[str] = None) -> None:
        self.trial.record_run(run_id, experiment_id)


def open_trial(node: Any) -> Optional[JobTrial]:
    """The trial named by ``cfg.trial``, reopened from its storage; None when ``node`` is null.

    Raises:
        ConfigError: the node is malformed, or its pruner cannot be built.
        AttnlabError: the storage, study or trial cannot be found, or the trial is over
            (e.g. declared dead by a heartbeat check while this job waited to start).
    """
    if node is None:
        return None
    import optuna
    from optuna.trial import TrialState

    ref = TrialRef.from_node(node)
    pruner = build_pruner(ref.pruner, key="trial.pruner")
    try:
        storage = rdb_storage(ref.storage)
        study = optuna.load_study(study_name=ref.study_name, storage=storage, pruner=pruner,
                                  sampler=optuna.samplers.RandomSampler())
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(ref.study_name), ref.number)
    except Exception as e:  # noqa: BLE001 - unreachable storage, unknown study or trial
        raise AttnlabError(f"trial.number={ref.number}: cannot reopen the trial of study {ref.study_name!r} "
                           f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from e
    state = storage.get_trial(trial_id).state
    if state != TrialState.RUNNING:
        raise AttnlabError(f"trial.number={ref.number}: trial of study {ref.study_name!r} is {state.name}, "
                           f"not RUNNING (another worker declared it dead?)")
    return JobTrial(ref, study, optuna.trial.Trial(study, trial_id))
