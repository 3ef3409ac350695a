"""Reading labelled text tables (CSV / TSV / JSONL) with eager, one-line validation.

:func:`read_table` is the only place a data file is opened: it reads the bytes once
(so the sha256 describes exactly what was parsed), checks them, and returns the text
and label columns as strings. Every problem is a :class:`DataError` naming the file
and, where relevant, the column and the first offending line.

Formats:
- ``tsv``: tab-separated, header row, no quoting (``csv.QUOTE_NONE``), because the
  benchmark TSVs and most NLP dumps contain bare ``"`` characters that are text, not
  quotes.
- ``csv``: comma-separated, header row, standard ``"`` quoting (fields may span lines).
- ``jsonl``: one JSON object per line (blank lines ignored); a ``.json`` file holding a
  single JSON array of objects is accepted too.

Cells are read as strings (``dtype=str``, ``keep_default_na=False``) so that a text
such as ``NA`` or ``null`` stays text. A *label* is treated as missing when blank or
one of ``nan``, ``null``, ``<na>`` (any case): the spellings pandas, numpy and SQL
dumps write for a missing value. ``none``/``na`` are kept, since they are real class
names in some data sets.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attnlab import checks
from attnlab.data.dataset import Dataset, Split, encode_labels, resolve_path, sorted_classes
from attnlab.data.splits import stratified_split
from attnlab.errors import ConfigError, DataError

__all__ = ["FORMATS", "Table", "encode_table", "encode_training", "infer_format", "load_files", "read_table", "read_texts"]

FORMATS = ("auto", "csv", "tsv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
_MISSING_LABELS = frozenset({"", "nan", "null", "<na>"})


@dataclass
class Table:
    """The text and label columns of one file, validated, plus its provenance."""

    path: Path
    texts: list[str]
    labels: list[str]  # stripped label names
    sha256: str
    fmt: str
    # File line (1-based) of each record when that mapping is exact, else None (a CSV
    # field spanning lines); used only to point error messages at the right line.
    lines: list[int] | None
    text_column: str
    label_column: str

    def __len__(self) -> int:
        return len(self.texts)

    def where(self, i: int) -> str:
        """Human location of record ``i`` (0-based data row)."""
        if self.lines is not None:
            return f"line {self.lines[i]}"
        return f"data row {i + 1}"

    def split(self, idx: np.ndarray, y: np.ndarray) -> Split:
        """The records at ``idx`` as a Split (``y`` are the encoded labels of all rows)."""
        return Split(texts=[self.texts[i] for i in idx], labels=y[idx], rows=idx)


def infer_format(path: Path, fmt: str = "auto", *, key: str = "data.path") -> str:
    """The concrete format of ``path``: ``fmt`` itself, or (``auto``) from the extension."""
    if fmt not in FORMATS:
        raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt != "auto":
        return fmt
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise ConfigError(
            f"cannot tell the format of {path} ({key}) from its extension {path.suffix!r}; "
            f"use .csv, .tsv/.tab or .jsonl/.json, or set data.format to csv, tsv or jsonl"
        )
    return found


def _read_bytes(path: Path, key: str) -> bytes:
    if not path.exists():
        raise DataError(f"data file not found: {path} ({key})")
    if path.is_dir():
        raise DataError(f"{path} ({key}) is a directory, not a data file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({key}): {exc.strerror or exc}") from exc
    if not raw:
        raise DataError(f"data file {path} ({key}) is empty (0 bytes)")
    return raw


def _decode(raw: bytes, path: Path) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path} is not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
            f"(line {line}); re-save the file as UTF-8"
        ) from None
    # A BOM (Excel's "CSV UTF-8") would otherwise become part of the first column name.
    return text.removeprefix("\ufeff")


def _parse_delimited(text: str, path: Path, fmt: str) -> tuple[pd.DataFrame, list[int] | None]:
    # Trailing blank lines are an editor artefact, not records; interior blank lines are
    # kept (skip_blank_lines=False) so that they surface as empty rows instead of being
    # silently dropped, and so that record i sits on line i + 2.
    text = re.sub(r"(?:\r?\n)+\Z", "\n", text)
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep="\t" if fmt == "tsv" else ",",
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no header row (the file holds only blank lines)") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path} cannot be parsed as {fmt.upper()}: {' '.join(str(exc).split())}") from None
    # Each record is one line exactly when the file has header + len(df) lines.
    n_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    lines = list(range(2, len(df) + 2)) if n_lines == len(df) + 1 else None
    return df, lines


def _json_scalar(value: Any) -> Any:
    """A JSON value as a string cell (None for null / NaN); lists and objects -> TypeError."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    raise TypeError(type(value).__name__)


