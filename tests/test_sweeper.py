"""The attnlab Optuna sweeper: discovery, validation, sweep + resume, pruning, PostgreSQL workers, crash.

Trials are tiny (synthetic data, TINY-sized model, 1-3 epochs); sweeps run through the real
CLI in temporary directories, as a user launches them.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ATTNLAB, dead_cause, run_cli

STUDY = "attnlab-synthetic_small"
# On top of the synthetic_small preset: fewer examples, one epoch, no heatmaps (~5 s CPU a trial).
FAST = ["data.n_train=200", "data.n_val=100", "data.n_test=50", "train.epochs=1", "tracking.n_attention_examples=0"]


def sweep(cwd: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(["train", "-m", "hparams_search=synthetic_small", *FAST, *overrides], cwd=cwd, env=env)


def load_study(url: str, name: str = STUDY):
    import optuna

    return optuna.load_study(study_name=name, storage=url)


def sweep_runs(uri: str):
    """(parents, children) of the `attnlab` experiment in an MLflow store."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("attnlab")
    rs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    parents = [r for r in rs if r.data.tags.get("attnlab.sweep.role") == "parent"]
    children = [r for r in rs if r.data.tags.get("attnlab.sweep.role") == "child"]
    return client, parents, children


LR_AND_SEED = """\
      # 1e-6 cannot learn in 2 epochs; 1e-2 can: the pruner should stop the former.
      train.learning_rate: {type: categorical, choices: [0.01, 1.0e-6]}
      seed: {type: categorical, choices: [0, 1]}
"""


def write_preset(conf_dir: Path, name: str, pruner: str, n_trials: int, extra: str = "", params: str = LR_AND_SEED,
                 grid_seed: int = 0, epochs: int = 3, pruner_options: str = "") -> None:
    """A preset in an extra config dir (hydra.searchpath), like a user's own search: the grid
    sampler (seeded) and ``pruner`` (a hydra/sweeper/pruner choice) with ``pruner_options``."""
    (conf_dir / "hparams_search").mkdir(parents=True, exist_ok=True)
    (conf_dir / "hparams_search" / f"{name}.yaml").write_text(f"""# @package _global_
defaults:
  - override /hydra/sweeper: attnlab_optuna
  - override /hydra/sweeper/sampler: grid
  - override /hydra/sweeper/pruner: {pruner}
  - override /model: default
model: {{max_len: 24, max_tokens: 600, embedding_dim: 16, embedding_dropout: 0.0,
        encoder: {{units: 8}}, attention: {{units: 16}}, head: {{dropout: 0.0}}}}
data: {{task: keywords, n_train: 200, n_val: 100, n_test: 50, vocab_size: 100, min_len: 5, max_len: 20}}
train: {{epochs: {epochs}, batch_size: 32, early_stopping: {{patience: 10}}}}
tracking: {{n_attention_examples: 0, log_model: false}}
hydra:
  sweeper:
    n_trials: {n_trials}
    study_name: {name}
    sampler: {{seed: {grid_seed}}}
    pruner: {{{pruner_options}}}
    params:
{params}{extra}""")


# ---------------------------------------------------------------- discovery and validation

