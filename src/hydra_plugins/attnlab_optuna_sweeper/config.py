"""The sweeper's typed config, registered as ``hydra/sweeper=attnlab_optuna``, and its
sampler and pruner groups (``hydra/sweeper/sampler=tpe|random|grid``,
``hydra/sweeper/pruner=median|successive_halving|none``).

Samplers and pruners are ``_target_`` nodes that :func:`hydra.utils.instantiate` builds; the
schemas below fix their keys and types (a typo fails at composition, naming the key). Their
defaults are Optuna 5's own (a test checks), except the samplers' ``seed``: 0, so a sweep is
reproducible unless asked otherwise. ``conf/hparams_search/*.yaml`` presets override them.
"""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Direction(str, Enum):
    maximize = "maximize"
    minimize = "minimize"


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = 0
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: Optional[bool] = None
    group: bool = False
    # Trials still running count as bad ones: K trials in flight do not all sample one point.
    constant_liar: bool = True
    consider_endpoints: Optional[bool] = None
    consider_magic_clip: Optional[bool] = None
    prior_weight: Optional[float] = None
    warn_independent_sampling: Optional[bool] = None


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = 0


@dataclass
class GridSamplerConf:
    """The grid comes from ``hydra.sweeper.params`` (categorical, int, float with ``step``).

    ``seed`` fixes the order the grid is walked in; every worker must use the same one (a
    trial's stored grid id names a point only under that seed), so it is never offset."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: Optional[int] = 0


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"  # "auto" or an int
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class ReplicatesConf:
    """A trial's value is the mean over replicates of the same parameters: one run per seed in
    ``seeds`` (``seed=<s>``), or one run per fold of K-fold cross-validation inside the training
    part (``folds: K``: ``data.inner_folds=K data.inner_fold=<i>``). Set one; both null: one run
    per trial. (A node, not null, by default: OmegaConf cannot merge an override such as
    ``hydra.sweeper.replicates={seeds: [0, 1]}`` into a null structured node.)"""

    seeds: Optional[List[int]] = None
    folds: Optional[int] = None


@dataclass
class AttnlabOptunaSweeperConf:
    _target_: str = "hydra_plugins.attnlab_optuna_sweeper.sweeper.AttnlabOptunaSweeper"
    # The sweeper builds the sampler (per trial, seeded) and the pruner (in each job) itself.
    _recursive_: bool = False
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    # Finished (COMPLETE or PRUNED) trials the study must hold, over all runs and workers.
    n_trials: int = 20
    # Trials this worker keeps in flight; > 1 needs a process launcher (hydra/launcher=submitit_local).
    n_jobs: int = 1
    # null: from train.early_stopping.mode (max -> maximize).
    direction: Optional[Direction] = None
    # null: "<tracking.experiment>-<hparams_search preset>" (or the experiment alone).
    study_name: Optional[str] = None
    # SQLAlchemy URL; null: sqlite:///<launch dir>/optuna.db. Jobs on other hosts: PostgreSQL.
    storage: Optional[str] = None
    # config key -> {type: float|int|categorical, low, high, log, step, choices}
    params: Dict[str, Any] = field(default_factory=dict)
    # {seeds: [0, 1, 2]} or {folds: K}: a trial's value is the mean over replicates (see ReplicatesConf);
    # both null (the default): one run per trial.
    replicates: Optional[ReplicatesConf] = field(default_factory=ReplicatesConf)
    # Resume a study although this command's fixed settings differ from the ones it began with.
    force: bool = False
    # A trial whose worker has not beaten its heartbeat for grace_period seconds is dead: it is
    # marked FAIL and re-run (same parameters) up to max_retry times by the next worker.
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 2
    # Stop a worker after this many trials in a row failed (a broken setup, not a bad trial).
    max_consecutive_failures: int = 5
    # Seconds between looks at the study while trials (this worker's or others') run.
    poll_interval: float = 2.0
    # Log the Optuna plots (HTML + PNG) on the parent MLflow run when a worker stops.
    plots: bool = True


_cs = ConfigStore.instance()
_cs.store(group="hydra/sweeper", name="attnlab_optuna", node=AttnlabOptunaSweeperConf, provider="attnlab")
for _name, _node in (("tpe", TPESamplerConf), ("random", RandomSamplerConf), ("grid", GridSamplerConf)):
    _cs.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="attnlab")
for _name, _node in (("median", MedianPrunerConf), ("successive_halving", SuccessiveHalvingPrunerConf),
                     ("none", NopPrunerConf)):
    _cs.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="attnlab")
