"""What a person sees of one run while it trains and when it ends.

:class:`Watch` gathers it for :func:`attnlab.train.train`: the console (one line per epoch or
Keras' progress bar, ``tracking.console``; off under ``attnlab --quiet``), the per-epoch
attention image, the probe pictures at the end (:mod:`attnlab.pictures`), the MLflow UI link,
and MLflow's system metrics (:func:`system_metrics`). Each feature's cost is timed and logged
as a ``time_*`` metric.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Iterator, Mapping

from attnlab import console, pictures

log = logging.getLogger(__name__)


class Watch:
    """The run's console, pictures and their costs (``time_epoch_images``, ``time_pictures``)."""

    def __init__(self, config: Mapping[str, Any], dataset: Any, run_name: str) -> None:
        self.trk = config["tracking"]
        self.train_cfg = config["train"]
        self.lowercase = bool(config["data"]["lowercase"])
        self.run_name = run_name
        self.dataset = dataset
        self.probes = pictures.choose(self.trk, dataset.val.texts, dataset.val.labels)
        self.seconds: dict[str, float] = {}
        self._explain: tuple[Any, Any, Any] | None = None  # (model, explain fn, vocabulary)
        self._images: Any = None

    def keras_verbose(self) -> int:
        """Keras' own verbosity: its progress bar when the console shows one, else train.verbose."""
        return 1 if console.wants_bar(str(self.trk["console"])) else int(self.train_cfg["verbose"])

    def callbacks(self) -> list[Any]:
        """The console's line per epoch and the per-epoch attention image, as configured."""
        from attnlab.callbacks import EpochImages, EpochLines

        out: list[Any] = []
        if console.wants_lines(str(self.trk["console"])):
            epochs, monitor = int(self.train_cfg["epochs"]), str(self.train_cfg["early_stopping"]["monitor"])
            console.say(f"training {self.run_name}: up to {epochs} epochs on {len(self.dataset.train)} texts")
            out.append(EpochLines(epochs, monitor, console.say))
        if self.trk["epoch_images"] and self.probes.texts:
            self._images = EpochImages(self._draw, pictures.EPOCH_IMAGE_KEY)
            out.append(self._images)
        return out

    def _view(self, model: Any) -> pictures.View:
        """The probe texts through ``model`` (its explain function traced once per model)."""
        from attnlab.fitting import compiled_explain
        from attnlab.models import vocabulary

        if self._explain is None or self._explain[0] is not model:
            self._explain = (model, compiled_explain(model), vocabulary(model))
        return pictures.look(self._explain[1], self.probes, self._explain[2], self.lowercase)

    def _draw(self, model: Any) -> Any:
        return pictures.epoch_picture(self._view(model))

    def log_pictures(self, model: Any, metrics: Mapping[str, float]) -> None:
        """The probe heatmaps and ``probes.json`` under ``attention/``, and ``attention.html``."""
        import mlflow

        from attnlab import tracking

        if not self.probes.texts:
            return
        t = time.perf_counter()
        view = self._view(model)
        with tracking.artifact_dir("attention") as out:
            page = pictures.write_run_files(out, view, self.probes, self.dataset.classes, metrics)
        with tracking.deferred_interrupts():
            mlflow.log_text(page, pictures.RUN_PAGE)
        self.seconds["time_pictures"] = time.perf_counter() - t

    def costs(self) -> dict[str, float]:
        """Seconds spent on pictures (per-epoch images included), as ``time_*`` metrics."""
        images = {"time_epoch_images": self._images.seconds} if self._images is not None else {}
        return {**self.seconds, **images}


def start(config: Mapping[str, Any], dataset: Any, run_name: str, experiment_id: str) -> Watch:
    """The run's :class:`Watch`; also puts attnlab's shared view of the runs table on the experiment."""
    import mlflow

    from attnlab import ui

    try:
        ui.ensure_view(mlflow.MlflowClient(), experiment_id)  # the store tracking.setup pointed MLflow at
    except Exception as e:  # noqa: BLE001 - a store that refuses experiment tags still trains
        log.debug("no shared view on experiment %s: %s", experiment_id, e)
    return Watch(config, dataset, run_name)


def finished_lines(run_id: str, metrics: Mapping[str, float], tracking_cfg: Mapping[str, Any]) -> list[str]:
    """What ``attnlab train`` prints when a run ends; the last line links the run's page."""
    from attnlab import tracking, ui

    uri = tracking.resolve_uri(tracking_cfg)
    exp_id = tracking.client(uri).get_run(run_id).info.experiment_id
    shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in ("val_accuracy", "test_accuracy") if k in metrics)
    lines = [f"run {run_id} FINISHED: {shown}"]
    base = ui.base_url(uri, str(tracking_cfg["ui_url"]))
    if not uri.startswith(("http://", "https://")):
        port = base.rsplit(":", 1)[-1]
        lines.append(f"the UI: make ui, or: mlflow ui --backend-store-uri {uri} --port {port}")
    lines.append(f"view it: {ui.run_url(base, exp_id, run_id)}")
    return lines


@contextlib.contextmanager
def system_metrics(run_id: str, tracking_cfg: Mapping[str, Any]) -> Iterator[None]:
    """MLflow's system metrics (``system/cpu_utilization_percentage``, memory, disk, network) of
    the run, sampled every ``tracking.system_metrics_interval`` seconds while the block runs,
    and once more at its end (MLflow's monitor drops the last partial interval, so a run shorter
    than the interval would log none). Off with ``tracking.system_metrics=false``."""
    if not tracking_cfg["system_metrics"]:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=float(tracking_cfg["system_metrics_interval"]),
                                   samples_before_logging=1)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
        with contextlib.suppress(Exception):  # best effort: a failed last sample must not fail the run
            last = monitor.aggregate_metrics()
            if not last:
                monitor.collect_metrics()
                last = monitor.aggregate_metrics()
            monitor.publish_metrics(last)
            monitor.mlflow_logger.flush()
