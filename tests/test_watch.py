"""What a person sees of a run: the console, a clean stderr, dataset inputs, system metrics,
per-epoch images, probe heatmaps and attention.html (issue 17)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import TINY, compose, mlflow_client, run_cli, runs


def _artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for a in client.list_artifacts(run_id, path):
        out += _artifacts(client, run_id, a.path) if a.is_dir else [a.path]
    return out


def test_default_train_shows_epochs_a_clean_stderr_and_everything_a_person_reads(tmp_path):
    proc = run_cli(["train", *TINY, "train.epochs=2", "tracking.system_metrics_interval=1"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # stdout is not a terminal here: one line per epoch (epoch, loss, validation metric, seconds)
    epochs = [ln for ln in proc.stdout.splitlines() if ln.startswith("epoch ")]
    assert len(epochs) == 2, proc.stdout
    for i, ln in enumerate(epochs, 1):
        assert re.fullmatch(rf"epoch {i}/2  loss \d\.\d{{4}}  val_accuracy \d\.\d{{4}}  \d+\.\ds", ln), ln
    # nothing on stderr but what attnlab wrote: here, only the note that a new store was created
    for noise in ("I0000", "E0000", "Warning", "oneDNN", "INFO"):
        assert noise not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == [f"created new MLflow store at {tmp_path / 'mlflow.db'}"], proc.stderr
    (run,) = runs(tmp_path)
    rid = run.info.run_id
    assert proc.stdout.rstrip().splitlines()[-1] == f"view it: http://127.0.0.1:5000/#/experiments/1/runs/{rid}"
    _check_dataset_inputs(run)
    metrics = run.data.metrics
    assert metrics["system/cpu_utilization_percentage"] >= 0 and metrics["system/system_memory_usage_megabytes"] > 0
    assert {"time_epoch_images", "time_pictures", "time_inputs"} <= set(metrics)
    client = mlflow_client(tmp_path)
    files = _artifacts(client, rid)
    steps = sorted(int(re.search(r"\+step\+(\d+)\+", f)[1]) for f in files
                   if f.startswith("images/attention+") and f.endswith(".png"))
    assert steps == [0, 1]  # one image per epoch, on the metrics' step axis
    assert {f"attention/probe_{i:02d}.png" for i in range(4)} <= set(files) and "attention.html" in files
    _check_probe_pictures(client, rid, tmp_path)


def _check_dataset_inputs(run) -> None:
    """Three inputs, contexts as MLflow names them, digests over the whole content of each split."""
    from attnlab import data, datasets
    from attnlab.config import to_plain

    plain = to_plain(compose([*TINY, "train.epochs=2"]))
    expected = datasets.digests(data.load(plain["data"], 0))
    logged = {next(t.value for t in di.tags if t.key == "mlflow.data.context"): di.dataset
              for di in run.inputs.dataset_inputs}
    assert set(logged) == {"training", "validation", "test"}
    assert {c: d.digest for c, d in logged.items()} == expected
    assert len(set(expected.values())) == 3
    assert logged["training"].name == "synthetic.train" and json.loads(logged["test"].source)["uri"] == "synthetic:0"


def _check_probe_pictures(client, run_id: str, tmp_path) -> None:
    doc = json.loads(open(client.download_artifacts(run_id, "attention/probes.json", str(tmp_path / "dl"))).read())
    assert doc["source"] == "validation" and len(doc["probes"]) == 4
    for p in doc["probes"]:
        n = len(p["tokens"])
        assert 0 < n <= 30 and len(p["importance"]) == n and np.asarray(p["map"]).shape == (n, n)
        assert p["true"] in doc["classes"] and p["pred"] in doc["classes"]
        np.testing.assert_allclose(np.asarray(p["map"]).sum(axis=1), 1.0, atol=2e-3)  # real rows (keys masked)
    from attnlab import report_attention

    assert report_attention.fetch_probes(client, {"v": run_id})["v"] == doc  # what `attnlab report` reads
    page = open(client.download_artifacts(run_id, "attention.html", str(tmp_path / "dl"))).read()
    assert page.count('class="tok"') == sum(len(p["tokens"]) for p in doc["probes"])
    assert all(f"probe #{i}" in page for i in range(4))


def test_quiet_prints_no_epoch_lines_but_the_result(capsys):
    from attnlab import cli

    common = [*TINY, "train.epochs=1", "tracking.log_model=false", "tracking.system_metrics=false",
              "tracking.epoch_images=false", "tracking.probe_count=1", "tracking.console=lines"]
    assert cli.main(["--quiet", "train", *common]) == 0
    assert "ATTNLAB_QUIET" not in __import__("os").environ  # an in-process caller is not left quiet
    out = capsys.readouterr().out
    assert "epoch 1/1" not in out and "training " not in out
    assert re.search(r"^view it: http://127\.0\.0\.1:5000/#/experiments/\d+/runs/[0-9a-f]{32}$", out, re.M), out


def test_probe_texts_given_or_the_first_short_validation_texts():
    from attnlab.pictures import choose

    trk = {"probe_texts": None, "probe_count": 2, "probe_max_tokens": 3}
    texts = ["a b c d", "a b", "", "a b c", "x"]
    p = choose(trk, texts, [0, 1, 0, 1, 0])
    assert p.texts == ["a b", "a b c"] and p.labels == [1, 1] and p.source == "validation"
    p = choose({**trk, "probe_count": 4}, texts, [0, 1, 0, 1, 0])  # too few short ones: the shortest others
    assert p.texts == ["a b", "a b c", "x", "a b c d"]
    p = choose({**trk, "probe_texts": ["my own text"]}, texts, [0, 1, 0, 1, 0])
    assert p.texts == ["my own text"] and p.labels == [None] and p.source == "tracking.probe_texts"


def test_probe_heatmap_has_a_panel_per_block_and_head_and_legible_size(tmp_path):
    from PIL import Image

    from attnlab.analysis import epoch_image, plot_probe

    rng = np.random.default_rng(0)
    maps = rng.random((2, 3, 50, 50))
    maps /= maps.sum(-1, keepdims=True)
    tokens = [f"w{i}" for i in range(45)]
    path = plot_probe(maps, tokens, tmp_path / "p.png", title="true=a pred=b", max_tokens=40)
    with Image.open(path) as im:
        assert im.size[0] > im.size[1] > 600  # 3 heads across, 2 blocks down, ~0.2 inch per token
    img = epoch_image([maps[0], maps[1]], [10, 40], side=200)
    assert img.dtype == np.uint8 and img.shape == (200, 8 + 200 + 8 + 200 + 8, 3)
    # a sharper map is brighter: uniform attention draws at 1/FULL_AT of the scale
    uniform = np.full((1, 10, 10), 0.1)
    sharp = np.tile(np.eye(10)[None], (1, 1, 1))
    a, b = epoch_image([uniform], [10])[:, 8:-8], epoch_image([sharp], [10])[:, 8:-8]
    assert len(np.unique(a.reshape(-1, 3), axis=0)) == 1 and b.max() > a.max() + 50


def test_bad_console_and_probe_settings_are_one_line_errors():
    from attnlab.config import to_plain, validate
    from attnlab.errors import ConfigError

    for override, message in (("tracking.console=loud", "tracking.console"),
                              ("tracking.probe_max_tokens=0", "tracking.probe_max_tokens"),
                              ("tracking.system_metrics_interval=0", "tracking.system_metrics_interval")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate(to_plain(compose([override])))


def test_stderr_filter_drops_only_the_known_lines_and_survives_a_crash(tmp_path):
    """The filter of `attnlab`'s stderr removes TensorFlow's two fixed notes by exact text and
    passes everything else, even what a process writes just before it aborts."""
    import subprocess
    import sys

    from attnlab.console import NATIVE_NOISE

    code = ("import os, sys\n"
            "from attnlab.console import filter_native_stderr\n"
            "filter_native_stderr()\n"
            f"for line in {list(NATIVE_NOISE)!r}: os.write(2, ('I0000 00:00 port.cc:153] ' + line + '\\n').encode())\n"
            "os.write(2, b'E0000 00:00 util.cc:1] a real error\\n')\n"
            "print('python says', file=sys.stderr, flush=True)\n"
            "os.abort()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode != 0  # aborted
    assert proc.stderr.splitlines() == ["E0000 00:00 util.cc:1] a real error", "python says"], proc.stderr
