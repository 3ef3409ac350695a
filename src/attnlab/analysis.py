"""Attention analysis: metrics against padding and planted rationales, heatmaps, token scores.

Works on NumPy arrays from :func:`attnlab.models.explain_model`: ``maps`` (N, L, H, T, T)
post-softmax attention of every block (L = 1 for a single attention layer), one block's
``weights`` (N, H, T, T), ``ids`` (N, T) token ids with 0 = padding. Metrics of a model with
several blocks are logged per block (``attention_entropy/block_0``, ...); the plain names
(``attention_entropy``) mean the last block. Knows nothing of MLflow.
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


def max_logit(max_logits: np.ndarray, ids: np.ndarray) -> float:
    """``attention_max_logit``: the mean over real query rows (and heads) of each row's largest
    pre-softmax logit; ``max_logits`` is one block's (N, H, T)."""
    real = np.asarray(ids) != 0
    rows = np.asarray(max_logits, dtype=np.float64).mean(axis=1)  # (N, T): mean over heads
    return float(rows[real].mean()) if real.any() else float("nan")


def block_metrics(maps: np.ndarray, ids: np.ndarray, rationale: Sequence[np.ndarray] | None = None,
                  max_logits: np.ndarray | None = None) -> dict[str, float]:
    """:func:`attention_metrics` (and ``attention_max_logit`` from ``max_logits`` (N, L, H, T))
    of every block (``<name>/block_<i>``) and of the last (``<name>``)."""
    out: dict[str, float] = {}
    n_blocks = maps.shape[1]
    for b in range(n_blocks):
        m = attention_metrics(maps[:, b], ids, rationale)
        if max_logits is not None:
            m["attention_max_logit"] = max_logit(max_logits[:, b], ids)
        out.update({f"{k}/block_{b}": v for k, v in m.items()})
        if b == n_blocks - 1:
            out.update(m)
    return out


class AttentionStats:
    """Running means of :func:`block_metrics` over batches (each weighted by its size)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, maps: np.ndarray, ids: np.ndarray, rationale: Sequence[np.ndarray] | None = None,
            max_logits: np.ndarray | None = None) -> None:
        for k, v in block_metrics(maps, ids, rationale, max_logits).items():
            if np.isfinite(v):
                self.sums[k] = self.sums.get(k, 0.0) + v * len(ids)
                self.counts[k] = self.counts.get(k, 0) + len(ids)

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


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
        weights: (H, T, T) or (T, T) attention of one example (one block).
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
    """Raw maps as ``.npz`` (no pickled objects: tokens are a fixed-width string array).

    ``weights`` is (N, L, H, T, T): every block's maps."""
    T = ids.shape[1]
    tok = np.array([t + [""] * (T - len(t)) for t in tokens], dtype=str) if tokens else np.zeros((0, T), dtype=str)
    path = Path(path)
    np.savez_compressed(path, weights=np.asarray(weights, np.float32), ids=np.asarray(ids), tokens=tok, **arrays)
    return path


def _short(token: str, n: int = 14) -> str:
    """A token as a tick label: ``$`` made literal (matplotlib mathtext), long ones cut."""
    token = str(token).replace("$", r"\$")
    return token if len(token) <= n else token[: n - 1] + "…"


def _panel(ax, w: np.ndarray, tokens: Sequence[str], fontsize: float, title: str, vmax: float | None = None,
           rest: str | None = None):
    """One (n, n) map on ``ax`` with the tokens on both axes (queries down, keys across); with
    ``rest``, one more column: the weight each query puts on the keys not shown (padding, or
    the tokens past the drawing limit), labelled ``rest``."""
    n = len(tokens)
    labels = [_short(t) for t in tokens]
    w = np.asarray(w, dtype=np.float64)
    shown = w[:n, :n]
    if rest is not None:
        shown = np.concatenate([shown, w[:n, n:].sum(axis=-1, keepdims=True)], axis=1)
    im = ax.imshow(shown, cmap="viridis", aspect="equal", vmin=0.0, vmax=vmax)
    ax.set_xticks(range(shown.shape[1]), labels + ([rest] if rest is not None else []), rotation=90,
                  fontsize=fontsize)
    ax.set_yticks(range(n), labels, fontsize=fontsize)
    ax.tick_params(length=0, pad=1)
    ax.set_title(title, fontsize=fontsize + 1)
    return im


