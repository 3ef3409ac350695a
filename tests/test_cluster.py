"""Scaling out: the store lock, device tags, and Hydra grids through the submitit launchers.

Tests marked ``slurm`` need the single-node cluster of ``scripts/slurm.sh`` (``make
test-slurm`` after ``scripts/slurm.sh start``; ``.ci/run`` does both) and skip without it;
tests marked ``cluster`` run several training processes at once and run in ``make
test-slurm`` too. The rest are quick and run in ``make test``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest

from conftest import TINY, run_cli, runs

from attnlab import device
from attnlab.errors import AttnlabError
from attnlab.tracking import ensure_store, store_lock
from attnlab.tracking.lock import lock_path, sqlite_path

# A grid job: the tiny config, one epoch, no model logging (what is tested is the launch).
GRID = [*TINY, "train.epochs=1", "tracking.log_model=false"]


def _python(code: str, cwd: Path, **kwargs) -> subprocess.Popen:
    """Start ``python -c code`` from this venv (output captured)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *kwargs.get("args", [])], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each process, in order."""
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, *o) for p, o in zip(procs, outs)]


# ---------------------------------------------------------------------------- store lock


def test_lock_file_lies_beside_sqlite_stores_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sqlite_path(f"sqlite:///{tmp_path}/a/mlflow.db") == tmp_path / "a" / "mlflow.db"
    assert sqlite_path("sqlite:///rel.db") == tmp_path / "rel.db"  # relative to the cwd, as MLflow reads it
    assert lock_path(f"sqlite:///{tmp_path}/mlflow.db") == tmp_path / "mlflow.db.lock"
    for uri in ("sqlite://", "sqlite:///:memory:", "postgresql://root@127.0.0.1:5432/x", "http://127.0.0.1:5000"):
        assert lock_path(uri) is None, uri
        with store_lock(uri) as held:
            assert held is None


def test_store_lock_excludes_other_processes_and_is_reentrant(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    probe = """
        import sys
        from attnlab.tracking import store_lock
        from attnlab.errors import AttnlabError
        try:
            with store_lock(sys.argv[1], timeout=float(sys.argv[2])):
                print("acquired")
        except AttnlabError as e:
            print(f"error: {e}")
    """
    with store_lock(uri) as held:
        with store_lock(uri):  # nested in one process: no self-deadlock
            assert held == tmp_path / "mlflow.db.lock" and held.exists()
        (rc, out, err), = _finish([_python(probe, tmp_path, args=[uri, "1"])], 60)
        assert rc == 0, err
        assert out.startswith("error: another process has held") and "mlflow.db.lock" in out
    (rc, out, err), = _finish([_python(probe, tmp_path, args=[uri, "10"])], 60)
    assert (rc, out.strip()) == (0, "acquired"), err


@pytest.mark.cluster
def test_four_processes_create_one_new_store(tmp_path):
    """Without the lock, 3 of 4 such processes failed here in MLflow's migration ("table
    params already exists", "duplicate column name: step")."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = """
        import sys, time
        from pathlib import Path
        import mlflow
        from attnlab.tracking import ensure_store
        Path(sys.argv[2] + ".ready").touch()
        while not Path("go").exists():  # all four start together, MLflow already imported
            time.sleep(0.01)
        print(ensure_store(sys.argv[1], "grid"))
    """
    procs = [_python(code, tmp_path, args=[uri, str(i)]) for i in range(4)]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("*.ready"))) < 4 and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.05)
    (tmp_path / "go").touch()
    results = _finish(procs, 300)
    assert [rc for rc, _, _ in results] == [0] * 4, [err[-2000:] for _, _, err in results]
    ids = {out.strip().splitlines()[-1] for _, out, _ in results}
    import mlflow

    exps = [e for e in mlflow.MlflowClient(uri).search_experiments() if e.name == "grid"]
    assert len(exps) == 1 and ids == {exps[0].experiment_id}


