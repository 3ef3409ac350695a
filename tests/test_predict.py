"""`attnlab predict`: raw texts -> label, probabilities, most attended tokens, HTML and PNG heatmaps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import cli_main
from tiny_store import tiny_store

TEXTS = ["w1 w2 w3 w4 w5", "w9 <b>&amp; w9", "w12 costs $5 \\frac{$"]


@pytest.fixture(scope="module")
def store():
    return tiny_store()


def test_predict_json_html_png(store, tmp_path, capsys):
    from PIL import Image

    from attnlab.predict import load

    _, uri, run_id = store
    model_uri = f"runs:/{run_id}/model"
    rc, out, err = cli_main(["predict", "--model", model_uri, "--tracking-uri", uri, *TEXTS, "--json", "--top-k", "2",
                         "--html", str(tmp_path / "out.html"), "--png", str(tmp_path / "maps")], capsys)
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines()]  # stdout is pure JSON lines under --json
    assert [r["text"] for r in rows] == TEXTS
    model = load(model_uri, uri)
    expected = model.predict(None, TEXTS)  # what the served model answers
    for r, (_, e) in zip(rows, expected.iterrows()):
        assert list(r["probabilities"]) == list(model.classes)
        np.testing.assert_allclose(list(r["probabilities"].values()), e["probabilities"], atol=1e-6)
        assert r["label"] == e["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["tokens"] == e["tokens"] and len(r["attention"]) == len(r["tokens"])
        top = sorted(r["attention"], reverse=True)[:2]
        assert [w for _, w in r["top_tokens"]] == pytest.approx(top)
    assert rows[1]["tokens"] == ["w9", "<b>&amp;", "w9"]

    page = (tmp_path / "out.html").read_text()
    assert page.count('class="tok"') == sum(len(r["tokens"]) for r in rows) and len(rows[2]["tokens"]) == 4
    assert "&lt;b&gt;&amp;amp;" in page and "<b>&amp;" not in page  # text is escaped, never markup
    for tok in ("w1", "w5", "w12"):
        assert f">{tok}</span>" in page
    pngs = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert pngs == ["0001.png", "0002.png", "0003.png"]
    for name in pngs:
        with Image.open(tmp_path / "maps" / name) as im:
            im.verify()
            assert im.format == "PNG" and min(im.size) >= 200
    assert "wrote 3 heatmap(s)" in err  # notes go to stderr under --json


def test_predict_reads_files_and_prints_text(store, tmp_path, capsys):
    _, uri, run_id = store
    (tmp_path / "in.txt").write_text("w1 w2 w3\n\n   \nw4 w5\n")
    (tmp_path / "in.csv").write_text('id,review\n1,"w1, w2"\n2,w7\n')
    base = ["predict", "--model", f"runs:/{run_id}/model", "--tracking-uri", uri]
    rc, out, err = cli_main([*base, "first text", "--input", str(tmp_path / "in.txt")], capsys)
    assert rc == 0, err
    assert [ln.split(". ", 1)[1] for ln in out.splitlines() if ln[:1].isdigit()] == ["'first text'", "'w1 w2 w3'",
                                                                                    "'w4 w5'"]
    assert out.count("   label: ") == 3 and out.count("   most attended: ") == 3
    rc, out, err = cli_main([*base, "--input", str(tmp_path / "in.csv"), "--column", "review", "--json"], capsys)
    assert rc == 0, err
    assert [json.loads(ln)["text"] for ln in out.splitlines()] == ["w1, w2", "w7"]


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "error: no text to predict"),
        (["--input", "missing.txt"], "error: data file not found: missing.txt (--input)"),
        (["--input", "in.csv", "--column", "body"], "error: in.csv: no column 'body' (columns: text)"),
        (["--model", "models:/no-such-model@champion", "x"], "error: --model models:/no-such-model@champion: cannot load"),
        (["--top-k", "-1", "x"], "error: --top-k -1: must be >= 0"),
    ],
)
def test_predict_bad_input_one_line(store, extra, message, tmp_path, monkeypatch, capsys):
    _, uri, run_id = store
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("text\nw1\n")
    args = ["predict", "--tracking-uri", uri]
    if "--model" not in extra:
        args += ["--model", f"runs:/{run_id}/model"]
    rc, out, err = cli_main([*args, *extra], capsys)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(message), err
