"""Attention pictures a person reads: a run's *probe texts* drawn at every epoch and at the end.

Probe texts are a fixed set per run: ``tracking.probe_texts`` when given, else the first
``tracking.probe_count`` validation texts of at most ``tracking.probe_max_tokens`` tokens
(shorter texts make legible maps). A run logs, besides MLflow's per-epoch image
(``attention`` in the UI's image view, one step per epoch):

- ``attention/probe_<i>.png``: one panel per block and head, tokens on both axes, title with
  the true and predicted label;
- ``attention.html``: every probe text's tokens shaded by the attention they receive;
- ``attention/probes.json``: the same numbers (tokens, received attention, head-averaged map of
  the last block, labels), which ``attnlab report`` reads to compare runs without downloading
  anything larger.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

PROBES_FILE = "attention/probes.json"
RUN_PAGE = "attention.html"
EPOCH_IMAGE_KEY = "attention"


@dataclass
class Probes:
    """The texts a run draws and, for validation texts, their true class index."""

    texts: list[str]
    labels: list[int | None]
    source: str  # "validation" | "tracking.probe_texts"
    max_tokens: int


def choose(tracking_cfg: Mapping[str, Any], val_texts: Sequence[str], val_labels: Sequence[int]) -> Probes:
    """``tracking.probe_texts``, else the first ``probe_count`` validation texts with at most
    ``probe_max_tokens`` tokens (the shortest ones when too few are that short)."""
    limit = int(tracking_cfg["probe_max_tokens"])
    given = tracking_cfg.get("probe_texts")
    if given:
        return Probes([str(t) for t in given], [None] * len(given), "tracking.probe_texts", limit)
    count = int(tracking_cfg["probe_count"])
    lengths = [len(t.split()) for t in val_texts]
    picked = [i for i, n in enumerate(lengths) if 0 < n <= limit][:count]
    if len(picked) < count:
        rest = sorted((i for i in range(len(val_texts)) if i not in set(picked) and lengths[i] > 0),
                      key=lambda i: (lengths[i], i))
        picked += rest[: count - len(picked)]
    return Probes([val_texts[i] for i in picked], [int(val_labels[i]) for i in picked], "validation", limit)


@dataclass
class View:
    """One forward pass over the probe texts."""

    tokens: list[list[str]]  # real tokens per text (drawings cut them to the probe limit)
    maps: np.ndarray  # (N, L, H, T, T) every block and head
    probs: np.ndarray  # (N, C)
    importance: np.ndarray  # (N, T) attention each token receives (last block)


def look(explain: Any, probes: Probes, vocab: Sequence[str], lowercase: bool) -> View:
    """Run ``explain`` (:func:`attnlab.fitting.compiled_explain`) on the probe texts."""
    import tensorflow as tf

    from attnlab.analysis import token_importance, tokens_for

    out = explain(tf.constant(probes.texts)[:, None])
    maps, ids = np.asarray(out["weights"]), np.asarray(out["ids"])
    tokens = tokens_for(probes.texts, ids, vocab, lowercase=lowercase)
    return View(tokens, maps, np.asarray(out["probs"]), token_importance(maps[:, -1], ids))


def epoch_picture(view: View) -> np.ndarray:
    """The small image logged at each epoch: every probe text's last block, heads averaged."""
    from attnlab.analysis import epoch_image
    from attnlab.shading import FULL_AT

    return epoch_image([m[-1] for m in view.maps], [len(t) for t in view.tokens], full_at=FULL_AT)


def _label(classes: Sequence[str], index: int | None) -> str:
    return "?" if index is None else str(classes[int(index)])


def _records(view: View, probes: Probes, classes: Sequence[str]) -> list[dict[str, Any]]:
    """Per probe text: its tokens (up to the probe limit), labels and attention, rounded for a
    small JSON file."""
    out = []
    for i, text in enumerate(probes.texts):
        n = min(len(view.tokens[i]), probes.max_tokens)
        pred = int(view.probs[i].argmax())
        out.append({"text": text, "true": None if probes.labels[i] is None else _label(classes, probes.labels[i]),
                    "pred": _label(classes, pred), "prob": round(float(view.probs[i, pred]), 4),
                    "tokens": view.tokens[i][:n], "importance": np.round(view.importance[i, :n], 5).tolist(),
                    "map": np.round(view.maps[i, -1].mean(axis=0)[:n, :n], 4).tolist()})
    return out


def write_run_files(out: Path, view: View, probes: Probes, classes: Sequence[str],
                    metrics: Mapping[str, float]) -> str:
    """Heatmaps (``probe_<i>.png``) and ``probes.json`` under ``out``; returns the run's
    ``attention.html`` page."""
    from attnlab.analysis import plot_probe
    from attnlab.shading import FULL_AT

    records = _records(view, probes, classes)
    for i, r in enumerate(records):
        truth = f"true={r['true']}  " if r["true"] is not None else ""
        plot_probe(view.maps[i], view.tokens[i], out / f"probe_{i:02d}.png", max_tokens=probes.max_tokens,
                   title=f"probe #{i}  {truth}pred={r['pred']} ({r['prob']:.2f})", full_at=FULL_AT)
    summary = {k: float(metrics[k]) for k in ("attention_entropy", "val_accuracy", "test_accuracy") if k in metrics}
    doc = {"version": 1, "source": probes.source, "classes": list(classes), "metrics": summary, "probes": records}
    (out / Path(PROBES_FILE).name).write_text(json.dumps(doc), encoding="utf-8")
    return run_page(records, summary)


def run_page(records: Sequence[Mapping[str, Any]], metrics: Mapping[str, float]) -> str:
    """One line per probe text, its tokens shaded by the attention they receive."""
    from attnlab import shading

    items = []
    for i, r in enumerate(records):
        truth = f"true <b>{html.escape(r['true'])}</b> &middot; " if r["true"] is not None else ""
        items.append(f'<div class="item"><div class="head">probe #{i} &middot; {truth}predicted '
                     f'<span class="label">{html.escape(r["pred"])}</span> ({r["prob"]:.3f})</div>\n'
                     f'<div class="text">{shading.token_spans(r["tokens"], r["importance"])}</div></div>')
    numbers = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    return shading.page("attention of the probe texts", f"{numbers}. {shading.SCALE_NOTE}", "\n".join(items))
