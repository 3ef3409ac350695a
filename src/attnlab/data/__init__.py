"""Data loading for attnlab: ``load(cfg, seed) -> Dataset``.

``cfg`` is the ``data`` config group as any mapping (a dict or an OmegaConf
``DictConfig``); absent, ``null`` and ``???`` keys all count as unset. ``cfg["name"]``
picks the loader:

============  ==============================================================
synthetic     keyword task with token rationales (:mod:`.synthetic`)
mr            MR sentence polarity, 10-fold CV protocol (:mod:`.benchmarks`)
trec          TREC question type, official 500-question test (:mod:`.benchmarks`)
files         any CSV / TSV / JSONL files (:mod:`.files`)
============  ==============================================================

Options common to all loaders, applied after loading:

- ``max_train_samples``: keep a stratified random subset (run seed) of train only.
- ``max_eval_samples``: the same for val and test, drawn with ``split_seed``
  (default 0) so that every run seed is scored on the same rows.
- ``lowercase``: lower-case every text.

This package knows nothing of Keras, Hydra or MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

import numpy as np

from attnlab.data.benchmarks import load_mr, load_trec
from attnlab.data.dataset import Dataset, Split, cfg_bool, cfg_int, sha256_file
from attnlab.data.files import load_files, read_table
from attnlab.data.splits import kfold_indices, stratified_split, stratified_subsample
from attnlab.data.synthetic import load_synthetic
from attnlab.errors import ConfigError, DataError

__all__ = [
    "LOADERS",
    "ConfigError",
    "DataError",
    "Dataset",
    "Split",
    "kfold_indices",
    "load",
    "read_table",
    "sha256_file",
    "stratified_split",
    "stratified_subsample",
]

LOADERS: dict[str, Callable[[Mapping[str, Any], int], Dataset]] = {
    "synthetic": load_synthetic,
    "mr": load_mr,
    "trec": load_trec,
    "files": load_files,
}


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
    """Load the data set described by ``cfg`` (the ``data`` config group).

    ``seed`` is the run seed: it drives synthetic generation, validation carving and
    the ``max_train_samples`` subset; test sets and MR folds never depend on it.
    Raises ConfigError for bad config values and DataError for bad data files.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"the data config must be a mapping, got {type(cfg).__name__}")
    name = cfg.get("name")
    if isinstance(name, Enum):  # a structured config may type data.name as a str Enum
        name = name.value
    if not isinstance(name, str) or name not in LOADERS:
        raise ConfigError(f"data.name must be one of {', '.join(LOADERS)}; got {name!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    seed = int(seed)
    # Common options are checked before any file is read, so a typo fails instantly.
    lowercase = cfg_bool(cfg, "lowercase", False)
    max_train = cfg_int(cfg, "max_train_samples", minimum=1)
    max_eval = cfg_int(cfg, "max_eval_samples", minimum=1)
    split_seed = cfg_int(cfg, "split_seed", 0, minimum=0) or 0

    ds = LOADERS[name](cfg, seed)

    info: dict[str, Any] = {"name": ds.name, "seed": seed, "n_classes": len(ds.classes),
                            "lowercase": lowercase}
    if max_train is not None and max_train < len(ds.train):
        info["n_train_full"] = len(ds.train)
        idx = stratified_subsample(ds.train.labels, max_train, seed,
                                   what=f"{ds.name} train split", n_key="data.max_train_samples")
        ds.train = ds.train.take(idx)
    if max_eval is not None:
        for part in ("val", "test"):
            split: Split = getattr(ds, part)
            if max_eval < len(split):
                info[f"n_{part}_full"] = len(split)
                idx = stratified_subsample(split.labels, max_eval, split_seed,
                                           what=f"{ds.name} {part} split",
                                           n_key="data.max_eval_samples")
                setattr(ds, part, split.take(idx))
    if lowercase:
        for split in ds.splits.values():
            split.texts = [t.lower() for t in split.texts]
    info.update({"n_train": len(ds.train), "n_val": len(ds.val), "n_test": len(ds.test)})
    ds.info = {**info, **ds.info}
    return ds
