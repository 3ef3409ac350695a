"""Sweeps: pruning on vs off, 1 vs 2 workers on PostgreSQL, 1 vs 2 jobs through submitit_local.

Both comparisons run the real command, ``attnlab train -m hparams_search=<preset> ...``
(the ``attnlab_optuna`` Hydra sweeper), as subprocesses in a scratch launch directory:

* pruning: the same study settings (sampler seed, search space, trials) with the preset's
  pruner vs ``hydra.sweeper.pruner=null``, both sweeps running at the same time with one thread each
  (so both see the same machine load), on SQLite; wall time and the study's best validation
  value of each.
* workers: one worker vs two workers started together on one study (Optuna storage and
  MLflow backend in scratch PostgreSQL databases, created and migrated before the workers
  start, dropped after); each worker is pinned to one thread (``train.threads=1``,
  ``OMP_NUM_THREADS=1``); trials per hour of each, no pruning so trials cost alike.
* jobs: one sweeper with ``hydra/launcher=submitit_local`` and ``hydra.sweeper.n_jobs`` 1, then
  2 (a process and a thread per job): the preset's trials, and a 4-point grid; runs per hour.

A sweep takes minutes, so each comparison is one pair (stated in the table), not a median.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from attnlab.bench.common import Result, fmt_x, loadavg_1m, table
from attnlab.errors import AttnlabError


def _attnlab() -> str:
    exe = Path(sys.executable).parent / "attnlab"
    return str(exe) if exe.exists() else "attnlab"


def _env(threads: int | None = None) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_RUN_ID", None)
    if threads:
        env.update({"OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads),
                    "TF_NUM_INTEROP_THREADS": str(threads)})
    return env


def _sweep_cmd(sc, study: str, storage: str, tracking_uri: str, launch: Path, extra: list[str],
               preset: str | None = None) -> list[str]:
    return [_attnlab(), "train", "-m", f"hparams_search={preset or sc.preset}", *[str(o) for o in sc.overrides],
            f"hydra.sweeper.study_name={study}", f"hydra.sweeper.storage={storage}",
            f"tracking.uri={tracking_uri}", f"tracking.artifact_dir={launch / 'mlruns'}", "hydra.sweeper.plots=false",
            f"hydra.sweep.dir={launch / 'multirun' / study}", *extra]


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-600:]}")


def _study_summary(study: str, storage: str) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    s = optuna.load_study(study_name=study, storage=storage)
    trials = s.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return {"best": max(t.value for t in done) if done else float("nan"),
            "complete": len(done), "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials)}


def _throughput(study: str, storage: str, wall: float) -> dict[str, Any]:
    """The study's summary with its finished trials (complete or pruned) per hour of ``wall`` seconds."""
    summ = _study_summary(study, storage)
    done = summ["complete"] + summ["pruned"]
    return {"wall_s": wall, "trials": done, "per_hour": 3600.0 * done / wall, **summ}


