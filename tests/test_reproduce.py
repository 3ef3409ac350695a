"""`attnlab reproduce`: same config, same seed, same data -> the same metrics; changed data -> refusal."""

from __future__ import annotations

import pytest

from conftest import TINY, compose, runs, tiny


def _store(d) -> str:
    return f"sqlite:///{d / 'mlflow.db'}"


def test_reproduce_a_tiny_run_gives_identical_metrics(in_tmp, capsys):
    from attnlab.reproduce import main
    from attnlab.train import train

    result = train(compose([*TINY, "train.epochs=2", "tracking.log_model=false", "seed=3", "model.attention.scale=constant"]))
    original = {"id": result.run_id, "metrics": result.metrics}
    assert original["metrics"]["val_accuracy"] > 0.6  # a model that learned something, not a constant guess
    assert main([original["id"], "--tracking-uri", _store(in_tmp), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "all " in out and "metrics match to 1e-06" in out
    (orig,) = [r for r in runs(in_tmp) if r.info.run_id == original["id"]]
    (new,) = [r for r in runs(in_tmp) if r.data.tags.get("reproduces") == original["id"]]
    assert new.info.status == "FINISHED" and new.info.run_id != orig.info.run_id
    assert new.data.tags["attnlab.variant"] == orig.data.tags["attnlab.variant"]
    assert new.data.params["model.attention.scale"] == "constant" and new.data.params["seed"] == "3"
    keys = {k for k in orig.data.metrics if not k.startswith(("time_", "system/"))}
    assert {"test_accuracy", "val_loss", "loss", "attention_entropy"} <= keys == {
        k for k in new.data.metrics if not k.startswith(("time_", "system/"))}
    for k in keys:
        assert new.data.metrics[k] == pytest.approx(orig.data.metrics[k], abs=1e-6), k


def test_changed_data_file_makes_reproduce_refuse(in_tmp, capsys):
    from attnlab import cli
    from attnlab.train import train

    words = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "sad"]}
    for name, n in (("train.csv", 80), ("test.csv", 20)):
        rows = [f"{words[lab][i % 4]} movie {i},{lab}" for i in range(n) for lab in ("pos", "neg")]
        (in_tmp / name).write_text("text,label\n" + "\n".join(rows) + "\n")
    run_id = train(compose(tiny("data=files", "data.train_path=train.csv", "data.test_path=test.csv",
                                "train.epochs=1", "tracking.log_model=false"))).run_id
    (orig,) = runs(in_tmp)
    assert orig.data.tags["attnlab.data.sha256.test"]
    with (in_tmp / "test.csv").open("a") as f:
        f.write("good movie again,pos\n")
    capsys.readouterr()
    code = cli.main(["reproduce", run_id, "--tracking-uri", _store(in_tmp)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: data file ") and f"{in_tmp / 'test.csv'} (data.test_path) changed since run {run_id}" in err
    assert err.count("\n") == 1
    assert len(runs(in_tmp)) == 1  # refused before any run was started
    # Other user mistakes: one line each, before training.
    for args, msg in (([run_id, "model.nope=3"], "override 'model.nope=3'"),
                      ([run_id, "train.epochs"], "expected key=value"),
                      (["0" * 32], f"run '{'0' * 32}' not found")):
        assert cli.main(["reproduce", *args, "--tracking-uri", _store(in_tmp)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    assert len(runs(in_tmp)) == 1


def test_a_config_logged_before_embedding_init_and_max_norm_loads_with_the_values_it_had(in_tmp):
    """Runs logged before model.embedding_init / model.head.max_norm existed reproduce as they
    ran (Keras' uniform +-0.05 init, no max-norm); a tfidf_lr config gets no Keras keys."""
    import mlflow
    from omegaconf import OmegaConf

    from attnlab.reproduce import load_run_config
    from attnlab.run_spec import describe

    client = mlflow.MlflowClient(_store(in_tmp))
    exp = client.create_experiment("old")
    old = compose(TINY)
    yaml = OmegaConf.to_yaml(old).replace("  embedding_init: 0.05\n", "").replace("    max_norm: null\n", "")
    assert "embedding_init" not in yaml and "max_norm" not in yaml
    tfidf = OmegaConf.to_yaml(compose(["model=tfidf_lr"]))
    ids = []
    for text in (yaml, tfidf):
        run = client.create_run(exp)
        client.log_text(run.info.run_id, text, "config_composed.yaml")
        ids.append(run.info.run_id)
    cfg, name = load_run_config(client, ids[0])
    assert name == "config_composed.yaml"
    assert cfg.model.embedding_init == 0.05 and cfg.model.head.max_norm is None
    assert describe(cfg, []).config["model"] == describe(old, []).config["model"]
    cfg, _ = load_run_config(client, ids[1])
    assert "head" not in cfg.model and "embedding_init" not in cfg.model
