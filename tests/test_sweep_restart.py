"""A PostgreSQL restart in the middle of a 2-worker sweep (issue 18): both workers stay alive,
the study finishes the requested trials, no finished trial is lost, and no trial or MLflow run
is left RUNNING. Storage calls retry through the outage (:mod:`attnlab.tracking.retry`).

`slow` and `postgres`: it restarts the local server (`pg_ctlcluster ... restart`), which cuts
every connection to it, so run it alone. The counts are printed and written to
``restart_figures.json`` in the test's tmp dir; docs/reliability.md quotes a measured set.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from conftest import start_sweep_workers

N_TRIALS = 8
STUDY = "attnlab-synthetic_small"
TINY_TRIAL = ["data.n_train=200", "data.n_val=100", "data.n_test=50", "train.epochs=3",
              "tracking.n_attention_examples=0", "tracking.log_model=false", "hydra.sweeper.plots=false"]


def _admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="root", dbname="postgres", connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _restart_postgres() -> float:
    """Restart the local cluster; its duration in seconds."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    t = time.perf_counter()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=120)
    return time.perf_counter() - t


def _finished(optuna_url: str) -> int:
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=STUDY, storage=optuna_url)
    except Exception:  # noqa: BLE001 - not created yet
        return 0
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(3600)
def test_postgres_restart_mid_sweep(tmp_path: Path):
    try:
        _admin("select 1")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {e}")
    if not Path("/etc/postgresql").is_dir():
        pytest.skip("no local PostgreSQL cluster to restart")
    names = [f"attnlab_restart_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("optuna", "mlflow")]
    for n in names:
        _admin(f'CREATE DATABASE "{n}"')
    try:
        figures = _sweep_with_restart(tmp_path, *[f"postgresql://root@127.0.0.1:5432/{n}" for n in names])
    finally:
        for n in names:
            _admin(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
    print(json.dumps(figures, indent=2))


def _sweep_with_restart(tmp_path: Path, optuna_url: str, mlflow_uri: str) -> dict:
    import mlflow
    import optuna
    from optuna.trial import TrialState

    t0 = time.perf_counter()
    procs = start_sweep_workers(tmp_path, 2, optuna_url, mlflow_uri, TINY_TRIAL, N_TRIALS)
    try:
        while _finished(optuna_url) < 2 and all(p.poll() is None for p in procs) and time.perf_counter() - t0 < 1200:
            time.sleep(1)
        restart_at = time.perf_counter() - t0
        finished_before = _finished(optuna_url)
        restart_s = _restart_postgres()
        codes = [p.wait(timeout=2400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    study = optuna.load_study(study_name=STUDY, storage=optuna_url)
    states = Counter(t.state.name for t in study.trials)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("attnlab")
    runs = Counter(r.info.status for r in client.search_runs([exp.experiment_id], max_results=5000))
    figures = {"workers_exit": codes, "finished_before_restart": finished_before, "restart_at_s": round(restart_at, 1),
               "restart_took_s": round(restart_s, 1), "trials": dict(states), "finished": finished,
               "mlflow_runs": dict(runs), "wall_s": round(time.perf_counter() - t0, 1),
               "retries_logged": sum(log.count("retry ") for log in logs)}
    (tmp_path / "restart_figures.json").write_text(json.dumps(figures, indent=2))
    assert finished >= N_TRIALS and finished >= finished_before, figures
    assert states.get("RUNNING", 0) == 0 and runs.get("RUNNING", 0) == 0, figures
    return figures
