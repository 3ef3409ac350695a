"""TF-IDF (1-2-grams) + logistic regression on the synthetic tasks: how far a bag of words gets.

    .venv/bin/python experiments/synthetic_task/bag_of_words.py

Data: the composed default `data=synthetic` (conf/data/synthetic.yaml) with the task (and, for
the former keyword default, the sizes) overridden; the data seed is the run seed 0..4. Fit on
train, scored once on test; scikit-learn's defaults (C=1), nothing tuned.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import compose  # noqa: E402  (the real conf/ composed as `attnlab train` would)

from attnlab.config import to_plain  # noqa: E402
from attnlab.data import load  # noqa: E402

TASKS = {
    "pointer (default)": [],
    "keywords (default sizes)": ["data.task=keywords"],
    "keywords (former default: vocab 500, length 10-50)": ["data.task=keywords", "data.vocab_size=500",
                                                           "data.min_len=10", "data.max_len=50"],
}
SEEDS = range(5)


def accuracy(overrides: list[str], seed: int) -> float:
    ds = load(to_plain(compose(overrides).data), seed=seed)
    vec = TfidfVectorizer(ngram_range=(1, 2))
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(ds.train.texts), ds.train.labels)
    return float((clf.predict(vec.transform(ds.test.texts)) == ds.test.labels).mean())


def main() -> None:
    print("| task | test accuracy, mean ± std (seeds 0-4) | per seed |")
    print("|---|---|---|")
    for name, overrides in TASKS.items():
        accs = np.array([accuracy(overrides, s) for s in SEEDS])
        print(f"| {name} | {accs.mean():.3f} ± {accs.std(ddof=1):.3f} | {' '.join(f'{a:.3f}' for a in accs)} |")


if __name__ == "__main__":
    main()
