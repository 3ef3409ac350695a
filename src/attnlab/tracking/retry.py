"""Retry a storage call (Optuna RDB, MLflow's database store) through a transient outage.

A database restart, a failover or a dropped connection makes the next call fail with e.g.
``the database system is shutting down`` or ``server closed the connection unexpectedly``; the
one after a reconnect usually succeeds. :func:`call` retries such failures with exponential
backoff (0.5 s doubling to 8 s) for a bounded time (``ATTNLAB_STORAGE_RETRY_S``, default 120 s),
then raises one :class:`attnlab.errors.AttnlabError` line. Any other error passes at once.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, TypeVar

from attnlab.errors import AttnlabError, first_line

log = logging.getLogger(__name__)

T = TypeVar("T")

BUDGET_ENV = "ATTNLAB_STORAGE_RETRY_S"
DEFAULT_BUDGET_S = 120.0
_FIRST_WAIT_S, _MAX_WAIT_S = 0.5, 8.0

# Seen in the messages of psycopg, SQLAlchemy, Optuna and MLflow (which wrap each other).
_TRANSIENT = (
    "shutting down", "starting up", "in recovery mode", "connection refused", "server closed the connection",
    "terminating connection", "connection failed", "could not connect", "connection is closed",
    "connection already closed", "closed the connection", "ssl syscall", "consuming input failed",
    "connection reset", "broken pipe", "database is locked", "connection timed out", "the connection is lost",
    "cannot connect", "no connection to the server", "connection was closed",
)


def _chain_says(exc: BaseException, words: tuple[str, ...]) -> bool:
    """True when ``exc`` or an exception it wraps names one of ``words`` (lower case)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        text = f"{type(cur).__name__}: {getattr(cur, 'message', '')} {cur}".lower()
        if any(k in text for k in words):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it wraps) says the database was briefly unreachable."""
    return _chain_says(exc, _TRANSIENT)


# Two processes inserting the same row at once (tables on a fresh database, an MLflow dataset
# two runs log together): the loser's second try finds the row.
_RACE = ("uniqueviolation", "duplicate key", "already exists", "integrityerror", "unique constraint")


def is_creation_race(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it wraps) says another process created the same row first."""
    return _chain_says(exc, _RACE)


def call_racing(fn: Callable[..., T], *args: Any, attempts: int = 3, what: str | None = None, **kwargs: Any) -> T:
    """:func:`call`, tried again (up to ``attempts`` times) when it lost a creation race.

    For writes that create a row other processes may create at the same moment, and that find
    the row and go on when it exists (e.g. ``mlflow.log_input``: runs of a sweep log the same
    dataset; MLflow inserts it if its query found none, so two jobs at once collide).
    """
    for attempt in range(1, attempts + 1):
        try:
            return call(fn, *args, what=what, **kwargs)
        except Exception as e:  # noqa: BLE001 - only a lost race is tried again
            if attempt == attempts or not is_creation_race(e):
                raise
            log.info("%s lost a race to create a row (%s); trying again", what or getattr(fn, "__qualname__", fn),
                     first_line(e, 120))
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def budget_s() -> float:
    try:
        return max(0.0, float(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_S)))
    except ValueError:
        return DEFAULT_BUDGET_S


def call(fn: Callable[..., T], *args: Any, what: str | None = None, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried while it fails transiently, for at most :func:`budget_s`.

    Raises:
        AttnlabError: still failing transiently when the time is up (one line, naming ``what``).
        Exception: any non-transient error of ``fn``, unchanged.
    """
    deadline = time.monotonic() + budget_s()
    wait, attempt = _FIRST_WAIT_S, 0
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - sorted below
            attempt += 1
            name = what or getattr(fn, "__qualname__", repr(fn))
            if not is_transient(e):
                raise
            if time.monotonic() + wait > deadline:
                raise AttnlabError(f"storage unavailable: {name} still failed after {attempt} attempt(s) in "
                                   f"{budget_s():g} s ({first_line(e, 200)}; {BUDGET_ENV} sets the time)") from e
            log.warning("storage call %s failed (%s); retry %d in %.1f s", name, first_line(e, 120), attempt, wait)
            time.sleep(wait)
            wait = min(wait * 2, _MAX_WAIT_S)
