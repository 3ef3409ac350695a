"""Extension without forking: a pooling written outside attnlab (one module on PYTHONPATH and one
YAML file in a folder given with hydra.searchpath) trains, is logged and serves raw text."""

from __future__ import annotations

import os
import textwrap

import pandas as pd
import pytest

from conftest import TINY, run_cli, runs

MODULE = '''
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="my_pooling")
class SumPooling(keras.layers.Layer):
    """Sum over real tokens, times `scale`: (batch, T, d) + mask -> (batch, d)."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        if not scale > 0:
            raise ValueError(f"Invalid value for argument `scale`. Expected > 0. Received: scale={scale!r}")
        self.scale = float(scale)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is not None:
            inputs = inputs * ops.cast(mask, inputs.dtype)[:, :, None]
        return ops.sum(inputs, axis=1) * self.scale

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
'''


def _user_project(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "my_pooling.py").write_text(MODULE)
    conf = tmp_path / "myconf" / "model" / "pooling"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text(textwrap.dedent("""\
        # My own pooling: attnlab is not edited.
        _target_: my_pooling.SumPooling
        _name_: mine
        scale: 0.1
    """))
    return {"PYTHONPATH": str(tmp_path / "code")}, f"hydra.searchpath=[file://{tmp_path / 'myconf'}]"


@pytest.mark.slow  # over 20 s (a training run and a fresh serving process): make test-long (CI runs it)
def test_pooling_from_outside_the_package_trains_logs_and_serves(tmp_path):
    env, searchpath = _user_project(tmp_path)
    proc = run_cli(["train", searchpath, "model/pooling=mine", *TINY, "train.epochs=3"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.pooling._target_"] == "my_pooling.SumPooling"
    assert "pool=mine" in run.data.tags["attnlab.variant"].split(",")
    assert run.data.metrics["val_accuracy"] > 0.75  # it learned with the user's pooling (chance 0.5)
    # Served from a fresh process that only has the user's package on PYTHONPATH: the model
    # itself says which module to import before loading.
    script = textwrap.dedent(f"""\
        import mlflow, pandas as pd
        mlflow.set_tracking_uri("sqlite:///{tmp_path / 'mlflow.db'}")
        m = mlflow.pyfunc.load_model("runs:/{run.info.run_id}/model")
        out = m.predict(pd.DataFrame({{"text": ["a short text", "another one here"]}}))
        print(list(out["label"]), [len(a) for a in out["attention"]])
    """)
    import subprocess
    import sys

    load = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert load.returncode == 0, load.stderr[-3000:]
    assert "[3, 3]" in load.stdout and "class_" in load.stdout


@pytest.mark.slow  # over 20 s: make test-long (CI runs it)
def test_unknown_user_component_is_one_line(tmp_path):
    env, searchpath = _user_project(tmp_path)
    proc = run_cli(["train", searchpath, "model/pooling=mine", *TINY], cwd=tmp_path)  # no PYTHONPATH
    assert proc.returncode == 2
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert err[-1].startswith("error: model.pooling._target_='my_pooling.SumPooling': cannot import my_pooling"), err
    assert "Traceback" not in proc.stderr
    bad = run_cli(["train", searchpath, "model/pooling=mine", "model.pooling.scale=-1", *TINY], cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "model.pooling" in bad.stderr and "scale=-1" in bad.stderr, bad.stderr[-2000:]
    assert not any(r.info.status == "RUNNING" for r in runs(tmp_path))