def test_hydra_discovers_the_sweeper_from_this_environment():
    """Hydra's plugin scan (namespace package hydra_plugins) finds and instantiates our sweeper."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper
    from hydra.utils import instantiate
    from hydra_plugins.attnlab_optuna_sweeper.sweeper import AttnlabOptunaSweeper

    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from attnlab.config import config_dir, register_configs

    # Hydra's scan loads plugin modules on its own (outside sys.modules): compare names.
    found = {f"{c.__module__}.{c.__qualname__}" for c in Plugins.instance().discover(Sweeper)}
    assert "hydra_plugins.attnlab_optuna_sweeper.sweeper.AttnlabOptunaSweeper" in found
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hcompose(config_name="config", overrides=["hparams_search=synthetic_small"], return_hydra_config=True)
        plain = hcompose(config_name="config", overrides=["hydra/sweeper=attnlab_optuna"], return_hydra_config=True)
        basic = hcompose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "attnlab_optuna"
    sweeper = instantiate(cfg.hydra.sweeper)
    name = f"{AttnlabOptunaSweeper.__module__}.{AttnlabOptunaSweeper.__qualname__}"
    assert f"{type(sweeper).__module__}.{type(sweeper).__qualname__}" == name
    assert Path(type(sweeper).__init__.__code__.co_filename).resolve().is_relative_to(Path(__file__).parents[1] / "src")
    assert sweeper.impl.cfg["n_trials"] == 6 and "train.learning_rate" in sweeper.impl.cfg["params"]
    assert sweeper.impl.cfg["sampler"]["_target_"] == "optuna.samplers.TPESampler"  # a config, built per trial
    assert type(instantiate(plain.hydra.sweeper)).__qualname__ == "AttnlabOptunaSweeper"
    assert basic.hydra.sweeper._target_ == "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@pytest.mark.parametrize("spec, message", [
    # Optuna's own checks, as one line naming the key and the bad spec
    ({"x": {"type": "float", "low": 0.1, "high": 0.01}},
     "hydra.sweeper.params.x={'type': 'float', 'low': 0.1, 'high': 0.01}: `low <= high` must hold"),
    ({"x": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "`low > 0` must hold for `log=True`"),
    ({"x": {"type": "int", "low": 1, "high": 8, "step": 0}}, "hydra.sweeper.params.x={'type': 'int', 'low': 1, 'high': 8, "
                                                             "'step': 0}: `step > 0` must hold, but got step=0"),
    ({"x": {"type": "categorical", "choices": []}}, "The `choices` must contain one or more elements"),
    ({"x": {"type": "float", "low": 0, "high": 1, "choices": [1]}}, "unexpected keyword argument 'choices'"),
    ({"x": {"type": "float", "low": 0}}, "missing 1 required positional argument: 'high'"),
    # what Optuna does not check (it would truncate 1.5, and only warn about a list choice)
    ({"x": {"type": "normal", "low": 0, "high": 1}}, "hydra.sweeper.params.x={'type': 'normal', 'low': 0, 'high': 1}: "
                                                     "unknown distribution type 'normal'"),
    ({"x": {"type": "int", "low": 1.5, "high": 8}}, "hydra.sweeper.params.x.low=1.5: an int distribution needs integer"),
    ({"x": {"type": "categorical", "choices": [[8, 16]]}}, "hydra.sweeper.params.x.choices: [8, 16] is not a scalar"),
    ({}, "hydra.sweeper.params is empty"),
])
def test_bad_search_space_entries_name_the_key(spec, message):
    from hydra_plugins.attnlab_optuna_sweeper.search_space import parse_params

    from attnlab.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_params(spec)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_samplers_and_pruners_are_built_from_target_nodes_and_checked_by_optuna():
    import optuna
    from hydra_plugins.attnlab_optuna_sweeper.search_space import make_pruner, make_sampler, parse_params

    from attnlab.errors import ConfigError

    d = parse_params({"a": {"type": "int", "low": 1, "high": 3}, "b": {"type": "categorical", "choices": ["x", "y"]}})
    tpe = {"_target_": "optuna.samplers.TPESampler", "seed": 1, "n_startup_trials": 3}
    assert isinstance(make_sampler(tpe, d), optuna.samplers.TPESampler)

    def first_draw(sampler) -> float:
        return optuna.create_study(sampler=sampler).ask().suggest_float("f", 0.0, 1.0)

    # Parallel trials draw apart: the seed is offset by the trial number.
    draws = [first_draw(make_sampler(tpe, d, k)) for k in (0, 0, 1)]
    assert draws[0] == draws[1] != draws[2]
    assert isinstance(make_sampler({"_target_": "optuna.samplers.RandomSampler", "seed": 1}, d), optuna.samplers.RandomSampler)
    grid = make_sampler({"_target_": "optuna.samplers.GridSampler", "seed": 1}, d)
    assert isinstance(grid, optuna.samplers.GridSampler) and len(grid._all_grids) == 6
    # A trial's grid_id must name the same point whatever the trial count or worker (no offset).
    assert make_sampler({"_target_": "optuna.samplers.GridSampler", "seed": 1}, d, 5)._all_grids == grid._all_grids
    assert isinstance(make_pruner({"_target_": "optuna.pruners.SuccessiveHalvingPruner", "reduction_factor": 2}),
                      optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)  # hydra.sweeper.pruner=null: no pruning
    for bad, msg in [
        (lambda: make_sampler({**tpe, "n_startup_trial": 3}, d), "unexpected keyword argument 'n_startup_trial'"),
        (lambda: make_sampler({"_target_": "optuna.samplers.Nope"}, d), "Error loading 'optuna.samplers.Nope'"),
        (lambda: make_pruner({"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": -1}),
         "hydra.sweeper.pruner (optuna.pruners.MedianPruner): Number of startup trials cannot be negative, "
         "but got n_startup_trials=-1"),
        (lambda: make_sampler({"_target_": "optuna.samplers.GridSampler"}, parse_params({"f": {"type": "float", "low": 0, "high": 1}})),
         "hydra.sweeper.params.f=FloatDistribution(high=1.0, log=False, low=0.0, step=None): the grid sampler needs")]:
        with pytest.raises(ConfigError) as e:
            bad()
        assert msg in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("group, conf", [("sampler", "TPESamplerConf"), ("sampler", "RandomSamplerConf"),
                                         ("sampler", "GridSamplerConf"), ("pruner", "MedianPrunerConf"),
                                         ("pruner", "SuccessiveHalvingPrunerConf"), ("pruner", "NopPrunerConf")])
def test_typed_sampler_and_pruner_schemas_mirror_optuna(group, conf):
    """Every schema key is a constructor argument with Optuna's own default (samplers' seed: 0)."""
    import inspect

    from hydra.utils import get_class
    from hydra_plugins.attnlab_optuna_sweeper import config as sc

    node = getattr(sc, conf)()
    params = inspect.signature(get_class(node._target_).__init__).parameters
    for key, value in vars(node).items():
        if key == "_target_":
            continue
        assert key in params, f"{conf}.{key} is not an argument of {node._target_}"
        assert value == (0 if key == "seed" else params[key].default), f"{conf}.{key}={value!r}"


def test_trial_node_survives_override_quoting():
    """The sweeper hands a job its trial as one `++trial={...}` override: any storage URL (a
    password with quotes, backslashes, `${`) reads back exactly in the job's config."""
    from hydra_plugins.attnlab_optuna_sweeper.search_space import override_value

    from attnlab.trial import TrialRef
    from conftest import compose

    url = "postgresql://u:p%40s'w\\d${x}\\@db.example:5432/attnlab_sweeps?sslmode=require&a=b,c"
    ref = TrialRef(study_name="my study: 1", storage=url, number=7, parent_run_id="0123abc",
                   pruner={"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 2})
    import dataclasses

    cfg = compose([f"++trial={override_value(dataclasses.asdict(ref))}"])
    assert TrialRef.from_node(cfg.trial) == ref


def _last_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert not any(line.startswith(("Traceback", "[")) for line in lines), proc.stderr[-2000:]
    return lines[-1]


def _error_in_process(capsys, *overrides: str) -> str:
    """`attnlab train -m hparams_search=synthetic_small ...` in this process (a CLI start costs
    seconds): it must exit 2 with one `error:` line."""
    from attnlab import cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "-m", "hparams_search=synthetic_small", *FAST, *overrides])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err and err[-1].startswith("error: "), err
    assert not any(line.startswith("Traceback") for line in err), err
    return err[-1]


