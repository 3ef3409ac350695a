"""What every benchmark shares: its config, interleaved timing, ratios, and the record.

A figure is always a ratio of two things measured in the same process, interleaved
(A, B, A, B, ... with the order rotated each repeat so neither always runs first), after
warm-up; it is the median over repeats of the per-repeat ratio, so slow drifts of a shared
machine hit both sides of each ratio alike. Absolute times are recorded for context only.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from attnlab.config import config_dir, flatten
from attnlab.errors import ConfigError, first_line

BENCH_CONFIG = "bench/default.yaml"


def load_config(quick: bool = False, sets: Sequence[str] = ()) -> DictConfig:
    """``conf/bench/default.yaml``, with its ``quick:`` block merged in quick mode, then ``sets``."""
    path = config_dir() / BENCH_CONFIG
    base = OmegaConf.load(path)
    quick_block = base.pop("quick", None)
    if quick and quick_block is not None:
        base = OmegaConf.merge(base, quick_block)
    # Struct mode: a misspelt --set key fails instead of being silently added.
    OmegaConf.set_struct(base, True)
    for item in sets:
        shown = item if item.isprintable() else repr(item)  # one line, whatever was typed
        try:
            new = OmegaConf.from_dotlist([item])
            _check_types(base, new, shown)
            base = OmegaConf.merge(base, new)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - a malformed --set is a user error
            raise ConfigError(f"--set {shown}: {first_line(e)}") from e
    if base.repeats < 1:
        raise ConfigError(f"repeats={base.repeats}: must be >= 1")
    if base.warmup < 0:
        raise ConfigError(f"warmup={base.warmup}: must be >= 0")
    return base


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean (true/false)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return "a list, e.g. [1, 2]"
    return "a mapping" if OmegaConf.is_dict(value) else "a string"


def _check_types(base: DictConfig, new: DictConfig, item: str) -> None:
    """A ``--set`` value must have the type of the value it replaces (an int stays an int; a
    float key accepts an int); list items are checked by the benchmark that reads them."""
    for key, value in _leaves(OmegaConf.to_container(new)):
        old = OmegaConf.select(base, key, default=None)
        if old is None:
            continue  # an unknown key: the struct merge names it
        if value is None:
            raise ConfigError(f"--set {item}: {key} must be {_kind(old)}, got nothing (null)")
        want, got = _kind(old), _kind(value)
        if want != got and not (want == "a number" and got == "an integer"):
            raise ConfigError(f"--set {item}: {key} must be {want}, got {value!r}")


def _leaves(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict) and d:  # an empty mapping is a value ({} for repeats), not a branch
        return [kv for k, v in d.items() for kv in _leaves(v, f"{prefix}{k}.")]
    return [(prefix[:-1], d)]


def out_dir(cfg: DictConfig) -> Path:
    """``out_dir`` of the config; a relative one is under the launch directory."""
    return Path(str(cfg.out_dir)).expanduser().absolute()


def loadavg_1m() -> float:
    """The machine's 1-minute load average, 2 decimals (NaN where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def machine() -> dict[str, Any]:
    """Where the numbers come from (logged as params and printed in every table)."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine.node": platform.node(),
        "machine.platform": platform.platform(),
        "machine.cpu": cpu,
        "machine.cpu_count": os.cpu_count(),
        "machine.python": platform.python_version(),
        "machine.loadavg_1m_at_start": loadavg_1m(),
    }


def interleaved(
    contenders: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int,
) -> dict[str, list[float]]:
    """Wall seconds of each contender, ``repeats`` times, interleaved with a rotating order.

    Args:
        contenders: name -> a call to time (its return value is ignored).
        repeats: timed calls per contender.
        warmup: untimed calls per contender first (tracing, caches, lazy imports).

    Returns:
        name -> list of ``repeats`` wall times in seconds, in repeat order.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
    names = list(contenders)
    for _ in range(warmup):
        for n in names:
            contenders[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            t = time.perf_counter()
            contenders[n]()
            times[n].append(time.perf_counter() - t)
    return times


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over repeats of num[i] / den[i] (both measured in the same repeat)."""
    if len(num) != len(den) or not num:
        raise ValueError(f"paired_ratio needs equally many values, got {len(num)} and {len(den)}")
    return float(statistics.median(a / b for a, b in zip(num, den)))


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def spread(num: Sequence[float], den: Sequence[float]) -> tuple[float, float]:
    """(min, max) of the per-repeat ratios: how much the machine's noise moved them."""
    rs = [a / b for a, b in zip(num, den)]
    return float(min(rs)), float(max(rs))


@dataclass
class Result:
    """One benchmark's outcome: the headline figures and everything to rebuild its table.

    ``figures`` rows are ``(label, value, target, met)``: ``target`` is text such as
    ``">= 1.0x"`` or ``""`` where the issue sets none; ``met`` is None when there is no target.
    """

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    figures: list[tuple[str, str, str, bool | None]]
    markdown: str
    artifacts: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fmt_x(v: float, digits: int = 2) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def header_lines(title: str, cfg: DictConfig, mach: Mapping[str, Any], quick: bool) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    mode = "QUICK mode (tiny sizes: checks the benchmark runs; its numbers mean nothing)" if quick else "full mode"
    return (
        f"# {title}\n\n"
        f"{when} · {mach['machine.cpu']} · {mach['machine.cpu_count']} CPUs · load (1 min) at start "
        f"{mach['machine.loadavg_1m_at_start']} · {mode} · repeats={cfg.repeats}, warm-up={cfg.warmup}\n"
    )


def write_and_log(result: Result, cfg: DictConfig, tracking_uri: str | None, mach: Mapping[str, Any],
                  quick: bool) -> str:
    """Write ``<out>/<name>.md`` and ``.json``, and log one MLflow run in ``cfg.experiment``.

    Returns:
        the MLflow run id.
    """
    import mlflow

    from attnlab import tracking

    out = out_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    md_path = out / f"{result.name}.md"
    md_path.write_text(result.markdown.rstrip() + "\n")
    js_path = out / f"{result.name}.json"
    js_path.write_text(json.dumps({
        "name": result.name, "quick": quick, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": dict(mach), "params": result.params, "metrics": result.metrics,
        "figures": [list(f) for f in result.figures], "notes": result.notes,
    }, indent=2, default=str) + "\n")
    exp_id = tracking.setup({"uri": tracking_uri, "artifact_dir": str(Path.cwd() / "mlruns")},
                            experiment=str(cfg.experiment))
    with tracking.run_lifecycle(exp_id, f"bench-{result.name}{'-quick' if quick else ''}",
                                {"attnlab.bench": result.name, "attnlab.bench.quick": str(quick).lower()}) as run:
        tracking.log_params_flat({**mach, **flatten(result.params), "quick": quick})
        finite = {k: float(v) for k, v in result.metrics.items() if v is not None and math.isfinite(float(v))}
        mlflow.log_metrics(finite)
        for p in [md_path, js_path, *result.artifacts]:
            mlflow.log_artifact(str(p))
        run_id = run.info.run_id
    return run_id


def compose_train(overrides: Sequence[str]):
    """The real ``conf/`` composed with overrides, as ``attnlab train`` would see it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from attnlab.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
