"""The README's heatmap: one validation text's attention, as logged by a run (attention/maps.npz).

    .venv/bin/python experiments/synthetic_task/heatmap.py <run dir with mlflow.db> <run id> [out.png] [index]

Draws every block and head of validation text ``index`` (default: the first one the model got
right) with attnlab.analysis.plot_probe, the same drawing a run logs for its probe texts; the
title names the label, the cue and the keyword it points at (the rationale).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np

from attnlab.analysis import plot_probe

ROOT = Path(__file__).resolve().parents[2]


def main(run_dir: str, run_id: str, out: str = str(ROOT / "docs/img/synthetic_pointer_attention.png"),
         index: str | None = None) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}")
    with tempfile.TemporaryDirectory() as tmp:
        m = dict(np.load(client.download_artifacts(run_id, "attention/maps.npz", tmp), allow_pickle=False))
    labels, preds = m["labels"], m["probs"].argmax(-1)
    i = int(index) if index is not None else int(np.flatnonzero(labels == preds)[0])
    tokens = [t for t in m["tokens"][i] if t]
    marked = [tokens[j] for j in np.flatnonzero(m["rationale"][i][: len(tokens)])]
    title = (f"validation text {i}: label {m['classes'][labels[i]]}, predicted {m['classes'][preds[i]]} "
             f"(p={m['probs'][i].max():.2f}); rationale: {' + '.join(marked)}")
    plot_probe(m["weights"][i], tokens, out, title=title)
    print(out, title)


if __name__ == "__main__":
    main(*sys.argv[1:])
