"""Stratified splits, folds and subsamples over integer label arrays.

All functions return index arrays into ``labels``, sorted ascending, so a split keeps
the order of the file it came from (shuffle when training). scikit-learn does the
work; these wrappers check the preconditions first so the user sees a DataError that
names the class and the offending count instead of sklearn's generic ValueError.

``what`` describes the data being split for messages ("training data of /x/mr.tsv");
``class_names`` maps label indices to names for messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from attnlab.errors import ConfigError, DataError

__all__ = ["kfold_indices", "stratified_split", "stratified_subsample"]


def _check_seed(seed: int, name: str) -> int:
    # numpy/sklearn accept seeds in [0, 2**32); say so here rather than deep in sklearn.
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise ConfigError(f"{name} must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def _counts(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(labels, return_counts=True)


def _name(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= int(label) < len(class_names):
        return repr(class_names[int(label)])
    return repr(int(label))


def _as_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    return arr


def stratified_split(
    labels: Sequence[int] | np.ndarray,
    fraction: float,
    seed: int,
    *,
    what: str = "data",
    class_names: Sequence[str] | None = None,
    fraction_key: str = "data.val_fraction",
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of the rows, stratified by label.

    Returns ``(keep_idx, held_idx)``. The held-out size is ``ceil(fraction * n)`` as in
    sklearn. Raises DataError when a class has fewer than 2 members or when either side
    would be smaller than the number of classes (so some class could not appear in it).
    """
    y = _as_labels(labels)
    seed = _check_seed(seed, "seed")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 < fraction < 1:
        raise ConfigError(f"{fraction_key} must be in (0, 1), got {fraction!r}")
    n = len(y)
    classes, counts = _counts(y)
    if n == 0:
        raise DataError(f"{what}: nothing to split (0 rows)")
    small = classes[counts < 2]
    if len(small):
        names = ", ".join(_name(c, class_names) for c in small[:5])
        raise DataError(
            f"{what}: cannot carve a stratified {fraction_key}={fraction} split because class(es) "
            f"{names} have only 1 row; each class needs at least 2"
        )
    n_held = math.ceil(fraction * n)
    n_keep = n - n_held
    if n_held < len(classes) or n_keep < len(classes):
        raise DataError(
            f"{what}: {fraction_key}={fraction} of {n} rows holds out {n_held} and keeps {n_keep}, "
            f"but a stratified split needs at least one row per class ({len(classes)}) on "
            f"each side; change {fraction_key} or use more data"
        )
    try:
        keep, held = train_test_split(
            np.arange(n), test_size=n_held, stratify=y, random_state=seed, shuffle=True
        )
    except ValueError as exc:  # defensive: the checks above should cover sklearn's cases
        raise DataError(f"{what}: stratified split failed: {exc}") from exc
    return np.sort(keep), np.sort(held)


def kfold_indices(
    labels: Sequence[int] | np.ndarray,
    n_folds: int,
    fold: int,
    split_seed: int,
    *,
    what: str = "data",
    class_names: Sequence[str] | None = None,
    keys: tuple[str, str] = ("data.n_folds", "data.fold"),
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)`` of fold ``fold`` of a shuffled StratifiedKFold.

    The assignment depends only on ``labels``, ``n_folds`` and ``split_seed``, so every
    run seed sees the same folds and the ``n_folds`` test sets partition the rows.
    ``keys`` name the config keys of ``n_folds`` and ``fold`` in messages.
    """
    n_key, fold_key = keys
    y = _as_labels(labels)
    split_seed = _check_seed(split_seed, "data.split_seed")
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ConfigError(f"{n_key} must be an integer >= 2, got {n_folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < n_folds:
        raise ConfigError(
            f"{fold_key} must be an integer in 0..{n_folds - 1} ({n_key}={n_folds}), got {fold!r}"
        )
    classes, counts = _counts(y)
    small = classes[counts < n_folds]
    if len(small):
        names = ", ".join(f"{_name(c, class_names)} ({k})" for c, k in
                          zip(classes[counts < n_folds][:5], counts[counts < n_folds][:5]))
        raise DataError(
            f"{what}: {n_folds}-fold stratified cross-validation needs at least {n_folds} rows "
            f"per class, but class(es) {names} have fewer; lower {n_key}"
        )
    skf = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=split_seed)
    for k, (train_idx, test_idx) in enumerate(skf.split(np.zeros(len(y)), y)):
        if k == fold:
            return np.sort(train_idx), np.sort(test_idx)
    raise AssertionError("unreachable: fold checked against n_folds")


def stratified_subsample(
    labels: Sequence[int] | np.ndarray,
    n: int,
    seed: int,
    *,
    what: str = "data",
    n_key: str = "data.max_train_samples",
) -> np.ndarray:
    """Indices of a stratified random subset of exactly ``min(n, len(labels))`` rows.

    Each class gets a share proportional to its size (largest remainder), and at
    least one row, so no class disappears; rows within a class are drawn with
    ``np.random.default_rng(seed)``. Hand-written rather than sklearn's
    ``train_test_split(train_size=n)``, which refuses singleton classes and needs one
    discarded row per class, so it cannot honour every ``n``.
    """
    y = _as_labels(labels)
    seed = _check_seed(seed, "seed")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"{n_key} must be a positive integer, got {n!r}")
    if n >= len(y):
        return np.arange(len(y))
    classes, counts = _counts(y)
    if n < len(classes):
        raise DataError(
            f"{what}: {n_key}={n} is smaller than the number of classes ({len(classes)}), "
            f"so a stratified subsample cannot keep every class"
        )
    ideal = n * counts / counts.sum()
    take = np.minimum(np.maximum(np.floor(ideal).astype(np.int64), 1), counts)
    # The floor-at-one bump can overshoot n and the floors undershoot it; each loop
    # runs fewer than len(classes) times.
    while take.sum() > n:
        excess = np.where(take > 1, take - ideal, -np.inf)
        take[int(np.argmax(excess))] -= 1
    while take.sum() < n:
        room = np.where(take < counts, ideal - take, -np.inf)
        take[int(np.argmax(room))] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), size=int(k), replace=False)
              for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))
