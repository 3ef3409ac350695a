"""The two published benchmarks, each with its standard evaluation protocol.

- MR (Pang & Lee 2005): one TSV, no official split. Protocol: stratified 10-fold
  cross-validation; fold ``k`` is the test set and the validation split is carved from
  the other folds. The fold assignment uses ``split_seed`` (default 0), never the run
  seed, so every run seed is scored on the same test fold.
- TREC (Li & Roth 2002): train and test TSVs; the test set is the 500 official
  questions and the validation split is carved from train. ``label`` holds the 6
  coarse classes (``label_column: fine_label`` gives the 50 fine ones).

Model selection must use the validation split only; see ../shared/data/README.md.
"""

from __future__ import annotations

import numpy as np

from attnlab import checks
from attnlab.data.dataset import Dataset, resolve_path
from attnlab.data.files import check_fraction, encode_table, encode_training, read_table
from attnlab.data.splits import kfold_indices, stratified_split
from attnlab.errors import ConfigError

__all__ = ["load_mr", "load_trec"]


def load_mr(*, seed: int, path: str, n_folds: int, fold: int, split_seed: int, val_fraction: float,
            text_column: str, label_column: str, format: str) -> Dataset:  # noqa: A002 - the config key
    """MR (``data=mr``): test = fold ``fold`` of ``n_folds`` (assignment fixed by ``split_seed``),
    validation carved from the other folds with the run ``seed``."""
    n_folds = checks.positive_int("n_folds", n_folds)
    if n_folds < 2:
        raise ConfigError(f"data.n_folds={n_folds}: must be >= 2")
    fold = checks.non_negative_int("fold", fold)
    if fold >= n_folds:
        raise ConfigError(f"data.fold must be in 0..{n_folds - 1} (data.n_folds={n_folds}), got {fold}")
    split_seed = checks.non_negative_int("split_seed", split_seed)
    check_fraction("val_fraction", val_fraction)
    table = read_table(resolve_path(path), fmt=format, text_column=text_column,
                       label_column=label_column, key="data.path")
    classes, y = encode_training(table)
    pool, test_idx = kfold_indices(y, n_folds, fold, split_seed, what=f"{table.path}", class_names=classes)
    keep, held = stratified_split(y[pool], val_fraction, seed, class_names=classes,
                                  what=f"training folds of {table.path} (data.fold={fold})")
    return Dataset(
        name="mr", classes=classes,
        train=table.split(pool[keep], y), val=table.split(pool[held], y), test=table.split(test_idx, y),
        files={"data": str(table.path)}, sha256={"data": table.sha256},
        info={"fold": fold, "n_folds": n_folds, "split_seed": split_seed,
              "val_fraction": val_fraction, "n_rows": len(table)},
    )


def load_trec(*, seed: int, train_path: str, test_path: str, val_fraction: float, split_seed: int,
              text_column: str, label_column: str, format: str) -> Dataset:  # noqa: A002 - the config key
    """TREC (``data=trec``): test = the official test file, validation carved from train with ``seed``
    (``split_seed`` fixes the inner folds that ``data.inner_folds`` applies after loading)."""
    check_fraction("val_fraction", val_fraction)
    split_seed = checks.non_negative_int("split_seed", split_seed)
    cols = dict(fmt=format, text_column=text_column, label_column=label_column)
    train_t = read_table(resolve_path(train_path), key="data.train_path", **cols)
    classes, y = encode_training(train_t)
    test_t = read_table(resolve_path(test_path), key="data.test_path", **cols)
    keep, held = stratified_split(y, val_fraction, seed, what=f"training data {train_t.path}", class_names=classes)
    return Dataset(
        name="trec", classes=classes,
        train=train_t.split(keep, y), val=train_t.split(held, y),
        test=test_t.split(np.arange(len(test_t)), encode_table(test_t, classes)),
        files={"train": str(train_t.path), "test": str(test_t.path)},
        sha256={"train": train_t.sha256, "test": test_t.sha256},
        info={"val_fraction": val_fraction, "label_column": label_column, "split_seed": split_seed},
    )
