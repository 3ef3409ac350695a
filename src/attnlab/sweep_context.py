"""The one piece of state a sweeper hands to ``train(cfg)``: the Optuna trial of this job.

The attnlab Optuna sweeper sets it around each job it launches (jobs run in the sweeper's
process); ``train`` reads it to report per-epoch values, prune, and nest its MLflow run.
Without a sweeper it is None and ``train`` behaves as a plain run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional


@dataclass
class TrialContext:
    trial: Any  # optuna.Trial
    study_name: str
    parent_run_id: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)


_current: Optional[TrialContext] = None


def current() -> Optional[TrialContext]:
    return _current


@contextlib.contextmanager
def active(ctx: TrialContext) -> Iterator[TrialContext]:
    global _current
    previous, _current = _current, ctx
    try:
        yield ctx
    finally:
        _current = previous
