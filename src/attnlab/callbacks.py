"""Keras callbacks of a tracked run: per-epoch MLflow metrics, Optuna pruning, the console's
line per epoch and the per-epoch attention image."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import keras

from attnlab.tracking import deferred_interrupts, retry


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
            retry.call(mlflow.log_metrics, values, step=epoch)


class OptunaPruning(keras.callbacks.Callback):
    """Reports ``monitor`` to the trial each epoch and stops training when its pruner says so.

    ``trial`` is the job's :class:`attnlab.trial.JobTrial` (the pruner was rebuilt in this
    process, so the decision is made here, wherever the job runs). Training stops cleanly
    (``stop_training``) rather than raising inside ``fit``, so the caller can record the epoch
    reached before raising ``optuna.TrialPruned``.
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
            retry.call(self.trial.report, float(value), step=epoch)
            prune = retry.call(self.trial.should_prune)
        if prune:
            self.pruned_at_epoch = epoch + 1
            self.model.stop_training = True


class EpochLines(keras.callbacks.Callback):
    """One line per epoch through ``say``: epoch, loss, the validation monitor and seconds."""

    def __init__(self, epochs: int, monitor: str, say: Callable[[str], None]) -> None:
        super().__init__()
        self.epochs = int(epochs)
        self.monitor = monitor
        self.say = say
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        width = len(str(self.epochs))
        parts = [f"epoch {epoch + 1:>{width}}/{self.epochs}"]
        parts += [f"{k} {float(logs[k]):.4f}" for k in dict.fromkeys(("loss", self.monitor)) if k in logs]
        parts.append(f"{time.perf_counter() - self._start:.1f}s")
        self.say("  ".join(parts))


class EpochImages(keras.callbacks.Callback):
    """Logs ``draw(model)`` (an RGB array) with ``mlflow.log_image(key=..., step=epoch)`` (step =
    epoch index, as the per-epoch metrics), so the MLflow UI's step slider walks through training.
    ``seconds`` is what it cost."""

    def __init__(self, draw: Callable[[Any], Any], key: str) -> None:
        super().__init__()
        self.draw = draw
        self.key = key
        self.seconds = 0.0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import mlflow

        t = time.perf_counter()
        image = self.draw(self.model)
        with deferred_interrupts():
            retry.call(mlflow.log_image, image, key=self.key, step=epoch, synchronous=True)
        self.seconds += time.perf_counter() - t
