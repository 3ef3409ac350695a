"""Reliability (issue 8): bad input stops early and clearly, interrupts and crashes keep what
was logged, nothing is lost, and loading is safe.

Determinism is in ``test_determinism.py``; the multi-worker PostgreSQL load test in
``test_load.py`` (``slow``).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from conftest import ATTNLAB, ROOT, TINY, mlflow_client, run_cli, runs, tiny

def fast(*overrides: str) -> list[str]:
    """One-epoch tiny settings plus ``overrides`` (without the synthetic sizes when another data set is chosen)."""
    return tiny("train.epochs=1", "tracking.log_model=false", *overrides)
GOOD_ROWS = "".join(f"word{i} text number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40))


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(d: Path, name: str, content: str | bytes) -> Path:
    p = d / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def _files(d: Path, name: str, content: str | bytes, *extra: str) -> list[str]:
    """Overrides for `data=files` on one user file written into ``d``."""
    _write(d, name, content)
    return ["data=files", f"data.train_path={name}", *extra]


# id -> (builder(tmp dir) -> overrides, substrings the one error line must contain).
# File cases name the file; config cases name the key. Every case must fail before a run starts.
CATALOGUE: dict[str, tuple[Callable[[Path], list[str]], list[str]]] = {
    "missing_file": (lambda d: ["data=files", "data.train_path=nope.csv"], ["nope.csv", "not found"]),
    "train_path_unset": (lambda d: ["data=files"], ["data.train_path"]),
    "empty_file": (lambda d: _files(d, "empty.csv", b""), ["empty.csv", "empty"]),
    "header_only": (lambda d: _files(d, "head.csv", "text,label\n"), ["head.csv", "no data rows"]),
    "no_text_column": (lambda d: _files(d, "cols.csv", "sentence,label\nhello,pos\n"),
                       ["cols.csv", "text column 'text'", "data.text_column"]),
    "misnamed_label_column": (lambda d: _files(d, "lab.csv", "text,label\n" + GOOD_ROWS, "data.label_column=lable"),
                              ["lab.csv", "label column 'lable'"]),
    "single_class": (lambda d: _files(d, "one.csv", "text,label\n" + "".join(f"t {i},pos\n" for i in range(20))),
                     ["one.csv", "single class"]),
    "empty_label": (lambda d: _files(d, "el.csv", "text,label\n" + GOOD_ROWS + "some text,\n"),
                    ["el.csv", "empty or NaN label", "line 42"]),
    "nan_label": (lambda d: _files(d, "nan.csv", "text,label\nsome text,NaN\n" + GOOD_ROWS),
                  ["nan.csv", "empty or NaN label", "line 2"]),
    "empty_text": (lambda d: _files(d, "et.csv", "text,label\n" + GOOD_ROWS + ' ,pos\n'),
                   ["et.csv", "empty text", "line 42"]),
    "not_utf8": (lambda d: _files(d, "latin.csv", ("text,label\ncaf\xe9 au lait,pos\n" + GOOD_ROWS).encode("latin-1")),
                 ["latin.csv", "not valid UTF-8", "line 2"]),
    "unknown_extension": (lambda d: _files(d, "data.txt", "text,label\n" + GOOD_ROWS), ["data.txt", "data.format"]),
    "unseen_test_label": (lambda d: [*_files(d, "tr.csv", "text,label\n" + GOOD_ROWS),
                                     "data.test_path=" + _write(d, "te.csv", "text,label\nx y,neutral\n").name],
                          ["te.csv", "'neutral'", "never occurs in the training data"]),
    "unknown_model": (lambda d: ["model=foo"], ["model/foo", "available options"]),
    "unknown_key": (lambda d: ["model.attentoin.units=8"], ["model.attentoin"]),
    "epochs_not_int": (lambda d: ["train.epochs=abc"], ["train.epochs", "abc"]),
    "bad_enum": (lambda d: ["model.attention.scale=foo"], ["model.attention.scale", "sqrt_dk"]),
    "units_zero": (lambda d: ["model.attention.units=0"], ["model.attention.units=0"]),
    "heads_not_dividing": (lambda d: ["model.attention.units=16", "model.attention.heads=3"],
                           ["model.attention.heads=3", "units=16", "divisor"]),
    "max_len_zero": (lambda d: ["model.max_len=0"], ["model.max_len=0"]),
    "epochs_zero": (lambda d: ["train.epochs=0"], ["train.epochs=0"]),
    "negative_seed": (lambda d: ["seed=-1"], ["seed", "-1"]),
    "fold_out_of_range": (lambda d: ["data=mr", "data.fold=12"], ["data.fold", "0..9", "12"]),
    "unreachable_tracking": (lambda d: [f"tracking.uri=http://127.0.0.1:{_closed_port()}"],
                             ["tracking.uri=http://127.0.0.1:", "cannot use the MLflow tracking store"]),
}


def _error_line(stderr: str) -> str:
    """The single line of stderr; fails on anything else (a second line, a traceback)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got:\n{stderr[-3000:]}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def _no_run_left_running(directory: Path) -> None:
    """No MLflow run RUNNING; a run that started is FAILED with its error as a tag."""
    for r in runs(directory) if (directory / "mlflow.db").exists() else []:
        assert r.info.status in ("FAILED", "KILLED"), (r.info.run_id, r.info.status)
        if r.info.status == "FAILED":
            assert r.data.tags.get("attnlab.error"), r.data.tags


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_input_catalogue(case, in_tmp, capsys, monkeypatch):
    """In-process `attnlab train ...`: exit 2, one `error:` line naming the file/key, no run started."""
    from attnlab import cli

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("ATTNLAB_VERBOSE", raising=False)
    build, expected = CATALOGUE[case]
    overrides = build(in_tmp)
    files_before = sorted(p.name for p in in_tmp.iterdir())
    capsys.readouterr()
    t = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *fast(*overrides)])
    elapsed = time.perf_counter() - t
    assert exc.value.code == 2
    line = _error_line(capsys.readouterr().err)
    for s in expected:
        assert s in line, f"{s!r} not in {line!r}"
    # Fails before a run (and before TensorFlow is set up): no MLflow store was even created,
    # and nothing was written next to the user's files (Hydra's own outputs/ aside).
    assert not (in_tmp / "mlflow.db").exists() and not (in_tmp / "mlruns").exists()
    assert sorted(p.name for p in in_tmp.iterdir() if p.name != "outputs") == files_before
    assert elapsed < 30, f"{case} took {elapsed:.1f} s"  # an unreachable server must not retry for minutes


