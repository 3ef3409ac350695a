"""A real browser on the MLflow UI: the documented URL lands on the runs table with the run's
name and val_accuracy, and the run link `attnlab train` prints opens the run.

Needs Debian's chromium (`scripts/browser.sh install`, which `.ci/run` calls); skipped with the
reason when it is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

RUN_NAME = "scale=sqrt_dk,pool=mean,seed=0"
VAL_ACCURACY = 0.8765


def _browser() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium on PATH: run `scripts/browser.sh install` (Debian's chromium) to run the browser test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dom(browser: str, url: str) -> str:
    proc = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                           "--window-size=1500,1000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _store(tmp_path: Path) -> tuple[str, str, str]:
    """A store as `attnlab train` leaves it (its experiment and shared view), with one tiny run."""
    import mlflow

    from attnlab import tracking, ui

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp_id = tracking.setup({"uri": uri, "experiment": "attnlab", "artifact_dir": str(tmp_path / "mlruns")})
    client = mlflow.MlflowClient(uri)
    ui.ensure_view(client, exp_id)
    run = client.create_run(exp_id, run_name=RUN_NAME)
    client.log_metric(run.info.run_id, "val_accuracy", VAL_ACCURACY)
    client.set_terminated(run.info.run_id, "FINISHED")
    return uri, exp_id, run.info.run_id


def _serve(uri: str, port: int, log: Path) -> subprocess.Popen:
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    env = {**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING"}
    return subprocess.Popen([mlflow_bin, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _wait_ready(port: int, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow ui not ready on port {port} after {timeout:.0f}s: {log.read_text()[-2000:]}")


def test_documented_url_shows_the_runs_table_and_the_run_link_the_run(tmp_path):
    from attnlab import ui

    browser = _browser()
    uri, exp_id, run_id = _store(tmp_path)
    # The URL the docs give for a fresh store (README copies it) is the one attnlab builds.
    documented = re.search(r"^http://127\.0\.0\.1:5000/#/experiments/\S+$", (ROOT / "docs" / "ui.md").read_text(), re.M)[0]
    assert documented == ui.runs_url("http://127.0.0.1:5000", exp_id)
    port = _free_port()
    proc = _serve(uri, port, tmp_path / "server.log")
    try:
        _wait_ready(port, proc, tmp_path / "server.log")
        base = f"http://127.0.0.1:{port}"
        table = _dom(browser, documented.replace("http://127.0.0.1:5000", base))
        assert RUN_NAME in table and f"{VAL_ACCURACY}" in table, table[-3000:]
        page = _dom(browser, ui.run_url(base, exp_id, run_id))
        assert RUN_NAME in page and f"{VAL_ACCURACY}" in page and run_id in page, page[-3000:]
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """End the server and its workers (its own process group, started above)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=20)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
