"""Where runs go: the tracking URI, the store and its experiment, MLflow clients.

``tracking.uri`` if set, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<launch dir>/mlflow.db``
(an absolute path). Every MLflow client attnlab makes comes from :func:`client`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

from attnlab.errors import AttnlabError, first_line
from attnlab.tracking.lock import sqlite_path, store_lock
from attnlab.tracking.reaper import reap_dead_runs

# mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI; remember what we set, and what
# the user had set before that, so a later run in the same process (the jobs of a multirun,
# tests) neither mistakes our value for the user's choice nor forgets the user's own.
_uri_we_set: str | None = None
_user_env_uri: str | None = None
_reaped: set[str] = set()  # stores already searched for dead runs by this process


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


def launch_uri(uri: str | None) -> str:
    """What ``attnlab train`` launched from this directory writes to (``uri`` when given):
    the default store of the commands that read runs (register, report, reproduce, predict)."""
    return resolve_uri({"uri": uri, "artifact_dir": str(Path.cwd() / "mlruns")})


def _fail_fast_http() -> None:
    """MLflow's REST client retries for minutes by default; an unreachable server should fail fast."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def hide_password(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for messages and tags)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(uri).render_as_string(hide_password=True) if "://" in uri and "@" in uri else uri
    except Exception:  # noqa: BLE001 - not a database URL
        return uri


def probe(uri: str, key: str = "tracking.uri", timeout_s: int = 5) -> None:
    """Open a database store once, without MLflow's (or Optuna's) retry loop, so an unusable
    store fails in seconds and by name. ``http(s)://`` and ``file:`` stores are left to their
    clients (REST retries are capped by :func:`_fail_fast_http`).

    Raises:
        AttnlabError: naming ``key`` and the reason.
    """
    db = sqlite_path(uri) if uri.startswith("sqlite:") else None
    try:
        if db is not None:
            _probe_sqlite(db)
        elif "://" in uri and not uri.startswith(("http://", "https://", "file:", "databricks")) and \
                not uri.startswith("sqlite:"):
            _probe_sqlalchemy(uri, timeout_s)
    except AttnlabError as e:
        raise AttnlabError(f"{key}={hide_password(uri)}: {e}") from e
    except Exception as e:  # noqa: BLE001 - any driver failure is the same user problem
        raise AttnlabError(f"{key}={hide_password(uri)}: cannot open the store ({first_line(e, 200)})") from e


def _probe_sqlite(db: Path) -> None:
    import sqlite3

    if db.exists():
        if not db.is_file():
            raise AttnlabError(f"{db} is not a file")
        con = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=5)
        try:
            con.execute("pragma schema_version").fetchone()  # 'file is not a database' shows here
        finally:
            con.close()
        return
    parent = db.parent
    if not parent.is_dir():
        raise AttnlabError(f"folder {parent} does not exist (a typo?); create it first to start a new store there")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AttnlabError(f"folder {parent} is not writable, so no store can be created there")


