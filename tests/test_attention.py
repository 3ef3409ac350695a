"""Attention analysis on hand-built maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from attnlab.analysis import attention_metrics, plot_heatmap, save_maps, token_importance, tokens_for


def _maps():
    # 1 text, 1 head, T=4, 3 real tokens + 1 padding.
    ids = np.array([[5, 6, 7, 0]])
    uniform_real = np.zeros((1, 1, 4, 4))
    uniform_real[0, 0, :, :3] = 1 / 3  # every row uniform over the real keys
    onto_pad = np.full((1, 1, 4, 4), 0.25)  # mask=none: a quarter of each row on padding
    return ids, uniform_real, onto_pad


def test_entropy_and_pad_mass_known_values():
    ids, uniform_real, onto_pad = _maps()
    m = attention_metrics(uniform_real, ids)
    assert m["attention_entropy"] == pytest.approx(1.0)
    assert m["attention_pad_mass"] == 0.0
    m2 = attention_metrics(onto_pad, ids)
    assert m2["attention_pad_mass"] == pytest.approx(0.25)
    peaked = np.zeros((1, 1, 4, 4))
    peaked[0, 0, :, 1] = 1.0
    assert attention_metrics(peaked, ids)["attention_entropy"] == pytest.approx(0.0, abs=1e-6)


def test_rationale_mass_against_chance():
    ids = np.array([[5, 6, 7, 0]])
    w = np.zeros((1, 1, 4, 4))
    w[0, 0, :, 2] = 0.7
    w[0, 0, :, 0] = 0.3
    m = attention_metrics(w, ids, rationale=[np.array([0, 0, 1])])
    assert m["attention_rationale_mass"] == pytest.approx(0.7)
    assert m["attention_rationale_chance"] == pytest.approx(1 / 3)
    imp = token_importance(w, ids)
    assert imp[0, 3] == 0.0 and imp[0].sum() == pytest.approx(1.0)


def test_tokens_follow_the_ids_when_words_were_dropped():
    vocab = ["", "[UNK]", "good", "bad"]
    # "," is dropped by a punctuation-stripping standardizer: raw words no longer line up.
    toks = tokens_for(["good , bad", "Good zzz bad"], np.array([[2, 3, 0], [2, 1, 3]]), vocab)
    assert toks == [["good", "bad"], ["good", "zzz", "bad"]]  # OOV keeps its spelling when aligned


def test_heatmap_and_maps_files(tmp_path):
    ids, uniform_real, _ = _maps()
    png = plot_heatmap(uniform_real[0], ["a", "$", "costs $5"], tmp_path / "m.png", title="t", show_padding=1)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = save_maps(tmp_path / "maps.npz", uniform_real, ids, [["a", "b", "c"]])
    back = np.load(path, allow_pickle=False)
    assert back["weights"].shape == (1, 1, 4, 4) and list(back["tokens"][0]) == ["a", "b", "c", ""]
