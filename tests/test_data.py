"""Tests for attnlab.data: synthetic task, MR/TREC protocols, user files, bad inputs."""

from __future__ import annotations

import json
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attnlab.data import Dataset, load, sha256_file
from attnlab.data.splits import kfold_indices, stratified_split, stratified_subsample
from attnlab.data.synthetic import keyword
from attnlab.errors import AttnlabError, ConfigError, DataError

SHARED = Path("/work/shared/data")
MR = SHARED / "mr" / "mr.tsv"
TREC_TRAIN = SHARED / "trec" / "train.tsv"
TREC_TEST = SHARED / "trec" / "test.tsv"
# Published in /work/shared/data/README.md.
SHA = {
    MR: "38023663dac19d7e8e17310e834fbba30b6a19e44cb2f8f92efab8844ba70cb3",
    TREC_TRAIN: "6da5b5920fbfe2239f5ac11e38d07c1e594aaf2e1470a80731ed12988894133d",
    TREC_TEST: "0b3ac5acc47b427b8301d6c6a33ad7812e470eb13d9a233d5307700568fb1f04",
}
needs_mr = pytest.mark.skipif(not MR.exists(), reason="shared MR data not present")
needs_trec = pytest.mark.skipif(not TREC_TRAIN.exists(), reason="shared TREC data not present")

@functools.lru_cache(maxsize=None)
def _defaults(name: str) -> dict[str, Any]:
    from attnlab.config import to_plain
    from conftest import compose

    return to_plain(compose([f"data={name}", "data.train_path=x"] if name == "files" else [f"data={name}"]).data)


def data_cfg(name: str, **kw: Any) -> dict[str, Any]:
    """The real conf/data/<name>.yaml as a plain dict (its defaults), with ``kw`` on top."""
    return {**_defaults(name), **kw}


SYN: dict[str, Any] = data_cfg(
    "synthetic", task="keywords", n_train=300, n_val=60, n_test=60, n_classes=3, vocab_size=200,
    min_len=4, max_len=20, n_rationale=2, keywords_per_class=3, lowercase=False,
)


def mr_cfg(**kw: Any) -> dict[str, Any]:
    return data_cfg("mr", path=str(MR), lowercase=False, **kw)


def trec_cfg(**kw: Any) -> dict[str, Any]:
    return data_cfg("trec", train_path=str(TREC_TRAIN), test_path=str(TREC_TEST), **{"lowercase": False, **kw})


def same(a: Dataset, b: Dataset) -> bool:
    return a.classes == b.classes and all(
        sa.texts == sb.texts
        and np.array_equal(sa.labels, sb.labels)
        and (sa.rationale is None) == (sb.rationale is None)
        and (sa.rationale is None or all(np.array_equal(x, y) for x, y in zip(sa.rationale, sb.rationale)))
        for sa, sb in zip(a.splits.values(), b.splits.values())
    )


# ------------------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_per_seed() -> None:
    a, b, c = load(SYN, seed=7), load(SYN, seed=7), load(SYN, seed=8)
    assert same(a, b)
    assert not same(a, c)
    assert a.train.texts != c.train.texts
    assert (len(a.train), len(a.val), len(a.test)) == (300, 60, 60)
    assert a.classes == ["class_0", "class_1", "class_2"]
    assert a.files == {} and a.sha256 == {}


def test_synthetic_rationale_marks_exactly_the_label_keywords() -> None:
    ds = load(SYN, seed=3)
    all_keywords = {keyword(c, j) for c in range(3) for j in range(3)}
    for split in ds.splits.values():
        assert split.rationale is not None
        for text, y, mask in zip(split.texts, split.labels, split.rationale):
            tokens = text.split()
            assert text == text.lower()
            assert mask.shape == (len(tokens),) and set(np.unique(mask)) <= {0, 1}
            assert SYN["min_len"] <= len(tokens) <= SYN["max_len"]
            assert int(mask.sum()) == SYN["n_rationale"]
            own = {keyword(int(y), j) for j in range(3)}
            for tok, m in zip(tokens, mask):
                assert (tok in all_keywords) == bool(m)  # every keyword position marked, nothing else
                if m:
                    assert tok in own  # ...and it belongs to the label's class
    # Balanced classes, so stratification and accuracy baselines are simple.
    assert np.bincount(ds.train.labels).tolist() == [100, 100, 100]