@pytest.mark.parametrize(
    "case", ["missing_file", "unknown_model", "epochs_not_int", "heads_not_dividing", "unreachable_tracking"]
)
def test_bad_input_cli_subprocess(case, tmp_path):
    """The real entry point: non-zero exit, exactly one stderr line, no traceback."""
    build, expected = CATALOGUE[case]
    proc = run_cli(["train", *fast(*build(tmp_path))], cwd=tmp_path, timeout=120,
                   env={"HYDRA_FULL_ERROR": "0", "ATTNLAB_VERBOSE": "0"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _error_line(proc.stderr)
    assert all(s in line for s in expected), line
    _no_run_left_running(tmp_path)


@pytest.mark.parametrize("how", ["--verbose", "HYDRA_FULL_ERROR=1"])
def test_verbose_shows_traceback(how, tmp_path):
    args = ["train", "data=files", "data.train_path=nope.csv"]
    env = {"HYDRA_FULL_ERROR": "0"}
    if how == "--verbose":
        args = ["--verbose", *args]
    else:
        env["HYDRA_FULL_ERROR"] = "1"
    proc = run_cli(args, cwd=tmp_path, timeout=120, env=env)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "DataError" in proc.stderr and "nope.csv" in proc.stderr


# ----------------------------------------------------------------------------- crashes


def test_crash_mid_fit_keeps_metrics_and_artifacts(in_tmp, capsys, monkeypatch):
    """An exception after 2 epochs: exit 2 with one line, run FAILED with the error tag,
    the two epochs' metrics and the config artifacts kept; a later run on the user's own
    files deletes nothing and leaves their directory untouched."""
    from attnlab import callbacks, cli

    original = callbacks.MLflowMetrics.on_epoch_end

    def crash_after_two(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise RuntimeError("injected crash after epoch 2")

    monkeypatch.setattr(callbacks.MLflowMetrics, "on_epoch_end", crash_after_two)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *TINY, "train.epochs=5", "tracking.log_model=false"])
    assert exc.value.code == 2
    err = capsys.readouterr().err  # MLflow may first say it is creating the new store's tables
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0] == "error: injected crash after epoch 2 (RuntimeError; run `attnlab --verbose ...` for the traceback)"

    (run,) = runs(in_tmp)
    assert run.info.status == "FAILED"
    assert run.data.tags["attnlab.status"] == "FAILED"
    assert "RuntimeError: injected crash after epoch 2" in run.data.tags["attnlab.error"]
    client = mlflow_client(in_tmp)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0, 1]
    assert {"config.yaml", "config_composed.yaml"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    crashed_files = sorted(p.relative_to(in_tmp) for p in (in_tmp / "mlruns").rglob("*") if p.is_file())
    assert crashed_files

    # A good run afterwards, in the same store, on the user's own files: the crashed run and its
    # files stay, and nothing is written into (or changed in) the user's data directory.
    monkeypatch.setattr(callbacks.MLflowMetrics, "on_epoch_end", original)
    data_dir = in_tmp / "userdata"
    data_dir.mkdir()
    rows = "".join(f"w{i % 7} w{i % 5} {'good' if i % 2 else 'bad'} filler,{'pos' if i % 2 else 'neg'}\n"
                   for i in range(200))
    _write(data_dir, "train.csv", "text,label\n" + rows)
    _write(data_dir, "test.csv", "text,label\n" + "".join(rows.splitlines(keepends=True)[:50]))
    before = _snapshot(data_dir)
    mtimes = {p: p.stat().st_mtime_ns for p in data_dir.iterdir()}
    assert cli.main(["train", *fast("data=files", f"data.train_path={data_dir / 'train.csv'}",
                                    f"data.test_path={data_dir / 'test.csv'}")]) == 0
    assert _snapshot(data_dir) == before
    assert {p: p.stat().st_mtime_ns for p in data_dir.iterdir()} == mtimes
    statuses = sorted(r.info.status for r in runs(in_tmp))
    assert statuses == ["FAILED", "FINISHED"]
    assert all((in_tmp / f).is_file() for f in crashed_files)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [0, 1]


# ----------------------------------------------------------------------------- interrupts


def _wait_for_epochs(directory: Path, proc: subprocess.Popen, n: int, timeout: float = 120) -> tuple[str, int]:
    """Poll the run's store until ``n`` epochs of val_accuracy are logged; (run id, epochs seen).

    Read-only SQL, not an MlflowClient: a client on a SQLite URI migrates the schema, which
    races the child creating the same store.
    """
    import sqlite3

    db = directory / "mlflow.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"train ended early: {proc.communicate()[1][-3000:]}"
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                    rows = con.execute("SELECT run_uuid, COUNT(*) FROM metrics WHERE key = 'val_accuracy' "
                                       "GROUP BY run_uuid").fetchall()
                if rows and rows[0][1] >= n:
                    return rows[0][0], rows[0][1]
            except sqlite3.OperationalError:
                pass  # tables not created yet, or the child holds the write lock
        time.sleep(0.3)
    pytest.fail(f"no {n} epochs logged within {timeout} s")


def test_sigint_during_fit_ends_run_killed_with_metrics(tmp_path):
    """Ctrl-C on a real `attnlab train`: exit 130, run KILLED, every finished epoch's metrics kept."""
    # faulthandler: if the child ever hangs after the signal, SIGABRT makes it print every
    # thread's stack, so the failure says where.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONFAULTHANDLER": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [ATTNLAB, "train", *TINY, "train.epochs=500", "train.early_stopping.patience=1000", "tracking.log_model=false"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id, seen = _wait_for_epochs(tmp_path, proc, 1)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"train still running 120 s after SIGINT; its stacks:\n{err[-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err
    (run,) = runs(tmp_path)
    assert run.info.run_id == run_id
    assert run.info.status == "KILLED" and run.data.tags["attnlab.status"] == "KILLED"
    hist = mlflow_client(tmp_path).get_metric_history(run_id, "val_accuracy")
    assert seen <= len(hist) < 500
    assert sorted(h.step for h in hist) == list(range(len(hist)))  # every finished epoch kept


def test_sigterm_during_fit_ends_run_killed_with_metrics(in_tmp, capsys, monkeypatch):
    """SIGTERM (a scheduler's or `docker stop`'s kill) from another thread while Keras is inside
    `fit`: the same path in-process (cheaper than a second subprocess)."""
    import threading

    from attnlab import callbacks, cli

    first_epoch = threading.Event()
    original = callbacks.MLflowMetrics.on_epoch_end

    def mark(self, epoch, logs=None):
        original(self, epoch, logs)
        first_epoch.set()

    monkeypatch.setattr(callbacks.MLflowMetrics, "on_epoch_end", mark)

    def terminate():
        if first_epoch.wait(120):
            time.sleep(0.2)  # well inside the next epoch
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate, daemon=True)
    killer.start()
    code = cli.main(["train", *TINY, "train.epochs=500", "train.early_stopping.patience=1000",
                     "tracking.log_model=false"])
    killer.join(5)
    assert code == 130
    # the handlers are gone after the run
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    (run,) = runs(in_tmp)
    assert run.info.status == "KILLED" and run.data.tags["attnlab.status"] == "KILLED"
    hist = mlflow_client(in_tmp).get_metric_history(run.info.run_id, "val_accuracy")
    assert 1 <= len(hist) < 500 and sorted(h.step for h in hist) == list(range(len(hist)))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_a_store_write_waits_for_it(sig, in_tmp):
    """A signal inside `deferred_interrupts` (an MLflow/Optuna write) is raised when the write
    is done, never in the middle of it; the run still ends KILLED with what was logged."""
    import mlflow

    from attnlab import tracking

    exp_id = tracking.setup({"uri": f"sqlite:///{in_tmp / 'mlflow.db'}", "experiment": "attnlab",
                             "artifact_dir": str(in_tmp / "mlruns")})
    done = []
    with pytest.raises(KeyboardInterrupt):
        with tracking.run_lifecycle(exp_id, "deferred") as run:
            with tracking.deferred_interrupts():
                os.kill(os.getpid(), sig)
                time.sleep(0.2)  # the handler has run by now: it must not have raised
                mlflow.log_metric("written", 1.0)
                done.append(True)
            done.append("not reached")
    assert done == [True]
    (r,) = runs(in_tmp)
    assert r.info.run_id == run.info.run_id and r.info.status == "KILLED"
    assert r.data.metrics["written"] == 1.0


