"""Replicate-averaged objectives (``hydra.sweeper.replicates``) and the inner folds they use.

- ``data.inner_folds`` / ``data.inner_fold``: K-fold CV inside the training part (no TensorFlow).
- Bad replicates: one line before any trial.
- A sweep with ``{seeds: [0, 1]}``: a trial's value is the mean of its replicate runs'
  ``val_accuracy``, a hopeless trial is pruned on the running mean after its first replicate,
  and resuming with other replicates is refused.
- Two workers on one PostgreSQL study (slow): no duplicate trials, every value a mean.
"""

from __future__ import annotations

import functools
import statistics

import numpy as np
import pytest

from conftest import SHARED_DATA, compose, run_cli
from test_sweeper import STUDY, _error_in_process, _popen, _prepare_mlflow, load_study, sweep_runs, write_preset

SEEDS_01 = "hydra.sweeper.replicates={seeds:[0,1]}"


# ---------------------------------------------------------------- inner folds (data)

def _load(*overrides: str):
    from attnlab import data
    from attnlab.config import to_plain

    cfg = to_plain(compose(list(overrides)))
    return data.load(cfg["data"], int(cfg["seed"]))


def _table(tmp_path, n: int = 90) -> str:
    """A TSV of n texts in 3 unbalanced classes (50 %, 30 %, 20 %)."""
    path = tmp_path / "t.tsv"
    labels = ["a"] * (n // 2) + ["b"] * (3 * n // 10) + ["c"] * (n - n // 2 - 3 * n // 10)
    path.write_text("text\tlabel\n" + "".join(f"text number {i}\t{y}\n" for i, y in enumerate(labels)))
    return str(path)


def _folds(k: int, *overrides: str) -> list:
    return [_load(*overrides, f"data.inner_folds={k}", f"data.inner_fold={i}") for i in range(k)]


def test_inner_folds_partition_the_training_part_stratified_never_test(tmp_path):
    """data=files with a carved test split: the 3 validation folds are disjoint, cover train+val
    of the plain run exactly, each is stratified, no fold touches test; the run seed does not
    move them, split_seed does."""
    files = ["data=files", f"data.train_path={_table(tmp_path)}", "data.test_fraction=0.2"]
    plain = _load(*files)
    training = set(plain.train.rows) | set(plain.val.rows)
    folds = _folds(3, *files)
    vals = [set(ds.val.rows) for ds in folds]
    assert all(not (a & b) for i, a in enumerate(vals) for b in vals[i + 1:])  # disjoint
    assert set().union(*vals) == training  # cover the training part
    for ds in folds:
        assert set(ds.train.rows) | set(ds.val.rows) == training and not set(ds.train.rows) & set(ds.val.rows)
        assert list(ds.test.rows) == list(plain.test.rows)  # test untouched
        assert not (set(ds.train.rows) | set(ds.val.rows)) & set(plain.test.rows)
        assert not set(ds.train.texts + ds.val.texts) & set(plain.test.texts)
        # stratified: each class's share of a validation fold is its share of the training part, +-1 row
        counts = np.bincount(ds.val.labels, minlength=3)
        whole = np.bincount(np.concatenate([plain.train.labels, plain.val.labels]), minlength=3)
        assert np.all(np.abs(counts - whole / 3) <= 1), (counts, whole)
        assert ds.info["inner_folds"] == 3 and ds.info["inner_fold"] in (0, 1, 2)
    same = _folds(3, *files, "seed=7")  # another run seed carves val differently: same folds
    assert [set(ds.val.rows) for ds in same] == vals
    other = _folds(3, *files, "data.split_seed=1")  # another split_seed: other folds (and test)
    assert [set(ds.val.rows) for ds in other] != vals


@pytest.mark.skipif(not (SHARED_DATA / "mr" / "mr.tsv").exists(), reason="needs ../shared/data/mr")
def test_inner_folds_nest_inside_the_outer_mr_fold():
    outer = _load("data=mr", "data.fold=2")
    training = set(outer.train.rows) | set(outer.val.rows)
    folds = _folds(3, "data=mr", "data.fold=2")
    assert set().union(*(set(ds.val.rows) for ds in folds)) == training
    assert sum(len(ds.val) for ds in folds) == len(training)
    for ds in folds:
        assert list(ds.test.rows) == list(outer.test.rows)
        assert not (set(ds.train.rows) | set(ds.val.rows)) & set(outer.test.rows)


def test_bad_inner_folds_name_the_key(tmp_path):
    from attnlab.errors import ConfigError

    for overrides, message in [
        (["data.inner_folds=1"], "data.inner_folds must be an integer >= 2, got 1"),
        (["data.inner_folds=3", "data.inner_fold=3"], "data.inner_fold must be an integer in 0..2 (data.inner_folds=3), got 3"),
    ]:
        with pytest.raises(ConfigError) as e:
            _load(*overrides)
        assert message in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- settings

def test_bad_replicates_one_line_error_before_any_trial(in_tmp, capsys):
    err = functools.partial(_error_in_process, capsys)
    assert err("hydra.sweeper.replicates={seeds:[]}") == "error: hydra.sweeper.replicates.seeds=[]: needs at least one seed"
    assert err("hydra.sweeper.replicates={seeds:[0,1,0]}") == (
        "error: hydra.sweeper.replicates.seeds=[0, 1, 0]: repeats seed 0")
    assert err("hydra.sweeper.replicates={seeds:[-1]}") == (
        "error: hydra.sweeper.replicates.seeds=[-1]: seed -1 is not in [0, 2**32)")
    assert err("hydra.sweeper.replicates={folds:1}") == (
        "error: hydra.sweeper.replicates.folds=1: must be >= 2 (K-fold cross-validation inside the training part)")
    assert err("hydra.sweeper.replicates={seeds:[0],folds:2}") == (
        "error: hydra.sweeper.replicates={'seeds': [0], 'folds': 2}: set one of seeds and folds, the other null "
        "(e.g. hydra.sweeper.replicates.folds=null)")
    assert err(SEEDS_01, "+hydra.sweeper.params={seed: {type: categorical, choices: [0, 1]}}") == (
        "error: hydra.sweeper.replicates.seeds=[0, 1]: seed is also searched (hydra.sweeper.params.seed); "
        "each replicate sets its own seed")
    # Hydra's typed node names the key and the bad value
    assert "hydra.sweeper.replicates.fold" in err("hydra.sweeper.replicates={fold:3}")
    assert "'three'" in err("hydra.sweeper.replicates={folds:three}")
    assert not (in_tmp / "optuna.db").exists() and not (in_tmp / "mlflow.db").exists()


def test_replicates_travel_in_the_trial_node():
    import dataclasses

    from hydra_plugins.attnlab_optuna_sweeper.search_space import override_value

    from attnlab.trial import TrialRef, replicate_values

    ref = TrialRef(study_name="s", storage="sqlite:////x.db", number=3, replicates={"seeds": [4, 0, 2]})
    assert TrialRef.from_node(compose([f"++trial={override_value(dataclasses.asdict(ref))}"]).trial) == ref
    assert replicate_values(ref.replicates) == [{"seed": 4}, {"seed": 0}, {"seed": 2}]
    assert replicate_values({"folds": 2}) == [{"data.inner_folds": 2, "data.inner_fold": 0},
                                              {"data.inner_folds": 2, "data.inner_fold": 1}]


# ---------------------------------------------------------------- a sweep

def _by_trial(children) -> dict[int, list]:
    out: dict[int, list] = {}
    for c in children:
        out.setdefault(int(c.data.tags["optuna.trial"]), []).append(c)
    return {k: sorted(v, key=lambda r: r.data.tags["attnlab.replicate"]) for k, v in out.items()}


def _check_means(study, children, seeds: list[int]) -> None:
    """Every COMPLETE trial: one run per seed, value = their val_accuracy mean to 1e-9, std recorded."""
    from optuna.trial import TrialState

    runs = _by_trial(children)
    for t in study.trials:
        if t.state != TrialState.COMPLETE:
            continue
        mine = runs[t.number]
        assert [r.data.tags["attnlab.replicate"] for r in mine] == [f"{i}/{len(seeds)}" for i in range(len(seeds))]
        assert [int(r.data.tags["attnlab.seed"]) for r in mine] == seeds
        assert [r.data.tags["attnlab.overrides"].split()[-1] for r in mine] == [f"seed={s}" for s in seeds]
        accs = [r.data.metrics["val_accuracy"] for r in mine]
        assert abs(t.value - statistics.fmean(accs)) < 1e-9, (t.value, accs)
        assert abs(t.user_attrs["attnlab.value_std"] - statistics.stdev(accs)) < 1e-9
        assert t.user_attrs["attnlab.replicate_run_ids"] == [r.info.run_id for r in mine]
        assert all(abs(r.data.metrics["trial_val_accuracy_mean"] - t.value) < 1e-9 for r in mine)
        assert t.intermediate_values == {i: pytest.approx(statistics.fmean(accs[: i + 1])) for i in range(len(seeds))}


@pytest.mark.slow  # over 20 s: make test-long (CI runs it)
def test_replicated_sweep_mean_pruning_and_resume(tmp_path, monkeypatch, capsys):
    """Grid over lr (0.01 first, then 1e-6) with seeds [0, 1]: trial 0's value is the mean of its
    two runs; trial 1 cannot learn and is pruned on its first replicate (one run, no second);
    resuming with other replicates, or none, is refused."""
    from optuna.trial import TrialState

    write_preset(tmp_path / "conf", "reps", "median", 2, grid_seed=1, epochs=2,
                 pruner_options="n_startup_trials: 1, n_warmup_steps: 0",
                 params="      train.learning_rate: {type: categorical, choices: [0.01, 1.0e-6]}\n")
    args = ["train", "-m", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "hparams_search=reps", SEEDS_01,
            "hydra.sweeper.plots=false"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(f"sqlite:///{tmp_path / 'optuna.db'}", "reps")
    client, parents, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [(t.params["train.learning_rate"], t.state) for t in study.trials] == [
        (0.01, TrialState.COMPLETE), (1e-6, TrialState.PRUNED)]
    _check_means(study, children, [0, 1])
    pruned = _by_trial(children)[1]
    assert len(pruned) == 1 and pruned[0].info.status == "FINISHED"  # its first replicate ran to the end
    assert study.trials[1].intermediate_values == {0: pytest.approx(pruned[0].data.metrics["val_accuracy"])}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert parents[0].data.metrics["best_value_std"] == pytest.approx(study.best_trial.user_attrs["attnlab.value_std"])

    monkeypatch.chdir(tmp_path)
    from attnlab import cli

    for other, shown in [("hydra.sweeper.replicates={seeds:[0,1,2]}", "{'seeds': [0, 1, 2]}"),
                         ("hydra.sweeper.replicates.seeds=null", "'<unset>'")]:
        capsys.readouterr()
        with pytest.raises(SystemExit):
            cli.main([*args, other])
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"error: study 'reps' was started with other fixed settings: hydra.sweeper.replicates="
                               f"{shown} (the study's: {{'seeds': [0, 1]}})"), line
    assert len(load_study(f"sqlite:///{tmp_path / 'optuna.db'}", "reps").trials) == 2  # nothing ran


# ---------------------------------------------------------------- PostgreSQL, two workers

@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_replicated_sweep_on_postgres(tmp_path, pg_databases):
    """The issue's check: seeds [0, 1], PostgreSQL, two workers; each trial's value equals the mean
    of its two replicate runs' val_accuracy to 1e-9, and no trial (or replicate) ran twice."""
    from optuna.trial import TrialState

    optuna_url, mlflow_uri = pg_databases
    _prepare_mlflow(mlflow_uri, tmp_path)
    args = ["hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={optuna_url}", f"tracking.uri={mlflow_uri}",
            "hydra.sweeper.poll_interval=0.5", "hydra.sweeper.pruner=null", "hydra.sweeper.plots=false",
            "tracking.log_model=false", SEEDS_01]
    procs = [_popen(tmp_path, args, tmp_path / f"worker{i}.log") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=1500) == 0, (tmp_path / f"worker{i}.log").read_text()[-3000:]
    study = load_study(optuna_url)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4 and all(t.state == TrialState.COMPLETE for t in finished)
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert all(t.user_attrs.get("attnlab.surplus") for t in study.trials if t.state == TrialState.FAIL)
    client, parents, children = sweep_runs(mlflow_uri)
    assert len(parents) == 1 and {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    pairs = [(int(c.data.tags["optuna.trial"]), c.data.tags["attnlab.replicate"]) for c in children]
    assert len(pairs) == len(set(pairs)) == 8  # two replicates per trial, none run twice
    assert sorted({n for n, _ in pairs}) == sorted(t.number for t in finished)
    _check_means(study, children, [0, 1])
    workers = {t.user_attrs["attnlab.sweeper_pid"] for t in finished}
    assert len(workers) == 2, "one worker ran every trial"
    assert study.user_attrs["attnlab.fixed_config"]["hydra.sweeper.replicates"] == {"seeds": [0, 1]}
    assert STUDY == study.study_name
