"""Reliability, round two (issue 18): nothing diverged is called a success, nothing of the
user's is overwritten, options are checked before work, an unusable store fails fast and by
name, dead runs are found, and likely data mistakes are warned about.

The property-based tests are in ``test_properties.py``; the PostgreSQL restart in the middle of
a sweep in ``test_sweep_restart.py`` (``slow``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import pytest

from conftest import ATTNLAB, mlflow_client, run_cli, runs, tiny

QUIET = {"HYDRA_FULL_ERROR": "0", "ATTNLAB_VERBOSE": "0"}


def fast(*overrides: str) -> list[str]:
    return tiny("train.epochs=1", "tracking.log_model=false", *overrides)


def _one_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``attnlab ARGS`` in-process: (exit status, stdout, stderr)."""
    from attnlab import cli

    capsys.readouterr()
    try:
        rc = cli.main(args)
    except SystemExit as e:  # Hydra's error path exits
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


# ------------------------------------------------------------------- 1. non-finite = FAILED


def test_two_hydra_modes_at_once_are_one_line(tmp_path, capsys, monkeypatch):
    from conftest import cli_main

    monkeypatch.chdir(tmp_path)
    rc, out, err = cli_main(["train", "-m", "--cfg", "job"], capsys)
    assert rc == 2 and err.splitlines() == [
        "error: attnlab train: Only one of --run, --multirun, --cfg, --info and --shell_completion can be "
        "specified. Received: -m --cfg job"], err
    assert list(tmp_path.iterdir()) == []


def test_infinite_learning_rate_is_refused_before_work(tmp_path, capsys):
    rc, _, err = _cli(["train", *fast("train.learning_rate=inf")], capsys)
    assert rc == 2 and "train.learning_rate=inf" in _one_error(err)
    assert not (tmp_path / "mlflow.db").exists()


def test_diverged_run_fails_and_register_skips_it(tmp_path, capsys):
    """A finite but absurd learning rate makes the loss NaN: exit 2, run FAILED with the error
    tag (never FINISHED with the NaN metrics left out), and `register` does not pick it."""
    rc, _, err = _cli(["train", *fast("train.learning_rate=1e30", "tracking.log_model=true")], capsys)
    assert rc == 2, err
    line = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(line) == 1 and "diverged" in line[0] and "nan" in line[0], err
    (run,) = runs(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["attnlab.error"].startswith("DivergedError: ")
    rc, out, err = _cli(["register"], capsys)
    assert rc == 2 and "no run qualifies" in err and "0 FINISHED" in err, (out, err)


def test_check_finite_names_the_value_and_epoch():
    from attnlab.errors import DivergedError
    from attnlab.fitting import check_finite

    check_finite({"loss": [0.5, 0.4], "val_accuracy": 0.5}, "during training")
    with pytest.raises(DivergedError, match=r"val_loss=inf during training at epoch 2"):
        check_finite({"loss": [0.5, 0.4], "val_loss": [0.3, float("inf")]}, "during training")
    with pytest.raises(DivergedError, match=r"test_accuracy=nan after training"):
        check_finite({"test_accuracy": float("nan")}, "after training")


def test_report_notes_non_finite_values():
    import pandas as pd

    from attnlab.report import non_finite_notes

    # As collect_runs gives them: a metric a run never logged is NaN too, but not named in non_finite.
    df = pd.DataFrame({"run_id": ["a", "b", "c"], "metric.val_accuracy": [0.5, float("nan"), float("inf")],
                       "metric.test_accuracy": [0.5, 0.6, None], "non_finite": ["", "val_accuracy", "val_accuracy"]})
    (note,) = non_finite_notes(df, ["val_accuracy", "test_accuracy"])
    assert note.startswith("val_accuracy: 2 run(s)") and "b, c" in note


# ------------------------------------------------------------- 2/3. outputs and options


def test_predict_html_refuses_an_existing_file(tmp_path, capsys):
    page = tmp_path / "mine.html"
    page.write_text("my page")
    rc, _, err = _cli(["predict", "--html", str(page), "some text"], capsys)
    assert rc == 2 and "--html" in _one_error(err) and "--force" in err
    assert page.read_text() == "my page"


def test_predict_png_refuses_existing_heatmaps(tmp_path, capsys):
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "0001.png").write_bytes(b"mine")
    rc, _, err = _cli(["predict", "--png", str(tmp_path / "maps"), "some text"], capsys)
    assert rc == 2 and "0001.png" in _one_error(err)


