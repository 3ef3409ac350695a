"""Shared fixtures: compose the real config with tiny overrides, run the CLI, query MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
# Hypothesis caches (e.g. its unicode tables) under ./.hypothesis by default: keep the checkout clean.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "attnlab-hypothesis"))


def _no_hydra_logging_setup() -> None:
    """Tests call `attnlab.cli.main(["train", ...])` in-process. Each Hydra run reconfigures
    logging with dictConfig, which first tears down every existing handler; one of them ends
    up closing pytest's own capture stream (the session then dies with "I/O operation on
    closed file" / "lost sys.stderr"). Hydra's own test utilities run jobs with
    configure_logging=False for the same reason; do the same here. Subprocess tests keep
    Hydra's normal logging."""
    import hydra._internal.core_plugins.basic_launcher as bl
    import hydra._internal.hydra as hh
    import hydra.core.utils as hcu
    import hydra.main as hm

    def _skip(*args, **kwargs) -> None:
        return None

    for module in (hcu, hh, hm, bl):
        module.configure_log = _skip


_no_hydra_logging_setup()
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_RUN_ID", None)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ATTNLAB = str(Path(sys.executable).parent / "attnlab")

# Small, fast settings used across tests (the real config composed with these overrides).
# They size the BiLSTM model (model=default; the default model is the small transformer).
TINY_MODEL = [
    "model=default",
    "model.max_len=24",
    "model.max_tokens=600",
    "model.embedding_dim=16",
    "model.encoder.units=8",
    "model.attention.units=16",
    "model.head.dropout=0.0",
    "model.embedding_dropout=0.0",
    "train.batch_size=32",
    "train.learning_rate=0.01",
    "tracking.n_attention_examples=2",
]
# The synthetic keyword task (a tiny BiLSTM learns it in seconds) and its sizes (its own keys:
# another data set has other keys).
TINY_DATA = [
    "data.task=keywords",
    "data.n_train=400",
    "data.n_val=100",
    "data.n_test=100",
    "data.vocab_size=100",
    "data.min_len=5",
    "data.max_len=20",
]
TINY = [*TINY_MODEL, *TINY_DATA]


def tiny(*overrides: str) -> list[str]:
    """TINY plus ``overrides``; the synthetic data sizes are left out when another data set is
    chosen, and the encoder's size key follows the encoder chosen (the CNN has filters, not units)."""
    other_data = any(o.startswith("data=") and o != "data=synthetic" for o in overrides)
    base = TINY_MODEL if other_data else TINY
    if any(o in ("model=cnn", "model/encoder=cnn") for o in overrides):
        base = ["model.encoder.filters=8" if o == "model.encoder.units=8" else o for o in base]
    return [*base, *overrides]


def compose(overrides: list[str] | None = None):
    """The real conf/ composed with overrides, as `attnlab train` would see it."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from attnlab.config import config_dir, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hcompose(config_name="config", overrides=list(overrides or []))


@pytest.fixture(autouse=True)
def _isolate_mlflow_uris():
    """After every test, clear MLflow's global tracking/registry URIs (module state and the
    environment variables that ``mlflow.set_tracking_uri`` exports) and attnlab's memory of
    them, as at the start of the session: a test (or a module fixture) that pointed MLflow at
    its own tmp store must not redirect a later test's runs there. Cleared, not restored: a
    snapshot taken after a module-scoped fixture trained would carry its store forward."""
    yield
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from attnlab import tracking

    tracking_utils._tracking_uri = None
    registry_utils._registry_uri = None
    tracking.store._uri_we_set = None
    tracking.store._user_env_uri = None
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(k, None)


@pytest.fixture(scope="session", autouse=True)
def _session_in_tmp(tmp_path_factory):
    """Tests never write into the checkout: the session (its module fixtures too) runs in a temp
    folder, so a default MLflow store, mlruns/, Hydra's outputs/ or a report land there."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(here)


@pytest.fixture(autouse=True)
def _test_in_tmp(tmp_path, monkeypatch):
    """Each test runs in its own empty folder (its tmp_path), and a ``--quiet`` or
    ``--verbose`` that an in-process CLI call exports does not outlive the test."""
    monkeypatch.chdir(tmp_path)
    saved = {k: os.environ.get(k) for k in ("ATTNLAB_QUIET", "ATTNLAB_VERBOSE")}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty directory: the default MLflow store and mlruns/ land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None) if "MLFLOW_TRACKING_URI" not in (env or {}) else None
    return subprocess.run([ATTNLAB, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def mlflow_client(directory: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{directory / 'mlflow.db'}")


def runs(directory: Path, experiment: str = "attnlab"):
    client = mlflow_client(directory)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture
def pg_databases():
    """Two fresh PostgreSQL databases (Optuna storage, MLflow backend) as URLs, dropped
    afterwards whatever happens; the test is skipped when the server is unreachable."""
    import uuid

    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="root", dbname="postgres", connect_timeout=3)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {e}")
    conn.autocommit = True
    names = [f"attnlab_test_{kind}_{uuid.uuid4().hex[:10]}" for kind in ("optuna", "mlflow")]
    with conn.cursor() as cur:
        for n in names:
            cur.execute(f'CREATE DATABASE "{n}"')
    try:
        yield [f"postgresql://root@127.0.0.1:5432/{n}" for n in names]
    finally:
        with conn.cursor() as cur:
            for n in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
        conn.close()


def dead_cause(error: str) -> bool:
    """A killed trial's run names why it was closed: a stale heartbeat (the sweeper) or a process
    that is gone (the reaper, which a command opening the store may run first)."""
    return "no heartbeat" in error or ("DeadProcess" in error and "killed" in error)


def start_sweep_workers(tmp_path: Path, n: int, optuna_url: str, mlflow_uri: str, trial: list[str],
                        n_trials: int) -> list[subprocess.Popen]:
    """``n`` workers of one `hparams_search=synthetic_small` study on shared stores (each in its own
    session, logging to ``tmp_path/worker<i>.log``); the tables and experiment are made first,
    before the workers race to create them (docs/sweeps.md)."""
    from attnlab import tracking

    tracking.setup({"uri": mlflow_uri, "experiment": "attnlab", "artifact_dir": str(tmp_path / "mlruns")})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [ATTNLAB, "train", "-m", "hparams_search=synthetic_small", *trial, f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweeper.storage={optuna_url}", f"tracking.uri={mlflow_uri}", "hydra.sweeper.poll_interval=0.5"]
    return [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=(tmp_path / f"worker{i}.log").open("w"),
                             stderr=subprocess.STDOUT, start_new_session=True) for i in range(n)]


def cli_main(args: list[str], capsys) -> tuple[int, str, str]:
    """``attnlab ARGS`` in-process: (exit status, stdout, stderr)."""
    from attnlab import cli

    rc = cli.main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err
