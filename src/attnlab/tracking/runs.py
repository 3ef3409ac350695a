"""A run's lifecycle: every run ends FINISHED, FAILED (error tag set) or KILLED (interrupt,
SIGTERM or an Optuna prune), never RUNNING: :func:`run_lifecycle` sets the status whatever
happens inside it. SIGINT/SIGTERM arriving during a store write wait for its end.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator, Mapping

from attnlab.tracking import retry
from attnlab.tracking.reaper import ERROR_TAG, STATUS_TAG, process_tags  # noqa: E402,F401 - re-exported

# STATUS_TAG: FINISHED | FAILED | KILLED | PRUNED (Optuna's view of the run); ERROR_TAG: why it FAILED
PRUNED_EPOCH_TAG = "attnlab.pruned_at_epoch"


class _Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception so the run can be closed as KILLED."""


# A signal that arrives during a store write (MLflow, Optuna) is held back until the write is
# done: an exception raised inside a database call can leave its connection pool locked, and
# then the run could not be closed.
_defer: dict[str, Any] = {"depth": 0, "pending": None}


def _interrupt(signum: int) -> KeyboardInterrupt:
    return _Terminated(f"signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Inside the block, SIGINT/SIGTERM (under :func:`sigterm_as_interrupt`) wait for its end."""
    _defer["depth"] += 1
    try:
        yield
    finally:
        _defer["depth"] -= 1
        if _defer["depth"] == 0 and _defer["pending"] is not None:
            signum, _defer["pending"] = _defer["pending"], None
            raise _interrupt(signum)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`KeyboardInterrupt` like SIGINT, both held back
    during :func:`deferred_interrupts` (main thread only; a custom SIGINT handler is kept)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _handler(signum, frame):  # noqa: ARG001
        if _defer["depth"]:
            _defer["pending"] = signum
            return
        raise _interrupt(signum)

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _handler)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def run_lifecycle(
    experiment_id: str,
    run_name: str | None,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
) -> Iterator[Any]:
    """Start an MLflow run and always end it with a terminal status.

    * normal exit -> FINISHED
    * ``KeyboardInterrupt`` / SIGTERM -> KILLED (what was logged stays)
    * ``optuna.TrialPruned`` -> KILLED with ``attnlab.status=PRUNED``
    * any other exception -> FAILED with the error message in ``attnlab.error``

    The exception is re-raised after the status is written.
    """
    import mlflow

    # A stale active run (e.g. from an earlier failed call in the same process) would make
    # start_run raise or nest wrongly.
    while mlflow.active_run() is not None:
        mlflow.end_run("KILLED")
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        tags={**process_tags(), **{k: str(v) for k, v in (tags or {}).items()}},
        parent_run_id=parent_run_id,
    )
    status, closing = "FAILED", {}
    # The handlers stay installed while the run is closed, and the closing writes hold a
    # second Ctrl-C back, so a run is never left RUNNING by an impatient user.
    with sigterm_as_interrupt():
        try:
            yield run
            status, closing = "FINISHED", {STATUS_TAG: "FINISHED"}
        except KeyboardInterrupt:
            status, closing = "KILLED", {STATUS_TAG: "KILLED"}
            raise
        except BaseException as e:
            if type(e).__name__ == "TrialPruned":
                status, closing = "KILLED", {STATUS_TAG: "PRUNED"}
            else:
                closing = {STATUS_TAG: "FAILED", ERROR_TAG: f"{type(e).__name__}: {e}"[:5000]}
            raise
        finally:
            with deferred_interrupts():
                # Closing must not hide the original error.
                _safe(retry.call, _close, run.info.run_id, status, closing, what="closing the run")


def _close(run_id: str, status: str, tags: Mapping[str, str]) -> None:
    """Write the status tags and the terminal status; idempotent, so it can be retried through a
    database restart. ``mlflow.end_run`` cannot be retried: it pops the active run *before* it
    writes the status, so after one failed write the run would stay RUNNING with nothing left
    to end. The run is taken off the stack here, and its status written by id."""
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        try:
            mlflow.end_run(status)  # pops the run (and stops its system-metrics monitor), then writes
            return
        except Exception:  # noqa: BLE001 - popped but maybe not written: write it by id below
            pass
    client.set_terminated(run_id, status)


def _safe(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - best effort while closing a run
        pass


