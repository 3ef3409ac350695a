"""Attention analysis: metrics against padding and planted rationales, heatmaps, token scores.

Works on NumPy arrays from :func:`attnlab.models.explain_model`:
``weights`` (N, H, T, T) post-softmax attention, ``ids`` (N, T) token ids with 0 = padding.
Knows nothing of MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

_EPS = 1e-12


def _rows(weights: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head-averaged maps (N, T, T) and the real-token mask (N, T)."""
    a = np.asarray(weights, dtype=np.float64).mean(axis=1)  # (N, T, T): mean over heads
    real = np.asarray(ids) != 0  # (N, T)
    return a, real


def token_importance(weights: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Attention each key token *receives*: mean over heads and real query rows.

    Returns:
        (N, T) array; over real tokens it sums to ~1 when every real row sums to 1
        (with mask=none part of the mass goes to padding and the sum is below 1).
    """
    a, real = _rows(weights, ids)
    n_real = np.maximum(real.sum(axis=1, keepdims=True), 1)  # (N, 1)
    received = (a * real[:, :, None]).sum(axis=1) / n_real  # (N, T): average of real rows
    return received * real


def attention_metrics(
    weights: np.ndarray, ids: np.ndarray, rationale: Sequence[np.ndarray] | None = None
) -> dict[str, float]:
    """Summary metrics of a batch of attention maps.

    * ``attention_entropy``: mean over real query rows of the row entropy divided by
      log(number of real tokens); 1.0 = uniform over the real tokens, 0 = one token.
      Rows of one-token texts are skipped (entropy is undefined there).
    * ``attention_pad_mass``: mean over real query rows of the weight on padded keys
      (0 exactly when keys are masked).
    * ``attention_rationale_mass`` (when ``rationale`` is given): mean over texts of the
      attention received by the planted rationale tokens, and ``attention_rationale_chance``,
      the share a uniform map would give them (n_rationale / n_real), for comparison.
    """
    a, real = _rows(weights, ids)
    n_real = real.sum(axis=1)  # (N,)
    ent = -(a * np.log(a + _EPS)).sum(axis=-1)  # (N, T)
    norm = np.log(np.maximum(n_real, 2))[:, None]
    ok = real & (n_real[:, None] > 1)
    out: dict[str, float] = {
        "attention_entropy": float((ent / norm)[ok].mean()) if ok.any() else float("nan"),
        "attention_pad_mass": float((a * ~real[:, None, :]).sum(axis=-1)[real].mean()) if real.any() else 0.0,
    }
    if rationale is not None:
        imp = token_importance(weights, ids)  # (N, T)
        T = ids.shape[1]
        masses, chance = [], []
        for i, r in enumerate(rationale):
            r = np.asarray(r[:T], dtype=bool)
            if not r.any() or n_real[i] == 0:
                continue
            masses.append(float(imp[i, : len(r)][r].sum()))
            chance.append(float(r.sum()) / float(n_real[i]))
        if masses:
            out["attention_rationale_mass"] = float(np.mean(masses))
            out["attention_rationale_chance"] = float(np.mean(chance))
    return out


def tokens_for(texts: Sequence[str], ids: np.ndarray, vocab: Sequence[str], lowercase: bool = True) -> list[list[str]]:
    """Readable tokens per text, aligned with the non-padding ids.

    Uses the text's own whitespace tokens when they provably line up with the ids (each
    id is that word or ``[UNK]``), so OOV words keep their spelling; otherwise (e.g. a
    standardizer that strips punctuation-only tokens) the vocabulary entries.
    """
    out = []
    for text, row in zip(texts, np.asarray(ids)):
        n = int((row != 0).sum())
        from_vocab = [vocab[int(t)] if int(t) < len(vocab) else "?" for t in row[:n]]
        raw = (text.lower() if lowercase else text).split()[:n]
        aligned = len(raw) == n and all(v in (w, "[UNK]") for w, v in zip(raw, from_vocab))
        out.append(raw if aligned else from_vocab)
    return out


def plot_heatmap(
    weights: np.ndarray,
    tokens: Sequence[str],
    path: str | Path,
    title: str = "",
    show_padding: int = 0,
) -> Path:
    """Save one (T, T) head-averaged attention map as a PNG with tokens on both axes.

    Args:
        weights: (H, T, T) or (T, T) attention of one example.
        tokens: the real tokens (length n <= T); rows/columns beyond n are padding.
        show_padding: how many padded key columns to show after the real ones (to make
            attention on padding visible, e.g. under mask=none).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # "$" would start matplotlib mathtext (an unbalanced one fails to draw): texts are literal.
    tokens = [str(t).replace("$", r"\$") for t in tokens]
    title = title.replace("$", r"\$")
    w = np.asarray(weights)
    if w.ndim == 3:
        w = w.mean(axis=0)
    n = len(tokens)
    m = min(n + show_padding, w.shape[-1])
    cols = list(tokens) + ["<pad>"] * (m - n)
    size = max(4.0, 0.28 * m + 2.0)
    fig, ax = plt.subplots(figsize=(size, max(3.5, 0.28 * n + 2.0)))
    im = ax.imshow(w[:n, :m], cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(m), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(n), list(tokens), fontsize=7)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_maps(path: str | Path, weights: np.ndarray, ids: np.ndarray, tokens: list[list[str]], **arrays: np.ndarray) -> Path:
    """Raw maps as ``.npz`` (no pickled objects: tokens are a fixed-width string array)."""
    T = ids.shape[1]
    tok = np.array([t + [""] * (T - len(t)) for t in tokens], dtype=str) if tokens else np.zeros((0, T), dtype=str)
    path = Path(path)
    np.savez_compressed(path, weights=np.asarray(weights, np.float32), ids=np.asarray(ids), tokens=tok, **arrays)
    return path
