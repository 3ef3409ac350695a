"""The two published benchmarks, each with its standard evaluation protocol.

- MR (Pang & Lee 2005): one TSV, no official split. Protocol: stratified 10-fold
  cross-validation; fold ``k`` is the test set and the validation split is carved from
  the other folds. The fold assignment uses ``split_seed`` (default 0), never the run
  seed, so every run seed is scored on the same test fold.
- TREC (Li & Roth 2002): train and test TSVs; the test set is the 500 official
  questions and the validation split is carved from train. ``label`` holds the 6
  coarse classes (``label_column: fine_label`` gives the 50 fine ones).

Model selection must use the validation split only; see /work/shared/data/README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from attnlab.data.dataset import Dataset, cfg_int, req_fraction, req_int, req_path, sorted_classes
from attnlab.data.files import cfg_format, encode_table, read_columns, read_table, require_two_classes
from attnlab.data.splits import kfold_indices, stratified_split
from attnlab.errors import ConfigError

__all__ = ["load_mr", "load_trec"]


def load_mr(cfg: Mapping[str, Any], seed: int) -> Dataset:
    """``data.name=mr``. Keys: ``path``, ``n_folds`` (default 10), ``fold``,
    ``split_seed`` (default 0), ``val_fraction``, ``text_column``, ``label_column``, ``format``."""
    need = "data.name=mr"
    path = req_path(cfg, "path", required_for=need)
    n_folds = cfg_int(cfg, "n_folds", 10, minimum=2) or 10
    fold = req_int(cfg, "fold", required_for=need)
    if not 0 <= fold < n_folds:
        raise ConfigError(
            f"data.fold must be in 0..{n_folds - 1} (data.n_folds={n_folds}), got {fold}"
        )
    split_seed = cfg_int(cfg, "split_seed", 0, minimum=0) or 0
    val_fraction = req_fraction(cfg, "val_fraction", required_for=need)
    text_column, label_column = read_columns(cfg)

    table = read_table(path, fmt=cfg_format(cfg), text_column=text_column,
                       label_column=label_column, key="data.path")
    require_two_classes(table)
    classes = sorted_classes(table.labels)
    y = encode_table(table, classes)
    pool, test_idx = kfold_indices(y, n_folds, fold, split_seed,
                                   what=f"{path}", class_names=classes)
    keep, held = stratified_split(y[pool], val_fraction, seed,
                                  what=f"training folds of {path} (data.fold={fold})",
                                  class_names=classes)
    return Dataset(
        name="mr",
        classes=classes,
        train=table.split(pool[keep], y),
        val=table.split(pool[held], y),
        test=table.split(test_idx, y),
        files={"data": str(path)},
        sha256={"data": table.sha256},
        info={"fold": fold, "n_folds": n_folds, "split_seed": split_seed,
              "val_fraction": val_fraction, "n_rows": len(table)},
    )


def load_trec(cfg: Mapping[str, Any], seed: int) -> Dataset:
    """``data.name=trec``. Keys: ``train_path``, ``test_path``, ``val_fraction``,
    ``text_column``, ``label_column`` (default ``label``: 6 coarse classes), ``format``."""
    need = "data.name=trec"
    train_path = req_path(cfg, "train_path", required_for=need)
    test_path = req_path(cfg, "test_path", required_for=need)
    val_fraction = req_fraction(cfg, "val_fraction", required_for=need)
    text_column, label_column = read_columns(cfg)
    fmt = cfg_format(cfg)
    cols = dict(fmt=fmt, text_column=text_column, label_column=label_column)

    train_t = read_table(train_path, key="data.train_path", **cols)
    require_two_classes(train_t)
    classes = sorted_classes(train_t.labels)
    y = encode_table(train_t, classes)
    test_t = read_table(test_path, key="data.test_path", **cols)
    y_test = encode_table(test_t, classes)
    keep, held = stratified_split(y, val_fraction, seed, what=f"training data {train_path}",
                                  class_names=classes)
    return Dataset(
        name="trec",
        classes=classes,
        train=train_t.split(keep, y),
        val=train_t.split(held, y),
        test=test_t.split(np.arange(len(test_t)), y_test),
        files={"train": str(train_path), "test": str(test_path)},
        sha256={"train": train_t.sha256, "test": test_t.sha256},
        info={"val_fraction": val_fraction, "label_column": label_column},
    )
