"""Property-based tests (hypothesis): generated data files and option values end in a result or
in one line of :class:`attnlab.errors.AttnlabError`, never in another exception.

* the file loader (``data=files``) on generated CSV/TSV/JSONL bytes: encodings, BOMs, quotes,
  delimiters inside cells, ragged rows, missing/extra/duplicate header columns, label types
  (ints, floats, booleans, null, nested JSON), blank lines and garbage;
* the commands' option checks: ``bench --set`` values of every type, output paths, and
  ``attnlab train`` overrides of numeric keys through the real config validation.

Example counts are fixed per test (``N_*``, 340 in all) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from attnlab.data import Dataset
from attnlab.errors import AttnlabError

N_FILES = 240
N_BENCH = 40
N_PATHS = 40
N_TRAIN = 20
COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Cells: words, quotes, delimiters, line breaks, unicode, the spellings of "missing".
WORDS = st.sampled_from(["good", "bad", "film", "a", "NA", "null", "nan", "None", "true", "0", "1", "-2",
                         "3.5", '"', '""', ",", "\t", "\n", "\r\n", " ", "é", "日本", "\u200b", "\\", "'", "#", "{}"])
CELL = st.one_of(st.lists(WORDS, max_size=6).map(" ".join), st.text(max_size=12))
LABEL = st.one_of(st.sampled_from(["pos", "neg", "0", "1", "", "nan", "NULL", "True", "1.0", " pos "]),
                  st.text(max_size=4))
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"])


@st.composite
def delimited(draw, sep: str) -> bytes:
    """A CSV/TSV file: a header (maybe wrong), rows (maybe ragged), quoted or raw, some encoding."""
    header = draw(st.sampled_from([["text", "label"], ["label", "text"], ["text", "label", "extra"],
                                   ["sentence", "label"], ["text", "text", "label"], ["text"], []]))
    n = draw(st.integers(0, 12))
    rows = []
    for _ in range(n):
        row = {"text": draw(CELL), "label": draw(LABEL), "extra": draw(CELL), "sentence": draw(CELL)}
        cells = [row.get(h, "") for h in header] or [draw(CELL)]
        if draw(st.booleans()):  # ragged: drop or add cells
            cells = cells[: draw(st.integers(0, len(cells)))] + draw(st.lists(CELL, max_size=2))
        rows.append(cells)
    if draw(st.booleans()):
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=sep, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
        writer.writerows([header, *rows] if header else rows)
        text = buf.getvalue()
    else:
        text = "\n".join(sep.join(r) for r in ([header, *rows] if header else rows))
        text += draw(st.sampled_from(["", "\n", "\n\n\n", "\r\n"]))
    return _encode(draw, text)


def _encode(draw, text: str) -> bytes:
    enc = draw(ENCODINGS)
    return text.encode(enc, errors="replace") if enc != "utf-16" or draw(st.booleans()) else text.encode("utf-8")


JSON_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                                    CELL, LABEL),
                          lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(CELL, inner, max_size=2)),
                          max_leaves=4)


@st.composite
def jsonl(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["record", "record", "record", "garbage", "blank", "scalar"]))
        if kind == "record":
            keys = draw(st.lists(st.sampled_from(["text", "label", "other", "Text"]), max_size=4, unique=True))
            lines.append(json.dumps({k: draw(JSON_VALUE) for k in keys}, ensure_ascii=draw(st.booleans())))
        elif kind == "garbage":
            lines.append(draw(st.sampled_from(['{"text": "x", "label": ', "[1, 2", "text,label", "{'a': 1}", "nul"])))
        elif kind == "scalar":
            lines.append(json.dumps(draw(JSON_VALUE)))
        else:
            lines.append("")
    text = "\n".join(lines)
    if draw(st.booleans()) and lines:  # a .json array instead
        text = "[" + ",".join(ln for ln in lines if ln) + "]"
    return _encode(draw, text)


@st.composite
def plausible(draw) -> tuple[str, bytes]:
    """A file that is mostly right (2-3 classes, enough rows), with one of the wild details:
    the happy path must hold under quotes, encodings, label types and stray rows too."""
    classes = draw(st.sampled_from([["pos", "neg"], ["0", "1"], ["a", "b", "c"], ["NA", "none"]]))
    n = draw(st.integers(12, 40))
    texts = [draw(st.lists(WORDS.filter(lambda w: w.strip() not in ("", '"', '""')), min_size=1, max_size=5)
                  .map(" ".join)) + f" w{i}" for i in range(n)]
    labels = [classes[i % len(classes)] for i in range(n)]
    fmt = draw(st.sampled_from(["csv", "tsv", "jsonl"]))
    if fmt == "jsonl":
        as_int = draw(st.booleans()) and classes == ["0", "1"]
        text = "\n".join(json.dumps({"text": t, "label": int(lab) if as_int else lab, "id": i})
                         for i, (t, lab) in enumerate(zip(texts, labels)))
    else:
        buf = io.StringIO()
        sep = "," if fmt == "csv" else "\t"
        rows = [["text", "label"], *zip(texts, labels)]
        if fmt == "tsv":
            rows = [[c.replace("\t", " ").replace("\n", " ").replace("\r", " ") for c in r] for r in rows]
            text = "\n".join(sep.join(r) for r in rows) + "\n"
        else:
            csv.writer(buf, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))).writerows(rows)
            text = buf.getvalue()
    enc = draw(st.sampled_from(["utf-8", "utf-8-sig"]))
    return fmt, text.encode(enc)


FILES = st.one_of(plausible(), plausible(), delimited(",").map(lambda b: ("csv", b)),
                  delimited("\t").map(lambda b: ("tsv", b)), jsonl().map(lambda b: ("jsonl", b)))


def _one_line(e: AttnlabError) -> None:
    msg = str(e)
    assert msg.strip() and "\n" not in msg and "Traceback" not in msg, repr(msg)


@settings(max_examples=N_FILES, **COMMON)
@given(train=FILES, test=st.one_of(st.none(), st.none(), FILES), fmt=st.sampled_from(["auto", "auto", "csv", "tsv", "jsonl"]))
def test_file_loader_ends_in_a_dataset_or_one_line(train, test, fmt):
    from attnlab.data.files import load_files

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / f"train.{train[0]}").write_bytes(train[1])
        if test is not None:
            (Path(d) / f"test.{test[0]}").write_bytes(test[1])
        try:
            ds = load_files(seed=0, train_path=f"train.{train[0]}", val_path=None,
                            test_path=None if test is None else f"test.{test[0]}", format=fmt, text_column="text",
                            label_column="label", val_fraction=0.2, test_fraction=0.2, split_seed=0, base_dir=d)
        except AttnlabError as e:
            _one_line(e)
            event(f"{type(e).__name__}")
            return
    event("Dataset")
    assert isinstance(ds, Dataset) and len(ds.classes) >= 2
    for split in ds.splits.values():
        assert all(isinstance(t, str) and t.strip() for t in split.texts)
        assert split.labels.dtype == np.int64 and ((0 <= split.labels) & (split.labels < len(ds.classes))).all()


SET_VALUE = st.one_of(st.integers(-5, 10**6).map(str), st.floats(allow_nan=True).map(str), st.text(max_size=8),
                      st.sampled_from(["[]", "[1,2]", "[a", "{}", "{x: 1}", "null", "true", "${oops}", "'q'", "abc"]))
SET_KEY = st.sampled_from(["repeats", "warmup", "out_dir", "experiment", "layer.lengths", "layer.batch",
                           "layer.jit", "layer.memory", "scaling.sizes", "harness.overrides", "nokey", "layer.nokey",
                           "layer", ""])


SET_GOOD = st.one_of(st.tuples(st.sampled_from(["repeats", "warmup", "layer.batch"]), st.integers(0, 9).map(str)),
                    st.tuples(st.just("layer.lengths"), st.lists(st.integers(1, 64), max_size=3).map(str)),
                    st.tuples(st.sampled_from(["layer.jit", "layer.memory"]), st.sampled_from(["true", "false", "[true]"])),
                    st.tuples(st.just("out_dir"), st.text(min_size=1, max_size=8)))


@settings(max_examples=N_BENCH, **COMMON)
@given(items=st.lists(st.one_of(SET_GOOD, SET_GOOD, st.tuples(SET_KEY, SET_VALUE)), min_size=1, max_size=3))
def test_bench_set_ends_in_a_config_or_one_line(items):
    """Whatever `--set KEY=VALUE` holds, the config either loads with each value of its key's
    type, or one ConfigError line explains."""
    from omegaconf import OmegaConf

    from attnlab.bench.common import load_config

    sets = [f"{k}={v}" for k, v in items]
    try:
        cfg = load_config(quick=True, sets=sets)
    except AttnlabError as e:
        _one_line(e)
        event("ConfigError")
        return
    event("config")
    assert isinstance(cfg.repeats, int) and cfg.repeats >= 1 and isinstance(cfg.warmup, int) and cfg.warmup >= 0
    assert OmegaConf.is_list(cfg.layer.lengths) and all(isinstance(n, int) for n in cfg.layer.lengths)


@settings(max_examples=N_PATHS, **COMMON)
@given(name=st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
       existing=st.sampled_from(["none", "file", "folder"]), force=st.booleans())
def test_output_paths_end_in_a_path_or_one_line(name, existing, force):
    from attnlab.outputs import new_file, out_dir

    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / "x" / name
        if existing == "file":
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_text("mine")
            except OSError:
                return  # a name the file system refuses (too long, "..")
        elif existing == "folder":
            target.mkdir(parents=True, exist_ok=True)
        for check in (lambda: new_file(target, "--html", force), lambda: out_dir(target, "--out", ["a.md"], force)):
            try:
                assert isinstance(check(), Path)
            except AttnlabError as e:
                _one_line(e)
        if existing == "file" and target.is_file():
            assert target.read_text() == "mine"  # a check never writes


TRAIN_KEY = st.sampled_from(["train.learning_rate", "train.epochs", "train.batch_size", "model.max_len",
                             "model.attention.units", "model.attention.heads", "train.clipnorm", "seed",
                             "data.n_train", "model.head.dropout", "tracking.faithfulness.n"])
TRAIN_VALUE = st.one_of(st.integers(-3, 10**12).map(str), st.floats(allow_nan=True).map(repr),
                        st.sampled_from(["inf", "-inf", "nan", "1e308", "1e-320", "0", "-0.0", "abc", "''", "null",
                                         "[1]", "{a: 1}", "true", "${seed}", "1_000", "0x10", "1e3"]))


@settings(max_examples=N_TRAIN, **COMMON)
@given(key=TRAIN_KEY, value=TRAIN_VALUE)
def test_train_overrides_end_in_a_spec_or_one_line(key, value):
    """`attnlab train KEY=VALUE` up to the point where work would start (composition and every
    config check): a described run or one line, never another exception."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from attnlab.errors import one_line
    from attnlab.run_spec import describe
    from conftest import compose

    try:
        cfg = compose([f"{key}={value}"])
    except (HydraException, OmegaConfBaseException) as e:  # the CLI prints these as one line
        assert one_line(e).strip() and "\n" not in one_line(e)
        event("composition error (one line)")
        return
    try:
        spec = describe(cfg)
    except AttnlabError as e:
        _one_line(e)
        event("ConfigError (validation)")
        return
    event("described run")
    assert spec.run_name
