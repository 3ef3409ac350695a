"""Tokens shaded by the attention they receive, as self-contained HTML.

One source for every page that shades tokens: ``attnlab predict --html``, a run's
``attention.html`` (:mod:`attnlab.pictures`) and the cross-run ``attention.html`` of
``attnlab report`` (:mod:`attnlab.report_attention`). Every text is escaped.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Sequence

import numpy as np

# A token drawing this many times its uniform share (1/n) is drawn in full colour.
FULL_AT = 3.0

CSS = """
body { font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; line-height: 1.5; color: #222; }
.item { border-top: 1px solid #ddd; padding: .8em 0; }
.head { font-size: .9em; color: #555; }
.label { font-weight: bold; color: #111; }
.tok { padding: .1em .2em; margin: 0 .05em; border-radius: 3px; display: inline-block; }
.note { font-size: .85em; color: #666; }
"""

SCALE_NOTE = (f"Each token is shaded by the attention it receives (mean over heads and over the text's tokens "
              f"as queries) relative to a uniform share 1/n of its text: a uniform share is light, {FULL_AT:g}&times; "
              f"uniform or more is full colour. Hover a token for its value.")


def token_spans(tokens: Sequence[str], weights: Sequence[float]) -> str:
    """``<span class="tok">`` per token, shaded relative to a uniform share 1/n (not to the text's
    maximum: a near-uniform map must look uniform and pale, not all saturated)."""
    n_tok = max(len(tokens), 1)
    spans = " ".join(
        f'<span class="tok" style="background: rgba(255, 99, 71, {min(1.0, w * n_tok / FULL_AT):.3f})" '
        f'title="{w:.4f} ({w * n_tok:.2f}x uniform)">{html.escape(str(t))}</span>'
        for t, w in zip(tokens, weights)
    )
    return spans or '<span class="note">(no tokens)</span>'


def page(title: str, intro: str, body: str, css: str = "") -> str:
    """A whole HTML document; ``intro`` and ``body`` are HTML already escaped by the caller."""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f"<style>{CSS}{css}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f'<p class="note">{intro}</p>\n{body}\n</body></html>\n')


def heatmap_img(weights: np.ndarray, tokens: Sequence[str], px: int = 140) -> str:
    """A (n, n) map as an inline PNG ``<img>`` (one pixel per cell, drawn pixelated at ``px``),
    coloured like the shading (``FULL_AT`` times uniform is the brightest): about a kilobyte, so a
    page can hold hundreds. Rows are queries, columns keys."""
    from PIL import Image

    from attnlab.analysis import map_colors

    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0:
        return '<span class="note">(no tokens)</span>'
    buf = io.BytesIO()
    Image.fromarray(map_colors(w, FULL_AT)).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    label = html.escape(" ".join(str(t) for t in tokens))
    return (f'<img class="map" alt="attention map" title="rows: queries, columns: keys: {label}" '
            f'width="{px}" height="{px}" style="image-rendering: pixelated" src="data:image/png;base64,{data}">')
