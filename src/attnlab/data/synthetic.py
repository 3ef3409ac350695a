"""A synthetic keyword task whose label is decided entirely by known tokens.

Each text is ``L`` random filler words (``L`` uniform in ``[min_len, max_len]``) in
which ``n_rationale`` positions hold keywords of the text's class. Keywords of class
``c`` are ``c{c}kw{j}`` (``j < keywords_per_class``); fillers are pronounceable
letter-only words (``baba``, ``babe``, ...), so the two never collide and survive a
tokenizer that strips punctuation. ``Split.rationale`` marks the keyword positions,
which lets attention analysis measure how much weight lands on the tokens that matter.

With ``label_noise == 0`` the task is learnable to 100% by any model that finds the
keywords. ``label_noise`` flips that fraction of *training* labels to another class
(val/test stay clean, so they still measure the true task); a flipped text keeps its
original keywords and rationale.

Everything is drawn from ``np.random.SeedSequence(seed)`` with one independent child
stream per split, so the same seed gives the same data and, e.g., changing ``n_train``
leaves the val and test sets unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from attnlab.data.dataset import Dataset, Split, cfg_fraction, req_int
from attnlab.errors import ConfigError

__all__ = ["class_names", "filler_words", "keyword", "load_synthetic"]

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]  # 70 two-letter syllables


def filler_words(vocab_size: int) -> list[str]:
    """``vocab_size`` distinct letter-only filler words, the same for every seed.

    Word ``i`` spells ``i`` in base 70 with one consonant-vowel syllable per digit,
    padded to at least two syllables; every syllable has two letters, so words of
    different digit counts differ in length and the mapping is one-to-one.
    """
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    base = len(_SYLLABLES)
    words = []
    for i in range(vocab_size):
        digits = []
        while True:
            i, r = divmod(i, base)
            digits.append(r)
            if i == 0:
                break
        digits += [0] * (2 - len(digits))
        words.append("".join(_SYLLABLES[d] for d in reversed(digits)))
    return words


def keyword(cls: int, j: int) -> str:
    """Keyword ``j`` of class ``cls`` (contains digits, so never a filler word)."""
    return f"c{cls}kw{j}"


def class_names(n_classes: int) -> list[str]:
    """``class_0``.. zero-padded so that text order equals index order."""
    width = len(str(n_classes - 1))
    return [f"class_{c:0{width}d}" for c in range(n_classes)]


def _generate(
    rng: np.random.Generator,
    n: int,
    *,
    fillers: np.ndarray,
    keywords: np.ndarray,  # (n_classes, keywords_per_class)
    min_len: int,
    max_len: int,
    n_rationale: int,
) -> Split:
    n_classes = keywords.shape[0]
    # Balanced classes in random order: every class present whenever n >= n_classes.
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    lengths = rng.integers(min_len, max_len + 1, size=n)
    texts: list[str] = []
    rationale: list[np.ndarray] = []
    for y, length in zip(labels, lengths):
        tokens = fillers[rng.integers(len(fillers), size=length)]
        pos = rng.choice(length, size=n_rationale, replace=False)
        tokens[pos] = keywords[y, rng.integers(keywords.shape[1], size=n_rationale)]
        mask = np.zeros(length, dtype=np.int8)
        mask[pos] = 1
        texts.append(" ".join(tokens))
        rationale.append(mask)
    return Split(texts=texts, labels=labels, rationale=rationale)


def load_synthetic(cfg: Mapping[str, Any], seed: int) -> Dataset:
    """``data.name=synthetic``. Keys: ``n_train``, ``n_val``, ``n_test``, ``n_classes``,
    ``vocab_size``, ``min_len``, ``max_len``, ``n_rationale``, ``keywords_per_class``,
    ``label_noise`` (default 0)."""
    need = "data.name=synthetic"
    n_classes = req_int(cfg, "n_classes", minimum=2, required_for=need)
    n_train = req_int(cfg, "n_train", minimum=n_classes, required_for=need)
    n_val = req_int(cfg, "n_val", minimum=1, required_for=need)
    n_test = req_int(cfg, "n_test", minimum=1, required_for=need)
    vocab_size = req_int(cfg, "vocab_size", minimum=1, required_for=need)
    n_rationale = req_int(cfg, "n_rationale", minimum=1, required_for=need)
    keywords_per_class = req_int(cfg, "keywords_per_class", minimum=1, required_for=need)
    min_len = req_int(cfg, "min_len", minimum=1, required_for=need)
    max_len = req_int(cfg, "max_len", minimum=1, required_for=need)
    label_noise = cfg_fraction(cfg, "label_noise", 0.0, allow_zero=True) or 0.0
    if min_len < n_rationale:
        raise ConfigError(
            f"data.min_len ({min_len}) must be >= data.n_rationale ({n_rationale}): "
            f"every text holds n_rationale keywords"
        )
    if max_len < min_len:
        raise ConfigError(f"data.max_len ({max_len}) must be >= data.min_len ({min_len})")

    fillers = np.array(filler_words(vocab_size), dtype=object)
    keywords = np.array([[keyword(c, j) for j in range(keywords_per_class)]
                         for c in range(n_classes)], dtype=object)
    ss_train, ss_val, ss_test, ss_noise = np.random.SeedSequence(seed).spawn(4)

    def generate(ss: np.random.SeedSequence, n: int) -> Split:
        return _generate(np.random.default_rng(ss), n, fillers=fillers, keywords=keywords,
                         min_len=min_len, max_len=max_len, n_rationale=n_rationale)

    train, val, test = generate(ss_train, n_train), generate(ss_val, n_val), generate(ss_test, n_test)

    n_noisy = int(round(label_noise * n_train))
    if n_noisy:
        rng = np.random.default_rng(ss_noise)
        flip = rng.choice(n_train, size=n_noisy, replace=False)
        # Adding 1..K-1 modulo K always lands on a different class.
        train.labels[flip] = (train.labels[flip] + rng.integers(1, n_classes, size=n_noisy)) % n_classes

    return Dataset(
        name="synthetic",
        classes=class_names(n_classes),
        train=train,
        val=val,
        test=test,
        files={},
        sha256={},
        info={"n_classes": n_classes, "vocab_size": vocab_size, "min_len": min_len,
              "max_len": max_len, "n_rationale": n_rationale,
              "keywords_per_class": keywords_per_class, "label_noise": label_noise,
              "n_noisy_train": n_noisy},
    )
