"""`mlflow models serve` answers /invocations with labels and per-token attention."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from tiny_store import tiny_store

TEXTS = ["w1 w2 w3 w4", "w5 w6", "w7 w8 w9 w10 w11 w12"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _wait_ready(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server not ready after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def test_mlflow_models_serve_answers_with_labels_and_attention(tmp_path, capsys):
    from attnlab import cli
    from attnlab.predict import load

    _, uri, run_id = tiny_store()
    assert cli.main(["register", "--experiment", "attnlab", "--name", "served", "--tracking-uri", uri]) == 0
    capsys.readouterr()
    expected = load("models:/served@champion", uri).predict(None, TEXTS)

    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    # `--env-manager local` starts uvicorn from PATH: the venv's bin must be on it.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_REGISTRY_URI", None)  # as documented: the registry is the tracking store
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", "models:/served@champion", "--env-manager", "local",
             "--host", "127.0.0.1", "-p", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    try:
        _wait_ready(port, proc, log)
        status, body = _post(port, {"dataframe_split": {"columns": ["text"], "data": [[t] for t in TEXTS]}})
        assert status == 200, body
        preds = body["predictions"]
        assert len(preds) == 3
        for p, (_, e), text in zip(preds, expected.iterrows(), TEXTS):
            assert p["label"] == e["label"]
            np.testing.assert_allclose(p["probabilities"], e["probabilities"], atol=1e-6)
            assert p["tokens"] == text.split()
            assert len(p["attention"]) == len(p["tokens"]) and all(w >= 0 for w in p["attention"])
            np.testing.assert_allclose(sum(p["attention"]), 1.0, atol=1e-4)  # mask=keys: attention on real tokens only

        status, body = _post(port, {"inputs": TEXTS})  # a plain list of strings works too
        assert status == 200 and [p["label"] for p in body["predictions"]] == list(expected["label"])

        status, body = _post(port, {"dataframe_records": [{"review": "w1", "label": "x"}]})
        assert status == 400 and "name the column of raw texts 'text'" in body["message"]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.poll() is not None
