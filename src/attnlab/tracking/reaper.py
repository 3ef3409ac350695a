"""Dead runs: a run whose process was killed with SIGKILL (``kill -9``, the out-of-memory
killer) cannot close itself and stays RUNNING. Every run records its host and process
(:func:`process_tags`); every command that opens a store calls :func:`reap_dead_runs`, which
marks FAILED (with ``attnlab.error``) the RUNNING runs of *this* host whose process is gone,
and says so in one line. Runs of other hosts, runs without these tags and live processes are
never touched.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HOST_TAG = "attnlab.host"
PID_TAG = "attnlab.pid"
PID_START_TAG = "attnlab.pid_start"  # the process's start time (clock ticks since boot): a reused pid differs
STATUS_TAG = "attnlab.status"
ERROR_TAG = "attnlab.error"


def _start_ticks(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (None where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    """The tags that let a later command tell whether this run's process still lives."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    start = _start_ticks(os.getpid())
    if start is not None:
        tags[PID_START_TAG] = start
    return tags


def process_gone(pid: int, start: str | None) -> bool:
    """True when no process ``pid`` runs on this host, or another one reuses its id."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, owned by someone else
    if start:
        now = _start_ticks(pid)
        return now is not None and now != start
    return False


def _dead_runs(mlc: Any, host: str) -> list[Any]:
    exps = [e.experiment_id for e in mlc.search_experiments()]
    if not exps:
        return []
    esc = host.replace("'", "\\'")
    runs = mlc.search_runs(exps, f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{esc}'", max_results=5000)
    dead = []
    for r in runs:
        pid = r.data.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and process_gone(int(pid), r.data.tags.get(PID_START_TAG)):
            dead.append(r)
    return dead


def reap_dead_runs(mlc: Any) -> list[str]:
    """Mark FAILED the RUNNING runs of this host whose process is gone; their ids.

    Best effort: a store that cannot be searched is left alone (the command's own use of the
    store reports that problem)."""
    host = socket.gethostname()
    try:
        dead = _dead_runs(mlc, host)
    except Exception as e:  # noqa: BLE001 - never stop a command for this
        log.debug("could not look for dead runs: %s", e)
        return []
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for r in dead:
        pid = r.data.tags.get(PID_TAG)
        msg = (f"DeadProcess: process {pid} on {host} ended without closing the run (killed, e.g. kill -9 or out of "
               f"memory); marked FAILED at {when}")
        mlc.set_tag(r.info.run_id, ERROR_TAG, msg)
        mlc.set_tag(r.info.run_id, STATUS_TAG, "FAILED")
        mlc.set_terminated(r.info.run_id, "FAILED")
    if dead:
        ids = ", ".join(r.info.run_id for r in dead[:5]) + (f" and {len(dead) - 5} more" if len(dead) > 5 else "")
        print(f"note: marked {len(dead)} RUNNING run(s) FAILED whose process on {host} is gone: {ids}",
              file=sys.stderr, flush=True)
    return [r.info.run_id for r in dead]
