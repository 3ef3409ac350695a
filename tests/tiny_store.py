"""One tiny trained run in a private MLflow store, shared by test_registry, test_predict and
test_serve: training costs seconds, so the three modules train once per pytest process."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from conftest import TINY, compose


@functools.lru_cache(maxsize=None)
def tiny_store() -> tuple[Path, str, str]:
    """(store directory, tracking URI, run id) of one FINISHED run with a logged model in
    experiment ``attnlab``. Tests register it under their own model names."""
    from attnlab.train import train

    d = Path(tempfile.mkdtemp(prefix="attnlab_models_"))
    atexit.register(shutil.rmtree, d, True)
    uri = f"sqlite:///{d / 'mlflow.db'}"
    result = train(compose([*TINY, "train.epochs=2", f"tracking.uri='{uri}'", f"tracking.artifact_dir='{d / 'mlruns'}'"]))
    return d, uri, result.run_id
