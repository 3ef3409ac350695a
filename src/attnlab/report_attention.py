"""``attention.html`` of ``attnlab report``: the same probe texts across every variant, side by side.

One row per probe text; in it one panel per variant (in the report's order): the variant's
header (name, mean attention entropy and accuracies over its runs), the text's tokens shaded by
the attention they receive and a small map of the last block (heads averaged), drawn from the
variant's seed-0 run (else its lowest seed). Only ``attention/probes.json`` (a few kilobytes)
is downloaded per variant, so an ablation of hundreds of runs stays quick; the page is one
self-contained file (maps inlined as PNG data).
"""

from __future__ import annotations

import html
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from attnlab.pictures import PROBES_FILE, RUN_PAGE

_CSS = """
body { max-width: none; margin: 1.5em; }
.grid { display: flex; flex-wrap: wrap; gap: .6em; }
.panel { flex: 0 0 21em; border: 1px solid #ddd; border-radius: 4px; padding: .4em .5em; }
.panel.ref { border-color: #e08a00; }
.vhead { font-size: .8em; color: #333; margin-bottom: .3em; }
.vname { font-weight: bold; word-break: break-all; }
.row { border-top: 2px solid #bbb; padding: .8em 0; }
.map { float: right; margin: 0 0 .3em .4em; }
"""


def pick_runs(df: pd.DataFrame) -> dict[str, str]:
    """Variant -> the run whose pictures stand for it: seed 0 (else the lowest seed), lowest fold."""
    ordered = df.assign(_not0=df["seed"] != 0).sort_values(["_not0", "seed", "fold", "start_time"])
    return {str(v): str(g["run_id"].iloc[0]) for v, g in ordered.groupby("variant", sort=False)}


def _fetch(client: Any, run_id: str) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, PROBES_FILE, tmp)
        except Exception:  # noqa: BLE001 - a run from before probe texts, or without pictures
            return None
        return json.loads(Path(local).read_text(encoding="utf-8"))


def fetch_probes(client: Any, runs: Mapping[str, str], workers: int = 8) -> dict[str, dict[str, Any]]:
    """Variant -> its run's ``probes.json`` (variants whose run has none are left out)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        docs = dict(zip(runs, pool.map(lambda rid: _fetch(client, rid), runs.values())))
    return {v: d for v, d in docs.items() if d is not None}


def _header(name: str, stats: pd.DataFrame, run_id: str) -> str:
    """The variant's name, mean entropy and accuracies over its runs, and the run drawn."""
    parts = [f"{m} {stats[c].mean():.3f}" for m, c in (("entropy", "metric.attention_entropy"),
                                                        ("val acc", "metric.val_accuracy"),
                                                        ("test acc", "metric.test_accuracy"))
             if c in stats and stats[c].notna().any()]
    return (f'<div class="vhead"><span class="vname">{html.escape(name)}</span><br>{" &middot; ".join(parts)} '
            f'<span class="note">({len(stats)} run(s); drawn: {html.escape(run_id[:8])})</span></div>')


def _panel(header: str, probe: Mapping[str, Any] | None, is_ref: bool) -> str:
    from attnlab import shading

    if probe is None:
        body = '<span class="note">(this variant\'s run did not draw this text)</span>'
    else:
        body = (f'{shading.heatmap_img(probe["map"], probe["tokens"])}'
                f'<div class="note">predicted <b>{html.escape(str(probe["pred"]))}</b> ({probe["prob"]:.2f})</div>'
                f'{shading.token_spans(probe["tokens"], probe["importance"])}')
    return f'<div class="panel{" ref" if is_ref else ""}">{header}{body}</div>'


def page(title: str, variants: Sequence[str], docs: Mapping[str, dict[str, Any]], headers: Mapping[str, str],
         reference: set[str]) -> str:
    """The page: one row per distinct probe text (first seen first), one panel per variant."""
    from attnlab import shading

    by_variant = {v: {p["text"]: p for p in docs[v]["probes"]} for v in variants if v in docs}
    texts = list(dict.fromkeys(t for v in variants if v in by_variant for t in by_variant[v]))
    rows = []
    for i, text in enumerate(texts):
        truth = next((by_variant[v][text].get("true") for v in by_variant if text in by_variant[v]), None)
        label = f" &middot; true <b>{html.escape(str(truth))}</b>" if truth is not None else ""
        panels = "".join(_panel(headers[v], by_variant.get(v, {}).get(text), v in reference)
                         for v in variants if v in by_variant)
        rows.append(f'<div class="row"><div class="head">probe #{i}{label}: {html.escape(text[:300])}</div>'
                    f'<div class="grid">{panels}</div></div>')
    intro = (f"{len(by_variant)} variant(s), {len(texts)} probe text(s); orange border: the reference. "
             f"The small map: the last block's attention (rows: queries, columns: keys, heads averaged). "
             f"{shading.SCALE_NOTE}")
    return shading.page(title, intro, "\n".join(rows), _CSS)


def write(client: Any, df: pd.DataFrame, rep: Any, out: Path) -> dict[str, Path]:
    """``out/attention.html`` for the report ``rep`` of runs ``df``; {} when no run drew probe texts."""
    from attnlab.report import common_items, display_name, reference_pairs

    variants = [str(v) for v in rep.summary["variant"].drop_duplicates()]
    runs = pick_runs(df)
    docs = fetch_probes(client, {v: runs[v] for v in variants if v in runs})
    if not docs:
        return {}
    common = common_items(variants)
    names = {v: display_name(v, common) for v in variants}
    headers = {v: _header(names[v], df[df["variant"] == v], runs[v]) for v in variants if v in runs}
    reference = {v for v, ref in reference_pairs(variants, rep.reference).items() if ref is None}
    path = out / RUN_PAGE
    path.write_text(page(f"attention across {rep.ablation} on {rep.data}", variants, docs, headers, reference),
                    encoding="utf-8")
    return {"attention": path}
