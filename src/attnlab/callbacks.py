"""Keras callbacks of a tracked run: per-epoch MLflow metrics and Optuna pruning."""

from __future__ import annotations

import math
from typing import Any

import keras

from attnlab.tracking import deferred_interrupts


class MLflowMetrics(keras.callbacks.Callback):
    """Logs every Keras log value at the end of each epoch (step = epoch index)."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs_completed = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import mlflow

        values = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float)) or hasattr(v, "__float__")}
        values = {k: v for k, v in values.items() if math.isfinite(v)}
        self.epochs_completed = epoch + 1
        values["epoch"] = float(epoch + 1)
        with deferred_interrupts():  # Ctrl-C waits for the write, then stops the run
            mlflow.log_metrics(values, step=epoch)


class OptunaPruning(keras.callbacks.Callback):
    """Reports ``monitor`` to the trial each epoch and stops training when Optuna prunes.

    Training stops cleanly (``stop_training``) rather than raising inside ``fit``, so the
    caller can record the epoch reached before raising ``optuna.TrialPruned``.
    """

    def __init__(self, trial: Any, monitor: str) -> None:
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        self.pruned_at_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"pruning monitor {self.monitor!r} not in Keras logs {sorted(logs or {})}")
        with deferred_interrupts():
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
        if prune:
            self.pruned_at_epoch = epoch + 1
            self.model.stop_training = True