# ----------------------------------------------------------------------------- nothing lost


def _snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_no_code_deletes_stores_or_writes_data():
    """Static guard: the package never removes files, directories, experiments or studies
    (MLflow's soft `delete_run`, which keeps every file and can be restored, is allowed: the
    sweeper retires a duplicate parent run it created itself), and data/ never writes."""
    src = ROOT / "src"
    offenders = []
    for py in src.rglob("*.py"):
        text = py.read_text()
        for m in re.finditer(r"(shutil\.rmtree|os\.remove|os\.unlink|\.unlink\(|os\.rmdir|\.rmdir\(|drop_all|"
                             r"delete_experiment|delete_study|permanently_delete|\bgc\()", text):
            offenders.append(f"{py.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}")
    assert offenders == [], "\n".join(offenders)
    for py in (src / "attnlab" / "data").rglob("*.py"):
        text = py.read_text()
        assert not re.search(r"write_(text|bytes)|open\([^)]*['\"][wa]b?['\"]|to_csv|savez", text), py


# ----------------------------------------------------------------------------- security


def test_keras_files_load_only_in_safe_mode(tmp_path):
    """The loader attnlab serves with refuses a .keras file carrying a Lambda (arbitrary code)."""
    import keras

    from attnlab.pyfunc import AttnlabPyfunc

    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Lambda(lambda x: x * 2)(inp))
    path = tmp_path / "evil.keras"
    model.save(path)
    meta = _write(tmp_path, "meta.json", '{"classes": ["a", "b"]}')

    class Ctx:
        artifacts = {"keras_model": str(path), "meta": str(meta)}

    with pytest.raises(ValueError, match="(?i)safe_mode|lambda"):
        AttnlabPyfunc().load_context(Ctx())


