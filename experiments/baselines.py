"""Accuracy of the default configuration on MR (10-fold CV) and TREC (500 test questions).

Reads the FINISHED runs from an MLflow store and prints a Markdown table: n, mean ± std,
95 % CI (t distribution) and the per-fold / per-seed values, next to Kim (2014).

    python experiments/baselines.py --tracking-uri sqlite:////work/runs/mlflow.db

Which runs count (see experiments/README.md):
- MR: experiment `baseline`, tag attnlab.data=mr, one run per fold (seed 0).
- TREC: the default configuration's runs inside the pooling ablation (variant
  `pool=mean,max_len=40`, i.e. the defaults with max_len 40, which truncates no TREC
  question), one run per seed; identical runs from other ablations are not double-counted.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from scipy import stats

KIM_2014 = {"mr": {"CNN-rand": 76.1, "CNN-static": 81.0, "CNN-non-static": 81.5, "NBSVM": 79.4},
            "trec": {"CNN-rand": 91.2, "CNN-static": 92.8, "CNN-non-static": 93.6}}


def _runs(client, experiment: str, data: str, variant: str | None) -> list:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    flt = f"tags.`attnlab.data` = '{data}' and attributes.status = 'FINISHED'"
    if variant is not None:
        flt += f" and tags.`attnlab.variant` = '{variant}'"
    return client.search_runs([exp.experiment_id], flt, max_results=1000)


def _summary(values: list[float]) -> tuple[int, float, float, float, float]:
    a = np.asarray(values, float) * 100
    n = len(a)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
    return n, mean, std, mean - half, mean + half


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    args = p.parse_args()
    from mlflow import MlflowClient

    client = MlflowClient(args.tracking_uri)
    rows = []
    mr = _runs(client, "baseline", "mr", None)
    by_fold = {int(r.data.tags["attnlab.fold"]): r for r in mr}  # one run per fold
    rows.append(("MR", "10-fold CV, mean of fold test accuracies (seed 0)",
                 {f"fold {k}": by_fold[k].data.metrics["test_accuracy"] for k in sorted(by_fold)}))
    trec = _runs(client, "ablation-pooling", "trec", "pool=mean,max_len=40")
    by_seed = {int(r.data.tags["attnlab.seed"]): r for r in trec}
    rows.append(("TREC", "500 official test questions, mean over seeds",
                 {f"seed {k}": by_seed[k].data.metrics["test_accuracy"] for k in sorted(by_seed)}))

    print("| data | protocol | n | test accuracy mean ± std | 95 % CI | Kim 2014 CNN-rand | NBSVM |")
    print("|---|---|---|---|---|---|---|")
    for name, protocol, vals in rows:
        if not vals:
            print(f"| {name} | {protocol} | 0 | – | – | | |")
            continue
        n, mean, std, lo, hi = _summary(list(vals.values()))
        kim = KIM_2014[name.lower()]
        print(f"| {name} | {protocol} | {n} | {mean:.2f} ± {std:.2f} | [{lo:.2f}, {hi:.2f}] | "
              f"{kim['CNN-rand']} | {kim.get('NBSVM', '–')} |")
    print()
    for name, _, vals in rows:
        print(f"{name} per unit: " + ", ".join(f"{k}: {v * 100:.2f}" for k, v in vals.items()))


if __name__ == "__main__":
    main()
