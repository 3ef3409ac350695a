"""One process at a time creates and migrates a local SQLite MLflow store.

Several jobs that start together on a folder with no ``mlflow.db`` yet (a submitit grid, two
shells) each run MLflow's schema migration on the new file, and all but one fail with e.g.
``No such index: 'index_jobs_function_status_creation_time'``. :func:`store_lock` is an
inter-process lock (``fcntl.flock`` on ``<db>.lock`` beside the database) to hold around a
process's first use of the store: opening it (which creates and migrates it) and creating
the experiment (:func:`attnlab.tracking.store.ensure_store` does both under it). The jobs that wait find the store ready and go on side by side; SQLite then
serialises their writes itself.

Other stores need no lock here: a PostgreSQL or MySQL store is created and migrated once
by whoever creates the database (``mlflow db upgrade``, or ``ensure_store``), and an
``http(s)://`` MLflow server owns its store. ``flock`` holds between processes of one host
and on local disks; it is not a lock across hosts on NFS, which is one more reason for a
server-backed store there (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Iterator

from attnlab.errors import AttnlabError

LOCK_SUFFIX = ".lock"
DEFAULT_TIMEOUT_S = 300.0
_POLL_S = 0.05


class _ProcessLock:
    """A lock file as held by this process: a thread lock (reentrant, so ensure_store may run
    inside store_lock) and the nesting depth; the flock is taken at depth 0 -> 1 and released
    (by closing ``fd``) at 1 -> 0."""

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd = -1


_held: dict[Path, _ProcessLock] = {}
_held_guard = threading.Lock()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute), else None (other stores, in-memory)."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def lock_path(uri: str) -> Path | None:
    """``<db>.lock`` beside a SQLite store's file; None for stores that need no local lock."""
    db = sqlite_path(uri)
    return None if db is None else db.with_name(db.name + LOCK_SUFFIX)


@contextlib.contextmanager
def store_lock(uri: str, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[Path | None]:
    """Hold the store's inter-process lock inside the block (a no-op for non-SQLite stores).

    Reentrant within a process. Yields the lock file's path, or None when no lock was needed.

    Raises:
        AttnlabError: the lock file cannot be created, or another process held it longer
            than ``timeout`` seconds.
    """
    path = lock_path(uri)
    if path is None:
        yield None
        return
    with _held_guard:
        held = _held.setdefault(path, _ProcessLock())
    with held.rlock:
        if held.depth == 0:
            held.fd = _acquire(path, timeout)
        held.depth += 1
        try:
            yield path
        finally:
            held.depth -= 1
            if held.depth == 0:
                os.close(held.fd)  # closing the descriptor releases the flock
                held.fd = -1


def _acquire(path: Path, timeout: float) -> int:
    """Open ``path`` and take an exclusive flock on it, polling until ``timeout``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise AttnlabError(f"cannot create the MLflow store's lock file {path}: {e.strerror}") from e
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise AttnlabError(
                    f"another process has held {path} for over {timeout:g} s; if none is running, "
                    f"remove the file and retry") from None
            time.sleep(_POLL_S)
