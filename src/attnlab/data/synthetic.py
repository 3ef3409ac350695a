"""Synthetic tasks whose label is decided entirely by known tokens (``data=synthetic``).

Two tasks (``data.task``), both with balanced classes and a ``Split.rationale`` that marks the
tokens deciding the label, so attention analysis can measure how much weight lands on them:

* ``pointer`` (the default) needs attention. Every text holds one keyword of *each* of
  ``n_families`` families (``x``, ``y``, ...) plus one cue token (``cuex``, ``cuey``, ...)
  naming the family that decides; the label is the class of the cued family's keyword.
  The other families' keywords vote for the label only ``agree_rate`` of the time (else for
  another class), so no keyword alone predicts the label (with 2 families and 2 classes,
  about ``0.5 + agree_rate / 2``) and a bag of words, which cannot form the cue x keyword
  interaction, stays near chance. The rationale is the cue and the cued keyword.
  Keyword ``j`` of family ``f`` voting for class ``c`` is ``{f}{c}kw{j}``
  (:func:`family_keyword`); ``n_rationale`` is unused.
* ``keywords``: the label's own keywords are planted, so a bag of words solves it and a
  model needs no attention (kept for that finding). Described below.

Keywords task: each text is ``L`` random filler words (``L`` uniform in ``[min_len, max_len]``) in
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

import functools
from typing import Callable

import numpy as np

from attnlab import checks
from attnlab.data.dataset import Dataset, Split
from attnlab.errors import ConfigError

__all__ = ["TASKS", "class_names", "cue_token", "family_keyword", "filler_words", "keyword",
           "load_synthetic"]

TASKS = ("pointer", "keywords")
_FAMILIES = "xyzuvw"  # family names: letters no filler word and no keyword uses alone

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


def family_keyword(family: int, cls: int, j: int) -> str:
    """Pointer task: keyword ``j`` of family ``family`` that votes for class ``cls``."""
    return f"{_FAMILIES[family]}{cls}kw{j}"


def cue_token(family: int) -> str:
    """Pointer task: the cue saying that family ``family`` decides (``cuex``, ``cuey``, ...)."""
    return f"cue{_FAMILIES[family]}"


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


def _generate_pointer(
    rng: np.random.Generator,
    n: int,
    *,
    fillers: np.ndarray,
    keywords: np.ndarray,  # (n_families, n_classes, keywords_per_class)
    cues: np.ndarray,  # (n_families,)
    min_len: int,
    max_len: int,
    agree_rate: float,
) -> Split:
    n_families, n_classes, per_class = keywords.shape
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    cued = rng.permutation(np.arange(n) % n_families)  # balanced cues too
    lengths = rng.integers(min_len, max_len + 1, size=n)
    texts: list[str] = []
    rationale: list[np.ndarray] = []
    for y, f, length in zip(labels, cued, lengths):
        # The cued family votes for the label; each other one agrees with it only agree_rate
        # of the time, else votes for a random other class (1..K-1 added modulo K).
        other = (y + rng.integers(1, n_classes, size=n_families)) % n_classes
        votes = np.where(rng.random(n_families) < agree_rate, y, other)
        votes[f] = y
        tokens = fillers[rng.integers(len(fillers), size=length)]
        pos = rng.choice(length, size=n_families + 1, replace=False)  # one per family, then the cue
        tokens[pos[:n_families]] = keywords[np.arange(n_families), votes, rng.integers(per_class, size=n_families)]
        tokens[pos[-1]] = cues[f]
        mask = np.zeros(length, dtype=np.int8)
        mask[[pos[f], pos[-1]]] = 1
        texts.append(" ".join(tokens))
        rationale.append(mask)
    return Split(texts=texts, labels=labels, rationale=rationale)


def _check(*, task: str, n_train: int, n_val: int, n_test: int, n_classes: int, vocab_size: int,
           min_len: int, max_len: int, n_rationale: int, keywords_per_class: int, label_noise: float,
           agree_rate: float, n_families: int) -> None:
    """Every value check of :func:`load_synthetic`, one line naming the key (before any work)."""
    checks.one_of("task", task, TASKS)
    n_classes = checks.positive_int("n_classes", n_classes)
    if n_classes < 2:
        raise ConfigError(f"data.n_classes={n_classes}: a classifier needs at least 2 classes")
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("vocab_size", vocab_size),
                        ("min_len", min_len), ("max_len", max_len), ("n_rationale", n_rationale),
                        ("keywords_per_class", keywords_per_class), ("n_families", n_families)):
        checks.positive_int(name, value)
    checks.rate("label_noise", label_noise)
    checks.rate("agree_rate", agree_rate)
    if n_train < n_classes:
        raise ConfigError(f"data.n_train={n_train}: must be >= data.n_classes ({n_classes})")
    if task == "pointer" and not 2 <= n_families <= len(_FAMILIES):
        raise ConfigError(f"data.n_families={n_families}: the pointer task needs 2..{len(_FAMILIES)} families")
    planted, why = ((n_families + 1, "data.n_families + 1 (a pointer text holds one keyword per family and a cue)")
                    if task == "pointer" else (n_rationale, "data.n_rationale (every text holds n_rationale keywords)"))
    if min_len < planted:
        raise ConfigError(f"data.min_len ({min_len}) must be >= {why}: {planted}")
    if max_len < min_len:
        raise ConfigError(f"data.max_len ({max_len}) must be >= data.min_len ({min_len})")


def _generator(task: str, *, n_classes: int, vocab_size: int, min_len: int, max_len: int, n_rationale: int,
               keywords_per_class: int, agree_rate: float, n_families: int) -> Callable[..., Split]:
    """``generate(rng, n) -> Split`` for ``task``, its vocabulary fixed (the same for every seed)."""
    fillers = np.array(filler_words(vocab_size), dtype=object)
    lengths = {"min_len": min_len, "max_len": max_len}
    if task == "keywords":
        keywords = np.array([[keyword(c, j) for j in range(keywords_per_class)]
                             for c in range(n_classes)], dtype=object)
        return functools.partial(_generate, fillers=fillers, keywords=keywords, n_rationale=n_rationale, **lengths)
    family_kws = np.array([[[family_keyword(f, c, j) for j in range(keywords_per_class)] for c in range(n_classes)]
                           for f in range(n_families)], dtype=object)
    cues = np.array([cue_token(f) for f in range(n_families)], dtype=object)
    return functools.partial(_generate_pointer, fillers=fillers, keywords=family_kws, cues=cues,
                             agree_rate=agree_rate, **lengths)


def load_synthetic(
    *,
    seed: int,
    task: str,
    n_train: int,
    n_val: int,
    n_test: int,
    n_classes: int,
    vocab_size: int,
    min_len: int,
    max_len: int,
    n_rationale: int,
    keywords_per_class: int,
    agree_rate: float,
    n_families: int,
    label_noise: float,
    split_seed: int,
) -> Dataset:
    """A synthetic task (``data=synthetic``); every argument is a ``data.<key>``
    (``split_seed`` fixes the inner folds that ``data.inner_folds`` applies after loading)."""
    split_seed = checks.non_negative_int("split_seed", split_seed)
    shape = {"n_classes": n_classes, "vocab_size": vocab_size, "min_len": min_len, "max_len": max_len,
             "n_rationale": n_rationale, "keywords_per_class": keywords_per_class, "agree_rate": agree_rate,
             "n_families": n_families}
    _check(task=task, n_train=n_train, n_val=n_val, n_test=n_test, label_noise=label_noise, **shape)
    generate = _generator(task, **shape)
    ss_train, ss_val, ss_test, ss_noise = np.random.SeedSequence(seed).spawn(4)
    train, val, test = (generate(np.random.default_rng(ss), n)
                        for ss, n in ((ss_train, n_train), (ss_val, n_val), (ss_test, n_test)))
    n_noisy = _flip_labels(train, float(label_noise), n_classes, np.random.default_rng(ss_noise))
    return Dataset(
        name="synthetic", classes=class_names(n_classes), train=train, val=val, test=test,
        info={"task": task, **shape, "label_noise": float(label_noise), "n_noisy_train": n_noisy,
              "split_seed": split_seed},
    )


def _flip_labels(split: Split, label_noise: float, n_classes: int, rng: np.random.Generator) -> int:
    """Flip ``label_noise`` of the split's labels to another class (in place); the count flipped."""
    n_noisy = int(round(label_noise * len(split)))
    if n_noisy:
        flip = rng.choice(len(split), size=n_noisy, replace=False)
        # Adding 1..K-1 modulo K always lands on a different class.
        split.labels[flip] = (split.labels[flip] + rng.integers(1, n_classes, size=n_noisy)) % n_classes
    return n_noisy
