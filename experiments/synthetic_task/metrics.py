"""The metrics of the runs in one MLflow store (the sqlite file `attnlab train` writes in its
launch directory), as a Markdown table.

    .venv/bin/python experiments/synthetic_task/metrics.py <dir with mlflow.db> [<dir> ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import numpy as np

KEYS = ["val_accuracy", "test_accuracy", "attention_rationale_mass", "attention_rationale_chance",
        "attention_entropy", "faith/attention/comprehensiveness", "faith/random/comprehensiveness",
        "faith/attention/tau_loo", "attention_permutation_tvd", "epochs_completed", "time_fit", "time_total"]
SHORT = ["val acc", "test acc", "rationale mass", "chance", "entropy", "comp. (attention)", "comp. (random)",
         "tau_loo (attention)", "permutation TVD", "epochs", "fit s", "total s"]


def rows(directory: str) -> list[tuple[str, str, dict[str, float]]]:
    client = mlflow.MlflowClient(f"sqlite:///{Path(directory).resolve() / 'mlflow.db'}")
    out = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
            out.append((run.data.tags.get("attnlab.model", "?"), run.data.tags.get("attnlab.seed", "?"),
                        run.data.metrics))
    return out


def main(dirs: list[str]) -> None:
    print("| model | seed | " + " | ".join(SHORT) + " | mass / chance |")
    print("|---|---|" + "---|" * (len(KEYS) + 1))
    table = [r for d in dirs for r in rows(d)]
    for model, seed, m in table:
        cells = [f"{m[k]:.4g}" if k in m else "–" for k in KEYS]
        ratio = m.get("attention_rationale_mass", np.nan) / m.get("attention_rationale_chance", np.nan)
        print(f"| {model} | {seed} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    if len(table) > 1:
        vals = {k: np.array([m.get(k, np.nan) for _, _, m in table]) for k in KEYS}
        cells = [f"{v.mean():.4g} ± {v.std(ddof=1):.2g}" for v in vals.values()]
        ratio = vals["attention_rationale_mass"] / vals["attention_rationale_chance"]
        print("| **mean ± std** | | " + " | ".join(cells) + f" | {ratio.mean():.2f} ± {ratio.std(ddof=1):.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
