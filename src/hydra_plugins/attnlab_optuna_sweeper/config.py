"""The sweeper's config node, registered as ``hydra/sweeper=attnlab_optuna``.

These are the sweeper's only defaults; ``conf/hparams_search/*.yaml`` presets override them.
"""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class AttnlabOptunaSweeperConf:
    _target_: str = "hydra_plugins.attnlab_optuna_sweeper.sweeper.AttnlabOptunaSweeper"
    # Finished (COMPLETE or PRUNED) trials the study must hold, over all runs and workers.
    n_trials: int = 20
    # maximize | minimize; null: from train.early_stopping.mode (max -> maximize).
    direction: Optional[str] = None
    # null: "<tracking.experiment>-<hparams_search preset>" (or the experiment alone).
    study_name: Optional[str] = None
    # SQLAlchemy URL; null: sqlite:///<launch dir>/optuna.db. Several workers: PostgreSQL.
    storage: Optional[str] = None
    # {type: tpe|random|grid, seed: int, **constructor kwargs}
    sampler: Dict[str, Any] = field(default_factory=lambda: {"type": "tpe", "seed": 0})
    # {type: median|successive_halving|none, **constructor kwargs}
    pruner: Dict[str, Any] = field(default_factory=lambda: {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 1})
    # config key -> {type: float|int|categorical, low, high, log, step, choices}
    params: Dict[str, Any] = field(default_factory=dict)
    # A worker that has not beaten its heartbeat for grace_period seconds is dead: its trial is
    # marked FAIL and re-run (same parameters) up to max_retry times by the next worker.
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 2
    # Stop a worker after this many trials in a row raised (a broken setup, not a bad trial).
    max_consecutive_failures: int = 5
    # Seconds between looks at the study while other workers finish its last trials.
    poll_interval: float = 2.0
    # Log the Optuna plots (HTML + PNG) on the parent MLflow run when a worker stops.
    plots: bool = True


ConfigStore.instance().store(group="hydra/sweeper", name="attnlab_optuna", node=AttnlabOptunaSweeperConf,
                             provider="attnlab")
