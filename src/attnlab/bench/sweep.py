"""Sweeps: pruning on vs off, and 1 vs 2 workers on PostgreSQL (needs the Optuna sweeper)."""

from __future__ import annotations

from attnlab.bench.common import Result
from attnlab.errors import AttnlabError


def run(cfg, quick: bool, tracking_uri: str | None) -> Result:
    raise AttnlabError("sweep benchmark: the Optuna sweeper (hydra/sweeper=attnlab_optuna) is not available yet")
