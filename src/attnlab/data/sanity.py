"""Likely mistakes in a loaded data set that are not errors: each is a warning, logged as a run
tag ``attnlab.warning.<kind>`` and printed as one ``warning: ...`` line on stderr.

* the same file given for two splits (same bytes);
* texts of the test (or validation) split that also occur, exactly, in the training split;
* texts that the model's tokenizer turns into one token or none (:func:`short_texts`).
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from attnlab.data.dataset import Dataset

__all__ = ["dataset_warnings", "short_texts"]

WARNING_TAG = "attnlab.warning."


def _same_files(ds: Dataset) -> list[str]:
    by_digest: dict[str, list[str]] = {}
    for part, digest in ds.sha256.items():
        by_digest.setdefault(digest, []).append(part)
    return [f"the {' and '.join(parts)} files are identical ({ds.files.get(parts[0], '?')}): their "
            f"scores are not held-out scores" for parts in by_digest.values() if len(parts) > 1]


def _overlap(ds: Dataset, split: str) -> str | None:
    train = set(ds.train.texts)
    texts = ds.splits[split].texts
    dup = sum(1 for t in texts if t in train)
    if not dup:
        return None
    return (f"{dup} of {len(texts)} {split} text(s) ({dup / max(len(texts), 1):.1%}) also occur exactly in the "
            f"training split: the {split} score overstates generalisation")


def dataset_warnings(ds: Dataset) -> dict[str, str]:
    """``{tag: message}`` for every likely mistake found in ``ds`` (empty when none)."""
    out = {}
    same = _same_files(ds)
    if same:
        out[WARNING_TAG + "identical_files"] = "; ".join(same)
    for split in ("test", "val"):
        msg = _overlap(ds, split)
        if msg:
            out[WARNING_TAG + f"{split}_overlap"] = msg
    return out


def short_texts(ids: np.ndarray, split: str, texts: Sequence[str]) -> dict[str, str]:
    """``{tag: message}`` when some rows of ``ids`` (token ids, 0 = padding) hold <= 1 token."""
    counts = (np.asarray(ids) != 0).sum(axis=1)
    short = np.flatnonzero(counts <= 1)
    if not len(short):
        return {}
    example = texts[int(short[0])][:60]
    return {WARNING_TAG + f"{split}_short_texts": (
        f"{len(short)} {split} text(s) become one token or none after model.standardize (e.g. row "
        f"{int(short[0]) + 1}: {example!r}); the model reads almost nothing of them")}


def warn(tags: dict[str, str]) -> dict[str, str]:
    """Print each warning as one stderr line (``warning: ...``); the tags to log."""
    for msg in tags.values():
        print(f"warning: {msg}", file=sys.stderr, flush=True)
    return tags
