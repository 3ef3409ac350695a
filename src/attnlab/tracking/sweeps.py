"""MLflow side of an Optuna sweep: the study's parent run, the runs of dead trials, plots.

One parent run per study (``sweep:<study>``), found through the study's user attrs or its
tags, created once even when several workers start together; it holds the best value and
parameters, trial counts and the Optuna plots. Each trial's own run is a child of it
(started by the job, see :mod:`attnlab.trial`); links go both ways: the run's
``optuna.study``/``optuna.trial`` tags, the trial's ``mlflow_run_id``/``mlflow_run_url``.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Mapping

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"  # study user attr: the study's parent MLflow run
RUN_ID_ATTR = "mlflow_run_id"  # trial user attr: the trial's MLflow run
RUN_URL_ATTR = "mlflow_run_url"  # trial user attr: where to open that run
ROLE_TAG = "attnlab.sweep.role"  # parent | child
STUDY_TAG = "attnlab.sweep.study"
# Replicates (hydra.sweeper.replicates): the trial's value is their mean.
VALUE_STD_ATTR = "attnlab.value_std"  # trial user attr: std (n-1) of the replicates' values
REPLICATE_VALUES_ATTR = "attnlab.replicate_values"  # trial user attr: each finished replicate's value
REPLICATE_RUNS_ATTR = "attnlab.replicate_run_ids"  # trial user attr: each finished replicate's MLflow run
REPLICATE_TAG = "attnlab.replicate"  # run tag: "<i>/<n>" (the i-th of n replicates of its trial)
SURPLUS_ATTR = "attnlab.surplus"  # a trial another worker's race made one too many (told FAIL, never run)
FAIL_REASON_ATTR = "attnlab.fail_reason"  # trial user attr: why the sweeper failed it (or left it to the heartbeat)
# Where runs open when the tracking URI is a database or a folder (`mlflow ui`, `make ui`).
DEFAULT_UI = "http://127.0.0.1:5000"


def hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL
        return url


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page: on the tracking server itself, or on a local ``mlflow ui``."""
    base = tracking_uri if tracking_uri.startswith(("http://", "https://")) else DEFAULT_UI
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def best_trial(study) -> Any:
    try:
        return study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None


class SweepRuns:
    """The sweep's MLflow runs in one experiment of one tracking store."""

    def __init__(self, client: Any, experiment_id: str) -> None:
        self.client = client
        self.exp_id = experiment_id

    def open_parent(self, study, tags: Mapping[str, str]) -> str:
        """The study's one parent run, set RUNNING: from the study's user attrs, by tag, or
        created (two workers started together may both create one: the oldest stays)."""
        name = study.study_name
        pid = study.user_attrs.get(PARENT_ATTR)
        if not (pid and self._usable(pid)):
            found = self._find_parents(name)
            if not found:
                mine = self.client.create_run(self.exp_id, run_name=f"sweep:{name}",
                                              tags={ROLE_TAG: "parent", STUDY_TAG: name, "optuna.study": name,
                                                    **tags}).info.run_id
                found = self._find_parents(name)
                if any(r.info.run_id == mine for r in found[1:]):
                    self.client.delete_run(mine)  # soft delete: restorable, nothing lost
            pid = found[0].info.run_id
            study.set_user_attr(PARENT_ATTR, pid)
        self.client.update_run(pid, status="RUNNING")
        return pid

    def _find_parents(self, name: str) -> list:
        runs = self.client.search_runs(
            [self.exp_id], filter_string=f"tags.`{ROLE_TAG}` = 'parent' and tags.`{STUDY_TAG}` = '{name}'",
            max_results=100)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def _usable(self, run_id: str) -> bool:
        try:
            run = self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - e.g. the study moved to another MLflow store
            return False
        return run.info.experiment_id == self.exp_id and run.info.lifecycle_stage == "active"

    def update_parent(self, study, parent_id: str) -> None:
        """Trial counts, the best value, its parameters (``best.<key>`` tags) and run."""
        from mlflow.entities import Metric, RunTag
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        n_done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        metrics = {"n_complete": sum(t.state == TrialState.COMPLETE for t in trials),
                   "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
                   "n_failed": sum(t.state == TrialState.FAIL and not t.user_attrs.get(SURPLUS_ATTR) for t in trials)}
        tags: dict[str, str] = {}
        best = best_trial(study)
        if best is not None:
            metrics.update({"best_value": float(best.value), "best_trial": float(best.number)})
            tags = {f"best.{k}": str(v) for k, v in best.params.items()}
            if VALUE_STD_ATTR in best.user_attrs:
                metrics["best_value_std"] = float(best.user_attrs[VALUE_STD_ATTR])
            if RUN_ID_ATTR in best.user_attrs:
                tags["attnlab.sweep.best_run_id"] = str(best.user_attrs[RUN_ID_ATTR])
        now = int(time.time() * 1000)
        try:
            self.client.log_batch(parent_id, metrics=[Metric(k, float(v), now, n_done) for k, v in metrics.items()],
                                  tags=[RunTag(k, v) for k, v in tags.items()])
        except Exception as e:  # noqa: BLE001 - the sweep outlives a tracking blip
            log.warning("could not update the parent run %s: %s", parent_id, e)

    def fail_run(self, trial, reason: str) -> None:
        """Close a dead trial's run (still RUNNING: its job could not) as FAILED, with the reason."""
        from attnlab.tracking import ERROR_TAG, STATUS_TAG

        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if not run_id:
            return
        try:
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_tag(run_id, STATUS_TAG, "FAILED")
                self.client.set_tag(run_id, ERROR_TAG, reason)
                self.client.set_terminated(run_id, "FAILED")
                log.warning("trial %d: MLflow run %s marked FAILED (%s)", trial.number, run_id, reason)
        except Exception as e:  # noqa: BLE001
            log.warning("trial %d: could not close MLflow run %s: %s", trial.number, run_id, e)

    def close_parent(self, study, parent_id: str, status: str, plots: bool) -> None:
        """Final numbers and plots; FINISHED only once no other worker still runs trials."""
        from optuna.trial import TrialState

        self.update_parent(study, parent_id)
        if plots:
            log_plots(self.client, parent_id, study)
        others_running = any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))
        if status != "FINISHED" or not others_running:
            try:
                self.client.set_terminated(parent_id, status)
            except Exception as e:  # noqa: BLE001
                log.warning("could not close the parent run %s: %s", parent_id, e)


def _plot_files(study, folder) -> None:
    """Optimisation history, parameter importances and parallel coordinates as HTML and PNG.

    HTML embeds plotly.js (no network here); PNG comes from Optuna's matplotlib backend because
    plotly's PNG export needs a browser it downloads at run time.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import optuna.visualization as ov
    import optuna.visualization.matplotlib as om

    for name in ("optimization_history", "param_importances", "parallel_coordinate"):
        try:
            getattr(ov, f"plot_{name}")(study).write_html(str(folder / f"{name}.html"), include_plotlyjs=True)
            ax = getattr(om, f"plot_{name}")(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
            plt.close(fig)
        except Exception as e:  # noqa: BLE001 - e.g. importances need 2 complete trials that differ
            log.info("plot %s skipped: %s", name, str(e).splitlines()[0] if str(e) else type(e).__name__)


def log_plots(client, parent_id: str, study) -> None:
    """The Optuna plots under ``plots/`` on the parent run."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _plot_files(study, Path(tmp))
        try:
            client.log_artifacts(parent_id, tmp, "plots")
        except Exception as e:  # noqa: BLE001
            log.warning("could not log plots on the parent run %s: %s", parent_id, e)
