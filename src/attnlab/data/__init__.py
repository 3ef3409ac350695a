"""Data loading for attnlab: ``load(cfg, seed) -> Dataset``.

``cfg`` is the ``data`` config node: a loader component ``{_target_: ..., <its arguments>}``
plus the options every data set takes (``conf/common/data.yaml``), applied after loading:

- ``max_train_samples``: keep a stratified random subset (run seed) of train only.
- ``max_eval_samples``: the same for val and test, drawn with a fixed seed
  (:data:`EVAL_SUBSET_SEED`) so that every run seed is scored on the same rows.
- ``lowercase``: lower-case every text.
- ``inner_folds`` / ``inner_fold``: K-fold cross-validation inside the training part (the
  loader's train + val, never test): validation becomes inner fold ``inner_fold`` of
  ``inner_folds`` (stratified, fixed by the data set's ``split_seed``, never the run seed),
  train the other K-1 folds. Applied before ``max_train_samples``.

Built-in loaders: :func:`attnlab.data.synthetic.load_synthetic`,
:func:`attnlab.data.corpora.load_mr`, :func:`attnlab.data.corpora.load_trec`,
:func:`attnlab.data.files.load_files`. A loader of your own is any callable
``fn(*, seed, <its keys>) -> Dataset`` named by ``_target_`` (see README, "Extending attnlab").

This package knows nothing of Keras, Hydra or MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from attnlab import checks, components
from attnlab.data.dataset import Dataset, Split, sha256_file
from attnlab.data.splits import kfold_indices, stratified_split, stratified_subsample
from attnlab.errors import ConfigError, DataError

__all__ = [
    "COMMON_KEYS",
    "ConfigError",
    "DataError",
    "Dataset",
    "Split",
    "kfold_indices",
    "load",
    "sha256_file",
    "stratified_split",
    "stratified_subsample",
    "training_part",
]

# Keys of every data node that are attnlab's, not the loader's.
COMMON_KEYS = ("name", "max_train_samples", "max_eval_samples", "lowercase", "inner_folds", "inner_fold")
EVAL_SUBSET_SEED = 0


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
    """Load the data set described by ``cfg`` (the ``data`` config node).

    ``seed`` is the run seed: it drives synthetic generation, validation carving and
    the ``max_train_samples`` subset; test sets and MR folds never depend on it.

    Raises:
        ConfigError: a bad config value (naming ``data.<key>``).
        DataError: a bad data file.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"the data config must be a mapping, got {type(cfg).__name__}")
    try:
        checks.non_negative_int("seed", seed)
    except checks.ArgumentError as e:
        raise components.config_error(e, "seed", seed) from None
    common = {k: cfg[k] for k in COMMON_KEYS if k in cfg}
    spec = {k: v for k, v in cfg.items() if k not in COMMON_KEYS}
    ds = components.instantiate(spec, "data", seed=int(seed))
    if not isinstance(ds, Dataset):
        raise ConfigError(f"data._target_={spec['_target_']!r} returned {type(ds).__name__}, not an attnlab Dataset")
    if "name" in common:
        ds.name = str(common["name"])
    return _apply_common(ds, common, int(seed), cfg.get("split_seed"))


def _optional_count(common: Mapping[str, Any], key: str) -> int | None:
    value = common.get(key)
    if value is None:
        return None
    try:
        return checks.positive_int(key, value)
    except checks.ArgumentError as e:
        raise components.config_error(e, f"data.{key}", value) from None


def _concat(a: Split, b: Split) -> Split:
    both = a.rationale is not None and b.rationale is not None
    return Split(texts=[*a.texts, *b.texts], labels=np.concatenate([a.labels, b.labels]),
                 rationale=[*a.rationale, *b.rationale] if both else None,
                 rows=np.concatenate([a.rows, b.rows]) if a.rows is not None and b.rows is not None else None)


def training_part(ds: Dataset) -> Split:
    """train + val in an order that does not depend on how the run seed carved val: by file
    record (``rows``), then text and label (identical records are interchangeable)."""
    pool = _concat(ds.train, ds.val)
    rows = pool.rows if pool.rows is not None else np.full(len(pool), -1)
    order = sorted(range(len(pool)), key=lambda i: (int(rows[i]), pool.texts[i], int(pool.labels[i])))
    return pool.take(order)


def _inner_fold(ds: Dataset, common: Mapping[str, Any], split_seed: Any) -> dict[str, Any]:
    """Validation := inner fold ``inner_fold`` of ``inner_folds`` over the training part; train := the rest."""
    k, fold = common.get("inner_folds"), common.get("inner_fold", 0)
    if k is None:
        return {}
    if split_seed is None:
        raise ConfigError(f"data.inner_folds={k}: needs data.split_seed (it fixes the folds), which data "
                          f"{ds.name!r} does not have; add split_seed to its config and loader")
    pool = training_part(ds)
    train_idx, val_idx = kfold_indices(pool.labels, k, fold, split_seed, what=f"{ds.name} training part (train + val)",
                                       class_names=ds.classes, keys=("data.inner_folds", "data.inner_fold"))
    ds.train, ds.val = pool.take(train_idx), pool.take(val_idx)
    return {"inner_folds": int(k), "inner_fold": int(fold)}


def _apply_common(ds: Dataset, common: Mapping[str, Any], seed: int, split_seed: Any = None) -> Dataset:
    max_train = _optional_count(common, "max_train_samples")
    max_eval = _optional_count(common, "max_eval_samples")
    info: dict[str, Any] = {"name": ds.name, "seed": seed, "n_classes": len(ds.classes)}
    info.update(_inner_fold(ds, common, split_seed))
    if max_train is not None and max_train < len(ds.train):
        info["n_train_full"] = len(ds.train)
        idx = stratified_subsample(ds.train.labels, max_train, seed,
                                   what=f"{ds.name} train split", n_key="data.max_train_samples")
        ds.train = ds.train.take(idx)
    for part in ("val", "test"):
        split: Split = getattr(ds, part)
        if max_eval is not None and max_eval < len(split):
            info[f"n_{part}_full"] = len(split)
            idx = stratified_subsample(split.labels, max_eval, EVAL_SUBSET_SEED,
                                       what=f"{ds.name} {part} split", n_key="data.max_eval_samples")
            setattr(ds, part, split.take(idx))
    if common.get("lowercase"):
        for split in ds.splits.values():
            split.texts = [t.lower() for t in split.texts]
    info.update({"lowercase": bool(common.get("lowercase")), "n_train": len(ds.train),
                 "n_val": len(ds.val), "n_test": len(ds.test)})
    ds.info = {**info, **ds.info}
    return ds
