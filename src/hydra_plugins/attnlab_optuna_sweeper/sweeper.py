"""The Hydra sweeper ``hydra/sweeper=attnlab_optuna``: Optuna 5 trials as Hydra jobs.

A thin plugin class, as Hydra's own Optuna sweeper is: the work (settings, study, the loop
that keeps ``n_jobs`` trials in flight, heartbeats) is in :mod:`._impl`, imported when a sweep
starts so that Hydra's plugin scan stays fast; the MLflow parent run is
:mod:`attnlab.tracking.sweeps`; the trial as a job sees it is :mod:`attnlab.trial`.
"""

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class AttnlabOptunaSweeper(Sweeper):
    def __init__(self, **cfg: Any) -> None:
        from ._impl import SweeperImpl

        self.impl = SweeperImpl(cfg)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        return self.impl.sweep(arguments)
