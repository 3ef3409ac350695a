"""`attnlab register`: pick the best FINISHED run by a validation metric, register, alias."""

from __future__ import annotations

import os

import numpy as np
import pytest

from attnlab.tracking import uri_scope as tracking_scope
from conftest import cli_main, run_cli
from tiny_store import tiny_store


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def store():
    """Trained before any test's capsys starts, so training's chatter stays out of the checked output."""
    return tiny_store()


@pytest.fixture(autouse=True)
def unrelated_global_store(store, tmp_path):
    """MLflow's global URI points at another (empty) store during each test: register must use
    --tracking-uri for everything (the registry resolves a version's models:/m-... source
    through the global URI, which once made registering into PostgreSQL fail)."""
    with tracking_scope(f"sqlite:///{tmp_path / 'unrelated.db'}"):
        yield


def _fake_run(client, exp_id: str, status: str, metrics: dict[str, float], variant: str, with_model: bool) -> str:
    """A run as a sweep leaves it: metrics, a variant tag and (optionally) a READY logged model
    record (no weights: selection only reads the record; these versions are never loaded)."""
    from mlflow.entities import LoggedModelStatus

    run = client.create_run(exp_id, tags={"attnlab.variant": variant})
    rid = run.info.run_id
    for k, v in metrics.items():
        client.log_metric(rid, k, v)
    if with_model:
        lm = client.create_logged_model(exp_id, name="model", source_run_id=rid)
        client.finalize_logged_model(lm.model_id, LoggedModelStatus.READY)
    client.set_terminated(rid, status)
    return rid


def test_register_load_by_alias_and_predict_then_idempotent(store, capsys):
    """The issue's flow: a tiny trained run is registered, loads by alias, predicts raw texts;
    registering again with nothing better changes nothing."""
    import mlflow

    _, uri, run_id = store
    args = ["register", "--experiment", "attnlab", "--name", "reg-flow", "--tracking-uri", uri]
    env_before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    rc, out, err = cli_main(args, capsys)
    assert rc == 0, err
    # --tracking-uri is used for this command only: nothing leaks to later code or child processes
    assert {k: os.environ.get(k) for k in env_before} == env_before
    assert f"registered reg-flow version 1 (run {run_id}" in out
    client = _client(uri)
    mv = client.get_model_version_by_alias("reg-flow", "champion")
    assert (str(mv.version), mv.run_id) == ("1", run_id)
    run = client.get_run(run_id)
    assert mv.tags["attnlab.variant"] == run.data.tags["attnlab.variant"]
    assert float(mv.tags["val_accuracy"]) == pytest.approx(run.data.metrics["val_accuracy"], rel=1e-5)
    assert float(mv.tags["test_accuracy"]) == pytest.approx(run.data.metrics["test_accuracy"], rel=1e-5)
    assert mv.tags["attnlab.selected_by"] == "val_accuracy (max)"

    with tracking_scope(uri):  # set for the block only: a leaked MLFLOW_TRACKING_URI would redirect later tests
        model = mlflow.pyfunc.load_model("models:/reg-flow@champion")
        same = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    texts = ["w1 w2 w3 w4", "w7 w8", "w3"]
    pred = model.predict(texts)  # a plain list of raw strings
    assert len(pred) == 3 and set(pred["label"]) <= set(model.metadata.metadata["classes"])
    np.testing.assert_allclose([sum(p) for p in pred["probabilities"]], 1.0, atol=1e-5)
    assert [len(a) for a in pred["attention"]] == [4, 2, 1] == [len(t) for t in pred["tokens"]]
    np.testing.assert_allclose([sum(a) for a in pred["attention"]], 1.0, atol=1e-4)  # mask=keys: all on real tokens
    # The same model behind the run URI gives the same numbers.
    same = same.predict(texts)
    np.testing.assert_allclose(np.stack(pred["probabilities"]), np.stack(same["probabilities"]), atol=1e-6)

    rc, out, err = cli_main(args, capsys)
    assert rc == 0, err
    assert out.startswith("unchanged: reg-flow@champion is version 1; it already points at the best run")
    assert len(client.search_model_versions("name = 'reg-flow'")) == 1