@pytest.mark.parametrize("args, expected", [
    (["report", "scale", "--out", "{file}"], "--out {file}: is a file"),
    (["report", "scale", "--alpha", "1.5"], "--alpha 1.5"),
    (["report", "scale", "--unit", "fold"], "invalid choice"),
    (["bench", "layer", "--set", "repeats=abc"], "repeats must be an integer, got 'abc'"),
    (["bench", "layer", "--set", "layer.lengths=5"], "layer.lengths must be a list"),
    (["bench", "layer", "--set", "nokey=1"], "nokey"),
    (["bench", "layer", "--out", "{file}"], "--out {file}: is a file"),
    (["bench", "layer", "--tracking-uri", "sqlite:////no/such/dir/m.db"], "tracking.uri=sqlite:////no/such/dir"),
])
def test_options_fail_before_work(args, expected, tmp_path, capsys):
    """One `error:` line, exit 2, in about a second: nothing measured, read or written."""
    f = tmp_path / "existing.txt"
    f.write_text("keep me")
    args = [a.replace("{file}", str(f)) for a in args]
    t = time.perf_counter()
    rc, out, err = _cli(args, capsys)
    assert rc == 2 and expected.replace("{file}", str(f)) in _one_error(err), err
    assert time.perf_counter() - t < 20 and f.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]


def test_out_dir_refuses_files_it_would_replace_unless_forced(tmp_path):
    from attnlab.errors import ConfigError
    from attnlab.outputs import new_file, out_dir

    (tmp_path / "report.md").write_text("mine")
    with pytest.raises(ConfigError, match="would replace report.md"):
        out_dir(tmp_path, "--out", ["report.md", "report.csv"])
    assert out_dir(tmp_path, "--out", ["report.md"], force=True) == tmp_path
    assert out_dir(tmp_path / "new" / "deeper", "--out", ["report.md"]) == tmp_path / "new" / "deeper"
    with pytest.raises(ConfigError, match="is a folder"):
        new_file(tmp_path, "--html")
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        with pytest.raises(ConfigError, match="not writable"):
            new_file(tmp_path / "ro" / "x.html", "--html")


def test_bench_results_default_to_the_launch_directory(tmp_path, monkeypatch):
    from attnlab.bench import common

    monkeypatch.chdir(tmp_path)
    assert common.out_dir(common.load_config()) == tmp_path / "experiments" / "benchmarks"
    assert common.out_dir(common.load_config(quick=True)).is_relative_to(tmp_path)


# ------------------------------------------------------------------------ 4. stores


@pytest.mark.parametrize("uri, expected", [
    ("sqlite:////no/such/folder/mlflow.db", "folder /no/such/folder does not exist"),
    ("postgresql://root@127.0.0.1:5432/no_such_db", "cannot open the store"),
])
def test_unusable_store_fails_fast_and_by_name(uri, expected, tmp_path):
    if uri.startswith("postgresql"):
        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        except OSError:
            pytest.skip("no PostgreSQL server at 127.0.0.1:5432")
    t = time.perf_counter()
    proc = run_cli(["train", *fast(f"tracking.uri={uri}")], cwd=tmp_path, timeout=120, env=QUIET)
    elapsed = time.perf_counter() - t
    line = _one_error(proc.stderr)
    assert proc.returncode == 2 and line.startswith(f"error: tracking.uri={uri}: ") and expected in line, line
    # <= 10 s for the whole command (Python start-up included; 4-5 s here). On this shared machine
    # at load 10+ start-up alone can take longer, so the baseline is a config error's same path.
    t = time.perf_counter()
    run_cli(["train", *fast("train.learning_rate=-1")], cwd=tmp_path, timeout=120, env=QUIET)
    baseline = time.perf_counter() - t
    assert elapsed <= max(10.0, baseline + 5.0), f"{elapsed:.1f} s (a config error: {baseline:.1f} s)"