def test_synthetic_eval_sets_do_not_depend_on_n_train() -> None:
    a, b = load(SYN, seed=1), load({**SYN, "n_train": 150}, seed=1)
    assert a.test.texts == b.test.texts and a.val.texts == b.val.texts


def test_synthetic_label_noise_flips_train_only() -> None:
    clean, noisy = load(SYN, seed=2), load({**SYN, "label_noise": 0.1}, seed=2)
    assert clean.train.texts == noisy.train.texts
    assert int((clean.train.labels != noisy.train.labels).sum()) == 30 == noisy.info["n_noisy_train"]
    assert np.array_equal(clean.test.labels, noisy.test.labels)


def test_synthetic_many_classes_sort_in_index_order() -> None:
    ds = load({**SYN, "n_classes": 12, "n_train": 120}, seed=0)
    assert ds.classes == sorted(ds.classes) and ds.classes[10] == "class_10"


def test_synthetic_loads_from_the_composed_config() -> None:
    from conftest import compose

    cfg = compose(["data.task=keywords", "data.n_train=300", "data.n_val=60", "data.n_test=60", "data.n_classes=3", "data.vocab_size=200",
                   "data.min_len=4", "data.max_len=20", "data.n_rationale=2", "data.keywords_per_class=3",
                   "data.lowercase=false"]).data  # a DictConfig in struct mode, as train() gets it
    ds = load(cfg, seed=5)
    assert ds.name == "synthetic" and same(ds, load(SYN, seed=5))


# ------------------------------------------------------------------------- MR

@needs_mr
def test_mr_folds_partition_the_file_and_ignore_the_run_seed() -> None:
    n_rows = 10662
    seen = np.zeros(n_rows, dtype=np.int64)
    for fold in range(10):
        ds = load(mr_cfg(fold=fold), seed=fold)  # a different run seed for every fold
        tr, va, te = ds.train.rows, ds.val.rows, ds.test.rows
        assert tr is not None and va is not None and te is not None
        seen[te] += 1
        assert not set(va) & set(te) and not set(tr) & set(te) and not set(tr) & set(va)
        assert len(tr) + len(va) + len(te) == n_rows
        assert abs(len(va) - 0.1 * (n_rows - len(te))) <= 1
        # stratified: each test fold is half positive
        assert abs(float(ds.test.labels.mean()) - 0.5) < 0.01
        if fold in (0, 9):
            other = load(mr_cfg(fold=fold), seed=fold + 100)
            assert np.array_equal(other.test.rows, te)  # same fold for another run seed
            assert not np.array_equal(other.val.rows, va)  # ...but its own validation carve
    assert (seen == 1).all()  # disjoint and covering


@needs_mr
def test_mr_metadata_and_texts() -> None:
    ds = load(mr_cfg(fold=4, max_train_samples=500), seed=0)
    assert ds.classes == ["negative", "positive"]
    assert len(ds.test) in (1066, 1067)
    assert len(ds.train) == 500 and np.bincount(ds.train.labels).tolist() == [250, 250]
    assert ds.files == {"data": str(MR)} and ds.sha256 == {"data": SHA[MR]}
    assert ds.info["fold"] == 4 and ds.info["n_folds"] == 10 and ds.info["n_train_full"] > 8000
    assert ds.train.rationale is None
    # Rows point back at the file: record i is on line i + 2.
    lines = MR.read_text(encoding="utf-8").splitlines()
    i = int(ds.test.rows[0])
    assert lines[i + 1].split("\t")[0] == ds.test.texts[0]


@needs_mr
def test_mr_split_seed_changes_the_folds() -> None:
    a = load(mr_cfg(), seed=0)
    b = load(mr_cfg(split_seed=1), seed=0)
    assert not np.array_equal(a.test.rows, b.test.rows)


# ------------------------------------------------------------------------- TREC

