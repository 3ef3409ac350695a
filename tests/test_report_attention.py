"""`attnlab report`'s attention.html: the same probe texts across every variant of an ablation."""

from __future__ import annotations

import json
import re

import numpy as np

PROBES = ["w1 w2 w3 key", "w4 key w5"]
VARIANTS = {"arm=ref": 0.9, "arm=sharp": 0.3, "arm=flat": 1.0}  # variant -> attention entropy


def _probes_doc(sharpness: float) -> dict:
    """A run's attention/probes.json (the format attnlab.pictures writes)."""
    probes = []
    for text in PROBES:
        tokens = text.split()
        n = len(tokens)
        focus = np.full(n, (1 - sharpness) / n)
        focus[tokens.index("key")] += sharpness
        probes.append({"text": text, "true": "pos", "pred": "pos", "prob": 0.9, "tokens": tokens,
                       "importance": focus.round(5).tolist(), "map": np.tile(focus, (n, 1)).round(4).tolist()})
    return {"version": 1, "source": "validation", "classes": ["neg", "pos"], "metrics": {}, "probes": probes}


def _ablation(uri: str, tmp_path) -> dict[tuple[str, int], str]:
    """3 variants x 2 seeds, FINISHED, each with metrics and a probes.json artifact."""
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment("ablation-toy", artifact_location=(tmp_path / "art").as_uri())
    ids = {}
    for variant, entropy in VARIANTS.items():
        for seed in (0, 1):
            rid = client.create_run(exp_id, tags={"attnlab.ablation": "toy", "attnlab.variant": variant,
                                                  "attnlab.seed": str(seed), "attnlab.data": "synthetic"}).info.run_id
            client.log_batch(rid, params=[Param("ablation.reference", "arm=ref")], metrics=[
                Metric("attention_entropy", entropy + 0.01 * seed, 0, 0), Metric("val_accuracy", 0.8, 0, 0),
                Metric("test_accuracy", 0.7 + 0.1 * seed, 0, 0)])
            client.log_text(rid, json.dumps(_probes_doc(1.0 - entropy + 0.05 * seed)), "attention/probes.json")
            client.set_terminated(rid, "FINISHED")
            ids[(variant, seed)] = rid
    return ids


def test_report_writes_every_variants_probe_heatmaps_side_by_side(tmp_path, capsys):
    from attnlab.report import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = _ablation(uri, tmp_path)
    out = tmp_path / "out"
    assert main(["toy", "--tracking-uri", uri, "--out", str(out), "--metric", "test_accuracy"]) == 0
    assert "attention.html" in capsys.readouterr().out
    page = (out / "attention.html").read_text()
    rows = page.split('<div class="row">')[1:]
    assert len(rows) == len(PROBES)  # one row per probe text
    for row, text in zip(rows, PROBES):
        assert text in row
        panels = row.split('<div class="panel')[1:]
        assert len(panels) == len(VARIANTS)  # every variant, side by side
        assert sum("ref" in p.split(">", 1)[0] for p in panels) == 1  # the reference is marked
        assert all('<img class="map"' in p and p.count('class="tok"') == len(text.split()) for p in panels)
    for variant, entropy in VARIANTS.items():
        # header: mean entropy over both seeds; the pictures are the seed-0 run's
        head = re.search(rf'<span class="vname">{re.escape(variant)}</span><br>([^<]*)<span class="note">\(2 run\(s\); '
                         rf'drawn: {ids[(variant, 0)][:8]}\)', page)
        assert head and "test acc 0.750" in head[1], variant
        assert abs(float(re.search(r"entropy ([\d.]+)", head[1])[1]) - (entropy + 0.005)) < 1e-3
    # the sharpest variant shades its key token darker than the flat one does
    alpha = {v: float(re.search(rf'{re.escape(v)}</span>.*?rgba\(255, 99, 71, ([\d.]+)\)" title="[^"]*">w1<',
                                page, re.S)[1]) for v in ("arm=sharp", "arm=flat")}
    assert alpha["arm=sharp"] < alpha["arm=flat"]  # w1 is not the key: it fades as attention sharpens
    import mlflow

    client = mlflow.MlflowClient(uri)
    (report_run,) = client.search_runs([client.get_experiment_by_name("ablation-toy").experiment_id],
                                       "tags.\"attnlab.report\" = 'toy'")
    assert "attention.html" in {a.path for a in client.list_artifacts(report_run.info.run_id)}


def test_runs_without_probe_texts_get_no_page(tmp_path):
    import pandas as pd

    from attnlab import report_attention

    class NoArtifacts:
        def download_artifacts(self, run_id, path, dst):
            raise OSError("no such artifact")

    df = pd.DataFrame({"run_id": ["a", "b"], "variant": ["x=1", "x=2"], "seed": [0, 0], "fold": [-1, -1],
                       "start_time": [0, 0]})
    assert report_attention.fetch_probes(NoArtifacts(), report_attention.pick_runs(df)) == {}
