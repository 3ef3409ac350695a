"""MLflow side of a run: where it goes, its lifecycle, and what it records.

Every run ends FINISHED, FAILED (error tag set) or KILLED (interrupt, SIGTERM or an Optuna
prune), never RUNNING: :func:`run_lifecycle` sets the status whatever happens inside it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping

from attnlab.errors import AttnlabError

STATUS_TAG = "attnlab.status"  # FINISHED | FAILED | KILLED | PRUNED (Optuna's view of the run)
ERROR_TAG = "attnlab.error"
PRUNED_EPOCH_TAG = "attnlab.pruned_at_epoch"
MODEL_NAME = "model"  # artifact name of the logged pyfunc model


# mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI; remember what we set, and what
# the user had set before that, so a later run in the same process (the jobs of a multirun,
# tests) neither mistakes our value for the user's choice nor forgets the user's own.
_uri_we_set: str | None = None
_user_env_uri: str | None = None


def _user_env() -> str | None:
    """The user's ``$MLFLOW_TRACKING_URI``: the variable, unless it only holds what we exported."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env is not None and env != _uri_we_set:
        return env  # set (or changed) by the user since our last setup()
    return _user_env_uri if env is not None else None


def resolve_uri(tracking_cfg: Mapping[str, Any]) -> str:
    """``tracking.uri`` if set, else ``$MLFLOW_TRACKING_URI``, else the launch dir's SQLite file."""
    if tracking_cfg.get("uri"):
        return str(tracking_cfg["uri"])
    env = _user_env()
    if env:
        return env
    launch = Path(str(tracking_cfg.get("artifact_dir") or "mlruns")).resolve().parent
    return f"sqlite:///{launch / 'mlflow.db'}"


def setup(tracking_cfg: Mapping[str, Any], experiment: str | None = None) -> str:
    """Point MLflow at the configured store and return the experiment id (created if new).

    Raises:
        AttnlabError: the store cannot be reached, or the experiment is deleted.
    """
    # MLflow's REST client retries for minutes by default; an unreachable server should fail fast.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow

    global _uri_we_set, _user_env_uri
    _user_env_uri = _user_env()
    uri = resolve_uri(tracking_cfg)
    name = experiment or str(tracking_cfg["experiment"])
    mlflow.set_tracking_uri(uri)
    _uri_we_set = os.environ.get("MLFLOW_TRACKING_URI")
    client = mlflow.MlflowClient(uri)
    try:
        # The one retry's "Retrying ... Connection refused" warning would precede our one-line error.
        with _quiet_logger("urllib3.connectionpool"):
            exp = client.get_experiment_by_name(name)
        if exp is None:
            art = tracking_cfg.get("artifact_dir")
            try:
                exp_id = client.create_experiment(name, artifact_location=Path(art).resolve().as_uri() if art else None)
            except Exception:
                # Another worker created it between our lookup and create.
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        elif exp.lifecycle_stage == "deleted":
            raise AttnlabError(f"tracking.experiment={name!r} is deleted in {uri}; restore it or pick another name")
        else:
            exp_id = exp.experiment_id
    except AttnlabError:
        raise
    except Exception as e:  # noqa: BLE001 - any backend failure is the same user problem
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AttnlabError(f"tracking.uri={uri}: cannot use the MLflow tracking store ({msg[:200]})") from e
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


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
        tags={k: str(v) for k, v in (tags or {}).items()},
        parent_run_id=parent_run_id,
    )
    status = "FAILED"
    # The handlers stay installed while the run is closed, and the closing writes hold a
    # second Ctrl-C back, so a run is never left RUNNING by an impatient user.
    with sigterm_as_interrupt():
        try:
            yield run
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            with deferred_interrupts():
                _safe(mlflow.set_tag, STATUS_TAG, "KILLED")
            raise
        except BaseException as e:
            with deferred_interrupts():
                if type(e).__name__ == "TrialPruned":
                    status = "KILLED"
                    _safe(mlflow.set_tag, STATUS_TAG, "PRUNED")
                else:
                    _safe(mlflow.set_tag, STATUS_TAG, "FAILED")
                    _safe(mlflow.set_tag, ERROR_TAG, f"{type(e).__name__}: {e}"[:5000])
            raise
        finally:
            with deferred_interrupts():
                if status == "FINISHED":
                    _safe(mlflow.set_tag, STATUS_TAG, "FINISHED")
                # end_run itself must not hide the original error.
                _safe(mlflow.end_run, status)


def _safe(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - best effort while closing a run
        pass


def log_params_flat(params: Mapping[str, Any]) -> None:
    import mlflow

    clean = {k[:250]: ("null" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else str(v))[:6000]
             for k, v in params.items()}
    items = list(clean.items())
    for i in range(0, len(items), 100):  # MLflow batches take at most 100 params
        mlflow.log_params(dict(items[i : i + 100]))


def pip_requirements() -> list[str]:
    """Pinned requirements of the serving environment, from what is installed (no inference)."""
    reqs = []
    for dist in ("mlflow", "tensorflow-cpu", "keras", "numpy", "pandas"):
        try:
            reqs.append(f"{dist}=={md.version(dist)}")
        except md.PackageNotFoundError:
            continue
    return reqs


def log_model(model: Any, classes: list[str], meta: Mapping[str, Any] | None = None) -> Any:
    """Log the Keras model as a pyfunc (raw strings -> label, probabilities, attention).

    The ``.keras`` file is an artifact of the pyfunc; the wrapper loads it with
    ``safe_mode=True``. The wrapper is logged as code (``pyfunc_model.py``), not pickled;
    loading needs attnlab installed (no ``code_paths``: MLflow would swap the running
    process's ``attnlab`` modules for the copy inside the model). Requirements are passed explicitly (MLflow's inference imports and
    probes the model, which costs seconds per run).
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    signature = ModelSignature(
        # No input schema: MLflow's enforcement of a named "text" column refuses a plain list
        # of strings, and an unnamed one silently takes a DataFrame's *first* column (e.g.
        # "label"); AttnlabPyfunc picks the texts itself (column "text", else the only one).
        inputs=None,
        outputs=Schema(
            [
                ColSpec("string", "label"),
                ColSpec(Array("double"), "probabilities"),
                ColSpec(Array("string"), "tokens"),
                ColSpec(Array("double"), "attention"),
            ]
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        keras_path = Path(tmp) / "model.keras"
        model.save(keras_path)
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps({"classes": list(classes), **(meta or {})}, indent=2))
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(Path(__file__).resolve().parent / "pyfunc_model.py"),
            artifacts={"keras_model": str(keras_path), "meta": str(meta_path)},
            pip_requirements=pip_requirements(),
            signature=signature,
            # The order of `probabilities`, readable without loading the model (MLmodel file).
            metadata={"classes": [str(c) for c in classes]},
        )
