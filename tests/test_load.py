"""Load (issue 8): 4 sweep workers x 25 trials on PostgreSQL with a tiny model give exactly
100 finished trials, no duplicates, and 100 child runs under one parent.

`slow` (minutes on 2 cores) and `postgres` (needs the server at 127.0.0.1:5432). The figures
(wall time, trials per minute, per-worker counts) are printed and written to
``load_figures.json`` in the test's tmp dir; docs/reliability.md quotes a measured set.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter

import pytest

from conftest import start_sweep_workers

WORKERS = 4
N_TRIALS = 100
STUDY = "attnlab-synthetic_small"
# A tiny model and data set: the test measures the sweep machinery, not training.
TINY_TRIAL = ["data.n_train=200", "data.n_val=100", "data.n_test=50", "train.epochs=2",
              "tracking.n_attention_examples=0", "hydra.sweeper.plots=false"]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(3600)
def test_four_workers_hundred_trials_on_postgres(tmp_path, pg_databases):
    import mlflow
    import optuna
    from optuna.trial import TrialState

    optuna_url, mlflow_uri = pg_databases
    t0 = time.perf_counter()
    procs = start_sweep_workers(tmp_path, WORKERS, optuna_url, mlflow_uri, TINY_TRIAL, N_TRIALS)
    try:
        codes = [p.wait(timeout=3300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
    wall = time.perf_counter() - t0
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(WORKERS)]
    assert codes == [0] * WORKERS, "\n\n".join(log[-2000:] for log in logs)

    study = optuna.load_study(study_name=STUDY, storage=optuna_url)
    states = Counter(t.state.name for t in study.trials)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == N_TRIALS, states
    assert len({t.number for t in study.trials}) == len(study.trials)  # no duplicate trial numbers
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    # The only non-finished trials are surplus ones, told FAIL without running a job.
    assert all(t.user_attrs.get("attnlab.surplus") for t in study.trials if t.state == TrialState.FAIL), states

    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("attnlab")
    rs = client.search_runs([exp.experiment_id], max_results=5000)
    parents = [r for r in rs if r.data.tags.get("attnlab.sweep.role") == "parent"]
    children = [r for r in rs if r.data.tags.get("attnlab.sweep.role") == "child"]
    assert len(parents) == 1 and len(children) == N_TRIALS
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    child_trials = [int(c.data.tags["optuna.trial"]) for c in children]
    assert len(set(child_trials)) == N_TRIALS  # one run per trial, none twice
    assert sorted(child_trials) == sorted(t.number for t in finished)
    assert {t.user_attrs["mlflow_run_id"] for t in finished} == {c.info.run_id for c in children}
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children)  # KILLED = pruned
    assert client.get_run(parents[0].info.run_id).info.status == "FINISHED"

    per_worker = [len(re.findall(r"trial \d+ (?:COMPLETE|PRUNED)", log)) for log in logs]
    assert sum(per_worker) == N_TRIALS and all(n > 0 for n in per_worker), per_worker
    figures = {
        "workers": WORKERS, "finished_trials": len(finished), "wall_s": round(wall, 1),
        "trials_per_min": round(60 * len(finished) / wall, 1), "per_worker": per_worker,
        "states": dict(states), "child_runs": len(children), "cpus": os.cpu_count(),
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    (tmp_path / "load_figures.json").write_text(json.dumps(figures, indent=2))
    print("load figures:", json.dumps(figures))