def test_a_new_store_is_announced_once(tmp_path, capsys):
    from attnlab.tracking import ensure_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_store(uri, "attnlab")
    ensure_store(uri, "attnlab")
    err = capsys.readouterr().err
    assert err.count("created new MLflow store at") == 1 and str(tmp_path / "mlflow.db") in err


# ------------------------------------------------------------------------- 5. dead runs


def test_reaper_touches_only_dead_processes_of_this_host(tmp_path, capsys):
    from attnlab.tracking import ensure_store, reap_dead_runs

    exp_id = ensure_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "attnlab")

    def _running_run(_uri, tags):
        return mlflow_client(tmp_path).create_run(exp_id, tags=tags).info.run_id

    uri = None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = socket.gethostname()
        ids = {
            "dead": _running_run(uri, {"attnlab.host": host, "attnlab.pid": str(dead.pid)}),
            "live": _running_run(uri, {"attnlab.host": host, "attnlab.pid": str(live.pid)}),
            "reused": _running_run(uri, {"attnlab.host": host, "attnlab.pid": str(live.pid), "attnlab.pid_start": "1"}),
            "other_host": _running_run(uri, {"attnlab.host": host + "-elsewhere", "attnlab.pid": str(dead.pid)}),
            "untagged": _running_run(uri, {}),
        }
        capsys.readouterr()
        reaped = reap_dead_runs(mlflow_client(tmp_path))
    finally:
        live.kill()
        live.wait()
    assert sorted(reaped) == sorted([ids["dead"], ids["reused"]])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: marked 2 RUNNING run(s) FAILED"), err
    mlc = mlflow_client(tmp_path)
    status = {k: mlc.get_run(v).info.status for k, v in ids.items()}
    assert status == {"dead": "FAILED", "reused": "FAILED", "live": "RUNNING", "other_host": "RUNNING",
                      "untagged": "RUNNING"}
    assert "DeadProcess: process" in mlc.get_run(ids["dead"]).data.tags["attnlab.error"]


