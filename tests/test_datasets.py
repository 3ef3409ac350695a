"""Runs log their splits as MLflow dataset inputs; reproduce compares those digests."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TINY_MODEL, compose


def test_digest_covers_every_row_and_label():
    from attnlab.data import Split
    from attnlab.datasets import digest

    classes = ["neg", "pos"]
    texts = [f"text {i}" for i in range(20_000)]
    labels = np.arange(20_000) % 2
    base = digest(Split(texts, labels), classes)
    assert len(base) == 32 and base == digest(Split(list(texts), labels.copy()), classes)
    flipped = labels.copy()
    flipped[-1] = 1 - flipped[-1]  # the very last label: a sample-based digest would miss it
    assert digest(Split(texts, flipped), classes) != base
    assert digest(Split(texts[:-1] + ["text 19999 "], labels), classes) != base
    assert digest(Split(texts, labels), ["a", "b"]) != base  # label names, not indices


def _write_files(d, n_test: int) -> None:
    words = {"pos": ["good", "great"], "neg": ["bad", "awful"]}
    for name, n in (("train.csv", 60), ("test.csv", n_test)):
        rows = [f"{words[lab][i % 2]} film {i},{lab}" for i in range(n) for lab in ("pos", "neg")]
        (d / name).write_text("text,label\n" + "\n".join(rows) + "\n")


def test_reproduce_check_names_the_split_whose_content_changed(tmp_path):
    import mlflow

    from attnlab import data, datasets
    from attnlab.config import to_plain
    from attnlab.errors import DataError

    _write_files(tmp_path, n_test=10)
    plain = to_plain(compose([*TINY_MODEL, "data=files", "data.train_path=train.csv", "data.test_path=test.csv",
                              f"data.base_dir={tmp_path}"]))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = mlflow.MlflowClient().create_experiment("datasets")  # not the id an earlier test made current
    with mlflow.start_run(experiment_id=exp_id) as run:
        logged = datasets.log_inputs(data.load(plain["data"], 0), 0)
    run = mlflow.MlflowClient().get_run(run.info.run_id)
    assert datasets.logged_digests(run) == logged and set(logged) == {"training", "validation", "test"}
    sources = {di.dataset.name: di.dataset.source for di in run.inputs.dataset_inputs}
    assert str(tmp_path / "test.csv") in sources["files.test"] and str(tmp_path / "train.csv") in sources["files.val"]
    datasets.check_same_data(plain, run)  # the same data: no complaint
    _write_files(tmp_path, n_test=11)  # the test file gains rows; train (and the carved validation) do not change
    with pytest.raises(DataError, match=r"^the test split differs from run [0-9a-f]{32}'s \(digest [0-9a-f]{32} now"):
        datasets.check_same_data(plain, run)
