"""What a run records: flat params, its config, metrics and tags, artifacts, the served model.

Every write holds SIGINT/SIGTERM back until it is done (:func:`deferred_interrupts`), so an
interrupted run is closed cleanly instead of leaving a store connection half-used.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from attnlab.tracking.runs import deferred_interrupts

MODEL_NAME = "model"  # artifact name of the logged pyfunc model


def log_config(plain: Mapping[str, Any], composed_yaml: str | None, sizes: Mapping[str, int]) -> None:
    """Params (the flattened resolved config; paths and the sweeper's trial left out), data sizes
    as loaded, ``config.yaml`` (resolved) and ``config_composed.yaml`` (as composed, for reproduce)."""
    import mlflow
    from omegaconf import OmegaConf

    from attnlab.config import flatten

    log_params_flat(flatten({k: v for k, v in plain.items() if k not in ("paths", "trial")}))
    # Sizes under their own prefix: `data.n_train` is a config key (absent for MR/TREC, or
    # differing under max_train_samples) and MLflow refuses to change a param.
    log_params_flat({f"dataset.{k}": v for k, v in sizes.items()})
    with deferred_interrupts():
        mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(dict(plain))), "config.yaml")
        if composed_yaml is not None:
            mlflow.log_text(composed_yaml, "config_composed.yaml")


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Finite metrics of the active run (a non-finite value is left out, never logged as NaN)."""
    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    with deferred_interrupts():
        mlflow.log_metrics(clean, step=step)


def log_dict(body: Mapping[str, Any], artifact_file: str) -> None:
    """A JSON artifact of the active run."""
    import mlflow

    with deferred_interrupts():
        mlflow.log_dict(dict(body), artifact_file)


def set_tags(tags: Mapping[str, Any]) -> None:
    import mlflow

    with deferred_interrupts():
        mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextlib.contextmanager
def artifact_dir(artifact_path: str) -> Iterator[Path]:
    """A temporary folder whose files are logged under ``artifact_path`` when the block ends."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / Path(artifact_path).name
        out.mkdir()
        yield out
        with deferred_interrupts():
            mlflow.log_artifacts(str(out), artifact_path)


def log_params_flat(params: Mapping[str, Any]) -> None:
    import mlflow

    clean = {k[:250]: ("null" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else str(v))[:6000]
             for k, v in params.items()}
    items = list(clean.items())
    with deferred_interrupts():
        for i in range(0, len(items), 100):  # MLflow batches take at most 100 params
            mlflow.log_params(dict(items[i : i + 100]))


def pip_requirements(dists: tuple[str, ...] = ("mlflow", "tensorflow-cpu", "tensorflow", "keras", "numpy",
                                                "pandas")) -> list[str]:
    """Pinned requirements of the serving environment, from what is installed (no inference)."""
    reqs = []
    for dist in dists:
        try:
            reqs.append(f"{dist}=={md.version(dist)}")
        except md.PackageNotFoundError:
            continue
    return reqs


def served_signature() -> Any:
    """What every attnlab pyfunc answers: label, probabilities, tokens, attention per token."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    return ModelSignature(
        # No input schema: MLflow's enforcement of a named "text" column refuses a plain list
        # of strings, and an unnamed one silently takes a DataFrame's *first* column (e.g.
        # "label"); the wrappers pick the texts themselves (column "text", else the only one).
        inputs=None,
        outputs=Schema(
            [
                ColSpec("string", "label"),
                ColSpec(Array("double"), "probabilities"),
                ColSpec(Array("string"), "tokens"),
                ColSpec(Array("double"), "attention"),
            ]
        ),
    )


def log_model(model: Any, classes: list[str], meta: Mapping[str, Any] | None = None) -> Any:
    """Log the Keras model as a pyfunc (raw strings -> label, probabilities, attention).

    The ``.keras`` file is an artifact of the pyfunc; the wrapper loads it with
    ``safe_mode=True``. The wrapper is logged as code (``serving/model_code.py``), not pickled;
    loading needs attnlab installed (no ``code_paths``: MLflow would swap the running
    process's ``attnlab`` modules for the copy inside the model). Requirements are passed explicitly (MLflow's inference imports and
    probes the model, which costs seconds per run).
    """
    with tempfile.TemporaryDirectory() as tmp:
        keras_path = Path(tmp) / "model.keras"
        model.save(keras_path)
        return log_pyfunc("model_code.py", {"keras_model": keras_path}, classes, meta, pip_requirements())


def log_pyfunc(code_file: str, artifacts: Mapping[str, Path], classes: list[str], meta: Mapping[str, Any] | None,
               requirements: list[str]) -> Any:
    """Log ``attnlab/serving/<code_file>`` (a models-from-code entry) as the run's pyfunc
    ``model``, with ``artifacts`` and ``meta.json`` (the classes and ``meta``)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps({"classes": list(classes), **(meta or {})}, indent=2))
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(Path(__file__).resolve().parents[1] / "serving" / code_file),
            artifacts={**{k: str(v) for k, v in artifacts.items()}, "meta": str(meta_path)},
            pip_requirements=requirements,
            signature=served_signature(),
            # The order of `probabilities`, readable without loading the model (MLmodel file).
            metadata={"classes": [str(c) for c in classes]},
        )