@pytest.mark.slow  # over 20 s: make test-long (CI runs it)
def test_kill_9_run_is_marked_failed_by_the_next_train(tmp_path):
    """The issue's case: `kill -9` in the middle of fit; the next `attnlab train` on the same
    store marks that run FAILED and says so in one line."""
    from attnlab.tracking import store_lock

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    victim = subprocess.Popen([ATTNLAB, "-q", "train", *tiny("train.epochs=200", "train.early_stopping.patience=200",
                                                               "tracking.log_model=false")],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and victim.poll() is None:
            time.sleep(1)
            if (tmp_path / "mlflow.db").exists():
                with store_lock(f"sqlite:///{tmp_path / 'mlflow.db'}"):  # not while the victim migrates it
                    if any("epoch" in r.data.metrics for r in runs(tmp_path)):
                        break
        assert victim.poll() is None, "the run ended before it could be killed"
        (run,) = runs(tmp_path)
        assert run.info.status == "RUNNING" and run.data.tags["attnlab.pid"] == str(victim.pid)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    proc = run_cli(["-q", "train", *fast()], cwd=tmp_path, timeout=300, env=QUIET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [ln for ln in proc.stderr.splitlines() if "FAILED whose process" in ln]
    assert notes == [f"note: marked 1 RUNNING run(s) FAILED whose process on {socket.gethostname()} is gone: "
                     f"{run.info.run_id}"], proc.stderr[-2000:]
    killed = mlflow_client(tmp_path).get_run(run.info.run_id)
    assert killed.info.status == "FAILED" and str(victim.pid) in killed.data.tags["attnlab.error"]
    assert sorted(r.info.status for r in runs(tmp_path)) == ["FAILED", "FINISHED"]


@pytest.mark.slow
def test_two_first_runs_race_on_a_fresh_store(tmp_path):
    """Two `attnlab train` started together in a folder with no store yet both finish (the
    store lock serialises MLflow's migration), and only one says it created the store."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **QUIET}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [subprocess.Popen([ATTNLAB, "-q", "train", *fast(f"seed={i}")], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    assert sum(e.count("created new MLflow store") for _, e in outs) == 1
    assert sorted(r.info.status for r in runs(tmp_path)) == ["FINISHED", "FINISHED"]


# --------------------------------------------------------------------- 7. warnings


def test_empty_vocabulary_is_one_line(tmp_path, capsys):
    rows = "".join(f"!!! ...,{'pos' if i % 2 else 'neg'}\n" for i in range(40))
    (tmp_path / "punct.csv").write_text("text,label\n" + rows)
    rc, _, err = _cli(["train", *fast("data=files", "data.train_path=punct.csv",
                                      "model.standardize=lower_and_strip_punctuation")], capsys)
    line = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert rc == 2 and len(line) == 1 and "vocabulary is empty" in line[0] and "model.standardize" in line[0], err
    assert len(line[0]) < 300 and "Traceback" not in err and "tensorflow" not in err.lower(), err


def test_same_file_for_train_and_test_is_warned_and_tagged(tmp_path, capsys):
    rows = "".join(f"word{i} text {i % 7} number,{'pos' if i % 2 else 'neg'}\n" for i in range(60))
    rows += "".join(f"w{i},{'pos' if i % 2 else 'neg'}\n" for i in range(4))  # one token each
    (tmp_path / "all.csv").write_text("text,label\n" + rows)
    rc, _, err = _cli(["train", *fast("data=files", "data.train_path=all.csv", "data.test_path=all.csv")], capsys)
    assert rc == 0, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    assert any("train and test files are identical" in w for w in warnings), err
    # Every test text is in the file; the training split is that file less the carved validation rows.
    (run,) = runs(tmp_path)
    n_train = int(run.data.params["dataset.n_train"])
    assert any(f"{n_train} of 64 test text(s)" in w and "also occur exactly in the training split" in w
               for w in warnings), err
    assert any("become one token or none" in w for w in warnings), err
    tags = run.data.tags
    assert {"attnlab.warning.identical_files", "attnlab.warning.test_overlap",
            "attnlab.warning.train_short_texts"} <= set(tags)


def test_predict_warns_about_empty_and_truncated_inputs():
    from attnlab.predict import Prediction, input_warnings

    def pred(text, tokens):
        return Prediction(text=text, label="a", probabilities={"a": 1.0}, tokens=tokens, attention=[1.0] * len(tokens))

    lines = input_warnings([pred("", []), pred("fine text", ["fine", "text"]), pred("w " * 50, ["w"] * 8)], 8)
    assert len(lines) == 2
    assert lines[0].startswith("1 text(s) have no tokens (#1)")
    assert "#3: 50 words" in lines[1] and "max_len=8" in lines[1]
    assert input_warnings([pred("fine text", ["fine", "text"])], 8) == []


# --------------------------------------------------------------------- 9. storage retry


def _tiny_dataset():
    import numpy as np

    from attnlab.data.dataset import Dataset, Split

    def split(texts):
        return Split(texts=texts, labels=np.arange(len(texts)) % 2)

    return Dataset(name="tiny", classes=["neg", "pos"], train=split(["a b", "b c", "c d"]), val=split(["a c", "b d"]),
                   test=split(["d a", "c b"]))


def test_retry_outlasts_a_transient_outage_and_then_gives_one_line(monkeypatch):
    from attnlab.errors import AttnlabError
    from attnlab.tracking import retry

    monkeypatch.setattr(retry, "_FIRST_WAIT_S", 0.01)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            try:
                raise ConnectionError("server closed the connection unexpectedly")
            except ConnectionError as inner:  # wrapped as Optuna/MLflow wrap the driver's error
                raise RuntimeError("StorageInternalError: an error occurred") from inner
        return "ok"

    assert retry.call(flaky) == "ok" and len(calls) == 3
    with pytest.raises(ValueError):  # not a storage outage: raised at once
        retry.call(lambda: (_ for _ in ()).throw(ValueError("bad value")))
    monkeypatch.setenv(retry.BUDGET_ENV, "0.2")
    t = time.perf_counter()
    with pytest.raises(AttnlabError, match=r"storage unavailable: down still failed after \d+ attempt\(s\) in 0.2 s"):
        retry.call(lambda: (_ for _ in ()).throw(OSError("FATAL: the database system is shutting down")), what="down")
    assert time.perf_counter() - t < 2


def test_a_dataset_two_jobs_log_at_once_is_logged_by_the_loser_too(tmp_path, monkeypatch):
    """Jobs of a sweep log the same dataset at once; MLflow inserts it when its query found none,
    so the slower one hits the unique key (seen on PostgreSQL: 'duplicate key value violates unique
    constraint "dataset_pk"'). Its second try finds the row and links it to its run."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from attnlab import datasets

    real, calls = mlflow.log_input, []

    def racing(ds, context=None, **kw):
        calls.append(ds.name)
        if len(calls) == 1:
            raise MlflowException('(psycopg.errors.UniqueViolation) duplicate key value violates unique '
                                  'constraint "dataset_pk"')
        return real(ds, context=context, **kw)

    monkeypatch.setattr(mlflow, "log_input", racing)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = mlflow.create_experiment("race", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp_id) as run:
        digests = datasets.log_inputs(_tiny_dataset(), seed=0)
    logged = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert calls[0] == calls[1] and len(calls) == 4  # the first split tried twice, then the other two
    assert sorted(d.dataset.digest for d in logged) == sorted(digests.values())
    monkeypatch.setattr(mlflow, "log_input", lambda *a, **k: (_ for _ in ()).throw(MlflowException("no such table")))
    with pytest.raises(MlflowException, match="no such table"):  # any other error passes at once
        with mlflow.start_run(experiment_id=exp_id):
            datasets.log_inputs(_tiny_dataset(), seed=0)


@pytest.mark.parametrize("outcome", ["FINISHED", "FAILED"])
def test_run_closes_through_an_outage_at_its_last_write(outcome, tmp_path, monkeypatch):
    """The write of the terminal status fails once (the database restarts just then): the run
    still ends with its status, never RUNNING (mlflow.end_run alone cannot be retried: it drops
    the run from its stack before the write)."""
    import mlflow
    from mlflow.tracking.client import MlflowClient

    from attnlab.tracking import retry
    from attnlab.tracking.runs import ERROR_TAG, STATUS_TAG, run_lifecycle

    monkeypatch.setattr(retry, "_FIRST_WAIT_S", 0.01)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = mlflow.create_experiment("outage", artifact_location=str(tmp_path / "artifacts"))
    real, failures = MlflowClient.set_terminated, []

    def flaky(self, run_id, status=None, end_time=None):
        if not failures:
            failures.append(status)
            raise ConnectionError("server closed the connection unexpectedly")
        return real(self, run_id, status, end_time)

    monkeypatch.setattr(MlflowClient, "set_terminated", flaky)
    try:
        with run_lifecycle(exp_id, "r") as run:
            if outcome == "FAILED":
                raise ValueError("bad batch")
    except ValueError:
        pass
    monkeypatch.undo()
    got = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run.info.run_id)
    assert failures == [outcome] and mlflow.active_run() is None
    assert got.info.status == outcome and got.data.tags[STATUS_TAG] == outcome
    assert (ERROR_TAG in got.data.tags) == (outcome == "FAILED")