def plot_probe(maps: np.ndarray, tokens: Sequence[str], path: str | Path, title: str = "",
               max_tokens: int = 40, full_at: float = 3.0) -> Path:
    """Save one text's attention as a grid of legible panels: a row per block, a column per head.

    Args:
        maps: (L, H, T, T) attention of one text (every block and head).
        tokens: its real tokens; at most ``max_tokens`` are drawn (the title says when cut),
            the font scaled to the cell size so that every label stays readable.
        full_at: the colour scale reaches at least ``full_at`` times the uniform share 1/n, so a
            uniform map looks pale, not saturated.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = np.asarray(maps, dtype=np.float64)
    n_blocks, n_heads = maps.shape[:2]
    n = max(min(len(tokens), max_tokens, maps.shape[-1]), 1)
    side = min(max(0.2 * n + 1.4, 2.6), 8.0, 26.0 / n_heads)  # inches per panel
    fontsize = float(np.clip(side / n * 72 * 0.62, 4.5, 10.0))
    fig, axes = plt.subplots(n_blocks, n_heads, figsize=(side * n_heads + 1.0, side * n_blocks + 0.9),
                             squeeze=False)
    # Weight on keys not drawn (padding under mask=none, or tokens past the limit) gets a column.
    rest_mass = float(maps[..., :n, n:].sum(axis=-1).max(initial=0.0))
    rest = ("<rest>" if len(tokens) > n else "<pad>") if rest_mass > 0.01 else None
    vmax = max(float(maps[..., :n, :n].max()), rest_mass if rest else 0.0, full_at / max(len(tokens), 1))
    for b in range(n_blocks):
        for h in range(n_heads):
            im = _panel(axes[b, h], maps[b, h], list(tokens)[:n], fontsize, f"block {b} · head {h}", vmax, rest)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    cut = f"  (first {n} of {len(tokens)} tokens)" if len(tokens) > n else ""
    fig.suptitle(title.replace("$", r"\$") + cut, fontsize=max(fontsize + 2, 8))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def map_colors(weights: np.ndarray, full_at: float = 3.0) -> np.ndarray:
    """An (n, n) attention map as uint8 RGB (n, n, 3), viridis on a fixed scale: ``full_at`` times the
    uniform share 1/n is the brightest colour, so a uniform map is dim and a sharp one bright."""
    from matplotlib import colormaps

    w = np.asarray(weights, dtype=np.float64)
    n = max(w.shape[-1], 1)
    return (colormaps["viridis"](np.clip(w * n / full_at, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)


def epoch_image(maps: Sequence[np.ndarray], lengths: Sequence[int], side: int = 200, full_at: float = 3.0) -> np.ndarray:
    """One small RGB image (H, W, 3) of several texts' head-averaged maps side by side, drawn
    without matplotlib (milliseconds, so it can be logged every epoch).

    Args:
        maps: one (H, T, T) array per text (one block).
        lengths: each text's number of real tokens (the map's top-left n x n is drawn).
        side: about how many pixels each map spans.
        full_at: a weight of ``full_at`` times the uniform share 1/n gets the brightest colour (as in
            the HTML shading), so sharpening attention shows as brighter cells, not rescaled noise.
    """
    panels = []
    for m, n in zip(maps, lengths):
        n = max(min(int(n), np.asarray(m).shape[-1]), 1)
        rgb = map_colors(np.asarray(m, dtype=np.float64).mean(axis=0)[:n, :n], full_at)
        cell = max(side // n, 2)
        panels.append(np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1))
    height = max((p.shape[0] for p in panels), default=side)
    gap = np.full((height, 8, 3), 255, np.uint8)
    row = [gap]
    for p in panels:
        row += [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255), gap]
    return np.concatenate(row, axis=1)
