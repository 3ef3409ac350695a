"""One fully tracked run, end to end: CLI -> Hydra -> train(cfg) -> MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, compose, run_cli, runs


def test_cli_train_synthetic_end_to_end(tmp_path):
    """The issue's command: exit 0, one FINISHED run with every metric, maps, a loadable model."""
    import mlflow

    proc = run_cli(["train", "data=synthetic", "train.epochs=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rs = runs(tmp_path)
    assert len(rs) == 1
    run = rs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_id in proc.stdout and "mlflow ui --backend-store-uri" in proc.stdout
    m = run.data.metrics
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "test_accuracy", "test_macro_f1",
                "attention_entropy", "attention_pad_mass", "attention_rationale_mass"):
        assert key in m, key
    assert m["val_accuracy"] >= 0.9
    assert m["attention_pad_mass"] == 0.0  # default mask=keys
    assert 0.0 < m["attention_entropy"] <= 1.0
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    hist = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(h.step for h in hist) == [0, 1, 2, 3]  # one per epoch, then the final value
    # params: the flattened resolved config; the composed YAML as an artifact
    assert run.data.params["model.attention.scale"] == "sqrt_dk"
    assert run.data.params["data.name"] == "synthetic"
    assert run.data.tags["attnlab.variant"] == "data=synthetic,epochs=3,scale=sqrt_dk,pool=mean"
    assert run.info.run_name == "data=synthetic,epochs=3,scale=sqrt_dk,pool=mean,seed=0"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "config_composed.yaml", "attention"} <= names
    att = [a.path for a in client.list_artifacts(run.info.run_id, "attention")]
    assert sum(p.endswith(".png") for p in att) >= 1 and "attention/maps.npz" in att
    local = client.download_artifacts(run.info.run_id, "attention/maps.npz", str(tmp_path / "dl"))
    maps = np.load(local, allow_pickle=False)
    w, ids = maps["weights"], maps["ids"]
    # (N, blocks, heads, T, T): the default small transformer has 1 block of 2 heads
    assert w.ndim == 5 and w.shape[:3] == (8, 1, 2) and ids.shape == (8, w.shape[-1])
    for h in range(2):
        np.testing.assert_allclose(w.sum(-1)[:, 0, h][ids != 0], 1.0, atol=1e-5)  # real rows are distributions
    # the model answers raw strings
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    out = model.predict(pd.DataFrame({"text": ["w1 w2 w3", "another short text here", ""]}))
    assert list(out.columns) == ["label", "probabilities", "tokens", "attention"]
    assert len(out) == 3 and set(out["label"]) <= {"class_0", "class_1"}
    np.testing.assert_allclose([sum(p) for p in out["probabilities"]], 1.0, atol=1e-5)
    assert len(out["attention"][1]) == 4 == len(out["tokens"][1])


def test_mask_none_puts_attention_on_padding(in_tmp):
    from attnlab.train import train

    none = train(compose([*TINY, "train.epochs=1", "model.attention.mask=none", "tracking.log_model=false"]))
    assert none.metrics["attention_pad_mass"] > 0.01
    keys = train(compose([*TINY, "train.epochs=1", "model.attention.mask=keys", "tracking.log_model=false"]))
    assert keys.metrics["attention_pad_mass"] == 0.0


def test_seed_model_runs_and_is_faithful(in_tmp):
    from attnlab.train import train

    cfg = compose([*TINY, "model=seed", "train.epochs=1", "tracking.log_model=false"])  # the last model= wins
    assert cfg.model.attention._target_ == "attnlab.layers.SeedSelfAttention"
    assert cfg.model.pooling._target_ == "attnlab.layers.FlattenPooling"
    result = train(cfg)
    assert result.metrics["attention_pad_mass"] > 0.0  # the seed layer attends to padding
    (run,) = [r for r in runs(in_tmp) if r.info.run_id == result.run_id]
    assert run.data.params["model.attention._name_"] == "seed" and run.data.tags["attnlab.model"] == "seed"


def test_bad_value_one_line_error_and_no_run(tmp_path):
    proc = run_cli(["train", "model.attention.scale=foo"], cwd=tmp_path)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: model.attention.scale='foo'")
    assert all(s in lines[0] for s in ("sqrt_dk", "constant", "none", "learned")), lines[0]
    assert "Traceback" not in proc.stderr
    assert all(r.info.status != "RUNNING" for r in runs(tmp_path))


@pytest.mark.parametrize(
    "overrides",
    [["model=seed"], ["model=cnn"], ["data=mr"], ["data=trec"], ["model/pooling=flatten"], ["model.attention.scale=learned"]],
)
def test_presets_compose(overrides):
    from attnlab.config import to_plain

    plain = to_plain(compose(overrides))
    assert plain["paths"]["root"] and plain["model"]["attention"]["units"] > 0


@pytest.mark.slow  # over 20 s: make test-long (CI runs it)
def test_env_tracking_uri_holds_for_every_job_of_a_multirun(tmp_path, monkeypatch):
    """`$MLFLOW_TRACKING_URI` picks the store for all jobs of an in-process multirun, not
    just the first (MLflow re-exports the variable; attnlab once took that for its own and
    sent jobs 2..n to the launch directory's mlflow.db)."""
    from attnlab import cli

    store, launch = tmp_path / "store", tmp_path / "launch"
    store.mkdir()
    launch.mkdir()
    monkeypatch.chdir(launch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    try:
        code = cli.main(["train", "-m", *TINY, "train.epochs=1", "tracking.log_model=false",
                         "tracking.n_attention_examples=0", "seed=0,1"])
    except SystemExit as e:  # Hydra may exit 0 after a multirun
        code = e.code
    assert code in (0, None)
    assert sorted(r.data.tags["attnlab.seed"] for r in runs(store)) == ["0", "1"]
    assert not (launch / "mlflow.db").exists()


def test_cnn_encoder_trains_masks_and_loads_back(in_tmp):
    """`model=cnn` (Kim 2014's multi-width convolution as the encoder) learns the synthetic task,
    keeps attention off padding and is saved as a model that loads and answers raw strings."""
    import mlflow

    from attnlab.train import train

    tiny = [o for o in TINY if not o.startswith(("model.encoder.units", "model="))]
    result = train(compose(["model=cnn", *tiny, "model.encoder.filters=8", "model.encoder.kernel_sizes=[2,3]",
                            "train.epochs=4"]))
    (run,) = [r for r in runs(in_tmp) if r.info.run_id == result.run_id]
    assert run.data.params["model.encoder._name_"] == "cnn" and run.data.params["model.pooling._name_"] == "max"
    assert run.data.tags["attnlab.model"] == "cnn"
    assert result.metrics["test_accuracy"] > 0.75  # chance is 0.5
    assert result.metrics["attention_pad_mass"] == 0.0
    mlflow.set_tracking_uri(f"sqlite:///{in_tmp / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    out = model.predict(pd.DataFrame({"text": ["w1 w2 w3", "another short text"]}))
    assert len(out) == 2 and len(out["attention"][0]) == 3


def test_cnn_encoder_bad_kernel_sizes_one_line_error(tmp_path):
    proc = run_cli(["train", "model/encoder=cnn", "model.encoder.kernel_sizes=[]"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "model.encoder.kernel_sizes=[]" in proc.stderr and "Traceback" not in proc.stderr
