"""The synthetic tasks (data=synthetic): the pointer task needs attention (a bag of words stays
near chance), the keyword task does not; rationales mark exactly the deciding tokens; the
composed default is the small transformer on the pointer task."""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

import numpy as np
import pytest

from attnlab.data import Dataset, load
from attnlab.data.synthetic import cue_token
from attnlab.errors import ConfigError

KEYWORD = re.compile(r"^([a-z])(\d+)kw\d+$")  # pointer keywords: {family}{class}kw{j}


@functools.lru_cache(maxsize=None)
def _default_data() -> dict[str, Any]:
    from attnlab.config import to_plain
    from conftest import compose

    return to_plain(compose([]).data)


def cfg(**kw: Any) -> dict[str, Any]:
    """The real conf/data/synthetic.yaml (its defaults) with ``kw`` on top."""
    return {**_default_data(), **kw}


@functools.lru_cache(maxsize=None)
def dataset(seed: int = 0, **kw: Any) -> Dataset:
    return load(cfg(**kw), seed=seed)


def bag_of_words_accuracy(ds: Dataset) -> float:
    """TF-IDF over 1-2-grams + logistic regression, fit on train, scored on test."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2))
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(ds.train.texts), ds.train.labels)
    return float((clf.predict(vec.transform(ds.test.texts)) == ds.test.labels).mean())


def test_pointer_is_the_default_with_balanced_classes() -> None:
    ds = dataset()
    assert ds.info["task"] == "pointer" and ds.classes == ["class_0", "class_1"]
    for split in (ds.train, ds.val, ds.test):
        assert np.bincount(split.labels).tolist() == [len(split) // 2] * 2


def test_bag_of_words_cannot_solve_the_pointer_task() -> None:
    acc = bag_of_words_accuracy(dataset())
    assert 0.40 <= acc <= 0.60, acc


def test_bag_of_words_solves_the_keyword_task() -> None:
    assert bag_of_words_accuracy(dataset(task="keywords")) >= 0.95


def _planted(text: str) -> tuple[list[tuple[int, str, int]], list[tuple[int, str]]]:
    """(position, family, class) of every pointer keyword and (position, family) of every cue."""
    tokens = text.split()
    kws = [(i, m[1], int(m[2])) for i, t in enumerate(tokens) if (m := KEYWORD.match(t))]
    cues = [(i, t[3:]) for i, t in enumerate(tokens) if t.startswith("cue")]
    return kws, cues


def test_pointer_rationale_marks_exactly_the_cue_and_the_cued_keyword() -> None:
    split = dataset().val
    for text, y, mask in zip(split.texts, split.labels, split.rationale):
        kws, cues = _planted(text)
        assert sorted(f for _, f, _ in kws) == ["x", "y"] and len(cues) == 1, text
        cue_pos, cued = cues[0]
        (kw_pos, _, kw_cls), = [k for k in kws if k[1] == cued]
        assert kw_cls == y, text  # the label is the cued keyword's class
        assert np.flatnonzero(mask).tolist() == sorted([cue_pos, kw_pos]), text
        assert 16 <= len(text.split()) <= 24 and len(mask) == len(text.split())


def test_uncued_keywords_agree_with_the_label_at_agree_rate() -> None:
    def agreement(ds: Dataset) -> float:
        votes = [[c == y for _, f, c in _planted(t)[0] if f != _planted(t)[1][0][1]]
                 for t, y in zip(ds.train.texts, ds.train.labels)]
        return float(np.mean(votes))

    assert abs(agreement(dataset()) - 0.1) < 0.03
    assert abs(agreement(dataset(agree_rate=0.5)) - 0.5) < 0.05
    cued = [_planted(t)[1][0][1] for t in dataset().train.texts]
    assert cued.count("x") == cued.count("y") == 1000  # both families decide equally often


def test_three_families_have_three_cues() -> None:
    ds = dataset(n_families=3, n_classes=3, n_train=300)
    assert {t for text in ds.train.texts for t in text.split() if t.startswith("cue")} == {
        cue_token(0), cue_token(1), cue_token(2)} == {"cuex", "cuey", "cuez"}
    assert all(int(m.sum()) == 2 for m in ds.train.rationale)


def test_pointer_is_deterministic_per_seed_and_eval_sets_ignore_n_train() -> None:
    a, b, c = dataset(seed=3), load(cfg(), seed=3), dataset(seed=4)
    assert a.train.texts == b.train.texts and np.array_equal(a.train.labels, b.train.labels)
    assert all(np.array_equal(x, y) for x, y in zip(a.val.rationale, b.val.rationale))
    assert a.train.texts != c.train.texts
    small = dataset(seed=3, n_train=100)
    assert small.val.texts == a.val.texts and small.test.texts == a.test.texts


def test_label_noise_flips_pointer_train_labels_only() -> None:
    clean, noisy = dataset(seed=2), dataset(seed=2, label_noise=0.1)
    assert clean.train.texts == noisy.train.texts
    assert int((clean.train.labels != noisy.train.labels).sum()) == 200 == noisy.info["n_noisy_train"]
    assert np.array_equal(clean.test.labels, noisy.test.labels)


def test_keyword_task_is_unchanged() -> None:
    """The keyword task with its former default sizes gives the very data the code before the
    pointer task gave (digest computed from that code, seed 0, label_noise 0.1)."""
    ds = load(cfg(task="keywords", vocab_size=500, min_len=10, max_len=50, label_noise=0.1), seed=0)
    h = hashlib.sha256()
    for s in (ds.train, ds.val, ds.test):
        h.update("\n".join(s.texts).encode())
        h.update(s.labels.tobytes())
        for r in s.rationale:
            h.update(r.tobytes())
    assert h.hexdigest() == OLD_KEYWORDS_DIGEST


OLD_KEYWORDS_DIGEST = "c6a7f87c59b7dff0bfd9e19ce4da15387e0868ef721314d115d8a83756acdc7e"


@pytest.mark.parametrize("kw,needles", [
    ({"task": "pointers"}, ["data.task", "'pointers'", "keywords"]),
    ({"agree_rate": 1.5}, ["data.agree_rate", "1.5"]),
    ({"agree_rate": -0.1}, ["data.agree_rate", "-0.1"]),
    ({"n_families": 1}, ["data.n_families=1", "2..6"]),
    ({"n_families": 7}, ["data.n_families=7", "2..6"]),
    ({"min_len": 2, "max_len": 5}, ["data.min_len (2)", "data.n_families + 1"]),
    ({"task": "keywords", "min_len": 2, "n_rationale": 3}, ["data.min_len (2)", "data.n_rationale"]),
    ({"label_noise": 1.0}, ["data.label_noise", "1.0"]),
], ids=["task", "agree_rate_high", "agree_rate_negative", "one_family", "seven_families", "min_len_pointer",
        "min_len_keywords", "label_noise"])
def test_bad_values_fail_in_one_line_naming_the_key(kw: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load(cfg(**kw), seed=0)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg


def test_composed_default_is_the_small_transformer_on_the_pointer_task() -> None:
    from attnlab.config import to_plain
    from conftest import compose

    c = to_plain(compose([]))
    assert c["data"]["name"] == "synthetic" and c["data"]["task"] == "pointer"
    m = c["model"]
    assert m["name"] == "small_transformer" and m["embedding_dim"] == 64
    assert m["encoder"]["_target_"] == "attnlab.layers.TransformerEncoder" and m["encoder"]["layers"] == 1
    assert (m["attention"]["units"], m["attention"]["heads"], m["pooling"]["_name_"]) == (64, 2, "mean")
    bilstm = to_plain(compose(["model=bilstm"]))["model"]
    assert bilstm["name"] == "bilstm" and bilstm["encoder"]["_name_"] == "bilstm"
    assert {k: v for k, v in bilstm.items() if k != "name"} == {
        k: v for k, v in to_plain(compose(["model=default"]))["model"].items() if k != "name"}


def test_bad_task_exits_2_with_one_line_from_the_cli(tmp_path) -> None:
    from conftest import run_cli

    proc = run_cli(["train", "data.task=pointers"], cwd=tmp_path, timeout=120,
                   env={"HYDRA_FULL_ERROR": "0", "ATTNLAB_VERBOSE": "0"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "data.task='pointers'" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # refused before any store was made