@needs_trec
def test_trec_protocol() -> None:
    ds = load(trec_cfg(max_train_samples=600), seed=0)
    assert ds.classes == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert len(ds.test) == 500 and np.array_equal(ds.test.rows, np.arange(500))
    assert len(ds.train) == 600 and len(set(ds.train.labels.tolist())) == 6
    assert len(ds.val) == 546  # ceil(0.1 * 5452), untouched by max_train_samples
    assert not set(ds.train.rows) & set(ds.val.rows)
    assert ds.sha256 == {"train": SHA[TREC_TRAIN], "test": SHA[TREC_TEST]}
    assert sha256_file(TREC_TEST) == SHA[TREC_TEST]
    assert ds.test.texts[0] == "How far is it from Denver to Aspen ?"


@needs_trec
def test_trec_lowercase_and_eval_subsample() -> None:
    a = load(trec_cfg(lowercase=True, max_eval_samples=120), seed=0)
    b = load(trec_cfg(lowercase=True, max_eval_samples=120), seed=1)
    assert len(a.test) == len(a.val) == 120
    assert all(t == t.lower() for t in a.test.texts)
    assert np.array_equal(a.test.rows, b.test.rows)  # eval subsample ignores the run seed
    assert len(set(a.test.labels.tolist())) == 6


@needs_trec
def test_trec_fine_labels() -> None:
    ds = load(trec_cfg(label_column="fine_label", max_train_samples=2000), seed=0)
    assert len(ds.classes) > 40 and all(":" in c for c in ds.classes)


# ------------------------------------------------------------------------- files

ROWS = [(f"text number {i} , with \"quotes\"", ["pos", "neg", "neutral"][i % 3]) for i in range(60)]


def write(path: Path, fmt: str, rows: list[tuple[str, str]] = ROWS,
          header: tuple[str, str] = ("text", "label")) -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(dict(zip(header, r))) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "tsv":
        path.write_text("\t".join(header) + "\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    else:
        import pandas as pd
        pd.DataFrame(rows, columns=list(header)).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_files_formats_agree(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path / f"train.{fmt}", fmt)
    cfg = data_cfg("files", train_path=str(path), val_fraction=0.2, test_fraction=0.25)
    ds = load(cfg, seed=0)
    assert ds.classes == ["neg", "neutral", "pos"]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (36, 9, 15)
    rows = np.concatenate([ds.train.rows, ds.val.rows, ds.test.rows])
    assert sorted(rows.tolist()) == list(range(60))
    for split in ds.splits.values():
        for r, t, y in zip(split.rows, split.texts, split.labels):
            assert (t, ds.classes[y]) == ROWS[r]  # bare quotes survive in every format
    assert ds.files == {"train": str(path)} and ds.sha256 == {"train": sha256_file(path)}
    # The carved test split is fixed by split_seed; the run seed moves only val.
    other = load(cfg, seed=1)
    assert np.array_equal(other.test.rows, ds.test.rows)
    assert not np.array_equal(other.val.rows, ds.val.rows)


def test_files_explicit_splits_relative_paths_and_columns(tmp_path: Path) -> None:
    header = ("sentence", "y")
    write(tmp_path / "train.tsv", "tsv", ROWS, header)
    write(tmp_path / "dev.jsonl", "jsonl", ROWS[:9], header)
    write(tmp_path / "test.csv", "csv", ROWS[9:21], header)
    cfg = data_cfg("files", base_dir=str(tmp_path), train_path="train.tsv", val_path="dev.jsonl",
                   test_path="test.csv", text_column="sentence", label_column="y", lowercase=False)
    ds = load(cfg, seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (60, 9, 12)
    assert ds.files["val"] == str(tmp_path / "dev.jsonl")
    assert set(ds.sha256) == {"train", "val", "test"}
    assert ds.test.texts[0] == ROWS[9][0]


def test_files_csv_quoted_fields_and_json_array(tmp_path: Path) -> None:
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('label,text\n1,"a, b"\n0,"line one\nline two"\n1,x\n0,y\n', encoding="utf-8")
    json_path = tmp_path / "t.json"
    json_path.write_text(json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 0}] * 3))
    ds = load(data_cfg("files", train_path=str(csv_path), test_path=str(csv_path), val_path=str(json_path),
                       lowercase=False), seed=0)
    assert ds.classes == ["0", "1"]
    assert ds.train.texts[:2] == ["a, b", "line one\nline two"]
    assert ds.val.labels.tolist() == [1, 0] * 3