def test_cli_bad_search_space_one_line_error_before_any_trial(tmp_path):
    write_preset(tmp_path / "conf", "bad", "none", 2, extra="      train.epochs: {type: int, low: 5, high: 2}\n")
    proc = run_cli(["train", "-m", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "hparams_search=bad"], cwd=tmp_path)
    assert _last_error(proc) == ("error: hydra.sweeper.params.train.epochs={'type': 'int', 'low': 5, 'high': 2}: "
                                 "`low <= high` must hold, but got (low=5, high=2).")
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "multirun").exists() or not any((tmp_path / "multirun").rglob("*.log"))


def test_bad_sweep_settings_one_line_error_before_any_trial(in_tmp, capsys):
    err = functools.partial(_error_in_process, capsys)
    # An unknown sampler, a typo in a sampler's option: Hydra's typed groups, or Optuna, name them.
    assert "available options in 'hydra/sweeper/sampler': grid; random; tpe" in err("hydra/sweeper/sampler=bogus")
    assert "Could not override 'hydra.sweeper.sampler.n_startup_trial'" in err("hydra.sweeper.sampler.n_startup_trial=3")
    assert err("+hydra.sweeper.sampler.n_startup_trial=3") == (  # added anyway: Optuna refuses it
        "error: hydra.sweeper.sampler (optuna.samplers.TPESampler): TPESampler.__init__() got an unexpected keyword "
        "argument 'n_startup_trial'")
    # A key not in the config, a choice the schema refuses.
    assert "hydra.sweeper.params.model.atention.units: no such config key" in err(
        "+hydra.sweeper.params={model.atention.units: {type: categorical, choices: [8]}}")
    assert err("+hydra.sweeper.params={model.attention.mask: {type: categorical, choices: [keys, sideways]}}").startswith(
        "error: hydra.sweeper.params.model.attention.mask: value 'sideways' does not compose")
    # Several trials in flight need one process per trial (TensorFlow), not the in-process launcher.
    assert err("hydra.sweeper.n_jobs=2") == (
        "error: hydra.sweeper.n_jobs=2: hydra/launcher=basic runs trials in this process (one TensorFlow per "
        "process); add hydra/launcher=submitit_local (or submitit_slurm on a cluster), or set hydra.sweeper.n_jobs=1")
    # Jobs on other hosts cannot open a file on this one: the study, then the MLflow store.
    assert err("hydra/launcher=submitit_slurm") == (
        f"error: hydra.sweeper.storage=sqlite:///{in_tmp}/optuna.db is a file on this host, and "
        f"hydra/launcher=submitit_slurm runs jobs on other hosts: use PostgreSQL, e.g. "
        f"hydra.sweeper.storage=postgresql://USER@DBHOST:5432/attnlab_sweeps")
    line = err("hydra/launcher=submitit_slurm", "hydra.sweeper.storage=postgresql://u@db:5432/s")
    assert line.startswith(f"error: tracking.uri=sqlite:///{in_tmp}/mlflow.db is a file on this host") and (
        "use PostgreSQL or an MLflow server, e.g. tracking.uri=postgresql://USER@DBHOST:5432/attnlab_mlflow or "
        "tracking.uri=http://MLFLOW_HOST:5000") in line, line
    assert not (in_tmp / "optuna.db").exists() and not (in_tmp / "mlflow.db").exists()


