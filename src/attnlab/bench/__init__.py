"""``attnlab bench``: the cost of the layer, the harness and the sweeps, as side-by-side ratios.

Every figure is a ratio of two things timed in the same process, interleaved, median of the
per-repeat ratios after warm-up (:mod:`attnlab.bench.common`); absolute times are context
only. Sizes live in ``conf/bench/default.yaml``. Each benchmark writes
``<out_dir>/<name>.md`` and ``.json``, logs one MLflow run in experiment ``benchmarks``, and
``<out_dir>/README.md`` summarises every benchmark recorded there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from attnlab.errors import AttnlabError, ConfigError, OneLineParser

NAMES = ("startup", "layer", "harness", "scaling", "sweep")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="attnlab bench",
        description="Benchmarks measured as side-by-side ratios (median of interleaved repeats), "
                    "each logged as an MLflow run in experiment `benchmarks` and written to "
                    "experiments/benchmarks/<name>.md. Sizes: conf/bench/default.yaml.",
    )
    p.add_argument("name", choices=[*NAMES, "all"], help="which benchmark; all = every one, then the summary")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (the `quick:` block of conf/bench/default.yaml): checks the benchmarks run")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of conf/bench/default.yaml, e.g. --set layer.lengths=[64] (repeatable)")
    p.add_argument("--out", default=None,
                   help="folder for the tables and plots (default: out_dir of the config, under the launch directory)")
    p.add_argument("--force", action="store_true", help="replace benchmark files already in the output folder")
    return p


def _out_names(names: list[str]) -> list[str]:
    """The files ``attnlab bench <names>`` writes into its output folder."""
    extra = {"scaling": ["scaling.png"]}
    return ["README.md", *(f"{n}{ext}" for n in names for ext in (".md", ".json")),
            *(f for n in names for f in extra.get(n, []))]


def _check_args(args: argparse.Namespace, names: list[str]):
    """Every option checked before anything is measured: --set types, --out, the MLflow store."""
    from attnlab import outputs, tracking
    from attnlab.bench import common

    cfg = common.load_config(quick=args.quick, sets=list(args.sets))
    if args.out:
        outputs.out_dir(args.out, "--out", _out_names(names), args.force)
        cfg.out_dir = str(Path(args.out).expanduser().absolute())
    else:
        outputs.out_dir(common.out_dir(cfg), "out_dir", _out_names(names), args.force)
    tracking.ensure_store(tracking.launch_uri(args.tracking_uri), str(cfg.experiment))
    return cfg


def run_one(name: str, cfg, quick: bool, tracking_uri: str | None):
    """Run benchmark ``name``; write its table and log its MLflow run. Returns the Result."""
    from attnlab.bench import common

    mach = common.machine()
    if name == "layer":
        from attnlab.bench import layer as mod

        result = mod.run(cfg, quick)
    elif name == "harness":
        from attnlab.bench import harness as mod

        result = mod.run(cfg, quick, tracking_uri)
    elif name == "startup":
        from attnlab.bench import startup as mod

        result = mod.run(cfg, quick)
    elif name == "scaling":
        from attnlab.bench import scaling as mod

        result = mod.run(cfg, quick)
    elif name == "sweep":
        from attnlab.bench import sweep as mod

        result = mod.run(cfg, quick, tracking_uri)
    else:
        raise AttnlabError(f"unknown benchmark {name!r}; choose from {', '.join(NAMES)}, all")
    titles = {"layer": "Layer: SelfAttention vs MultiHeadAttention vs SeedSelfAttention",
              "harness": "Harness overhead: train(cfg) vs plain Keras", "startup": "Start-up time",
              "scaling": "Scaling: epoch time vs length and dataset size", "sweep": "Sweeps: pruning, workers and jobs"}
    result.markdown = common.header_lines(titles[name], cfg, mach, quick) + "\n" + result.markdown
    run_id = common.write_and_log(result, cfg, tracking_uri, mach, quick)
    print(f"[{name}] wrote {common.out_dir(cfg) / (name + '.md')}; MLflow run {run_id}", flush=True)
    return result


def write_summary(out: Path) -> Path:
    """``out/README.md``: one table with every figure recorded under ``out`` (from the .json files)."""
    from attnlab.bench.common import table

    rows, sources = [], []
    for name in NAMES:
        path = out / f"{name}.json"
        if not path.exists():
            rows.append([name, "not run yet", "", "", ""])
            continue
        rec = json.loads(path.read_text())
        m = rec["machine"]
        sources.append(f"- `{name}`: {rec['date']}, {m.get('machine.cpu')}, {m.get('machine.cpu_count')} CPUs, "
                       f"load {m.get('machine.loadavg_1m_at_start')} at start{' (QUICK mode)' if rec['quick'] else ''}"
                       f" → [{name}.md]({name}.md)")
        for label, value, target, met in rec["figures"]:
            verdict = "" if met is None else ("met" if met else "**missed**")
            rows.append([name, label, value, target, verdict])
    text = "\n\n".join([
        "# attnlab benchmarks",
        "Every figure is a ratio of two things measured in the same run, interleaved, median of the "
        "per-repeat ratios after warm-up: never an absolute time. Rerun with `make bench` "
        "(= `attnlab bench all`), one benchmark with `attnlab bench NAME`; sizes in `conf/bench/default.yaml`.",
        table(["benchmark", "figure", "value", "target", "result"], rows),
        "Measured:\n" + "\n".join(sources),
    ])
    path = out / "README.md"
    path.write_text(text + "\n")
    return path


def main(argv: list[str]) -> int:
    from attnlab.bench import common

    args = _parser().parse_args(argv)
    names = list(NAMES) if args.name == "all" else [args.name]
    cfg = _check_args(args, names)
    failed = []
    t0 = time.perf_counter()
    for name in names:
        try:
            run_one(name, cfg, args.quick, args.tracking_uri)
        except AttnlabError:
            raise
        except Exception as e:  # noqa: BLE001 - `all` goes on with the others and says which failed
            if len(names) == 1:
                raise
            failed.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            print(f"[{name}] FAILED: {failed[-1]}", flush=True)
    summary = write_summary(common.out_dir(cfg))
    print(f"summary: {summary} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if failed:
        raise AttnlabError("benchmarks failed: " + "; ".join(failed))
    return 0
