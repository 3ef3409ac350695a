"""``attnlab predict``: label raw texts with a logged model and show the attention behind it.

Any MLflow model URI works (``models:/attnlab@champion``, ``models:/attnlab/3``,
``runs:/<run id>/model``, a local model folder); the model brings its own vocabulary, so
the training data is not needed. Per text it prints the label, the class probabilities and
the most attended tokens (attention each token *receives*: the mean over heads and real
query tokens, see :func:`attnlab.analysis.token_importance`). ``--html`` writes one page
with every text's tokens shaded by that attention, ``--png`` one (query x key) heatmap per
text, ``--json`` one JSON object per text and line.

Defaults live in ``conf/registry/default.yaml``.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from attnlab import outputs
from attnlab.errors import AttnlabError, ConfigError, DataError, first_line


@dataclass
class Prediction:
    """One text's answer: label, probabilities per class, tokens and their attention."""

    text: str
    label: str
    probabilities: dict[str, float]
    tokens: list[str]
    attention: list[float]  # per token in ``tokens``

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most attended tokens (ties: first occurrence first)."""
        order = sorted(range(len(self.tokens)), key=lambda i: (-self.attention[i], i))
        return [(self.tokens[i], self.attention[i]) for i in order[:k]]

    def as_dict(self, k: int) -> dict[str, Any]:
        return {"text": self.text, "label": self.label, "probabilities": self.probabilities,
                "tokens": self.tokens, "attention": self.attention,
                "top_tokens": [[t, w] for t, w in self.top(k)]}


# How MLflow loads a model logged from code (attnlab's serving/model_code.py); a pickled pyfunc has
# loader_module mlflow.pyfunc.model and a `python_model` (cloudpickle) file instead.
_CODE_MODEL_LOADER = "mlflow.pyfunc.loaders.code_model"


class _NotAttnlab(Exception):
    pass


def load(model_uri: str, tracking_uri: str | None = None) -> Any:
    """The :class:`attnlab.serving.pyfunc.AttnlabPyfunc` behind ``model_uri`` (Keras loaded with
    ``safe_mode=True``).

    Raises:
        AttnlabError: the URI does not resolve, or the model is not an attnlab model.
    """
    import mlflow.models
    import mlflow.pyfunc

    from attnlab import tracking

    if not model_uri:
        raise ConfigError("--model is empty; give a model URI such as models:/attnlab@champion")
    uri = tracking.launch_uri(tracking_uri)
    try:
        tracking.client(uri)  # sets the fail-fast HTTP defaults (and fails on a malformed URI)
        with tracking.uri_scope(uri), warnings.catch_warnings():
            # Read the MLmodel file first: a pyfunc pickled with cloudpickle (any model not logged
            # by attnlab) would run arbitrary code while loading, so it is refused before that.
            flavor = (mlflow.models.get_model_info(model_uri).flavors or {}).get("python_function") or {}
            if flavor.get("loader_module") != _CODE_MODEL_LOADER or "python_model" in flavor:
                raise _NotAttnlab()
            # MLflow's advice to add type hints to the wrapper is for the model's author, not the user.
            warnings.filterwarnings("ignore", message=".*type hints.*")
            loaded = mlflow.pyfunc.load_model(model_uri)
    except _NotAttnlab:
        raise AttnlabError(f"--model {model_uri}: not an attnlab model (logged by `attnlab train`); "
                           f"not loaded, since loading it could unpickle arbitrary objects") from None
    except Exception as e:  # noqa: BLE001 - unknown alias/run/path, unreachable store: one user problem
        raise AttnlabError(f"--model {model_uri}: cannot load it from {uri} ({first_line(e)})") from e
    try:
        inner = loaded.unwrap_python_model()
    except Exception:  # noqa: BLE001 - not a PythonModel-based pyfunc
        inner = None
    if inner is None or not hasattr(inner, "predict_raw"):
        raise AttnlabError(f"--model {model_uri}: not an attnlab model (logged by `attnlab train`)")
    return inner


def predict_texts(model: Any, texts: Sequence[str], batch_size: int = 256, png_dir: Path | None = None,
                  start: int = 0) -> list[Prediction]:
    """Predictions for ``texts``; with ``png_dir`` also one heatmap per text (``NNNN.png``,
    numbered from ``start + 1``; texts without tokens get none)."""
    from attnlab.analysis import plot_heatmap

    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be >= 1")
    classes = [str(c) for c in model.classes]
    out: list[Prediction] = []
    for b in range(0, len(texts), batch_size):
        chunk = list(texts[b : b + batch_size])
        raw = model.predict_raw(chunk)
        for i, text in enumerate(chunk):
            toks = [str(t) for t in raw["tokens"][i]]
            probs = [float(p) for p in raw["probs"][i]]
            pred = Prediction(
                text=text,
                label=classes[max(range(len(probs)), key=probs.__getitem__)],
                probabilities=dict(zip(classes, probs)),
                tokens=toks,
                attention=[float(w) for w in raw["importance"][i][: len(toks)]],
            )
            out.append(pred)
            if png_dir is not None and toks and raw.get("weights") is not None:
                n = start + len(out)
                plot_heatmap(raw["weights"][i], toks, png_dir / f"{n:04d}.png",
                             title=f"#{n} {_clip(text, 60)}\npred={pred.label} ({max(probs):.2f})")
    return out


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def read_inputs(texts: Sequence[str], input_path: str | None, column: str | None) -> list[str]:
    """Texts from the command line, then from ``--input`` (``-`` is stdin): a CSV/TSV/JSONL
    table's ``column``, else one text per non-blank line.

    Raises:
        DataError: unreadable file, missing column, or no text at all.
    """
    out = list(texts)
    if input_path is not None:
        out += _read_file(input_path, column)
    elif column is not None:
        raise ConfigError("--column needs --input FILE (a CSV, TSV or JSONL table)")
    if not out:
        raise DataError("no text to predict: give texts as arguments or --input FILE")
    return out


def _read_file(input_path: str, column: str | None) -> list[str]:
    from attnlab.data.files import read_texts

    if input_path == "-":
        return [ln.rstrip("\r\n") for ln in sys.stdin if ln.strip()]
    return read_texts(input_path, column)


def input_warnings(preds: Sequence[Prediction], max_len: Any) -> list[str]:
    """One line per kind of likely mistake: texts with no token the model knows, texts cut to max_len."""
    empty = [n for n, p in enumerate(preds, 1) if not p.tokens or not p.text.strip()]
    long = [(n, len(p.text.split())) for n, p in enumerate(preds, 1)
            if isinstance(max_len, int) and len(p.text.split()) > max_len]
    out = []
    if empty:
        out.append(f"{len(empty)} text(s) have no tokens (#{', #'.join(map(str, empty[:10]))}): "
                   f"their label is the model's prior, not a reading of the text")
    if long:
        out.append(f"{len(long)} text(s) are longer than the model's max_len={max_len} tokens and were truncated "
                   f"(e.g. #{long[0][0]}: {long[0][1]} words); only the first {max_len} tokens were read")
    return out


def format_text(preds: Sequence[Prediction], k: int) -> str:
    lines = []
    for n, p in enumerate(preds, 1):
        probs = " ".join(f"{c}={v:.3f}" for c, v in p.probabilities.items())
        top = "  ".join(f"{t} {w:.3f}" for t, w in p.top(k)) or "(no tokens)"
        lines += [f"{n}. {_clip(p.text, 100)!r}",
                  f"   label: {p.label} ({p.probabilities[p.label]:.3f})   probabilities: {probs}",
                  f"   most attended: {top}"]
    return "\n".join(lines)


def write_html(preds: Sequence[Prediction], path: Path, model_uri: str, max_len: Any) -> Path:
    """One self-contained page; every text from the input is escaped."""
    from attnlab import shading

    items = []
    for n, p in enumerate(preds, 1):
        probs = ", ".join(f"{html.escape(c)} {v:.3f}" for c, v in p.probabilities.items())
        items.append(
            f'<div class="item"><div class="head">#{n} &middot; <span class="label">{html.escape(p.label)}</span>'
            f" ({p.probabilities[p.label]:.3f}) &middot; {probs}</div>\n"
            f'<div class="text">{shading.token_spans(p.tokens, p.attention)}</div>\n'
            f'<div class="note">input: {html.escape(_clip(p.text, 300))}</div></div>'
        )
    intro = f"Model: <code>{html.escape(model_uri)}</code>. {shading.SCALE_NOTE}"
    if max_len is not None:
        intro += f" The model reads at most the first {html.escape(str(max_len))} tokens."
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(shading.page("attnlab predictions", intro, "\n".join(items)), encoding="utf-8")
    return path


def build_parser(d: dict[str, Any]) -> argparse.ArgumentParser:
    from attnlab.errors import OneLineParser

    p = OneLineParser(
        prog="attnlab predict",
        description="Predict raw texts with a logged attnlab model: label, class probabilities and the most "
                    "attended tokens, optionally as an HTML page or heatmap PNGs.",
        epilog="examples:\n"
               "  attnlab predict \"a gripping, well acted film\" \"a dull mess\"\n"
               "  attnlab predict --model runs:/<run id>/model --input reviews.txt --html out.html --png maps/\n"
               "  attnlab predict --input reviews.csv --column review --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("texts", nargs="*", help="texts to classify (quote each one)")
    p.add_argument("--model", default=d["model"], help="MLflow model URI (default: %(default)s)")
    p.add_argument("--input", default=None, metavar="FILE",
                   help="more texts: one per line, or a .csv/.tsv/.jsonl table's --column; '-' reads stdin")
    p.add_argument("--column", default=None, help="text column of a --input table (default: text)")
    p.add_argument("--top-k", type=int, default=int(d["top_k"]), help="most attended tokens shown (default: %(default)s)")
    p.add_argument("--html", default=None, metavar="FILE", help="write one page with each text's tokens shaded")
    p.add_argument("--png", default=None, metavar="DIR", help="write one attention heatmap per text (NNNN.png)")
    p.add_argument("--json", action="store_true", help="print one JSON object per text and line")
    p.add_argument("--batch-size", type=int, default=int(d["batch_size"]), help="texts per forward pass")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--force", action="store_true", help="replace an existing --html file or --png heatmaps")
    return p


def main(argv: list[str]) -> int:
    """``attnlab predict``; prints one block (or JSON line) per text and returns 0."""
    from attnlab.registry import defaults

    args = build_parser(defaults()).parse_args(argv)
    if args.top_k < 0:
        raise ConfigError(f"--top-k {args.top_k}: must be >= 0")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be >= 1")
    html_path = outputs.new_file(args.html, "--html", args.force) if args.html else None
    texts = read_inputs(args.texts, args.input, args.column)
    png_dir = None
    if args.png:
        png_dir = outputs.out_dir(args.png, "--png", [f"{n:04d}.png" for n in range(1, len(texts) + 1)], args.force)
        png_dir.mkdir(parents=True, exist_ok=True)
    model = load(args.model, args.tracking_uri)
    if png_dir is not None and model.meta.get("kind") == "tfidf_lr":
        raise ConfigError(f"--png {png_dir}: {args.model} is a TF-IDF model; it has no attention maps to draw")
    preds = predict_texts(model, texts, args.batch_size, png_dir)
    for line in input_warnings(preds, model.meta.get("max_len")):
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        for p in preds:
            print(json.dumps(p.as_dict(args.top_k), ensure_ascii=False))
    else:
        print(format_text(preds, args.top_k))
    notes = []
    if html_path is not None:
        notes.append(f"wrote {write_html(preds, html_path, args.model, model.meta.get('max_len', '?'))}")
    if png_dir is not None:
        n_png = sum(1 for p in preds if p.tokens)
        notes.append(f"wrote {n_png} heatmap(s) to {png_dir}/" + (f" ({len(preds) - n_png} text(s) without tokens skipped)"
                                                                 if n_png < len(preds) else ""))
    for line in notes:
        # stderr under --json, so stdout stays machine-readable
        print(line, file=sys.stderr if args.json else sys.stdout)
    sys.stdout.flush()
    return 0
