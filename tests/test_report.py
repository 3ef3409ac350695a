"""`attnlab report`: statistics checked against scipy on constructed runs; presets; outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from conftest import TINY, compose, run_cli

ABL = "toy"
SEEDS = list(range(8))
# Reference values per seed, and per-seed differences of two variants from it:
# "better" is higher in every seed (significant); "same" differs by a symmetric zero-mean
# amount (not significant).
REF = np.array([0.70, 0.72, 0.69, 0.71, 0.73, 0.70, 0.68, 0.72])
BETTER_DIFF = np.array([0.030, 0.045, 0.025, 0.050, 0.035, 0.040, 0.028, 0.047])
SAME_DIFF = np.array([0.010, -0.012, 0.004, -0.006, 0.011, -0.009, 0.003, -0.001])


def _log_runs(uri: str, experiment: str = "ablation-toy", data: str = "synthetic", extra_tags=None):
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    values = {"arm=ref": REF, "arm=better": REF + BETTER_DIFF, "arm=same": REF + SAME_DIFF}
    ids = {}
    for variant, vals in values.items():
        for seed, v in zip(SEEDS, vals):
            run = client.create_run(exp_id, run_name=f"{variant},seed={seed}", tags={
                "attnlab.ablation": ABL, "attnlab.variant": variant, "attnlab.seed": str(seed),
                "attnlab.data": data, **(extra_tags or {})})
            client.log_batch(run.info.run_id, params=[Param("ablation.reference", "arm=ref")], metrics=[
                Metric("test_accuracy", float(v), 0, 0), Metric("val_accuracy", float(v) - 0.01, 0, 0),
                Metric("time_fit", 1.0, 0, 0)])
            client.set_terminated(run.info.run_id, "FINISHED")
            ids[(variant, seed)] = run.info.run_id
    return client, exp_id, ids


@pytest.fixture(scope="module")
def _empty_store(tmp_path_factory):
    """One migrated, empty SQLite store (creating one costs seconds), copied for each test."""
    import mlflow

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, _empty_store):
    import shutil

    shutil.copy(_empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_statistics_match_scipy(store):
    from attnlab.report import build_report, collect_runs
    from attnlab.tracking import client as client_for

    _log_runs(store)
    df = collect_runs(client_for(store), ABL)
    assert len(df) == 24
    rep = build_report(df, ABL, ["test_accuracy"])
    assert rep.reference == "arm=ref"  # read from the runs' logged ablation.reference
    s = rep.summary.set_index("variant")
    for variant, vals in {"arm=ref": REF, "arm=better": REF + BETTER_DIFF, "arm=same": REF + SAME_DIFF}.items():
        row = s.loc[variant]
        lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=vals.mean(), scale=stats.sem(vals))
        assert row["n"] == 8
        assert row["mean"] == pytest.approx(vals.mean(), abs=1e-12)
        assert row["std"] == pytest.approx(vals.std(ddof=1), abs=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    assert bool(s.loc["arm=ref", "is_reference"]) and not bool(s.loc["arm=better", "is_reference"])

    c = rep.comparisons.set_index("variant")
    assert set(c.index) == {"arm=better", "arm=same"} and set(c["reference"]) == {"arm=ref"}
    for variant, diff in {"arm=better": BETTER_DIFF, "arm=same": SAME_DIFF}.items():
        row = c.loc[variant]
        t = stats.ttest_rel(REF + diff, REF)
        w = stats.wilcoxon(REF + diff, REF)
        assert row["n_pairs"] == 8
        assert row["mean_diff"] == pytest.approx(diff.mean(), abs=1e-12)
        assert row["t_p"] == pytest.approx(t.pvalue, rel=1e-9)
        assert row["wilcoxon_p"] == pytest.approx(w.pvalue, rel=1e-9)
        assert row["d_z"] == pytest.approx(diff.mean() / diff.std(ddof=1), rel=1e-9)
    assert c.loc["arm=better", "t_p"] < 0.001 and c.loc["arm=better", "significant"]
    assert c.loc["arm=better", "verdict"].startswith("significant at 0.05")
    assert c.loc["arm=same", "t_p"] > 0.5 and not c.loc["arm=same", "significant"]
    assert c.loc["arm=same", "verdict"].startswith("not significant at 0.05")


def test_report_cli_writes_files_logs_run_and_ignores_it_next_time(store, tmp_path, capsys):
    import mlflow

    from attnlab.report import main

    client, exp_id, _ = _log_runs(store)
    out = tmp_path / "out"
    assert main([ABL, "--tracking-uri", store, "--out", str(out), "--metric", "test_accuracy"]) == 0
    text = capsys.readouterr().out
    assert "| **arm=ref** (ref) | 8 |" in text
    assert "`arm=same` vs `arm=ref` on test_accuracy" in text and "not significant at 0.05" in text
    assert "`arm=better` is significantly higher than `arm=ref`" in text
    files = {p.name for p in out.iterdir()}
    assert files == {"report.md", "report.csv", "comparisons.csv", "report.png"}
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import pandas as pd

    csv = pd.read_csv(out / "report.csv")
    assert len(csv) == 3 and set(csv["variant"]) == {"arm=ref", "arm=better", "arm=same"}
    reports = client.search_runs([exp_id], "tags.\"attnlab.report\" = 'toy'")
    assert len(reports) == 1 and reports[0].info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(reports[0].info.run_id)}
    assert logged == files
    # A second report into the same folder would replace these files: refused before any work,
    # unless --force (issue 18). The report run is not an ablation run: it still counts 24 runs.
    from attnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="would replace comparisons.csv, report.csv, report.md, report.png"):
        main([ABL, "--tracking-uri", store, "--out", str(out), "--no-log"])
    assert main([ABL, "--tracking-uri", store, "--out", str(out), "--no-log", "--force"]) == 0
    assert "runs: 24 FINISHED" in capsys.readouterr().out
    assert mlflow  # imported for the client


def test_duplicates_keep_latest_and_reproductions_and_other_runs_are_left_out(store):
    from attnlab.report import build_report, collect_runs
    from attnlab.tracking import client as client_for

    client, exp_id, ids = _log_runs(store)
    # A later re-run of (arm=better, seed 0) with a different value replaces the first.
    run = client.create_run(exp_id, tags={"attnlab.ablation": ABL, "attnlab.variant": "arm=better",
                                          "attnlab.seed": "0", "attnlab.data": "synthetic"})
    client.log_metric(run.info.run_id, "test_accuracy", 0.99)
    client.set_terminated(run.info.run_id, "FINISHED")
    # Neither a reproduction, nor a FAILED run, nor another ablation counts.
    for tags, status in (({"reproduces": ids[("arm=ref", 0)]}, "FINISHED"), ({}, "FAILED")):
        r = client.create_run(exp_id, tags={"attnlab.ablation": ABL, "attnlab.variant": "arm=ref",
                                            "attnlab.seed": "0", "attnlab.data": "synthetic", **tags})
        client.log_metric(r.info.run_id, "test_accuracy", 0.0)
        client.set_terminated(r.info.run_id, status)
    r = client.create_run(exp_id, tags={"attnlab.ablation": "other", "attnlab.variant": "arm=ref"})
    client.set_terminated(r.info.run_id, "FINISHED")
    df = collect_runs(client, ABL)
    assert len(df) == 24 and df.attrs["n_duplicates"] == 1
    s = build_report(df, ABL, ["test_accuracy"]).summary.set_index("variant")
    assert s.loc["arm=better", "mean"] == pytest.approx(np.r_[0.99, (REF + BETTER_DIFF)[1:]].mean())
    assert s.loc["arm=ref", "mean"] == pytest.approx(REF.mean())


def test_runs_that_did_not_finish_are_named_in_the_report_not_dropped_silently(store, tmp_path, capsys):
    from attnlab.errors import AttnlabError
    from attnlab.report import collect_runs, main
    from attnlab.tracking import ERROR_TAG, client as client_for

    client, exp_id, _ = _log_runs(store)
    tags = {"attnlab.ablation": ABL, "attnlab.data": "synthetic"}
    # arm=same seed 8 failed and was never run again; arm=ref seed 0 failed once, then finished (above).
    lost = client.create_run(exp_id, tags={**tags, "attnlab.variant": "arm=same", "attnlab.seed": "8",
                                           ERROR_TAG: "FloatingPointError: loss is nan\ntraceback ..."})
    client.set_terminated(lost.info.run_id, "FAILED")
    rerun = client.create_run(exp_id, tags={**tags, "attnlab.variant": "arm=ref", "attnlab.seed": "0"})
    client.set_terminated(rerun.info.run_id, "KILLED")
    df = collect_runs(client_for(store), ABL)
    assert len(df) == 24
    assert df.attrs["unfinished"] == [f"arm=same seed 8 ended FAILED: FloatingPointError: loss is nan (run {lost.info.run_id})"]
    assert main([ABL, "--tracking-uri", store, "--out", str(tmp_path / "out"), "--metric", "test_accuracy", "--no-log"]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "- note: left out, did not finish: arm=same seed 8 ended FAILED: FloatingPointError: loss is nan" in md
    assert "arm=ref seed 0 ended" not in md
    # An ablation whose every run failed says so instead of only "no FINISHED runs".
    bad = client.create_run(exp_id, tags={"attnlab.ablation": "broken", "attnlab.variant": "arm=ref"})
    client.set_terminated(bad.info.run_id, "FAILED")
    with pytest.raises(AttnlabError, match=r"no FINISHED runs tagged attnlab.ablation='broken' .* \(1 FAILED\)"):
        collect_runs(client_for(store), "broken")


def test_user_errors_are_one_line(store, tmp_path, capsys):
    from attnlab import cli

    _log_runs(store)
    _log_runs(store, data="mr")
    capsys.readouterr()  # MLflow's own store-creation log lines
    cases = [
        ([ABL, "--data", "synthetic", "--reference", "arm=nope"], "unknown reference variant 'arm=nope'"),
        ([ABL, "--data", "synthetic", "--metric", "f1_nope"], "metric 'f1_nope' is in none of the 24 runs"),
        (["nothing"], "no FINISHED runs tagged attnlab.ablation='nothing'"),
        ([ABL], "use several datasets (mr, synthetic): pick one with --data"),
        ([ABL, "--data", "trec"], "no FINISHED runs of ablation 'toy' on data='trec'"),
    ]
    for args, msg in cases:
        code = cli.main(["report", *args, "--tracking-uri", store, "--out", str(tmp_path / "o"), "--no-log"])
        err = capsys.readouterr().err
        assert code == 2, args
        assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    code = cli.main(["report", ABL, "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    assert code == 2 and "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_reference_is_substituted_per_grid_cell():
    from attnlab.errors import AttnlabError
    from attnlab.report import reference_pairs

    variants = [f"scale={s},units={u}" for s in ("constant", "sqrt_dk", "none") for u in (32, 512)]
    pairs = reference_pairs(variants, "scale=sqrt_dk")
    assert pairs["scale=constant,units=32"] == "scale=sqrt_dk,units=32"
    assert pairs["scale=none,units=512"] == "scale=sqrt_dk,units=512"
    assert pairs["scale=sqrt_dk,units=32"] is None  # a reference itself
    assert reference_pairs(["model=seed", "model=default"], "model=default") == {"model=seed": "model=default",
                                                                                 "model=default": None}
    with pytest.raises(AttnlabError, match="unknown reference variant 'scale=learned'"):
        reference_pairs(variants, "scale=learned")


def test_degenerate_pairs_get_a_note_not_a_misleading_test():
    from attnlab.report import paired_test, summarize

    one = paired_test([0.5], [0.4])
    assert one.significant is None and "need at least 2" in one.verdict and math.isnan(one.t_p)
    zero = paired_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert zero.significant is False and "all differences are 0" in zero.verdict
    const = paired_test([0.6, 0.7, 0.8, 0.9, 1.0, 1.1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert const.mean_diff == pytest.approx(0.1) and "every pair differs by exactly" in const.verdict
    small = paired_test([0.71, 0.75, 0.72, 0.74, 0.73], [0.70, 0.72, 0.69, 0.71, 0.73 - 0.005])
    assert "Wilcoxon cannot reach p<0.05 with 5 pairs" in small.verdict
    s = summarize([0.5])
    assert s.n == 1 and s.mean == 0.5 and math.isnan(s.ci_low)


def test_unit_seed_averages_folds_before_pairing(store):
    import mlflow

    from attnlab.report import build_report, collect_runs
    from attnlab.tracking import client as client_for

    client = mlflow.MlflowClient(store)
    exp_id = client.create_experiment("cv")
    rng = np.random.default_rng(0)
    vals = {}
    for variant in ("p=a", "p=b"):
        for seed in range(3):
            for fold in range(4):
                v = float(rng.uniform(0.6, 0.8))
                vals[(variant, seed, fold)] = v
                r = client.create_run(exp_id, tags={"attnlab.ablation": "cv", "attnlab.variant": variant,
                                                    "attnlab.seed": str(seed), "attnlab.fold": str(fold),
                                                    "attnlab.data": "mr"})
                client.log_metric(r.info.run_id, "test_accuracy", v)
                client.set_terminated(r.info.run_id, "FINISHED")
    df = collect_runs(client_for(store), "cv")
    by_run = build_report(df, "cv", ["test_accuracy"], reference="p=a", unit="run")
    by_seed = build_report(df, "cv", ["test_accuracy"], reference="p=a", unit="seed")
    assert by_run.comparisons["n_pairs"].iloc[0] == 12 and by_seed.comparisons["n_pairs"].iloc[0] == 3
    a = np.array([np.mean([vals[("p=a", s, f)] for f in range(4)]) for s in range(3)])
    b = np.array([np.mean([vals[("p=b", s, f)] for f in range(4)]) for s in range(3)])
    assert by_seed.comparisons["t_p"].iloc[0] == pytest.approx(stats.ttest_rel(b, a).pvalue, rel=1e-9)
    row = by_seed.summary.set_index("variant").loc["p=b"]
    assert row["n"] == 3 and row["mean"] == pytest.approx(b.mean())
    # A seed missing a fold is left out of unit=seed (its mean would be another quantity), with a note.
    partial = build_report(df[~((df["variant"] == "p=b") & (df["seed"] == 2) & (df["fold"] == 0))], "cv",
                           ["test_accuracy"], reference="p=a", unit="seed")
    assert partial.comparisons["n_pairs"].iloc[0] == 2
    assert partial.notes == ["test_accuracy: 1 (variant, seed) with fewer than 4 folds left out: p=b seed 2 (3 folds)"]


@pytest.mark.parametrize("name", ["scale", "mask", "pooling", "dim", "seed_layer", "baseline"])
def test_presets_compose_into_a_grid_of_five_seeds(name):
    from hydra import compose, initialize_config_dir

    from attnlab.config import config_dir, register_configs, to_plain
    from attnlab.report import parse_variant, reference_pairs
    from attnlab.run_spec import variant_items

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={name}", "data=trec"], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params)
    ablation = cfg.ablation
    assert ablation.name == name and cfg.tracking.experiment == f"ablation-{name}"
    assert params["seed"] in ("range(5)", "0,1,2,3,4")
    # A grid over the variant keys (baseline: the default model and model=tfidf_lr).
    assert set(params) == set(ablation.variant_keys) | {"seed"}
    # Every grid cell's variant tag is made of the variant keys only; the reference is one of them.
    import itertools

    grids = [[f"{k}={v}" for v in params[k].split(",")] if k in params else [f"{k}={cfg[k].name}"]
             for k in ablation.variant_keys]
    variants = []
    for combo in itertools.product(*grids):
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            c = to_plain(compose(config_name="config", overrides=[f"experiment={name}", "data=mr", "data.fold=3", *combo]))
        items = variant_items(c, [f"experiment={name}", "data=mr", "data.fold=3", *combo, "seed=2"])
        assert len(items) == len(ablation.variant_keys)
        variants.append(",".join(f"{k}={v}" for k, v in items))
    assert len(set(variants)) == len(variants) >= 2
    pairs = reference_pairs(variants, ablation.reference)
    assert sum(p is None for p in pairs.values()) == len(variants) // len(grids[0])
    assert all(parse_variant(v).items() >= parse_variant(ablation.reference).items() or p is not None
               for v, p in pairs.items())


def test_execution_settings_are_not_part_of_the_variant():
    """Runs of one variant launched with another thread count or verbosity group together."""
    from attnlab.config import to_plain
    from attnlab.run_spec import variant_items

    ov = ["experiment=pooling", "data=mr", "data.fold=1", "model/pooling=max", "train.threads=1",
          "train.verbose=2", "tracking.log_model=false"]
    assert variant_items(to_plain(compose(ov)), ov) == [("pool", "max")]
    ov = ["model.attention.scale=none", "train.threads=1"]
    assert dict(variant_items(to_plain(compose(ov)), ov)) == {"scale": "none", "pool": "mean"}


@pytest.mark.slow  # minutes: runs in `make test-long` (CI) and `make test-slow`
def test_preset_grid_launches_and_reports(tmp_path):
    """The real path: a command-line grid replaces the preset's values; report reads the runs."""
    proc = run_cli(["train", "-m", "experiment=pooling", *TINY, "train.epochs=1", "tracking.log_model=false",
                    "tracking.n_attention_examples=0", "model/pooling=mean,max", "seed=0"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from attnlab.report import build_report, collect_runs
    from attnlab.tracking import client as client_for

    df = collect_runs(client_for(f"sqlite:///{tmp_path / 'mlflow.db'}"), "pooling", experiment="ablation-pooling")
    fixed = ("model=default,units=16,embedding_dim=16,embedding_dropout=0.0,encoder_units=8,dropout=0.0,max_len=24,"
             "max_tokens=600,batch_size=32,epochs=1,lr=0.01")
    assert sorted(zip(df["variant"], df["seed"])) == [(f"pool={p},{fixed}", s) for p in ("max", "mean") for s in (0,)]
    rep = build_report(df, "pooling", ["test_accuracy"])
    assert rep.reference == "pool=mean"
    assert list(rep.comparisons["reference"]) == [f"pool=mean,{fixed}"] and rep.comparisons["n_pairs"].iloc[0] == 1


def test_power_analysis_matches_known_values_and_shows_in_the_report(store, tmp_path, capsys):
    """A paired t-test needs 10 pairs for 80 % power at d_z = 1 (alpha 0.05; Cohen's tables); the
    MDE is the effect at which the exact power is 0.8; every comparison prints both."""
    from attnlab.report import _power, detectable_effect, main, pairs_needed

    assert pairs_needed(1.0, 1.0) == 10 and pairs_needed(1.0, 0.5) == 34
    mde = detectable_effect(0.02, 8)
    assert _power(mde, 0.02, 8, 0.05) == pytest.approx(0.8, abs=1e-6)
    assert mde > detectable_effect(0.02, 30)  # more pairs, smaller detectable effect
    _log_runs(store)
    assert main([ABL, "--tracking-uri", store, "--out", str(tmp_path / "o"), "--metric", "test_accuracy",
                 "--no-log"]) == 0
    text = capsys.readouterr().out
    assert "MDE (80 % power) | pairs for 1 pt" in text
    assert "only differences of about" in text  # "not shown", in numbers, for the non-significant arm