def _pg_databases(base_url: str, names: list[str], create: bool) -> None:
    import psycopg2

    try:
        conn = psycopg2.connect(f"{base_url.rstrip('/')}/postgres")
    except Exception as e:  # noqa: BLE001 - no server: the comparison cannot run
        raise AttnlabError(f"sweep.postgres={base_url}: cannot connect ({str(e).strip().splitlines()[0]})") from e
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in names:
            cur.execute(f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def _pruning(sc, launch: Path) -> dict[str, Any]:
    """Both sweeps at once, one thread each, so they see the same machine load (side by side).

    When the pruned sweep finishes first the other gets the freed core: that favours the
    sweep without pruning, so the time ratio errs on the pessimistic side.
    """
    storage = f"sqlite:///{launch / 'optuna.db'}"
    uri = f"sqlite:///{launch / 'mlflow.db'}"
    common = [f"hydra.sweeper.n_trials={int(sc.n_trials)}", "train.threads=1"]
    variants = {"pruning": [], "no_pruning": [str(o) for o in sc.no_pruning_overrides]}
    # The two studies share one SQLite file: create its tables before two processes race to.
    import optuna

    optuna.storages.RDBStorage(storage)
    from attnlab import tracking

    tracking.setup({"uri": uri, "artifact_dir": str(launch / "mlruns")}, experiment="attnlab")
    t0 = time.perf_counter()
    procs = {name: subprocess.Popen(_sweep_cmd(sc, f"bench-{name}", storage, uri, launch, [*common, *extra]),
                                    cwd=launch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=_env(threads=1))
             for name, extra in variants.items()}
    ends: dict[str, float] = {}
    outs: dict[str, tuple[str, str]] = {}
    while len(ends) < len(procs):
        for name, p in procs.items():
            if name not in ends and p.poll() is not None:
                ends[name] = time.perf_counter() - t0
                outs[name] = p.communicate()
        time.sleep(0.2)
    out: dict[str, Any] = {}
    for name, p in procs.items():
        _check(subprocess.CompletedProcess(p.args, p.returncode, *outs[name]), f"sweep ({name})")
        out[name] = {"wall_s": ends[name], **_study_summary(f"bench-{name}", storage)}
        print(f"[sweep] {name}: {ends[name]:.0f}s, {out[name]}", flush=True)
    return out


def _workers(sc, launch: Path) -> dict[str, Any]:
    import optuna

    from attnlab import tracking

    tag = uuid.uuid4().hex[:8]
    dbs = [f"attnlab_bench_optuna_{tag}", f"attnlab_bench_mlflow_{tag}"]
    base = str(sc.postgres).rstrip("/")
    storage, uri = f"{base}/{dbs[0]}", f"{base}/{dbs[1]}"
    _pg_databases(base, dbs, create=True)
    try:
        # Migrate both stores and create the experiment once, before any worker starts.
        optuna.storages.RDBStorage(storage)
        tracking.setup({"uri": uri, "artifact_dir": str(launch / "mlruns")}, experiment=str(sc.experiment))
        extra = [f"hydra.sweeper.n_trials={int(sc.workers_trials)}", "train.threads=1",
                 f"tracking.experiment={sc.experiment}", *[str(o) for o in sc.no_pruning_overrides]]
        out: dict[str, Any] = {}
        for k in (1, 2):
            study = f"bench-workers-{k}"
            cmd = _sweep_cmd(sc, study, storage, uri, launch, extra)
            t = time.perf_counter()
            procs = [subprocess.Popen(cmd, cwd=launch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=_env(threads=1)) for _ in range(k)]
            results = [p.communicate() for p in procs]
            wall = time.perf_counter() - t
            for p, (so, se) in zip(procs, results):
                _check(subprocess.CompletedProcess(cmd, p.returncode, so, se), f"sweep worker ({k} workers)")
            out[k] = _throughput(study, storage, wall)
            print(f"[sweep] {k} worker(s): {wall:.0f}s for {out[k]['trials']} trials", flush=True)
        return out
    finally:
        _pg_databases(base, dbs, create=False)


# A 4-point grid as a search space of its own (Optuna's GridSampler through the attnlab sweeper):
# every point runs once, so 1 vs 2 jobs do the same work.
_GRID_SPACE = """# @package _global_
defaults:
  - override /hydra/sweeper: attnlab_optuna
  - override /hydra/sweeper/sampler: grid
hydra:
  sweeper:
    pruner: null
    params:
      seed: {type: categorical, choices: [0, 1, 2, 3]}
"""


def _jobs(sc, launch: Path, kind: str) -> dict[int, dict[str, Any]]:
    """1 job, then 2 jobs in flight, through ``submitit_local`` (one process and one thread per
    job, SQLite stores): trials (or grid points) per hour of each. ``kind`` is ``sweep`` (the
    preset's study, no pruning) or ``grid`` (the 4 points of :data:`_GRID_SPACE`)."""
    jc = sc.jobs
    if kind == "grid":
        (launch / "conf" / "hparams_search").mkdir(parents=True, exist_ok=True)
        (launch / "conf" / "hparams_search" / "bench_grid.yaml").write_text(_GRID_SPACE)
        space = [f"hydra.searchpath=[file://{launch / 'conf'}]", *[str(o) for o in jc.grid_overrides],
                 "hydra.sweeper.n_trials=4"]
    else:
        space = [*[str(o) for o in sc.no_pruning_overrides], f"hydra.sweeper.n_trials={int(jc.trials)}"]
    out: dict[int, dict[str, Any]] = {}
    for k in (1, 2):
        study = f"bench-{kind}-jobs{k}"
        storage, uri = f"sqlite:///{launch / f'{study}.db'}", f"sqlite:///{launch / f'{study}-mlflow.db'}"
        extra = [*space, f"hydra.sweeper.n_jobs={k}", "train.threads=1", "hydra/launcher=submitit_local",
                 f"hydra.launcher.timeout_min={int(jc.timeout_min)}"]
        cmd = _sweep_cmd(sc, study, storage, uri, launch, extra, preset="bench_grid" if kind == "grid" else None)
        load, t = loadavg_1m(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=launch, capture_output=True, text=True, env=_env(threads=1))
        wall = time.perf_counter() - t
        _check(proc, f"{kind} with {k} job(s)")
        out[k] = {**_throughput(study, storage, wall), "load_at_start": load}
        print(f"[sweep] {kind}, {k} job(s): {wall:.0f}s for {out[k]['trials']} runs (load {load})", flush=True)
    return out


def _jobs_figures(kind: str, res: dict[int, dict[str, Any]], metrics: dict[str, float], figures: list) -> str:
    rate = res[2]["per_hour"] / res[1]["per_hour"]
    what = "4-run grid (GridSampler over seed 0-3)" if kind == "grid" else "sweep trials (preset, no pruning)"
    metrics.update({f"{kind}_jobs_rate_ratio": rate, f"{kind}_jobs1_per_hour": res[1]["per_hour"],
                    f"{kind}_jobs2_per_hour": res[2]["per_hour"]})
    figures.append((f"{kind}: runs/hour, 2 jobs / 1 job (submitit_local, 1 thread each)", fmt_x(rate), ">= 1.6x",
                    rate >= 1.6))
    rows = [[k, f"{v['wall_s']:.0f}", v["trials"], f"{v['per_hour']:.0f}", v["load_at_start"]] for k, v in res.items()]
    return (f"{what[0].upper()}{what[1:]} through `hydra/launcher=submitit_local`, one process and one thread per job, "
            f"`hydra.sweeper.n_jobs` 1 then 2 (run one after the other): **2 jobs / 1 job: {fmt_x(rate)} runs per "
            f"hour** (target >= 1.6x on an idle 2-core machine; the load average is printed beside each).\n\n"
            + table(["jobs", "wall s", "runs", "runs/hour", "load (1 min) at start"], rows))


def run(cfg, quick: bool, tracking_uri: str | None) -> Result:
    if importlib.util.find_spec("hydra_plugins.attnlab_optuna_sweeper") is None:
        raise AttnlabError("sweep benchmark: the Optuna sweeper plugin hydra_plugins.attnlab_optuna_sweeper "
                           "is not installed")
    sc = cfg.sweep
    with tempfile.TemporaryDirectory(prefix="attnlab-bench-sweep-") as tmp:
        launch = Path(tmp)
        pr = _pruning(sc, launch)
        wk = _workers(sc, launch) if bool(sc.workers) else None
        jobs = {kind: _jobs(sc, launch, kind) for kind in ("sweep", "grid") if bool(sc.jobs.enabled)}
    p, q = pr["pruning"], pr["no_pruning"]
    time_ratio = p["wall_s"] / q["wall_s"]
    best_diff = 100.0 * (p["best"] - q["best"])  # points of validation accuracy
    metrics: dict[str, float] = {
        "pruning_time_ratio": time_ratio, "pruning_best_diff_points": best_diff,
        "pruning_wall_s": p["wall_s"], "no_pruning_wall_s": q["wall_s"],
        "pruning_best": p["best"], "no_pruning_best": q["best"], "pruning_n_pruned": p["pruned"],
    }
    met = time_ratio <= 0.5 and best_diff >= -0.5  # a better best is no miss
    figures = [("sweep: time with pruning / without", fmt_x(time_ratio), "<= 0.5x", time_ratio <= 0.5),
               ("sweep: best val accuracy with pruning − without (points)", f"{best_diff:+.2f}", "within 0.5",
                best_diff >= -0.5)]
    rows = [[name, f"{v['wall_s']:.0f}", f"{v['best']:.4f}", v["complete"], v["pruned"], v["failed"]]
            for name, v in (("with pruning (preset's pruner)", p), ("without pruning", q))]
    overrides = " ".join(str(o) for o in sc.overrides)
    parts = [
        f"`attnlab train -m hparams_search={sc.preset}` with `{overrides}`, {sc.n_trials} trials each; the two sweeps "
        "run at the same time, one thread each (one pair, not a median: a sweep takes minutes; the sweep that ends "
        f"first frees a core for the other, which favours the slower one). **Time with pruning / without: {fmt_x(time_ratio)}; best "
        f"val accuracy {best_diff:+.2f} points** ({'target met' if met else 'target missed'}: <= 0.5x for a best "
        "within 0.5 point).",
        table(["sweep", "wall s", "best val_accuracy", "complete", "pruned", "failed"], rows),
    ]
    if wk is not None:
        rate = wk[2]["per_hour"] / wk[1]["per_hour"]
        metrics.update({"workers_rate_ratio": rate, "workers1_trials_per_hour": wk[1]["per_hour"],
                        "workers2_trials_per_hour": wk[2]["per_hour"]})
        figures.append(("sweep: trials/hour, 2 workers / 1 worker (PostgreSQL, 1 thread each)", fmt_x(rate),
                        ">= 1.6x", rate >= 1.6))
        parts += [
            f"Workers: {sc.workers_trials} trials per study, PostgreSQL for the Optuna storage and the MLflow backend, "
            f"one thread per worker, no pruning. **2 workers / 1 worker: {fmt_x(rate)} trials per hour.** The machine "
            f"has {os.cpu_count()} cores shared with other users: this ratio is noisy.",
            table(["workers", "wall s", "trials", "trials/hour"],
                  [[k, f"{v['wall_s']:.0f}", v["trials"], f"{v['per_hour']:.0f}"] for k, v in wk.items()]),
        ]
        print(f"[sweep] 2/1 workers {rate:.2f}x", flush=True)
    for kind, res in jobs.items():
        parts.append(_jobs_figures(kind, res, metrics, figures))
    print(f"[sweep] pruning time {time_ratio:.2f}x, best {best_diff:+.2f} points", flush=True)
    params = {"preset": str(sc.preset), "n_trials": int(sc.n_trials), "overrides": [str(o) for o in sc.overrides],
              "workers_trials": int(sc.workers_trials), "workers": bool(sc.workers),
              "jobs_trials": int(sc.jobs.trials), "jobs": bool(sc.jobs.enabled)}
    return Result("sweep", params, metrics, figures, "\n\n".join(parts))