# ---------------------------------------------------------------- a sweep, resumed

@pytest.mark.slow  # minutes: runs in `make test-long` (CI) and `make test-slow`
def test_sweep_resume_to_six_trials_one_parent(tmp_path, monkeypatch, capsys):
    """n_trials=3, then the issue's command with n_trials=6: the same study and parent continue.
    Resuming with other fixed settings (train.epochs) is refused unless forced."""
    from optuna.trial import TrialState

    from attnlab import cli

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    p1 = sweep(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.plots=false")
    assert p1.returncode == 0, p1.stderr[-3000:]
    first = {t.number: (t.params, t.value, t.state) for t in load_study(url).trials}
    assert len(first) == 3
    _, parents, children = sweep_runs(uri)
    assert len(parents) == 1 and len(children) == 3
    parent_id = parents[0].info.run_id

    monkeypatch.chdir(tmp_path)
    assert _error_in_process(capsys, "hydra.sweeper.n_trials=6", "train.epochs=2") == (
        f"error: study '{STUDY}' was started with other fixed settings: train.epochs=2 (the study's: 1); run it with "
        f"its own, or start a new study (hydra.sweeper.study_name=<new name>), or mix them with hydra.sweeper.force=true")
    assert cli.main(["train", "-m", "hparams_search=synthetic_small", *FAST, "train.epochs=2", "hydra.sweeper.n_trials=3",
                     "hydra.sweeper.force=true", "hydra.sweeper.plots=false"]) == 0  # forced; the study is full anyway
    study = load_study(url)
    assert len(study.trials) == 3 and study.user_attrs["attnlab.fixed_config"]["train.epochs"] == 1  # the first stays

    p2 = sweep(tmp_path, "hydra.sweeper.n_trials=6")
    assert p2.returncode == 0, p2.stderr[-3000:]
    study = load_study(url)
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert {t.number: (t.params, t.value, t.state) for t in trials[:3]} == first  # nothing re-run or overwritten
    assert len({tuple(sorted(t.params.items())) for t in trials}) > 1  # the sampler explores

    client, parents, children = sweep_runs(uri)
    assert [p.info.run_id for p in parents] == [parent_id]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and study.user_attrs["mlflow_parent_run_id"] == parent_id
    assert len(children) == 6
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent_id}
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == list(range(6))
    assert {c.data.tags["optuna.study"] for c in children} == {STUDY}
    by_id = {c.info.run_id: c for c in children}
    assert study.metric_names == ["val_accuracy"]  # optuna-dashboard's axis
    for t in trials:  # trial <-> run, and the run's status says what Optuna decided
        run = by_id[t.user_attrs["mlflow_run_id"]]
        assert t.user_attrs["mlflow_run_url"] == f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        assert int(run.data.tags["optuna.trial"]) == t.number
        # the in-process launcher: the job ran in the sweeper's process
        assert run.data.tags["attnlab.pid"] == str(t.user_attrs["attnlab.sweeper_pid"])
        # the trial node is an identity, not a hyperparameter: not in params, variant or overrides tag
        assert not any(k == "trial" or k.startswith("trial.") for k in run.data.params)
        assert "trial" not in run.data.tags["attnlab.variant"] and "trial=" not in run.data.tags["attnlab.overrides"]
        if t.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED" and run.data.metrics["val_accuracy"] == pytest.approx(t.value)
        else:
            assert run.info.status == "KILLED" and run.data.tags["attnlab.status"] == "PRUNED"
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.tags["best.train.learning_rate"] == str(study.best_params["train.learning_rate"])
    plots = {a.path for a in client.list_artifacts(parent_id, "plots")}
    assert {"plots/optimization_history.html", "plots/optimization_history.png",
            "plots/parallel_coordinate.html", "plots/parallel_coordinate.png"} <= plots
    if sum(t.state == TrialState.COMPLETE for t in trials) >= 2:
        assert "plots/param_importances.png" in plots
    html = Path(client.download_artifacts(parent_id, "plots/optimization_history.html", str(tmp_path / "dl")))
    assert "https://cdn.plot.ly" not in html.read_text()[:200000]  # plotly.js embedded: opens offline