def test_no_unsafe_loading_or_public_binding():
    """Every Keras load passes safe_mode=True, nothing unpickles, nothing binds 0.0.0.0 by default."""
    texts = {p: p.read_text() for p in [*(ROOT / "src").rglob("*.py"), *(ROOT / "conf").rglob("*.yaml")]}
    loads = [(p, m) for p, t in texts.items() for m in re.finditer(r"load_model\(([^)]*)\)", t)
             if "keras" in t[max(0, m.start() - 20) : m.start()]]
    assert loads, "expected the pyfunc's keras.models.load_model call"
    for p, m in loads:
        assert "safe_mode=True" in m.group(1), f"{p}: {m.group(0)}"
    for p, t in texts.items():
        assert not re.search(r"\bpickle\.loads?\(|cloudpickle\.loads?\(|allow_pickle\s*=\s*True|safe_mode\s*=\s*False"
                             r"|torch\.load|joblib\.load", t), p
        for m in re.finditer(r"np\.load\(([^)]*)\)", t):
            assert "allow_pickle=False" in m.group(1), f"{p}: {m.group(0)}"
        assert "0.0.0.0" not in t, p
        # pandas reads user tables as strings (no type guessing, nothing evaluated).
        for m in re.finditer(r"pd\.read_(csv|table|json)\(", t):
            assert "dtype=str" in t[m.start() : m.start() + 600], f"{p}: {m.group(0)}"
    # Documented server commands (mlflow ui/server/models serve, optuna-dashboard) bind loopback.
    docs = [ROOT / "README.md", ROOT / "Makefile", *(ROOT / "docs").glob("*.md")]
    for p in docs:
        for line in p.read_text().splitlines():
            if re.search(r"\b(unless|never|not|only on)\b", line.lower()):
                continue  # a warning about public binding, not a command
            assert "0.0.0.0" not in line, f"{p}: {line}"
            for host in re.findall(r"--host[= ]+([\w.:$(){}-]+)", line):
                assert host in ("127.0.0.1", "localhost", "$(HOST)", "${HOST}"), f"{p}: {line}"


