"""What a person sees in the terminal: quiet libraries, one line per epoch, ``--quiet``.

:func:`quiet_libraries` runs before TensorFlow, MLflow or matplotlib load: it turns their
chatter off where it starts (environment variables, logger levels, warning filters), so that
on success stderr holds only what attnlab wrote. Two TensorFlow lines cannot be turned off
that way without hiding real errors (the absl ``I0000 ... oneDNN custom operations are on``
banner is written while the library loads, and the ``E0000 ... DT_BOOL`` note is logged at
ERROR level): :func:`filter_native_stderr` drops exactly those lines from the process's stderr
and passes everything else through a ``grep`` child that outlives a crash, so a real error
(a C++ ``F``/``E`` line, a traceback, a fatal signal) is never lost.

``attnlab --quiet COMMAND`` sets ``ATTNLAB_QUIET=1``: no per-epoch lines or progress bar (the
environment carries it into a sweep's jobs).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

QUIET_ENV = "ATTNLAB_QUIET"

# Lines TensorFlow writes on every run that say nothing about the user's run (fixed strings).
NATIVE_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "oneDNN supports DT_BOOL only on platforms with AVX-512",
)
# Python warnings of libraries that are advice to their callers, not to attnlab's user.
WARNING_NOISE = (
    ".*An input example was not provided.*",
    ".*Failed to infer signature from type hint.*",
    ".*Matplotlib is building the font cache.*",
)


def quiet() -> bool:
    """``attnlab --quiet`` was given (here or in the process that started this one)."""
    return os.environ.get(QUIET_ENV) == "1"


def cache_dir() -> Path:
    """attnlab's cache folder (``$XDG_CACHE_HOME/attnlab``, else ``~/.cache/attnlab``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attnlab"


def quiet_libraries() -> None:
    """Library chatter a user did not ask for, off at its source; each setting stays overridable
    from the environment. Call before TensorFlow, MLflow or matplotlib are imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's INFO lines ("Creating initial MLflow database tables...", system metrics start/stop).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    _matplotlib_cache()
    for pattern in WARNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    # The font cache note (a one-off on a fresh machine); the logger's real warnings still show.
    logging.getLogger("matplotlib.font_manager").addFilter(
        lambda record: "building the font cache" not in record.getMessage())


def _matplotlib_cache() -> None:
    """A persistent matplotlib cache, so its font cache is built once, not per process, when the
    default place (``~/.config/matplotlib``) cannot be written."""
    if "MPLCONFIGDIR" in os.environ:
        return
    default = Path.home() / ".config" / "matplotlib"
    try:
        default.mkdir(parents=True, exist_ok=True)
        if os.access(default, os.W_OK):
            return
    except OSError:
        pass
    mine = cache_dir() / "matplotlib"
    try:
        mine.mkdir(parents=True, exist_ok=True)
        os.environ["MPLCONFIGDIR"] = str(mine)
    except OSError:
        pass  # matplotlib falls back to a temporary folder of its own


def filter_native_stderr() -> None:
    """Route this process's file descriptor 2 through ``grep -v`` of :data:`NATIVE_NOISE`.

    Only for the ``attnlab`` console script (never inside pytest or a user's program). The
    child runs in its own session (Ctrl-C does not end it) and exits when every writer has
    closed the pipe, after passing on all it read: output written just before a crash still
    arrives. No ``grep`` on ``PATH``, or ``ATTNLAB_RAW_STDERR=1``: stderr is left alone.
    """
    grep = shutil.which("grep")
    if grep is None or os.environ.get("ATTNLAB_RAW_STDERR") == "1":
        return
    args = [grep, "-a", "--line-buffered", "-v", "-F", *(x for line in NATIVE_NOISE for x in ("-e", line))]
    try:
        sys.stderr.flush()
        child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=sys.__stderr__.fileno(),
                                 stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except OSError:
        return
    original = os.dup(2)
    os.dup2(child.stdin.fileno(), 2)
    child.stdin.close()
    atexit.register(_restore_stderr, original, child)


def _restore_stderr(original: int, child: subprocess.Popen) -> None:
    """At exit: give fd 2 back and let ``grep`` pass on what is left before the process ends."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(original, 2)  # closes our end of the pipe; grep sees EOF once children close theirs
    os.close(original)
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass  # a child process of ours still holds the pipe; grep ends with it


def wants_bar(mode: str) -> bool:
    """Keras' progress bar: ``bar``, or ``auto`` when stdout is a terminal (never under --quiet)."""
    if quiet() or mode == "none":
        return False
    return mode == "bar" or (mode == "auto" and sys.stdout.isatty())


def wants_lines(mode: str) -> bool:
    """attnlab's one line per epoch: ``lines``, or ``auto`` when stdout is not a terminal."""
    if quiet() or mode == "none":
        return False
    return mode == "lines" or (mode == "auto" and not sys.stdout.isatty())


def say(line: str) -> None:
    """One line on stdout, flushed (a log file or a pipe shows it at once)."""
    print(line, flush=True)
