"""Accuracy of the default configuration (and model=cnn) on MR (10-fold CV) and TREC (500 test questions).

Reads the FINISHED runs from an MLflow store and prints a Markdown table: n, mean ± std,
95 % CI (t distribution) and the per-fold / per-seed values, next to Kim (2014).

    python experiments/baselines.py --tracking-uri sqlite:////work/runs/mlflow.db

Which runs count (see experiments/README.md): each row lists (experiment, variant tag)
sources and takes the first that has runs, one run per fold (MR, seed 0) or seed (TREC):
- MR default: experiment `baseline` (session 1), else the pooling ablation's `pool=mean`
  runs (session 2, identical numbers);
- TREC default: the pooling ablation's `pool=mean,max_len=40` runs (session 1), else the
  default's runs in `tuning-cnn` (session 2, identical numbers);
- `model=cnn` on MR (experiment `baseline`) and the TREC-tuned CNN (`tuning-cnn`).
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


ROWS = [
    ("MR", "default", "10-fold CV, mean of fold test accuracies (seed 0)", "mr", "fold",
     [("baseline", "data=mr,scale=sqrt_dk,pool=mean"), ("ablation-pooling", "pool=mean,threads=1")]),
    ("MR", "model=cnn", "10-fold CV, mean of fold test accuracies (seed 0)", "mr", "fold",
     [("baseline", "model=cnn,data=mr,scale=sqrt_dk,pool=max")]),
    ("TREC", "default", "500 official test questions, mean over seeds", "trec", "seed",
     [("ablation-pooling", "pool=mean,max_len=40"), ("tuning-cnn", "data=trec,max_len=40,scale=sqrt_dk,pool=mean")]),
    ("TREC", "model=cnn embedding_dim=300 embedding_dropout=0.5", "500 official test questions, mean over seeds",
     "trec", "seed",
     [("tuning-cnn", "data=trec,max_len=40,model=cnn,embedding_dim=300,embedding_dropout=0.5,scale=sqrt_dk,pool=max")]),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    args = p.parse_args()
    from mlflow import MlflowClient

    client = MlflowClient(args.tracking_uri)
    rows = []
    for data_name, model, protocol, data, unit, sources in ROWS:
        vals: dict[str, float] = {}
        for experiment, variant in sources:
            found = _runs(client, experiment, data, variant)
            by_unit = {int(r.data.tags[f"attnlab.{unit}"]): r for r in found}  # one run per fold / seed
            if by_unit:
                vals = {f"{unit} {k}": by_unit[k].data.metrics["test_accuracy"] for k in sorted(by_unit)}
                break
        rows.append((f"{data_name} ({model})", protocol, vals))

    print("| data | protocol | n | test accuracy mean ± std | 95 % CI | Kim 2014 CNN-rand | NBSVM |")
    print("|---|---|---|---|---|---|---|")
    for name, protocol, vals in rows:
        if not vals:
            print(f"| {name} | {protocol} | 0 | – | – | | |")
            continue
        n, mean, std, lo, hi = _summary(list(vals.values()))
        kim = KIM_2014[name.split()[0].lower()]
        print(f"| {name} | {protocol} | {n} | {mean:.2f} ± {std:.2f} | [{lo:.2f}, {hi:.2f}] | "
              f"{kim['CNN-rand']} | {kim.get('NBSVM', '–')} |")
    print()
    for name, _, vals in rows:
        print(f"{name} per unit: " + ", ".join(f"{k}: {v * 100:.2f}" for k, v in vals.items()))


if __name__ == "__main__":
    main()