def test_ensure_store_refuses_a_deleted_experiment(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert ensure_store(uri) is None and (tmp_path / "mlflow.db").exists()
    exp_id = ensure_store(uri, "e", artifact_location=(tmp_path / "mlruns").as_uri())
    assert ensure_store(uri, "e") == exp_id  # idempotent
    mlflow.MlflowClient(uri).delete_experiment(exp_id)
    with pytest.raises(AttnlabError, match=r"tracking.experiment='e' is deleted"):
        ensure_store(uri, "e")


# ---------------------------------------------------------------------------- device tags


def _cpuinfo_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    pytest.skip("no 'model name' in /proc/cpuinfo")


def test_describe_on_this_machine_with_tensorflow_loaded():
    import tensorflow as tf

    tags = device.describe()
    gpus = tf.config.list_physical_devices("GPU")
    assert tags["attnlab.device"] == ("gpu" if gpus else "cpu")
    assert tags["attnlab.device.gpu_count"] == str(len(gpus))
    assert tags["attnlab.device.cpu"] == _cpuinfo_model()
    assert tags["attnlab.device.cores"] == str(len(os.sched_getaffinity(0)))
    assert tags["attnlab.device.tensorflow"].startswith(tf.__version__ + " (")
    if not gpus:
        assert tags["attnlab.device.gpus"] == "none"
        assert tags["attnlab.device.tensorflow"].endswith("(CPU build)")
    assert all(isinstance(v, str) and v for v in tags.values())


def test_describe_does_not_import_tensorflow(tmp_path):
    code = """
        import json, sys
        from attnlab import device
        print(json.dumps([device.describe(), "tensorflow" in sys.modules]))
    """
    (rc, out, err), = _finish([_python(code, tmp_path)], 120)
    assert rc == 0, err
    import json

    tags, imported = json.loads(out)
    assert not imported
    assert tags["attnlab.device"] == "unknown" and tags["attnlab.device.gpus"] == device.NOT_CHECKED
    assert "attnlab.device.gpu_count" not in tags and tags["attnlab.device.cpu"]


def test_describe_names_each_kind_of_gpu(monkeypatch):
    """A stand-in for TensorFlow on a GPU host: three devices of two kinds."""
    devs = [types.SimpleNamespace(name=f"/physical_device:GPU:{i}") for i in range(3)]
    details = {0: ("NVIDIA H200", (9, 0)), 1: ("NVIDIA H200", (9, 0)), 2: ("NVIDIA A100-SXM4-80GB", (8, 0))}
    fake = types.SimpleNamespace(
        __version__="2.21.0",
        config=types.SimpleNamespace(
            list_physical_devices=lambda kind: devs if kind == "GPU" else [],
            experimental=types.SimpleNamespace(get_device_details=lambda d: dict(zip(
                ("device_name", "compute_capability"), details[int(d.name.rsplit(":", 1)[1])])))),
        sysconfig=types.SimpleNamespace(get_build_info=lambda: {
            "is_cuda_build": True, "cuda_version": "12.5.1", "cudnn_version": "9"}),
    )
    monkeypatch.setitem(sys.modules, "tensorflow", fake)
    for k in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    tags = device.describe()
    assert tags["attnlab.device"] == "gpu"
    assert tags["attnlab.device.gpus"] == "2 x NVIDIA H200 (compute 9.0), 1 x NVIDIA A100-SXM4-80GB (compute 8.0)"
    assert tags["attnlab.device.gpu_count"] == "3"
    assert tags["attnlab.device.tensorflow"] == "2.21.0 (CUDA 12.5.1, cuDNN 9)"
    assert tags["attnlab.slurm.job_id"] == "41"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert device.describe()["attnlab.slurm.job_id"] == "40_3"  # as squeue lists an array task


# ---------------------------------------------------------------------------- launchers


def test_hydra_finds_the_submitit_launchers(tmp_path):
    """The launchers' plugin is found beside our own (namespace package) sweeper plugin."""
    res = run_cli(["train", "--cfg", "hydra", "-p", "hydra.launcher", "hydra/launcher=submitit_slurm",
                   "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1"], tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "submitit_launcher.SlurmLauncher" in res.stdout
    assert "partition: gpu" in res.stdout and "gpus_per_node: 1" in res.stdout
    res = run_cli(["train", "--cfg", "hydra", "-p", "hydra.launcher", "hydra/launcher=submitit_local"], tmp_path)
    assert res.returncode == 0 and "submitit_launcher.LocalLauncher" in res.stdout, res.stderr


def test_submitit_local_hides_gpus_unless_asked(tmp_path):
    """As docs/cluster.md says: a submitit_local job sees no GPU without gpus_per_node."""
    import submitit

    seen = []
    for params in ({}, {"gpus_per_node": 1}):
        ex = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="local")
        ex.update_parameters(timeout_min=2, **params)
        seen.append(ex.submit(os.getenv, "CUDA_VISIBLE_DEVICES", "unset").result())
    assert seen == ["", "0"]


def _grid_runs(directory: Path) -> list:
    found = runs(directory)
    assert not [r for r in found if r.info.status == "RUNNING"]
    return found


def _prepare_store(directory: Path) -> None:
    """Store and experiment created before the jobs start (docs/cluster.md)."""
    ensure_store(f"sqlite:///{directory / 'mlflow.db'}", "attnlab", (directory / "mlruns").as_uri())


@pytest.mark.cluster
def test_grid_through_submitit_local(in_tmp):
    _prepare_store(in_tmp)
    res = run_cli(["train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                   "seed=0,1", *GRID], in_tmp, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    found = _grid_runs(in_tmp)
    assert sorted((r.info.status, r.data.tags["attnlab.seed"]) for r in found) == [("FINISHED", "0"), ("FINISHED", "1")]
    results = list(in_tmp.glob("multirun/*/*/.submitit/*/*_result.pkl"))
    assert len(results) == 2  # each job ran as its own submitit process


@pytest.mark.cluster
def test_two_first_runs_in_a_fresh_folder_both_finish(in_tmp):
    """Two `attnlab train` at once on a folder with no mlflow.db: tracking.setup creates the store
    under the store lock, so neither loses its run to MLflow's schema migration."""
    code = """
        import sys
        from attnlab.cli import main
        sys.exit(main(sys.argv[1:]))
    """
    procs = [_python(code, in_tmp, args=["train", f"seed={s}", *GRID]) for s in (0, 1)]
    results = _finish(procs, 900)
    assert [rc for rc, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    found = _grid_runs(in_tmp)
    assert sorted((r.info.status, r.data.tags["attnlab.seed"]) for r in found) == [("FINISHED", "0"), ("FINISHED", "1")]
    assert (in_tmp / "mlflow.db.lock").exists()


# ---------------------------------------------------------------------------- Slurm


def _slurm_env() -> dict[str, str]:
    """The environment in which `sinfo` reaches a cluster with an idle node, else skip (or,
    under ATTNLAB_REQUIRE_SLURM=1 as in .ci/run, fail)."""
    why = None
    if shutil.which("sinfo") is None:
        why = "sinfo not on PATH"
    else:
        try:
            res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            res = subprocess.CompletedProcess(["sinfo"], -1, "", "no answer in 30 s")
        if res.returncode != 0 or not {"idle", "mixed"} & set(res.stdout.split()):
            why = f"sinfo found no idle node (exit {res.returncode}: {(res.stderr or res.stdout).strip()[:200]})"
    if why:
        hint = f"{why}; start one with `scripts/slurm.sh install && scripts/slurm.sh start` and `eval \"$(scripts/slurm.sh env)\"`"
        if os.environ.get("ATTNLAB_REQUIRE_SLURM") == "1":
            pytest.fail(hint)
        pytest.skip(hint)
    return dict(os.environ)


def _slurmctld_log() -> str:
    res = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    m = re.search(r"^SlurmctldLogFile\s*=\s*(\S+)", res.stdout, re.M)
    return Path(m.group(1)).read_text(errors="replace") if m and Path(m.group(1)).exists() else ""


@pytest.mark.slurm
def test_grid_through_submitit_slurm(in_tmp):
    env = _slurm_env()
    _prepare_store(in_tmp)
    seen: set[str] = set()
    done = threading.Event()

    def watch_queue() -> None:
        while not done.wait(1.0):
            q = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True, env=env)
            seen.update(line.split()[0] for line in q.stdout.splitlines() if line.endswith("RUNNING"))

    watcher = threading.Thread(target=watch_queue, daemon=True)
    watcher.start()
    try:
        res = run_cli(["train", "-m", "hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=10",
                       "hydra.launcher.mem_gb=1", "hydra.launcher.cpus_per_task=1", "seed=0,1,2,3", *GRID],
                      in_tmp, timeout=1200, env=env)
    finally:
        done.set()
        watcher.join()
    assert res.returncode == 0, res.stderr[-3000:]
    found = _grid_runs(in_tmp)
    assert sorted((r.info.status, r.data.tags["attnlab.seed"]) for r in found) == [
        ("FINISHED", str(s)) for s in range(4)]
    # submitit names each job's folder by its Slurm id: <array job>_<task>.
    job_ids = sorted(p.parent.name for p in in_tmp.glob("multirun/*/*/.submitit/*/*_result.pkl"))
    array = job_ids[0].split("_")[0] if job_ids else "?"
    assert job_ids == [f"{array}_{i}" for i in range(4)]
    # A job's result file comes before slurmd reports the job's end: give the log a moment.
    deadline, pending = time.monotonic() + 60, job_ids
    while pending and time.monotonic() < deadline:
        log = _slurmctld_log()
        pending = [j for j in job_ids if not re.search(rf"JobId={j}\(\d+\) WEXITSTATUS 0", log)]
        time.sleep(0 if not pending else 1)
    assert not pending, f"not completed (exit 0) in slurmctld's log: {pending}"
    assert seen and seen <= set(job_ids), (seen, job_ids)  # squeue listed them while they ran
