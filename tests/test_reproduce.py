"""`attnlab reproduce`: same config, same seed, same data -> the same metrics; changed data -> refusal."""

from __future__ import annotations

import pytest

from conftest import TINY, compose, runs


def _store(d) -> str:
    return f"sqlite:///{d / 'mlflow.db'}"


def test_reproduce_a_tiny_run_gives_identical_metrics(in_tmp, capsys):
    from attnlab.reproduce import main
    from attnlab.train import last_run, train

    train(compose([*TINY, "train.epochs=2", "tracking.log_model=false", "seed=3", "model.attention.scale=constant"]))
    original = last_run()
    assert original["metrics"]["val_accuracy"] > 0.6  # a model that learned something, not a constant guess
    assert main([original["id"], "--tracking-uri", _store(in_tmp), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "all " in out and "metrics match to 1e-06" in out
    (orig,) = [r for r in runs(in_tmp) if r.info.run_id == original["id"]]
    (new,) = [r for r in runs(in_tmp) if r.data.tags.get("reproduces") == original["id"]]
    assert new.info.status == "FINISHED" and new.info.run_id != orig.info.run_id
    assert new.data.tags["attnlab.variant"] == orig.data.tags["attnlab.variant"]
    assert new.data.params["model.attention.scale"] == "constant" and new.data.params["seed"] == "3"
    keys = {k for k in orig.data.metrics if not k.startswith("time_")}
    assert {"test_accuracy", "val_loss", "loss", "attention_entropy"} <= keys == {
        k for k in new.data.metrics if not k.startswith("time_")}
    for k in keys:
        assert new.data.metrics[k] == pytest.approx(orig.data.metrics[k], abs=1e-6), k


def test_changed_data_file_makes_reproduce_refuse(in_tmp, capsys):
    from attnlab import cli
    from attnlab.train import last_run, train

    words = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "sad"]}
    for name, n in (("train.csv", 80), ("test.csv", 20)):
        rows = [f"{words[lab][i % 4]} movie {i},{lab}" for i in range(n) for lab in ("pos", "neg")]
        (in_tmp / name).write_text("text,label\n" + "\n".join(rows) + "\n")
    train(compose([*TINY, "data=files", "data.train_path=train.csv", "data.test_path=test.csv", "train.epochs=1",
                   "tracking.log_model=false"]))
    run_id = last_run()["id"]
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