def test_files_labels_sort_numerically(tmp_path: Path) -> None:
    rows = [(f"t{i}", str(i % 11)) for i in range(66)]
    path = write(tmp_path / "d.tsv", "tsv", rows)
    ds = load(data_cfg("files", train_path=str(path), val_fraction=0.2, test_fraction=0.2), seed=0)
    assert ds.classes == [str(i) for i in range(11)]


# ------------------------------------------------------------------------- splits

def test_split_helpers() -> None:
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = stratified_split(y, 0.2, seed=0)
    assert len(held) == 20 and np.bincount(y[held]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    sub = stratified_subsample(y, 11, seed=0)
    assert len(sub) == 11 and set(y[sub].tolist()) == {0, 1, 2}
    assert len(stratified_subsample(np.array([0, 0, 0, 1]), 3, seed=0)) == 3  # singleton class ok
    tests = [kfold_indices(y, 5, k, split_seed=0)[1] for k in range(5)]
    assert sorted(np.concatenate(tests).tolist()) == list(range(100))
    with pytest.raises(DataError, match="class.*'b'.*only 1 row"):
        stratified_split(np.array([0, 0, 0, 1]), 0.5, seed=0, class_names=["a", "b"])


# ------------------------------------------------------------------------- bad inputs

Builder = Callable[[Path], dict[str, Any]]


def files_cfg(train: Path, **kw: Any) -> dict[str, Any]:
    return data_cfg("files", **{"train_path": str(train), "val_fraction": 0.2, "test_fraction": 0.2, "base_dir": None, **kw})


def raw(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


GOOD_TSV = "text\tlabel\n" + "".join(f"t {i}\t{'ab'[i % 2]}\n" for i in range(20))

BAD: list[tuple[str, Builder, type[AttnlabError], list[str]]] = [
    ("missing file", lambda t: files_cfg(t / "nope.csv"), DataError, ["{t}/nope.csv", "not found"]),
    ("empty file", lambda t: files_cfg(raw(t, "e.tsv", b"")), DataError, ["{t}/e.tsv", "empty"]),
    ("header only", lambda t: files_cfg(raw(t, "h.tsv", "text\tlabel\n")), DataError, ["{t}/h.tsv", "no data rows"]),
    ("blank-only file", lambda t: files_cfg(raw(t, "b.csv", "\n\n")), DataError, ["{t}/b.csv", "header"]),
    ("missing text column", lambda t: files_cfg(raw(t, "m.csv", "sentence,label\nhi,a\n")),
     DataError, ["{t}/m.csv", "'text'", "'sentence'"]),
    ("misnamed label column", lambda t: files_cfg(raw(t, "m.tsv", "text\tlable\nhi\ta\n")),
     DataError, ["{t}/m.tsv", "'label'", "'lable'"]),
    ("single class", lambda t: files_cfg(raw(t, "s.tsv", "text\tlabel\na\tx\nb\tx\n")),
     DataError, ["{t}/s.tsv", "single class 'x'"]),
    ("blank label", lambda t: files_cfg(raw(t, "b.tsv", GOOD_TSV + "t\t  \nu\t\n")),
     DataError, ["{t}/b.tsv", "2 row(s)", "'label'", "line 22"]),
    ("NaN label csv", lambda t: files_cfg(raw(t, "n.csv", "text,label\na,x\nb,NaN\nc,y\n")),
     DataError, ["{t}/n.csv", "1 row(s)", "'label'", "line 3"]),
    ("null label jsonl", lambda t: files_cfg(raw(t, "n.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": null}\n')),
     DataError, ["{t}/n.jsonl", "'label'", "line 3"]),
    ("empty text", lambda t: files_cfg(raw(t, "e.csv", "text,label\na,x\n   ,y\nc,y\n")),
     DataError, ["{t}/e.csv", "empty text", "'text'", "line 3"]),
    ("short tsv row", lambda t: files_cfg(raw(t, "r.tsv", GOOD_TSV + "only text\n")),
     DataError, ["{t}/r.tsv", "'label'", "line 22"]),
    ("long tsv row", lambda t: files_cfg(raw(t, "l.tsv", GOOD_TSV + "a\tb\tc\n")),
     DataError, ["{t}/l.tsv", "line 22"]),
    ("non-utf8 bytes", lambda t: files_cfg(raw(t, "u.tsv", b"text\tlabel\ncaf\xe9\tx\nb\ty\n")),
     DataError, ["{t}/u.tsv", "UTF-8", "offset 14", "line 2"]),
    ("bad jsonl line", lambda t: files_cfg(raw(t, "j.jsonl", '{"text": "a", "label": "x"}\n{oops\n')),
     DataError, ["{t}/j.jsonl", "line 2"]),
    ("unseen test label", lambda t: files_cfg(raw(t, "tr.tsv", GOOD_TSV),
                                              test_path=str(raw(t, "te.tsv", "text\tlabel\nq\ta\nr\tzzz\n"))),
     DataError, ["{t}/te.tsv", "'zzz'", "line 3"]),
    ("split too small", lambda t: files_cfg(raw(t, "small.tsv", "text\tlabel\na\tx\nb\tx\nc\ty\nd\ty\n"), test_fraction=0.1),
     DataError, ["{t}/small.tsv", "data.test_fraction"]),
    ("singleton class", lambda t: files_cfg(raw(t, "one.tsv", GOOD_TSV + "z\tc\n")),
     DataError, ["{t}/one.tsv", "'c'", "only 1 row"]),
    ("fold out of range", lambda t: data_cfg("mr", path=str(raw(t, "mr.tsv", GOOD_TSV)), fold=10, n_folds=10),
     ConfigError, ["data.fold", "0..9", "10"]),
    ("too few rows per fold", lambda t: data_cfg("mr", path=str(raw(t, "mr.tsv", GOOD_TSV)), fold=0, n_folds=11),
     DataError, ["{t}/mr.tsv", "data.n_folds"]),
    ("unknown loader", lambda t: data_cfg("mr", _target_="attnlab.data.corpora.load_imdb"), ConfigError,
     ["data._target_", "'attnlab.data.corpora.load_imdb'", "no 'load_imdb'"]),
    ("loader not importable", lambda t: data_cfg("mr", _target_="nopkg.load"), ConfigError,
     ["data._target_", "cannot import nopkg"]),
    ("unknown format", lambda t: files_cfg(raw(t, "x.tsv", GOOD_TSV), format="parquet"),
     ConfigError, ["data.format", "'parquet'", "jsonl"]),
    ("unknown extension", lambda t: files_cfg(raw(t, "x.txt", GOOD_TSV)), ConfigError, ["{t}/x.txt", "data.format"]),
    ("missing val_fraction", lambda t: {k: v for k, v in data_cfg("trec").items() if k != "val_fraction"},
     ConfigError, ["data (attnlab.data.corpora.load_trec)", "val_fraction"]),
    ("unknown loader argument", lambda t: data_cfg("trec", vall_fraction=0.1),
     ConfigError, ["data (attnlab.data.corpora.load_trec)", "vall_fraction"]),
    ("val_fraction out of range", lambda t: files_cfg(raw(t, "x.tsv", GOOD_TSV), val_fraction=1.5),
     ConfigError, ["data.val_fraction", "1.5"]),
    ("max_train_samples not int", lambda t: {**SYN, "max_train_samples": "10"}, ConfigError, ["data.max_train_samples", "'10'"]),
    ("synthetic min_len < n_rationale", lambda t: {**SYN, "min_len": 1}, ConfigError, ["data.min_len", "data.n_rationale"]),
]


@pytest.mark.parametrize("build,exc,needles", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(tmp_path: Path, build: Builder, exc: type[AttnlabError], needles: list[str]) -> None:
    cfg = build(tmp_path)
    with pytest.raises(exc) as info:
        load(cfg, seed=0)
    msg = str(info.value)
    assert "\n" not in msg, msg  # one line for the CLI's "error: <message>"
    for needle in needles:
        assert needle.format(t=tmp_path) in msg, msg


def test_relative_path_resolves_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw(tmp_path, "d.tsv", GOOD_TSV)
    monkeypatch.chdir(tmp_path)
    ds = load(files_cfg(Path("d.tsv")), seed=0)
    assert ds.files["train"] == str(tmp_path / "d.tsv")
    with pytest.raises(DataError, match="other/d.tsv"):
        load(files_cfg(Path("d.tsv"), base_dir=str(tmp_path / "other")), seed=0)
