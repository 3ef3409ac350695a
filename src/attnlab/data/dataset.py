"""The in-memory data model shared by every loader, plus config-reading helpers.

A :class:`Dataset` always has three splits (train / val / test) with labels encoded as
int64 indices into ``Dataset.classes``. Loaders build it; nothing downstream needs to
know which loader did.

The config helpers take any mapping (a plain ``dict`` or an OmegaConf ``DictConfig``,
which is a ``Mapping`` and returns ``None`` from ``.get`` for absent or ``???`` keys)
and raise :class:`~attnlab.errors.ConfigError` naming ``data.<key>`` and the bad value.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.errors import ConfigError, DataError

__all__ = ["Dataset", "Split", "sha256_file"]


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


# --------------------------------------------------------------------------- config

def cfg_get(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``cfg[key]``, or ``default`` when the key is absent, ``None`` or ``???``."""
    value = cfg.get(key)
    return default if value is None else value


def cfg_str(cfg: Mapping[str, Any], key: str, default: str | None = None,
            *, required_for: str | None = None) -> str | None:
    value = cfg_get(cfg, key, default)
    if value is None:
        if required_for:
            raise ConfigError(f"data.{key} is required for {required_for}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"data.{key} must be a non-empty string, got {value!r}")
    return value


def cfg_int(cfg: Mapping[str, Any], key: str, default: int | None = None, *,
            minimum: int | None = None, required_for: str | None = None) -> int | None:
    """An int config value (bools rejected), checked against ``minimum``."""
    value = cfg_get(cfg, key, default)
    if value is None:
        if required_for:
            raise ConfigError(f"data.{key} is required for {required_for}")
        return None
    # bool is an int subclass; `true` for a count is a config mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"data.{key} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"data.{key} must be >= {minimum}, got {value}")
    return value


def cfg_fraction(cfg: Mapping[str, Any], key: str, default: float | None = None, *,
                 required_for: str | None = None, allow_zero: bool = False) -> float | None:
    """A float in (0, 1) (or [0, 1) with ``allow_zero``)."""
    value = cfg_get(cfg, key, default)
    if value is None:
        if required_for:
            raise ConfigError(f"data.{key} is required for {required_for}")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ConfigError(f"data.{key} must be a number in (0, 1), got {value!r}")
    value = float(value)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        rng = "[0, 1)" if allow_zero else "(0, 1)"
        raise ConfigError(f"data.{key} must be in {rng}, got {value!r}")
    return value


def cfg_bool(cfg: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = cfg_get(cfg, key, default)
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"data.{key} must be true or false, got {value!r}")
    return bool(value)


def resolve_path(cfg: Mapping[str, Any], key: str, *, required_for: str | None = None) -> Path | None:
    """The absolute path in ``cfg[key]``.

    Absolute paths are used as given; a relative one is resolved against
    ``cfg["base_dir"]`` when set, else against the current working directory (read at
    call time, so resolve before anything changes directory).
    """
    raw = cfg_str(cfg, key, required_for=required_for)
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        base = cfg_str(cfg, "base_dir")
        base_path = Path(base).expanduser() if base else Path.cwd()
        path = base_path / path
    # abspath, not resolve(): normalise ".." without swapping a symlinked shared/ for
    # its target, so the logged path is the one the user recognises.
    return Path(os.path.abspath(path))


def req_int(cfg: Mapping[str, Any], key: str, *, required_for: str, minimum: int | None = None) -> int:
    """A required int (ConfigError naming ``data.<key>`` when absent)."""
    value = cfg_int(cfg, key, minimum=minimum, required_for=required_for)
    assert value is not None
    return value


def req_fraction(cfg: Mapping[str, Any], key: str, *, required_for: str) -> float:
    """A required fraction in (0, 1)."""
    value = cfg_fraction(cfg, key, required_for=required_for)
    assert value is not None
    return value


def req_path(cfg: Mapping[str, Any], key: str, *, required_for: str) -> Path:
    """A required path, resolved as in :func:`resolve_path`."""
    value = resolve_path(cfg, key, required_for=required_for)
    assert value is not None
    return value
