"""Shared fixtures: compose the real config with tiny overrides, run the CLI, query MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"


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
TINY = [
    "model.max_len=24",
    "model.max_tokens=600",
    "model.embedding_dim=16",
    "model.encoder.units=8",
    "model.attention.units=16",
    "model.head.dropout=0.0",
    "model.embedding_dropout=0.0",
    "data.n_train=400",
    "data.n_val=100",
    "data.n_test=100",
    "data.vocab_size=100",
    "data.min_len=5",
    "data.max_len=20",
    "train.batch_size=32",
    "train.learning_rate=0.01",
    "tracking.n_attention_examples=2",
]


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
    tracking._uri_we_set = None
    tracking._user_env_uri = None
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(k, None)


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