# ---------------------------------------------------------------- pruning

def _prune_sweep(tmp_path: Path, name: str, pruner: str, options: str = ""):
    write_preset(tmp_path / "conf", name, pruner, 4, epochs=2, pruner_options=options)
    d = tmp_path / name
    d.mkdir()
    proc = run_cli(["train", "-m", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"hparams_search={name}"], cwd=d)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(f"sqlite:///{d / 'optuna.db'}", name)
    _, _, children = sweep_runs(f"sqlite:///{d / 'mlflow.db'}")
    assert len(study.trials) == 4 and len(children) == 4
    return study, children


@pytest.mark.slow  # over 20 s: make test-long (CI runs it)
def test_pruning_stops_hopeless_trials_and_saves_epochs(tmp_path):
    """lr=1e-6 cannot learn: the median pruner stops it after one epoch.

    Without pruning every trial runs both epochs (patience 10 cannot stop it earlier): 8 in
    total, measured side by side in test_without_pruner_every_trial_runs_all_epochs (slow).
    """
    from optuna.trial import TrialState

    study, children = _prune_sweep(tmp_path, "prune_median", "median", "n_startup_trials: 1, n_warmup_steps: 0")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and len(pruned) + len(complete) == 4
    # The hopeless trials are the ones pruned (the median rule may also stop a learner that
    # starts below the median); the sweep still finds a learner.
    assert any(t.params["train.learning_rate"] == 1e-6 for t in pruned)
    assert study.best_params["train.learning_rate"] == 0.01
    run_of = {c.info.run_id: c for c in children}
    for t in pruned:
        run = run_of[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "KILLED" and run.data.tags["attnlab.status"] == "PRUNED"
        assert run.data.tags["attnlab.pruned_at_epoch"] == "1" and run.data.metrics["epochs_completed"] == 1
        assert "test_accuracy" not in run.data.metrics  # a pruned trial never touches test data
    for t in complete:
        assert run_of[t.user_attrs["mlflow_run_id"]].data.metrics["epochs_completed"] == 2
    total = sum(c.data.metrics["epochs_completed"] for c in children)
    assert total == 2 * len(complete) + len(pruned) < 8


@pytest.mark.slow
def test_without_pruner_every_trial_runs_all_epochs(tmp_path):
    from optuna.trial import TrialState

    study, children = _prune_sweep(tmp_path, "prune_none", "none")
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sum(c.data.metrics["epochs_completed"] for c in children) == 8


@pytest.mark.slow  # minutes: runs in `make test-long` (CI) and `make test-slow`
def test_a_trial_that_raises_is_fail_and_the_sweep_goes_on(tmp_path):
    """Trial 0 monitors a metric Keras never logs (its pruning callback raises): FAIL in Optuna,
    FAILED in MLflow with the error; trial 1 (grid seed 1 puts it second) completes."""
    from optuna.trial import TrialState

    write_preset(tmp_path / "conf", "fails", "none", 1, grid_seed=1, epochs=1,
                 params="      train.early_stopping.monitor: {type: categorical, choices: [val_nope, val_accuracy]}\n")
    proc = run_cli(["train", "-m", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "hparams_search=fails"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(f"sqlite:///{tmp_path / 'optuna.db'}", "fails")
    states = [(t.params["train.early_stopping.monitor"], t.state) for t in study.trials]
    assert states == [("val_nope", TrialState.FAIL), ("val_accuracy", TrialState.COMPLETE)]
    client, parents, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    failed = client.get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert failed.info.status == "FAILED" and "val_nope" in failed.data.tags["attnlab.error"]
    assert failed.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert parents[0].data.metrics["n_failed"] == 1 and parents[0].info.status == "FINISHED"


# ---------------------------------------------------------------- PostgreSQL: workers, crash

def _prepare_mlflow(uri: str, tmp: Path) -> None:
    """Create the MLflow tables and the experiment once, before workers race to do it."""
    from attnlab import tracking

    tracking.setup({"uri": uri, "experiment": "attnlab", "artifact_dir": str(tmp / "mlruns")})


def _popen(cwd: Path, args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([ATTNLAB, "train", "-m", "hparams_search=synthetic_small", *FAST, *args], cwd=cwd,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_share_one_postgres_study(tmp_path, pg_databases):
    from optuna.trial import TrialState

    optuna_url, mlflow_uri = pg_databases
    _prepare_mlflow(mlflow_uri, tmp_path)
    args = ["hydra.sweeper.n_trials=6", f"hydra.sweeper.storage={optuna_url}", f"tracking.uri={mlflow_uri}",
            "hydra.sweeper.poll_interval=0.5"]
    procs = [_popen(tmp_path, args, tmp_path / f"worker{i}.log") for i in range(2)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=900) == 0, (tmp_path / f"worker{i}.log").read_text()[-3000:]
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert all(" COMPLETE: " in log or " PRUNED (" in log for log in logs), "a worker ran no trial"
    study = load_study(optuna_url)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6 and len({t.number for t in study.trials}) == len(study.trials)
    # A trial told FAIL because the other worker filled the study first never ran a job.
    assert all(t.user_attrs.get("attnlab.surplus") for t in study.trials if t.state == TrialState.FAIL)
    client, parents, children = sweep_runs(mlflow_uri)
    assert len(parents) == 1 and len(children) == 6
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(int(c.data.tags["optuna.trial"]) for c in children) == sorted(t.number for t in finished)
    assert client.get_run(parents[0].info.run_id).info.status == "FINISHED"


@pytest.mark.postgres
@pytest.mark.slow
def test_killed_worker_trial_is_failed_and_retried(tmp_path, pg_databases):
    """SIGKILL a worker mid-trial; after the grace period another worker re-runs that trial."""
    from optuna.trial import TrialState

    optuna_url, mlflow_uri = pg_databases
    _prepare_mlflow(mlflow_uri, tmp_path)
    args = ["hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={optuna_url}", f"tracking.uri={mlflow_uri}",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3", "train.epochs=3"]
    victim = _popen(tmp_path, args, tmp_path / "victim.log")
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("attnlab")
    deadline = time.time() + 300
    running = []
    while time.time() < deadline and not running and victim.poll() is None:
        running = client.search_runs([exp.experiment_id], "tags.`attnlab.sweep.role` = 'child' and attributes.status = 'RUNNING'")
        time.sleep(0.3)
    assert running, "the first worker never started a trial: " + (tmp_path / "victim.log").read_text()[-3000:]
    time.sleep(1)  # mid-trial: train has linked the run to the trial (user attr) right after starting it
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    killed_run = running[0].info.run_id
    study = load_study(optuna_url)
    (killed,) = [t for t in study.trials if t.state == TrialState.RUNNING]
    assert killed.user_attrs["mlflow_run_id"] == killed_run
    assert client.get_run(killed_run).info.status == "RUNNING"  # nobody could close it yet

    time.sleep(4)  # > grace_period: the killed worker's heartbeat is stale
    rescuer = _popen(tmp_path, args, tmp_path / "rescuer.log")
    assert rescuer.wait(timeout=600) == 0, (tmp_path / "rescuer.log").read_text()[-3000:]
    study = load_study(optuna_url)
    by_number = {t.number: t for t in study.trials}
    assert by_number[killed.number].state == TrialState.FAIL
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params and retried[0] in finished
    dead = client.get_run(killed_run)
    # Whoever sees it first closes it: the stale heartbeat, or the reaper (its process is gone).
    assert dead.info.status == "FAILED" and dead_cause(dead.data.tags["attnlab.error"])
    assert retried[0].user_attrs["mlflow_run_id"] != killed_run


@pytest.mark.slow
def test_basic_sweeper_still_runs_plain_grids(tmp_path):
    """Without an hparams_search preset, `-m a=1,2` is Hydra's basic sweeper: one run per value."""
    from conftest import TINY, runs

    proc = run_cli(["train", "-m", "model.attention.scale=sqrt_dk,none", "train.epochs=1", *TINY,
                    "tracking.log_model=false", "tracking.n_attention_examples=0"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rs = runs(tmp_path)
    assert sorted(r.data.params["model.attention.scale"] for r in rs) == ["none", "sqrt_dk"]
    assert all(r.info.status == "FINISHED" and "mlflow.parentRunId" not in r.data.tags for r in rs)
    assert not (tmp_path / "optuna.db").exists()