def test_unreachable_optuna_storage(tmp_path):
    """A sweep whose Optuna storage cannot be reached stops before any trial, with one error line."""
    storage = f"postgresql://root@127.0.0.1:{_closed_port()}/attnlab_nowhere"
    proc = run_cli(["train", "-m", "hparams_search=synthetic_small", f"hydra.sweeper.storage={storage}"],
                   cwd=tmp_path, timeout=120, env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    # MLflow may first log that it created the new store's tables; the error itself is one line.
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "hydra.sweeper.storage=" + storage in errors[0] and "cannot open the Optuna storage" in errors[0]
    _no_run_left_running(tmp_path)
    assert not list(tmp_path.glob("multirun/*/*/*"))  # no trial started


def _touch(path: str):
    """Unpickling the object below calls this: the marker file proves code ran on load."""
    Path(path).write_text("unpickled")
    return object()


class _Booby:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


def test_pickled_model_is_refused_without_unpickling(tmp_path):
    """`attnlab predict`'s loader reads the MLmodel file first and refuses a cloudpickled pyfunc."""
    import mlflow
    import mlflow.pyfunc

    from attnlab.errors import AttnlabError
    from attnlab.predict import load

    class Model(mlflow.pyfunc.PythonModel):
        def __init__(self, marker: str):
            self.booby = _Booby(marker)

        def predict(self, context, model_input, params=None):  # noqa: ARG002
            return model_input

    marker = tmp_path / "ran.txt"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("trap")
        with mlflow.start_run() as run:
            mlflow.pyfunc.log_model(name="model", python_model=Model(str(marker)), pip_requirements=["mlflow"])
    finally:
        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert not marker.exists()
    with pytest.raises(AttnlabError, match="not an attnlab model"):
        load(f"runs:/{run.info.run_id}/model", tracking_uri=uri)
    assert not marker.exists(), "the pickled model was unpickled"
    # The trap is real: MLflow's own loader does unpickle it.
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert marker.read_text() == "unpickled"
