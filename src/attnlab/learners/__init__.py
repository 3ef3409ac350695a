"""Learners: what fits, evaluates and logs a model inside one run of :func:`attnlab.train.train`.

The model node decides: a node with a ``_target_`` names its learner (a class built from the
node's arguments by :mod:`attnlab.components`, e.g. ``model=tfidf_lr``); a node without one
is a Keras model (``conf/model/default.yaml`` and every preset built on it), trained by
:class:`attnlab.learners.keras_model.KerasLearner`. ``train`` does the rest the same way for
both: data, the MLflow run, params, dataset inputs, timings, the run's result.

A learner has ``ignores`` (the config sections it does not read: left out of the run's params
and named in the tag ``attnlab.ignored_config``), ``configure_runtime(config, seed)`` (before
the run opens) and ``run(spec, dataset, trial, phases, view) -> metrics`` (inside it: fit,
evaluate, log metrics and the served model). The metrics hold ``best_<monitor>``: the value a
sweep optimises (``train.early_stopping.monitor``, a validation metric).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from attnlab import components


class Learner(Protocol):
    ignores: tuple[str, ...]

    def configure_runtime(self, config: Mapping[str, Any], seed: int) -> None: ...

    def run(self, spec: Any, dataset: Any, trial: Any, phases: Any, view: Any) -> dict[str, float]: ...


def for_model(model_cfg: Mapping[str, Any]) -> Learner:
    """The learner of a model node: its ``_target_`` built from its arguments, else Keras."""
    if "_target_" in model_cfg:
        return components.instantiate(model_cfg, "model")
    from attnlab.learners.keras_model import KerasLearner

    return KerasLearner()
