"""K trials in flight with a process launcher (hydra/launcher=submitit_local): each trial is
its own process that reopens its trial from the storage, reports, prunes itself and nests
its run; two such sweeps at once share one PostgreSQL study; a killed job is retried.

All `slow` (each job starts Python and TensorFlow: minutes on 2 shared cores).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ATTNLAB, dead_cause
from test_sweeper import STUDY, load_study, sweep_runs

# The command on synthetic_small, smaller: 2 epochs (a trial can be pruned after the
# first), and a pruner that judges from the first finished trial on.
PARALLEL = ["hparams_search=synthetic_small", "hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.n_trials=6", "data.n_train=200", "data.n_val=100", "data.n_test=50", "train.epochs=2",
            "tracking.n_attention_examples=0", "tracking.log_model=false", "hydra.sweeper.plots=false",
            "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.poll_interval=0.5"]


def _popen(cwd: Path, args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([ATTNLAB, "train", "-m", *args], cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def _wait(procs: list[subprocess.Popen], logs: list[Path], timeout: float = 1500) -> None:
    try:
        for p, log in zip(procs, logs):
            assert p.wait(timeout=timeout) == 0, log.read_text()[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def _unexplained_failures(trials) -> list[str]:
    """FAIL trials that are neither surplus (a race's extra trial, never run) nor retried (a job lost
    or a stale heartbeat: a later trial carries its number in ``retry_history``), each with its reason."""
    from optuna.trial import TrialState

    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [f"trial {t.number}: {t.user_attrs.get('attnlab.fail_reason', 'no reason recorded')}"
            for t in trials if t.state == TrialState.FAIL
            and not t.user_attrs.get("attnlab.surplus") and t.number not in retried]


def _check_study(url: str, mlflow_uri: str, n: int, logs: list[Path] = ()):
    """n finished trials, unique numbers, none RUNNING, every FAIL surplus or retried, one run per
    finished trial under one parent (a retried trial's run FAILED)."""
    from optuna.trial import TrialState

    study = load_study(url)
    shown = "\n".join(log.read_text()[-3000:] for log in logs)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n and len({t.number for t in study.trials}) == len(study.trials)
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    unexplained = _unexplained_failures(study.trials)
    assert not unexplained, (unexplained, shown)
    client, parents, children = sweep_runs(mlflow_uri)
    assert len(parents) == 1
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    done = {t.number for t in finished}
    of_finished = [c for c in children if int(c.data.tags["optuna.trial"]) in done]
    assert sorted(int(c.data.tags["optuna.trial"]) for c in of_finished) == sorted(done), shown
    assert all(c.info.status in ("FINISHED", "KILLED") for c in of_finished)
    assert all(c.info.status == "FAILED" for c in children if c not in of_finished), shown
    return study, {c.info.run_id: c for c in of_finished}


@pytest.mark.slow
def test_two_trials_in_flight_with_submitit_local_prune_in_their_own_process(tmp_path):
    from optuna.trial import TrialState

    t0 = time.monotonic()
    _wait([_popen(tmp_path, PARALLEL, tmp_path / "sweep.log")], [tmp_path / "sweep.log"])
    wall = time.monotonic() - t0
    study, runs = _check_study(f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}", 6,
                               [tmp_path / "sweep.log"])
    sweeper_pids = {t.user_attrs["attnlab.sweeper_pid"] for t in study.trials}
    assert len(sweeper_pids) == 1
    job_pids = {t.number: int(runs[t.user_attrs["mlflow_run_id"]].data.tags["attnlab.pid"]) for t in study.trials}
    assert len(set(job_pids.values())) == 6 and not sweeper_pids & set(job_pids.values())  # a process per trial
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    for t in pruned:  # decided in the job: its run (in its process) stopped early and says why
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.data.tags["attnlab.status"] == "PRUNED" and run.data.metrics["epochs_completed"] == 1
        assert t.intermediate_values and t.value == pytest.approx(list(t.intermediate_values.values())[-1])
    # Two trials ran at once: some pair of runs overlapped in time.
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs.values())
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans
    print(f"\n6 trials, n_jobs=2, submitit_local: {wall:.0f} s wall; "
          f"{sum(t.state == TrialState.PRUNED for t in study.trials)} pruned")


@pytest.mark.slow
@pytest.mark.postgres
def test_two_parallel_sweeps_at_once_share_one_postgres_study(tmp_path, pg_databases):
    from attnlab import tracking

    optuna_url, mlflow_uri = pg_databases
    # Tables and experiment once, before two sweepers race to create them (docs/sweeps.md).
    tracking.setup({"uri": mlflow_uri, "experiment": "attnlab", "artifact_dir": str(tmp_path / "mlruns")})
    args = [*PARALLEL, f"hydra.sweeper.storage={optuna_url}", f"tracking.uri={mlflow_uri}"]
    logs = [tmp_path / f"sweeper{i}.log" for i in range(2)]
    procs = []
    for i, log in enumerate(logs):
        (tmp_path / f"w{i}").mkdir()
        procs.append(_popen(tmp_path / f"w{i}", [*args, f"tracking.artifact_dir={tmp_path / 'mlruns'}"], log))
    _wait(procs, logs)
    study, runs = _check_study(optuna_url, mlflow_uri, 6, logs)
    retries = [t.number for t in study.trials if t.system_attrs.get("failed_trial") is not None]
    print(f"\n2 sweepers on one study: {len(study.trials)} trials, retries {retries or 'none'}")
    workers = {t.user_attrs["attnlab.sweeper_pid"] for t in study.trials if "mlflow_run_id" in t.user_attrs}
    assert len(workers) == 2, "one sweeper ran every trial"


@pytest.mark.slow
def test_a_killed_job_is_failed_by_heartbeat_and_retried(tmp_path):
    """SIGKILL one trial's job process mid-training: the sweeper lives on, the trial becomes FAIL
    once its heartbeat is stale, its run FAILED, and the same parameters run again."""
    import mlflow
    from optuna.trial import TrialState

    args = [*(a for a in PARALLEL if not a.startswith("hydra.sweeper.pruner.")), "hydra.sweeper.pruner=null",
            "hydra.sweeper.n_trials=3", "train.epochs=3", "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=5"]
    log = tmp_path / "sweep.log"
    proc = _popen(tmp_path, args, log)
    try:
        victim = None
        deadline = time.time() + 900
        while victim is None and time.time() < deadline and proc.poll() is None:
            time.sleep(1)
            if "MLflow parent run" in log.read_text():  # the sweeper made the store: no migration to race
                client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
                exp = client.get_experiment_by_name("attnlab")
                running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING' and "
                                             "tags.`attnlab.sweep.role` = 'child'")
                victim = running[0] if running else None
        assert victim is not None, log.read_text()[-4000:]
        os.kill(int(victim.data.tags["attnlab.pid"]), signal.SIGKILL)
        _wait([proc], [log])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    study = load_study(f"sqlite:///{tmp_path / 'optuna.db'}")
    killed = int(victim.data.tags["optuna.trial"])
    by_number = {t.number: t for t in study.trials}
    assert by_number[killed].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == by_number[killed].params
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3
    dead = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(victim.info.run_id)
    # Whoever sees it first closes it: the stale heartbeat, or the reaper (its process is gone).
    assert dead.info.status == "FAILED" and dead_cause(dead.data.tags["attnlab.error"])
