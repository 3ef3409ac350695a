"""Two MLflow experiments run on the same seeds (TREC) or folds (MR), compared paired by (seed, fold).

    python experiments/tuning_trec/paired.py TRACKING_URI EXPERIMENT_A EXPERIMENT_B

Prints, per experiment, val and test accuracy per (seed, fold), mean ± std and the test mean's 95 % CI
(t, n-1), then A − B per pair with its mean ± std and the paired t-test's p.
"""

from __future__ import annotations

import sys

import mlflow
import numpy as np
from scipy import stats


def by_unit(client: mlflow.MlflowClient, name: str) -> dict[tuple[int, int], tuple[float, float]]:
    """(seed, fold; -1 without folds) -> (val, test accuracy in %) of the experiment's FINISHED runs."""
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")
    return {(int(r.data.tags["attnlab.seed"]), int(r.data.tags.get("attnlab.fold") or -1)):
            (100 * r.data.metrics["val_accuracy"], 100 * r.data.metrics["test_accuracy"]) for r in runs}


def main(uri: str, a: str, b: str) -> None:
    client = mlflow.MlflowClient(uri)
    runs = {a: by_unit(client, a), b: by_unit(client, b)}
    seeds = sorted(set(runs[a]) & set(runs[b]))
    for name, rows in runs.items():
        for i, split in enumerate(("val", "test")):
            x = np.array([rows[s][i] for s in seeds])
            half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
            print(f"{name} {split}: {' '.join(f'{v:.2f}' for v in x)} -> {x.mean():.2f} ± {x.std(ddof=1):.2f} "
                  f"[{x.mean() - half:.2f}, {x.mean() + half:.2f}]")
    for i, split in enumerate(("val", "test")):
        xa = np.array([runs[a][s][i] for s in seeds])
        xb = np.array([runs[b][s][i] for s in seeds])
        d = xa - xb
        print(f"{a} - {b} {split}: {' '.join(f'{v:+.2f}' for v in d)} -> {d.mean():+.2f} ± {d.std(ddof=1):.2f}, "
              f"paired t p = {stats.ttest_rel(xa, xb).pvalue:.3f} ((seed, fold): {seeds})")


if __name__ == "__main__":
    main(*sys.argv[1:4])