def _probe_sqlalchemy(uri: str, timeout_s: int) -> None:
    import sqlalchemy

    args = {"connect_timeout": timeout_s} if uri.startswith(("postgresql", "mysql")) else {}
    engine = sqlalchemy.create_engine(uri, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as con:
            con.execute(sqlalchemy.text("select 1"))
    finally:
        engine.dispose()


def client(uri: str, *, must_exist: bool = False) -> Any:
    """An ``MlflowClient`` for tracking and registry at ``uri``.

    Args:
        must_exist: refuse a local SQLite store that does not exist (a command that reads runs
            would otherwise create a new empty store and report nothing found).
    """
    _fail_fast_http()
    import mlflow

    if must_exist and uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.exists():
            raise AttnlabError(f"no MLflow store at {path}: run from the directory you trained in, or pass --tracking-uri")
    mlc = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    if must_exist and uri not in _reaped:  # a command that reads runs: once per store and process
        _reaped.add(uri)
        reap_dead_runs(mlc)
    return mlc


def ensure_store(uri: str, experiment: str | None = None, artifact_location: str | None = None) -> str | None:
    """Create and migrate the store at ``uri`` if new, and the experiment if named; its id.

    Safe to call from many processes at once (under :func:`attnlab.tracking.lock.store_lock`
    for SQLite; for other stores an experiment created meanwhile by another worker is looked up
    again) and when everything exists already. Before starting jobs that share a new store:
    ``python -c "from attnlab.tracking import ensure_store; ensure_store('sqlite:///$PWD/mlflow.db', 'attnlab')"``.

    Raises:
        AttnlabError: the store cannot be opened, or the experiment is deleted.
    """
    probe(uri)
    with store_lock(uri):
        db = sqlite_path(uri)
        new = db is not None and not db.exists()
        mlc, exp = _open(uri, experiment, artifact_location)
        if new and db is not None and db.exists():
            print(f"created new MLflow store at {db}", file=sys.stderr, flush=True)
    reap_dead_runs(mlc)
    if exp is None:
        return None
    if exp.lifecycle_stage == "deleted":
        raise AttnlabError(f"tracking.experiment={experiment!r} is deleted in {uri}; restore it or pick another name")
    return exp.experiment_id


def _open(uri: str, experiment: str | None, artifact_location: str | None) -> tuple[Any, Any]:
    """(client, the experiment or None); opening a new store creates and migrates it."""
    try:
        mlc = client(uri)
        if experiment is None:
            mlc.search_experiments(max_results=1)
            return mlc, None
        # The one retry's "Retrying ... Connection refused" warning would precede our one-line error.
        with _quiet_logger("urllib3.connectionpool"):
            return mlc, _get_or_create(mlc, experiment, artifact_location)
    except Exception as e:  # noqa: BLE001 - any backend failure is the same user problem
        raise AttnlabError(f"tracking.uri={hide_password(uri)}: cannot use the MLflow tracking store "
                           f"({first_line(e, 200)})") from e


def _get_or_create(mlc: Any, name: str, artifact_location: str | None) -> Any:
    exp = mlc.get_experiment_by_name(name)
    if exp is not None:
        return exp
    try:
        mlc.create_experiment(name, artifact_location=artifact_location)
    except Exception:
        # Another worker created it between our lookup and create (a server-backed store).
        if mlc.get_experiment_by_name(name) is None:
            raise
    return mlc.get_experiment_by_name(name)


def setup(tracking_cfg: Mapping[str, Any], experiment: str | None = None) -> str:
    """Point MLflow at the configured store and return the experiment id (created if new).

    Raises:
        AttnlabError: the store cannot be reached, or the experiment is deleted.
    """
    _fail_fast_http()
    import mlflow

    global _uri_we_set, _user_env_uri
    _user_env_uri = _user_env()
    uri = resolve_uri(tracking_cfg)
    mlflow.set_tracking_uri(uri)
    _uri_we_set = os.environ.get("MLFLOW_TRACKING_URI")
    art = tracking_cfg.get("artifact_dir")
    exp_id = ensure_store(uri, experiment or str(tracking_cfg["experiment"]),
                          Path(art).resolve().as_uri() if art else None)
    assert exp_id is not None
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


@contextlib.contextmanager
def uri_scope(uri: str) -> Iterator[None]:
    """MLflow's global tracking and registry URIs set to ``uri`` for the block, then put back
    exactly as they were (module state and the environment variables).

    Needed besides an explicit client: loading ``models:/``/``runs:/`` URIs, and the registry
    resolving a ``models:/m-<id>`` version source, read the *global* URIs. Restoring matters:
    ``mlflow.set_tracking_uri``/``set_registry_uri`` also export ``MLFLOW_TRACKING_URI`` /
    ``MLFLOW_REGISTRY_URI``, which later code and child processes (``mlflow models serve``)
    would otherwise inherit."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    env = {k: os.environ.get(k) for k in names}
    # The explicitly set values (None when unset), not get_*_uri()'s resolved defaults.
    old_t = getattr(tracking_utils, "_tracking_uri", None)
    old_r = getattr(registry_utils, "_registry_uri", None)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_t)
        mlflow.set_registry_uri(old_r)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
