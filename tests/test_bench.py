"""`attnlab bench` in quick mode: the benchmarks run and their output is well-formed.

These tests never assert a speed target (timings on a shared machine are noise); they check
that every figure is a finite positive ratio, that the tables are written and that each
benchmark is one MLflow run in experiment `benchmarks` with its metrics and artifacts.
"""

from __future__ import annotations

import json
import math

import pytest

from attnlab.bench import common, main


def _run(name: str, tmp_path, *sets: str):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [name, "--quick", "--out", str(tmp_path / "out"), "--tracking-uri", uri]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    rec = json.loads((tmp_path / "out" / f"{name}.json").read_text())
    return rec, uri


def _mlflow_run(uri: str, name: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("benchmarks")
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id], filter_string=f"tags.`attnlab.bench` = '{name}'")
    assert run.info.status == "FINISHED"
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {f"{name}.md", f"{name}.json"} <= arts
    return run, arts


def _ratios_ok(rec, keys):
    for k in keys:
        v = rec["metrics"][k]
        assert math.isfinite(v) and v > 0, (k, v)


def test_interleaved_rotates_order_and_paired_ratio_pairs_repeats():
    calls = []
    times = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A first, B first, A first
    assert len(times["a"]) == len(times["b"]) == 3
    assert common.paired_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == 3.0  # median of 2, 4, 3
    with pytest.raises(ValueError):
        common.paired_ratio([1.0], [1.0, 2.0])


def test_config_quick_merge_and_bad_set():
    full, quick = common.load_config(False), common.load_config(True)
    assert list(full.layer.lengths) == [64, 128, 512] and full.layer.batch == 64 and full.repeats >= 5
    assert quick.layer.batch < full.layer.batch and quick.out_dir != full.out_dir
    assert common.load_config(True, ["layer.lengths=[8]"]).layer.lengths == [8]
    from attnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="repeats=0"):
        common.load_config(True, ["repeats=0"])
    with pytest.raises(ConfigError, match="lenghts"):  # a misspelt key is an error, not a new key
        common.load_config(True, ["layer.lenghts=[8]"])


def test_cli_bad_set_is_one_line_error(capsys):
    from attnlab.cli import main as cli_main

    assert cli_main(["bench", "layer", "--quick", "--set", "repeats=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: repeats=0") and "\n" not in err


@pytest.mark.slow  # over 20 s: make test-long (CI runs it)
def test_layer_quick(tmp_path):
    # XLA only: the non-jit step is what the scaling test runs; memory probes run without jit.
    rec, uri = _run("layer", tmp_path, "layer.jit=[true]")
    keys = [f"self_vs_{o}_T16_jit" for o in ("mha", "seed")]
    _ratios_ok(rec, [*keys, "gflops_ratio_numpy_T16_jit", "tokens_per_s_self_T16_jit"])
    mem = rec["metrics"]["peak_rss_mib_self_T16_nojit"]
    assert math.isfinite(mem) and mem >= 0
    run, _ = _mlflow_run(uri, "layer")
    assert "self_vs_mha_T16_jit" in run.data.metrics and run.data.params["batch"] == "8"
    assert "machine.cpu_count" in run.data.params
    md = (tmp_path / "out" / "layer.md").read_text()
    assert "SelfAttention / MHA" in md and "QUICK" in md


@pytest.mark.slow  # minutes: runs in `make test-long` (CI) and `make test-slow`
def test_harness_quick(tmp_path):
    rec, uri = _run("harness", tmp_path, "repeats=2")
    _ratios_ok(rec, ["overhead_ratio", "fit_ratio", "outside_fit_ratio", "wall_plain_s", "harness_time_fit", "plain_time_fit"])
    assert rec["metrics"]["harness_time_log_model"] > 0  # the harness side really logged a model
    _mlflow_run(uri, "harness")
    # the timed train() runs went to their own experiment, not to `benchmarks`
    import mlflow

    client = mlflow.MlflowClient(uri)
    side = client.get_experiment_by_name("benchmarks_harness_runs")
    assert len(client.search_runs([side.experiment_id])) == 2 + 1  # repeats + warm-up


def test_startup_quick(tmp_path):
    rec, uri = _run("startup", tmp_path, "repeats=1", "warmup=0")
    _ratios_ok(rec, ["help_vs_import_tf", "cfg_job_vs_import_tf"])
    # `attnlab train --cfg job` composes the config without importing TensorFlow
    assert rec["metrics"]["cfg_job_imports_tensorflow"] == 0.0
    _mlflow_run(uri, "startup")


def test_scaling_quick_and_summary(tmp_path):
    rec, uri = _run("scaling", tmp_path, "repeats=2")
    _ratios_ok(rec, ["attention_fraction_T16", "attention_fraction_T32", "epoch_ratio_n64"])
    assert 0 < rec["metrics"]["attention_fraction_T16"]
    assert (tmp_path / "out" / "scaling.png").stat().st_size > 1000
    _, arts = _mlflow_run(uri, "scaling")
    assert "scaling.png" in arts
    summary = (tmp_path / "out" / "README.md").read_text()
    assert "scaling" in summary and "not run yet" in summary  # the others were not run here


@pytest.mark.slow
@pytest.mark.postgres
def test_sweep_quick(tmp_path):
    rec, uri = _run("sweep", tmp_path)
    _ratios_ok(rec, ["pruning_time_ratio", "workers_rate_ratio", "pruning_wall_s", "sweep_jobs_rate_ratio",
                     "grid_jobs_rate_ratio"])
    assert rec["metrics"]["grid_jobs1_per_hour"] > 0  # the 4-point grid ran with 1 and 2 jobs
    assert math.isfinite(rec["metrics"]["pruning_best_diff_points"])
    _mlflow_run(uri, "sweep")
