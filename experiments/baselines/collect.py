"""Issue 15's baselines: model=tfidf_lr and experiment=kim_cnn_rand on TREC and MR.

Reads the FINISHED runs of the experiments `baselines-tfidf` and `baselines-kim` (or those given
with --experiments) from an MLflow store and prints Markdown: one row per run (seed or fold), then per (model, data) n, mean ± std
(sample std, ddof=1) and the 95 % CI of the mean (t distribution) of test accuracy, with
validation accuracy beside it.

    python experiments/baselines/collect.py --tracking-uri sqlite:////work/runs/base/mlflow.db
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from scipy import stats

ANCHORS = {("tfidf_lr", "mr"): "78.2 ± 1.2", ("tfidf_lr", "trec"): "88.2",
           ("kim_cnn_rand", "mr"): "76.1", ("kim_cnn_rand", "trec"): "91.2"}


def summary(values: list[float]) -> str:
    a = np.asarray(values, float) * 100
    if len(a) < 2:
        return f"{a.mean():.2f} (n = {len(a)}, no std)" if len(a) else "–"
    sd = a.std(ddof=1)
    half = stats.t.ppf(0.975, len(a) - 1) * sd / np.sqrt(len(a))
    return f"{a.mean():.2f} ± {sd:.2f} [{a.mean() - half:.2f}, {a.mean() + half:.2f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    p.add_argument("--experiments", nargs="+", default=["baselines-tfidf", "baselines-kim"])
    args = p.parse_args()
    from mlflow import MlflowClient

    client = MlflowClient(args.tracking_uri)
    groups: dict[tuple[str, str], list] = {}
    for name in args.experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            continue
        for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=1000):
            groups.setdefault((r.data.tags["attnlab.model"], r.data.tags["attnlab.data"]), []).append(r)
    print("| model | data | seed | fold | val acc | test acc | best epoch / epochs | minutes | run |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (model, data), runs in sorted(groups.items()):
        for r in sorted(runs, key=lambda r: (int(r.data.tags["attnlab.seed"]), int(r.data.tags.get("attnlab.fold", -1)))):
            m, t = r.data.metrics, r.data.tags
            epochs = f"{int(m['best_epoch'])} / {int(m['epochs_completed'])}" if "best_epoch" in m else "–"
            print(f"| {model} | {data} | {t['attnlab.seed']} | {t.get('attnlab.fold', '–')} | {100 * m['val_accuracy']:.2f} "
                  f"| {100 * m['test_accuracy']:.2f} | {epochs} | {m['time_total'] / 60:.1f} | `{r.info.run_id[:8]}` |")
    print("\n| model | data | n | test accuracy mean ± std [95 % CI] | val accuracy mean ± std | published |")
    print("|---|---|---|---|---|---|")
    for (model, data), runs in sorted(groups.items()):
        test = [r.data.metrics["test_accuracy"] for r in runs]
        val = [r.data.metrics["val_accuracy"] for r in runs]
        print(f"| {model} | {data} | {len(runs)} | {summary(test)} | {summary(val).split(' [')[0]} "
              f"| {ANCHORS.get((model, data), '–')} |")
    _attention_table(groups)


ATTENTION_METRICS = ("attention_entropy", "faith/attention/comprehensiveness", "faith/random/comprehensiveness",
                     "faith/attention/tau_loo")


def _attention_table(groups: dict[tuple[str, str], list]) -> None:
    """Mean ± std of the attention and faithfulness metrics, for the groups whose runs logged them."""
    rows = [(k, runs) for k, runs in sorted(groups.items()) if all(ATTENTION_METRICS[0] in r.data.metrics for r in runs)]
    if not rows:
        return
    print("\n| model | data | n | " + " | ".join(ATTENTION_METRICS) + " |")
    print("|---|---|---|" + "---|" * len(ATTENTION_METRICS))
    for (model, data), runs in rows:
        cells = []
        for name in ATTENTION_METRICS:
            v = np.asarray([r.data.metrics[name] for r in runs if name in r.data.metrics], float)
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else (f"{v[0]:.3f}" if len(v) else "–"))
        print(f"| {model} | {data} | {len(runs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