def test_selection_skips_unfinished_and_modelless_runs_and_moves_the_alias(store, capsys):
    _, uri, _ = store
    client = _client(uri)
    exp = client.create_experiment("selection")
    base = _fake_run(client, exp, "FINISHED", {"val_accuracy": 0.70, "val_loss": 0.50, "test_accuracy": 0.99},
                     "scale=sqrt_dk", True)
    # better by val_accuracy, but not eligible: no model (a sweep parent), FAILED, KILLED (pruned)
    _fake_run(client, exp, "FINISHED", {"val_accuracy": 0.99}, "parent", False)
    _fake_run(client, exp, "FAILED", {"val_accuracy": 0.95}, "failed", True)
    _fake_run(client, exp, "KILLED", {"val_accuracy": 0.97}, "pruned", True)
    better = _fake_run(client, exp, "FINISHED", {"val_accuracy": 0.80, "val_loss": 0.60}, "scale=none", True)
    common = ["register", "--experiment", "selection", "--name", "sel", "--tracking-uri", uri]

    rc, out, err = cli_main([*common, "--filter", "tags.`attnlab.variant` = 'scale=sqrt_dk'"], capsys)
    assert rc == 0, err
    assert client.get_model_version_by_alias("sel", "champion").run_id == base

    rc, out, err = cli_main(common, capsys)  # no filter: the better eligible run takes the alias
    assert rc == 0, err
    mv = client.get_model_version_by_alias("sel", "champion")
    assert (str(mv.version), mv.run_id) == ("2", better)
    assert mv.tags["attnlab.variant"] == "scale=none" and mv.tags["val_accuracy"] == "0.8"
    rc, out, err = cli_main(common, capsys)
    assert out.startswith("unchanged: sel@champion is version 2")

    # By val_loss (min) the first run is better: its existing version is reused, not duplicated.
    rc, out, err = cli_main([*common, "--metric", "val_loss", "--mode", "min"], capsys)
    assert rc == 0, err
    assert out.startswith(f"reused sel version 1 (run {base}, val_loss=0.5000")
    assert str(client.get_model_version_by_alias("sel", "champion").version) == "1"
    assert len(client.search_model_versions("name = 'sel'")) == 2

    # A test metric would pick the run with test_accuracy 0.99: refused, alias untouched.
    rc, out, err = cli_main([*common, "--metric", "test_accuracy"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: --metric test_accuracy: refusing to select a model on a test metric")
    assert str(client.get_model_version_by_alias("sel", "champion").version) == "1"


def test_register_without_a_finished_run_exits_nonzero_with_one_line(store, tmp_path):
    _, uri, _ = store
    client = _client(uri)
    exp = client.create_experiment("nothing-finished")
    _fake_run(client, exp, "FAILED", {"val_accuracy": 0.9}, "failed", True)
    proc = run_cli(["register", "--experiment", "nothing-finished", "--tracking-uri", uri], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: no run qualifies: 1 run(s), 0 FINISHED")
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--experiment", "no-such-experiment"], "error: no experiment named 'no-such-experiment' in sqlite:///"),
        (["--filter", "params.x ==== 1"], "error: --filter 'params.x ==== 1': "),
        (["--filter", "params.`model.attention.scale` = 'nope'"],
         "error: no run qualifies: 0 run(s) matching --filter"),
        (["--alias", "v3"], "error: --alias 'v3' is reserved by MLflow"),
        (["--mode", "best"], "error: argument --mode: invalid choice: 'best'"),  # argparse, one line too
    ],
)
def test_register_bad_arguments_one_line(store, extra, message, capsys):
    _, uri, _ = store
    rc, out, err = cli_main(["register", "--tracking-uri", uri, *extra], capsys)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(message), err


def test_register_unknown_metric_names_the_available_ones(store, capsys):
    _, uri, _ = store
    rc, out, err = cli_main(["register", "--tracking-uri", uri, "--metric", "val_acc"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "0 with metric 'val_acc'" in err and "their validation metrics: " in err
    assert "val_accuracy" in err and "test_accuracy" not in err