def _parse_jsonl(text: str, path: Path) -> tuple[pd.DataFrame, list[int] | None]:
    records: list[Any]
    lines: list[int] | None
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        lines = None
    else:
        records, lines = [], []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {lineno} is not valid JSON: {exc.msg}") from None
            lines.append(lineno)
    if not isinstance(records, list):
        raise DataError(f"{path} must hold one JSON object per line (or one array of objects)")
    columns: dict[str, None] = {}
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        where = f"line {lines[i]}" if lines else f"record {i + 1}"
        if not isinstance(rec, dict):
            raise DataError(f"{path} {where} is a JSON {type(rec).__name__}, not an object")
        row: dict[str, Any] = {}
        for k, v in rec.items():
            try:
                row[k] = _json_scalar(v)
            except TypeError as exc:
                raise DataError(
                    f"{path} {where}: field {k!r} is a JSON {exc}, expected a string or number"
                ) from None
            columns.setdefault(k, None)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(columns), dtype=object), lines


def require_columns(df: pd.DataFrame, path: Path, text_column: str, label_column: str) -> None:
    found = [str(c) for c in df.columns]
    for role, col in (("text", text_column), ("label", label_column)):
        if col not in df.columns:
            raise DataError(
                f"{path} has no {role} column {col!r} (columns found: {found!r}); "
                f"set data.{role}_column"
            )


def read_table(
    path: str | Path,
    *,
    fmt: str = "auto",
    text_column: str = "text",
    label_column: str = "label",
    key: str = "data.path",
) -> Table:
    """Read and validate the text and label columns of one CSV / TSV / JSONL file.

    ``key`` is the config key the path came from, quoted in the not-found message.
    """
    path = Path(path)
    fmt = infer_format(path, fmt, key=key)
    raw = _read_bytes(path, key)
    text = _decode(raw, path)
    if fmt == "jsonl":
        df, lines = _parse_jsonl(text, path)
        if len(df) == 0:
            raise DataError(f"{path} holds no JSON records")
    else:
        df, lines = _parse_delimited(text, path, fmt)
        if len(df) == 0:
            raise DataError(f"{path} has a header row but no data rows")
    require_columns(df, path, text_column, label_column)

    # .iloc[:, first match]: a duplicated header name would otherwise yield a DataFrame.
    text_cells = df.loc[:, df.columns == text_column].iloc[:, 0].tolist()
    label_cells = df.loc[:, df.columns == label_column].iloc[:, 0].tolist()

    def blank(v: Any) -> bool:  # short rows (too few fields) come back as NaN
        return not isinstance(v, str) or not v.strip()

    labels = [v.strip() if isinstance(v, str) else "" for v in label_cells]
    bad = [i for i, lab in enumerate(labels) if lab.lower() in _MISSING_LABELS]
    where = (lambda i: f"line {lines[i]}") if lines is not None else (lambda i: f"data row {i + 1}")
    if bad:
        first = bad[0]
        shown = "an empty row" if blank(text_cells[first]) else repr(label_cells[first])
        raise DataError(
            f"{path}: {len(bad)} row(s) have an empty or NaN label in column {label_column!r} "
            f"(first at {where(first)}: {shown})"
        )
    bad = [i for i, v in enumerate(text_cells) if blank(v)]
    if bad:
        raise DataError(
            f"{path}: {len(bad)} row(s) have an empty text in column {text_column!r} "
            f"(first at {where(bad[0])}); remove or fill them"
        )
    return Table(
        path=path,
        texts=[str(v) for v in text_cells],
        labels=labels,
        sha256=hashlib.sha256(raw).hexdigest(),
        fmt=fmt,
        lines=lines,
        text_column=text_column,
        label_column=label_column,
    )


def encode_training(table: Table) -> tuple[list[str], np.ndarray]:
    """The classes of training data (at least two, sorted) and its encoded labels."""
    classes = sorted_classes(table.labels)
    if len(classes) < 2:
        raise DataError(
            f"training data {table.path} has a single class {classes[0]!r} in column "
            f"{table.label_column!r}; a classifier needs at least 2"
        )
    return classes, encode_table(table, classes)


def check_fraction(key: str, value: float) -> float:
    """``data.<key>`` in (0, 1), else ConfigError naming it."""
    try:
        return checks.fraction(key, value)
    except checks.ArgumentError:
        raise ConfigError(f"data.{key} must be in (0, 1), got {value!r}") from None


