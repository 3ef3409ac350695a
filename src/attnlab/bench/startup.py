"""Start-up: ``attnlab --help`` and ``attnlab train --cfg job`` vs ``python -c "import tensorflow"``.

Each command is a fresh subprocess (what a user waits for), run interleaved with the
TensorFlow import; the figure is the median of the per-repeat ratios. A separate child
process checks which heavy libraries ``attnlab train --cfg job`` imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from attnlab.bench.common import Result, fmt_x, interleaved, median, paired_ratio, spread, table

HEAVY = ("tensorflow", "keras", "mlflow", "optuna", "sklearn", "matplotlib")


def _attnlab_exe() -> str:
    exe = Path(sys.executable).parent / "attnlab"
    return str(exe) if exe.exists() else "attnlab"


def imported_by(args: list[str], cwd: str) -> list[str]:
    """Heavy libraries present in ``sys.modules`` after ``attnlab <args>`` ran in a child."""
    code = ("import sys, json; from attnlab.cli import main\n"
            "try:\n    main(json.loads(sys.argv[1]))\nexcept SystemExit:\n    pass\n"
            f"print('RESULT', json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=_env())
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"attnlab {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")


def _env() -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run(cfg, quick: bool) -> Result:
    commands = {str(k): [str(a) for a in v] for k, v in cfg.startup.commands.items()}
    exe = _attnlab_exe()
    with tempfile.TemporaryDirectory() as cwd:
        def call(argv: list[str]):
            def go():
                proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, env=_env())
                if proc.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
            return go

        contenders = {name: call([exe, *args]) for name, args in commands.items()}
        contenders["import_tensorflow"] = call([sys.executable, "-c", "import tensorflow"])
        times = interleaved(contenders, int(cfg.repeats), int(cfg.warmup))
        heavy = {name: imported_by(args, cwd) for name, args in commands.items()}
    rows, metrics, figures = [], {}, []
    tf_t = times["import_tensorflow"]
    for name, args in commands.items():
        r = paired_ratio(times[name], tf_t)
        lo, hi = spread(times[name], tf_t)
        metrics[f"{name}_vs_import_tf"] = r
        metrics[f"{name}_s"] = median(times[name])
        metrics[f"{name}_imports_tensorflow"] = float("tensorflow" in heavy[name])
        rows.append([f"`attnlab {' '.join(args)}`", f"{median(times[name]):.2f}", f"**{fmt_x(r, 3)}** ({lo:.3f}–{hi:.3f})",
                     ", ".join(heavy[name]) or "none"])
        figures.append((f"start-up: `attnlab {' '.join(args)}` / `import tensorflow`", fmt_x(r, 3), "<= 0.25x", r <= 0.25))
        print(f"[startup] attnlab {' '.join(args)}: {r:.2f}x import tensorflow; imports {heavy[name]}", flush=True)
    metrics["import_tensorflow_s"] = median(tf_t)
    rows.append(['`python -c "import tensorflow"`', f"{median(tf_t):.2f}", "1.00x", "tensorflow"])
    text = "\n\n".join([
        "Subprocess wall time of each command vs `python -c \"import tensorflow\"`, interleaved "
        f"({cfg.repeats} repeats after {cfg.warmup} warm-up; seconds are medians, for context only).",
        table(["command", "median s", "ratio to import tensorflow (min–max)", "heavy libraries it imports"], rows),
    ])
    params = {"commands": commands, "repeats": int(cfg.repeats), "warmup": int(cfg.warmup)}
    return Result("startup", params, metrics, figures, text)
