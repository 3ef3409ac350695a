"""The in-memory data model shared by every loader.

A :class:`Dataset` always has three splits (train / val / test) with labels encoded as
int64 indices into ``Dataset.classes``. Loaders build it; nothing downstream needs to
know which loader did.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.errors import DataError

__all__ = ["Dataset", "Split", "encode_labels", "resolve_path", "sha256_file", "sorted_classes"]


@dataclass
class Split:
    """One split: texts, encoded labels and (synthetic data only) token rationales."""

    texts: list[str]
    labels: np.ndarray  # int64 class indices into Dataset.classes
    # Per text, a 0/1 int8 array aligned with ``text.split()``: 1 where the token
    # decides the label (synthetic data only; None elsewhere).
    rationale: list[np.ndarray] | None = None
    # Per text, its 0-based record number in the file it was read from (the data row
    # after the header), so a prediction can be traced back to its source line and
    # tests can check that folds partition the file. None for synthetic data.
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.texts)
        if self.labels.shape != (n,):
            raise ValueError(f"Split has {n} texts but labels of shape {self.labels.shape}")
        if self.rationale is not None and len(self.rationale) != n:
            raise ValueError(f"Split has {n} texts but {len(self.rationale)} rationales")
        if self.rows is not None:
            self.rows = np.asarray(self.rows, dtype=np.int64)
            if self.rows.shape != (n,):
                raise ValueError(f"Split has {n} texts but rows of shape {self.rows.shape}")

    def __len__(self) -> int:
        return len(self.texts)

    def rationale_matrix(self, length: int) -> np.ndarray:
        """Rationale masks as an int8 (N, length) array (cut or zero-padded to ``length``)."""
        if self.rationale is None:
            raise ValueError("this split has no rationale (only synthetic data does)")
        out = np.zeros((len(self), length), dtype=np.int8)
        for i, r in enumerate(self.rationale):
            r = np.asarray(r[:length], dtype=np.int8)
            out[i, : len(r)] = r
        return out

    def take(self, idx: Sequence[int] | np.ndarray) -> Split:
        """A new split holding the records at positions ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        return Split(
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            rationale=None if self.rationale is None else [self.rationale[i] for i in idx],
            rows=None if self.rows is None else self.rows[idx],
        )


@dataclass
class Dataset:
    """A loaded data set: three splits, the class names and the provenance of its files."""

    name: str
    classes: list[str]  # sorted label names; labels index into it
    train: Split
    val: Split
    test: Split
    files: dict[str, str] = field(default_factory=dict)  # logical name -> absolute path
    sha256: dict[str, str] = field(default_factory=dict)  # same keys -> sha256 hex of bytes
    info: dict[str, Any] = field(default_factory=dict)  # flat scalars for logging

    @property
    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def sizes(self) -> dict[str, int]:
        """``n_train``, ``n_val``, ``n_test`` and ``n_classes`` as loaded."""
        return {"n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test),
                "n_classes": len(self.classes)}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file's bytes (read in chunks, so large files are fine)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- labels

_INT_RE = re.compile(r"[+-]?\d+")


def _class_sort_key(name: str) -> tuple[int, int, str]:
    # Integer-like labels ("0", "1", "10") sort numerically so that class index i is
    # label "i" for the common 0..K-1 encoding; everything else sorts as text.
    if _INT_RE.fullmatch(name):
        return (0, int(name), name)
    return (1, 0, name)


def sorted_classes(labels: Iterable[str]) -> list[str]:
    """The distinct label names, sorted (integer-like names numerically)."""
    return sorted(set(labels), key=_class_sort_key)


def encode_labels(labels: Sequence[str], classes: Sequence[str], *, where: str) -> np.ndarray:
    """Map label names to int64 indices into ``classes``.

    A label absent from ``classes`` (i.e. never seen in the training data) raises a
    DataError naming the label, how often it occurs and ``where`` it came from.
    """
    index = {c: i for i, c in enumerate(classes)}
    unseen = [lab for lab in labels if lab not in index]
    if unseen:
        first = unseen[0]
        others = sorted(set(unseen) - {first})
        extra = f" (and {len(others)} other unseen label(s): {others[:5]!r})" if others else ""
        raise DataError(
            f"{where}: label {first!r} ({unseen.count(first)} row(s)) never occurs in the "
            f"training data, whose classes are {list(classes)!r}{extra}"
        )
    return np.fromiter((index[lab] for lab in labels), dtype=np.int64, count=len(labels))


# --------------------------------------------------------------------------- paths

def resolve_path(raw: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None) -> Path:
    """``raw`` as an absolute path: as given when absolute, else against ``base_dir`` (or the
    current working directory, read at call time, so resolve before anything changes it).

    ``abspath``, not ``resolve()``: ``..`` is normalised without swapping a symlinked
    ``shared/`` for its target, so the logged path is the one the user recognises.
    """
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (Path(base_dir).expanduser() if base_dir else Path.cwd()) / path
    return Path(os.path.abspath(path))