def encode_table(table: Table, classes: Sequence[str]) -> np.ndarray:
    """The table's labels as indices into ``classes`` (unseen label -> DataError)."""
    known = set(classes)
    unseen = [i for i, lab in enumerate(table.labels) if lab not in known]
    if unseen:
        first = table.labels[unseen[0]]
        n_first = sum(table.labels[i] == first for i in unseen)
        n_other = len({table.labels[i] for i in unseen}) - 1
        other = f"; {n_other} other unseen label(s) too" if n_other else ""
        raise DataError(
            f"{table.path}: label {first!r} in column {table.label_column!r} ({n_first} row(s), "
            f"first at {table.where(unseen[0])}) never occurs in the training data, whose "
            f"classes are {list(classes)!r}{other}"
        )
    return encode_labels(table.labels, classes,
                         where=f"{table.path} (column {table.label_column!r})")


def load_files(*, seed: int, train_path: str, val_path: str | None, test_path: str | None,
               format: str, text_column: str, label_column: str,  # noqa: A002 - the config key
               val_fraction: float, test_fraction: float, split_seed: int, base_dir: str | None) -> Dataset:
    """Your own CSV/TSV/JSONL files (``data=files``); relative paths resolve against ``base_dir``.

    A missing test file is carved from the training file first (``test_fraction`` of its
    rows, stratified, with ``split_seed``, not the run seed, so every run seed is scored on
    the same test rows); a missing validation file is then carved from what remains
    (``val_fraction`` of it, stratified, with the run ``seed``).
    """
    if text_column == label_column:
        raise ConfigError(f"data.text_column and data.label_column are both {text_column!r}")
    checks.one_of("format", format, FORMATS)
    split_seed = checks.non_negative_int("split_seed", split_seed)
    # Every fraction is checked before any file is read: config errors first, cheaply.
    if val_path is None:
        check_fraction("val_fraction", val_fraction)
    if test_path is None:
        check_fraction("test_fraction", test_fraction)
    reader = _TableReader(format, text_column, label_column, base_dir)
    train_t = reader.read(train_path, "train")
    classes, y = encode_training(train_t)
    pool = np.arange(len(train_t))
    if test_path is not None:
        test = reader.split_of(test_path, "test", classes)
    else:
        keep, held = stratified_split(y, test_fraction, split_seed, what=f"training data {train_t.path}",
                                      class_names=classes, fraction_key="data.test_fraction")
        pool, test = keep, train_t.split(held, y)
    if val_path is not None:
        val = reader.split_of(val_path, "val", classes)
    else:
        keep, held = stratified_split(y[pool], val_fraction, seed, what=f"training data {train_t.path}",
                                      class_names=classes, fraction_key="data.val_fraction")
        pool, val = pool[keep], train_t.split(pool[held], y)
    info = {"format": train_t.fmt, "split_seed": split_seed,
            "val_source": "file" if val_path else "carved", "test_source": "file" if test_path else "carved",
            **({"val_fraction": val_fraction} if val_path is None else {}),
            **({"test_fraction": test_fraction} if test_path is None else {})}
    return Dataset(name="files", classes=classes, train=train_t.split(pool, y), val=val, test=test,
                   files=reader.files, sha256=reader.sha256, info=info)


class _TableReader:
    """Reads the files of one data set with shared options, remembering paths and hashes."""

    def __init__(self, fmt: str, text_column: str, label_column: str, base_dir: str | None) -> None:
        self.cols = dict(fmt=fmt, text_column=text_column, label_column=label_column)
        self.base_dir = base_dir
        self.files: dict[str, str] = {}
        self.sha256: dict[str, str] = {}

    def read(self, raw_path: str, part: str) -> Table:
        table = read_table(resolve_path(raw_path, self.base_dir), key=f"data.{part}_path", **self.cols)
        self.files[part], self.sha256[part] = str(table.path), table.sha256
        return table

    def split_of(self, raw_path: str, part: str, classes: Sequence[str]) -> Split:
        table = self.read(raw_path, part)
        return table.split(np.arange(len(table)), encode_table(table, classes))


def read_texts(path: str | Path, column: str | None = None) -> list[str]:
    """Texts to predict from a file: a table's ``column`` (default ``text``) for
    .csv/.tsv/.tab/.jsonl/.json, else one text per non-blank line.

    Raises:
        DataError / ConfigError: unreadable file, missing column, ``column`` for a non-table.
    """
    path = Path(path)
    text = _decode(_read_bytes(path, "--input"), path)
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        if column is not None:
            raise ConfigError(f"--column {column}: {path} is not a table (.csv, .tsv/.tab, .jsonl/.json)")
        return [ln for ln in text.splitlines() if ln.strip()]
    df, _ = _parse_jsonl(text, path) if fmt == "jsonl" else _parse_delimited(text, path, fmt)
    col = column or "text"
    if col not in df.columns:
        raise DataError(f"{path}: no column {col!r} (columns: {', '.join(map(str, df.columns))}); "
                        f"name the text column with --column")
    return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in df[col].tolist()]
