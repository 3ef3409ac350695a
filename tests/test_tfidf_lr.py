"""`model=tfidf_lr`: the TF-IDF + logistic regression baseline as an ordinary attnlab run
(same data, splits, metric names), served as a pyfunc that `predict` and `register` accept."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, cli_main, compose, run_cli

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "trec" / "train.tsv").exists(), reason="TREC not in shared/data")

QUESTIONS = ["What city is the capital of France ?", "How many people live in Tokyo ?", "Who wrote Hamlet ?"]


@pytest.fixture(scope="module")
def trec_run():
    """`attnlab train model=tfidf_lr data=trec` (in-process, the CLI's own path) into a private store."""
    from attnlab import cli

    d = Path(tempfile.mkdtemp(prefix="attnlab_tfidf_"))
    uri = f"sqlite:///{d / 'mlflow.db'}"
    rc = cli.main(["--quiet", "train", "model=tfidf_lr", "data=trec", "tracking.experiment=tfidf",
                   f"tracking.uri='{uri}'", f"tracking.artifact_dir='{d / 'mlruns'}'"])
    assert rc == 0
    import mlflow

    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tfidf").experiment_id])
    yield uri, run
    shutil.rmtree(d, ignore_errors=True)


def test_trec_run_logs_the_keras_metric_names_and_no_attention(trec_run):
    _, run = trec_run
    m, params, tags = run.data.metrics, run.data.params, run.data.tags
    assert run.info.status == "FINISHED"
    assert {"val_accuracy", "val_macro_f1", "val_loss", "test_accuracy", "test_macro_f1", "best_val_accuracy"} <= set(m)
    # Six classes (the largest ~23 % of test): well above chance; the published TF-IDF + LR is 88.2.
    assert m["test_accuracy"] > 0.8 and m["val_accuracy"] > 0.75
    assert m["best_val_accuracy"] == m["val_accuracy"]
    assert not [k for k in m if k.startswith(("attention", "faith/"))]
    assert params["model.C"] == "30.0" and params["model.ngram_max"] == "2"
    assert not [k for k in params if k.startswith("train.")]  # ignored, and said so
    assert tags["attnlab.ignored_config"] == "train" and tags["attnlab.model"] == "tfidf_lr"
    assert tags["mlflow.runName"] == "model=tfidf_lr,data=trec,seed=0"


def test_pyfunc_loads_back_and_predicts_raw_text(trec_run):
    import mlflow

    from attnlab.tracking import uri_scope

    uri, run = trec_run
    with uri_scope(uri):
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    pred = model.predict(QUESTIONS)  # a plain list of raw strings
    assert list(pred["label"]) == ["LOC", "NUM", "HUM"]
    np.testing.assert_allclose([sum(p) for p in pred["probabilities"]], 1.0, atol=1e-9)
    assert pred["tokens"][2] == ["who", "wrote", "hamlet"]
    assert [len(a) for a in pred["attention"]] == [len(t) for t in pred["tokens"]]
    assert model.metadata.metadata["classes"] == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


def test_predict_cli_and_register_accept_it(trec_run, capsys, tmp_path):
    uri, run = trec_run
    rc, out, err = cli_main(["predict", "--model", f"runs:/{run.info.run_id}/model", "--tracking-uri", uri, "--json",
                         *QUESTIONS], capsys)
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in rows] == ["LOC", "NUM", "HUM"]
    assert rows[0]["top_tokens"][0][0] == "city" or rows[0]["top_tokens"][0][0] == "capital"
    rc, out, err = cli_main(["register", "--experiment", "tfidf", "--name", "tfidf-reg", "--tracking-uri", uri], capsys)
    assert rc == 0, err
    assert f"registered tfidf-reg version 1 (run {run.info.run_id}" in out
    rc, out, err = cli_main(["predict", "--model", "models:/tfidf-reg@champion", "--tracking-uri", uri, QUESTIONS[2]], capsys)
    assert rc == 0 and "label: HUM" in out, err
    # No attention maps to draw: one line, non-zero exit.
    proc = run_cli(["predict", "--model", "models:/tfidf-reg@champion", "--tracking-uri", uri, "--png",
                    str(tmp_path / "maps"), QUESTIONS[0]], cwd=tmp_path)
    assert proc.returncode != 0 and "--png" in proc.stderr and "no attention maps" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("n_classes", [2, 3])
def test_served_arrays_score_exactly_like_the_fitted_pipeline(n_classes, tmp_path):
    """Binary (one coefficient row) and multinomial: the pickle-free copy equals scikit-learn."""
    from attnlab.learners.tfidf import TfidfLogisticRegression
    from attnlab.serving.tfidf import TfidfScorer

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    labels = rng.integers(0, n_classes, 300)
    texts = [" ".join(rng.choice(words[c * 10 : c * 10 + 15], 6)) for c in labels]
    learner = TfidfLogisticRegression(name="t", ngram_max=2, C=3.0, sublinear_tf=True, min_df=1, max_features=None,
                                      max_iter=500, token_pattern=r"(?u)\b\w\w+\b")
    pipe = learner.fit(texts, labels, seed=0)
    files = TfidfScorer.from_pipeline(pipe).save(tmp_path)
    scorer = TfidfScorer.load({k: str(v) for k, v in files.items()})
    new = ["w1 w2 w3 w1", "w12 w13 unknownword", "", "w25 w26 w27"]
    probs, tokens, shares = scorer.explain(new)
    np.testing.assert_allclose(probs, pipe.predict_proba(new), rtol=0, atol=1e-12)
    assert tokens[1] == ["w12", "w13", "unknownword"] and shares[1][2] == 0.0 and tokens[2] == []
    for s in shares:
        assert s.sum() == pytest.approx(1.0) or s.sum() == 0.0


@pytest.mark.parametrize("override, message", [
    ("model.C=-1", "model.C=-1"),
    ("model.ngram_max=0", "model.ngram_max=0"),
    ("model.token_pattern='('", "model.token_pattern='('"),
])
def test_bad_value_is_one_line_naming_the_key(override, message):
    from attnlab.errors import ConfigError
    from attnlab.run_spec import describe

    with pytest.raises(ConfigError) as e:
        describe(compose(["model=tfidf_lr", override]), [])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_baseline_preset_runs_it_beside_the_default_and_report_compares_them(tmp_path):
    """`experiment=baseline` sweeps model=small_transformer,tfidf_lr; `attnlab report baseline` pairs them."""
    proc = run_cli(["train", "-m", "experiment=baseline", "data.task=keywords", "data.n_train=400", "data.n_val=100", "data.n_test=100",
                    "data.vocab_size=100", "train.epochs=1", "tracking.log_model=false",
                    "tracking.n_attention_examples=0", "seed=0"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from attnlab.report import build_report, collect_runs
    from attnlab.tracking import client as client_for

    df = collect_runs(client_for(f"sqlite:///{tmp_path / 'mlflow.db'}"), "baseline", experiment="ablation-baseline")
    assert sorted(df["variant"]) == ["model=small_transformer,epochs=1", "model=tfidf_lr,epochs=1"]
    rep = build_report(df, "baseline", ["test_accuracy"])
    assert rep.reference == "model=small_transformer"
    assert list(rep.comparisons["variant"]) == ["model=tfidf_lr,epochs=1"]
    tfidf = df[df["variant"].str.startswith("model=tfidf_lr")]
    assert float(tfidf["metric.test_accuracy"].iloc[0]) > 0.6  # synthetic keywords: far above chance (0.5)
