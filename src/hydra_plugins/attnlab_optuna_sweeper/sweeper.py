"""The Hydra sweeper: one Optuna trial per Hydra job, run one at a time in this process.

A worker loops: fail stale trials (dead workers) -> count the study's trials -> ask ->
launch the job through Hydra's launcher with the trial in :mod:`attnlab.sweep_context`
(``train`` reports each epoch, prunes and nests its MLflow run under the study's parent) ->
tell COMPLETE / PRUNED / FAIL. It stops when the study holds ``n_trials`` finished (COMPLETE
or PRUNED) trials, whoever ran them: a resumed command and extra workers share that target.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import warnings
from typing import Any, Iterator, Mapping, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from attnlab.errors import AttnlabError, ConfigError

from . import search_space as ss

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"  # study user attr: the study's parent MLflow run
ROLE_TAG = "attnlab.sweep.role"  # parent | child
STUDY_TAG = "attnlab.sweep.study"
SURPLUS_ATTR = "attnlab.surplus"  # a trial another worker's race made one too many (told FAIL, never run)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True) if OmegaConf.is_config(node) else node


class AttnlabOptunaSweeper(Sweeper):
    def __init__(self, **cfg: Any) -> None:
        self.cfg = {k: _plain(v) for k, v in cfg.items()}
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.config_loader = hydra_context.config_loader
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    # ------------------------------------------------------------------ validation
    def _settings(self, arguments: list[str]) -> dict[str, Any]:
        """Everything a sweep needs, checked before the study or any trial exists."""
        c = self.cfg
        parsed = OverridesParser.create().parse_overrides(arguments)
        for ov in parsed:
            if ov.is_sweep_override():
                raise ConfigError(f"{ov.input_line}: a sweep override under the Optuna sweeper; "
                                  f"put the search space in hydra.sweeper.params")
        base = list(arguments)
        job = self.config_loader.load_sweep_config(self.config, base)
        dists = ss.parse_params(c.get("params"))
        for key, dist in dists.items():
            self._check_key(job, base, key, dist)
        for key in ("n_trials", "heartbeat_interval", "grace_period", "max_consecutive_failures"):
            v = c.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"hydra.sweeper.{key}={v!r}: must be an integer >= 1")
        if c["grace_period"] <= c["heartbeat_interval"]:
            raise ConfigError(f"hydra.sweeper.grace_period={c['grace_period']}: must exceed "
                              f"hydra.sweeper.heartbeat_interval={c['heartbeat_interval']}")
        if not isinstance(c.get("max_retry"), int) or c["max_retry"] < 0:
            raise ConfigError(f"hydra.sweeper.max_retry={c.get('max_retry')!r}: must be an integer >= 0")
        mode = _plain(job.train.early_stopping.mode)
        mode = str(getattr(mode, "value", mode))  # an Enum member from the structured schema
        direction = c.get("direction") or ("maximize" if mode == "max" else "minimize")
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"hydra.sweeper.direction={direction!r}: choose maximize or minimize")
        ss.check_sampler(c.get("sampler"), dists)
        ss.make_pruner(c.get("pruner"))
        n_trials = int(c["n_trials"])
        if (c.get("sampler") or {}).get("type") == "grid" and n_trials > ss.grid_size(dists):
            log.warning("hydra.sweeper.n_trials=%d exceeds the grid's %d points; running %d",
                        n_trials, ss.grid_size(dists), ss.grid_size(dists))
            n_trials = ss.grid_size(dists)
        trk = _plain(job.tracking)
        choices = job.hydra.runtime.choices if "hydra" in job else {}
        preset = choices.get("hparams_search") if choices else None
        study_name = c.get("study_name") or (f"{trk['experiment']}-{preset}" if preset else str(trk["experiment"]))
        storage = c.get("storage") or f"sqlite:///{_plain(job.paths.launch_dir)}/optuna.db"
        return {"base": base, "dists": dists, "direction": direction, "n_trials": n_trials,
                "tracking": trk, "study_name": str(study_name), "storage": str(storage), "monitor":
                str(job.train.early_stopping.monitor)}

    def _check_key(self, job: DictConfig, base: list[str], key: str, dist: Any) -> None:
        """The key exists and every categorical choice (or a numeric bound) composes."""
        node = OmegaConf.select(job, key, default="__missing__", throw_on_missing=False)
        choices = job.hydra.runtime.choices if "hydra" in job else {}
        if isinstance(node, str) and node == "__missing__" and key not in choices:
            raise ConfigError(f"hydra.sweeper.params.{key}: no such config key")
        if OmegaConf.is_config(node) and key not in choices:
            raise ConfigError(f"hydra.sweeper.params.{key}: is a config section, not a value or a group")
        values = list(dist.choices) if hasattr(dist, "choices") else [dist.low, dist.high]
        for v in values:
            ov = f"{key}={ss.override_value(v)}"
            try:
                self.config_loader.load_sweep_config(self.config, [*base, ov])
            except Exception as e:  # noqa: BLE001 - Hydra/OmegaConf composition errors
                from attnlab.cli import one_line

                raise ConfigError(f"hydra.sweeper.params.{key}: value {v!r} does not compose ({one_line(e)})") from e

    # ------------------------------------------------------------------ the sweep
    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        from attnlab import tracking

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # We run the heartbeat ourselves (see _heartbeat): Optuna's warning does not apply.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        s = self._settings(list(arguments))
        study = self._open_study(s)  # first: a storage problem stops the sweep before MLflow is touched
        exp_id = tracking.setup(s["tracking"])
        import mlflow

        self.client = mlflow.MlflowClient(tracking.resolve_uri(s["tracking"]))
        self.exp_id = exp_id
        parent_id = self._parent_run(study, s)
        log.info("study %r in %s: %d finished trial(s) of %d; MLflow parent run %s", s["study_name"],
                 _hide_password(s["storage"]), _n_finished(study), s["n_trials"], parent_id)
        status = "FAILED"
        try:
            self._loop(study, s, parent_id)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self._close_parent(study, parent_id, status)
        best = _best(study)
        if best is not None:
            log.info("study %r: best value %.4f (trial %d) with %s", s["study_name"], best.value, best.number, best.params)
            print(f"study {s['study_name']}: {_n_finished(study)} finished trials; best {s['monitor']}="
                  f"{best.value:.4f} (trial {best.number}) {best.params}; MLflow parent run {parent_id}", flush=True)
        return best

    def _open_study(self, s: Mapping[str, Any]):
        import optuna
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        retry = RetryHeartbeatStaleTrialCallback(max_retry=int(self.cfg["max_retry"]))

        def on_stale(study, trial) -> None:
            # The dead worker could not close its MLflow run: do it for it, then queue the retry.
            self._fail_mlflow_run(trial, f"worker stopped (no heartbeat for {self.cfg['grace_period']} s); trial retried")
            retry(study, trial)

        for attempt in range(4):
            try:
                storage = RDBStorage(s["storage"], heartbeat_interval=int(self.cfg["heartbeat_interval"]),
                                     grace_period=int(self.cfg["grace_period"]), heartbeat_stale_trial_callback=on_stale)
                study = optuna.create_study(storage=storage, study_name=s["study_name"], direction=s["direction"],
                                            load_if_exists=True)
                break
            except Exception as e:  # noqa: BLE001 - a bad URL, an unreachable server, a missing driver
                # Workers started together on a fresh database race to create Optuna's tables
                # (PostgreSQL: UniqueViolation on pg_type); the loser succeeds on a second try.
                if attempt < 3 and _is_creation_race(e):
                    log.info("Optuna storage busy being created by another worker; retrying")
                    time.sleep(1.0 + attempt)
                    continue
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise AttnlabError(f"hydra.sweeper.storage={_hide_password(s['storage'])}: cannot open the Optuna "
                                   f"storage ({msg[:200]})") from e
        want = optuna.study.StudyDirection.MAXIMIZE if s["direction"] == "maximize" else optuna.study.StudyDirection.MINIMIZE
        if study.direction != want:
            raise ConfigError(f"hydra.sweeper.direction={s['direction']}: study {s['study_name']!r} in "
                              f"{_hide_password(s['storage'])} was created to {study.direction.name.lower()}")
        study.pruner = ss.make_pruner(self.cfg.get("pruner"))
        return study

    def _loop(self, study, s: Mapping[str, Any], parent_id: str) -> None:
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        failures = 0
        n = s["n_trials"]
        while True:
            fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
            if finished >= n:
                return
            active = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
            waiting = sum(t.state == TrialState.WAITING for t in trials)
            if finished + active >= n and not waiting:
                # Other workers run the last trials; one of them may still die or fail.
                time.sleep(float(self.cfg["poll_interval"]))
                continue
            study.sampler = ss.make_sampler(self.cfg.get("sampler"), s["dists"], len(trials))
            trial = study.ask()
            with self._heartbeat(study, trial):
                if self._surplus(study, trial, n):
                    continue
                if trial.number != len(trials) and (self.cfg.get("sampler") or {}).get("type") != "grid":
                    # Another worker asked in between: seed by our trial's number, not theirs.
                    study.sampler = ss.make_sampler(self.cfg.get("sampler"), s["dists"], trial.number)
                try:
                    params = {k: _suggest(trial, k, d) for k, d in s["dists"].items()}
                except ValueError as e:  # e.g. a categorical's choices changed since the study began
                    _tell(study, trial, state=TrialState.FAIL)
                    raise ConfigError(f"hydra.sweeper.params: {str(e).splitlines()[0]} (study {s['study_name']!r} "
                                      f"was sampled with another search space; pick a new "
                                      f"hydra.sweeper.study_name)") from e
                ok = self._run_trial(study, trial, params, s, parent_id)
            failures = 0 if ok else failures + 1
            if failures >= int(self.cfg["max_consecutive_failures"]):
                raise AttnlabError(f"{failures} trials in a row failed (see the log and their MLflow runs' "
                                   f"attnlab.error tag); stopping this worker")

    def _surplus(self, study, trial, n: int) -> bool:
        """True (and the trial told FAIL) if ``n`` lower-numbered trials already count toward n_trials.

        Two workers can both see n-1 trials and ask; ranking by trial number gives every worker
        the same answer, so exactly one of the two runs.
        """
        from optuna.trial import TrialState

        counted = sorted(t.number for t in study.get_trials(deepcopy=False)
                         if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING))
        if trial.number not in counted or counted.index(trial.number) < n:
            return False
        trial.set_user_attr(SURPLUS_ATTR, True)
        _tell(study, trial, state=TrialState.FAIL)
        log.info("trial %d: another worker filled the study to %d trials first; not run", trial.number, n)
        return True

    def _run_trial(self, study, trial, params: dict[str, Any], s: Mapping[str, Any], parent_id: str) -> bool:
        import optuna
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        from attnlab import sweep_context

        overrides = [*s["base"], *(f"{k}={ss.override_value(v)}" for k, v in params.items())]
        ctx = sweep_context.TrialContext(trial=trial, study_name=s["study_name"], parent_run_id=parent_id,
                                         tags={ROLE_TAG: "child", STUDY_TAG: s["study_name"]})
        try:
            with sweep_context.active(ctx):
                (ret,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
        except BaseException:
            _tell(study, trial, state=TrialState.FAIL)
            raise
        if ret.status == JobStatus.COMPLETED:
            value = ret.return_value
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = float("nan")
            if not math.isfinite(value):
                log.error("trial %d returned %r, not a number: FAIL", trial.number, ret.return_value)
                _tell(study, trial, state=TrialState.FAIL)
                return False
            _tell(study, trial, values=value)
            log.info("trial %d COMPLETE: %s=%.4f %s", trial.number, s["monitor"], value, params)
        elif isinstance(ret._return_value, optuna.TrialPruned):
            _tell(study, trial, state=TrialState.PRUNED)
            log.info("trial %d PRUNED (%s) %s", trial.number, ret._return_value, params)
        else:
            err = ret._return_value
            log.error("trial %d FAIL: %s: %s %s", trial.number, type(err).__name__, err, params)
            _tell(study, trial, state=TrialState.FAIL)
            return False
        self._update_parent(study, parent_id)
        return True

    @contextlib.contextmanager
    def _heartbeat(self, study, trial) -> Iterator[None]:
        """Beat for the trial while this worker holds it (Optuna does so only inside optimize())."""
        storage, trial_id = study._storage, trial._trial_id
        stop = threading.Event()

        def beat() -> None:
            while True:
                try:
                    storage.record_heartbeat(trial_id)
                except Exception as e:  # noqa: BLE001 - a blip in the DB must not kill the trial
                    log.warning("heartbeat for trial %d failed: %s", trial.number, e)
                if stop.wait(float(self.cfg["heartbeat_interval"])):
                    return

        storage.record_heartbeat(trial_id)
        t = threading.Thread(target=beat, name=f"optuna-heartbeat-{trial.number}", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()

    # ------------------------------------------------------------------ MLflow
    def _parent_run(self, study, s: Mapping[str, Any]) -> str:
        """The study's one parent run: from the study's user attrs, by tag, or created (race-safe)."""
        name = s["study_name"]
        pid = study.user_attrs.get(PARENT_ATTR)
        if pid and self._usable_parent(pid):
            self.client.update_run(pid, status="RUNNING")
            return pid
        found = self._find_parents(name)
        if not found:
            tags = {ROLE_TAG: "parent", STUDY_TAG: name, "optuna.study": name,
                    "optuna.storage": _hide_password(s["storage"]), "attnlab.sweep.direction": s["direction"],
                    "attnlab.sweep.overrides": " ".join(s["base"])[:5000],
                    "attnlab.sweep.search_space": str({k: repr(d) for k, d in s["dists"].items()})[:5000]}
            mine = self.client.create_run(self.exp_id, run_name=f"sweep:{name}", tags=tags).info.run_id
            found = self._find_parents(name)
            # Two workers started together may both create one: the oldest wins, the other goes.
            for extra in found[1:]:
                if extra.info.run_id == mine:
                    self.client.delete_run(mine)
        pid = found[0].info.run_id
        study.set_user_attr(PARENT_ATTR, pid)
        self.client.update_run(pid, status="RUNNING")
        return pid

    def _find_parents(self, name: str) -> list:
        runs = self.client.search_runs(
            [self.exp_id], filter_string=f"tags.`{ROLE_TAG}` = 'parent' and tags.`{STUDY_TAG}` = '{name}'",
            max_results=100)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def _usable_parent(self, run_id: str) -> bool:
        try:
            run = self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - e.g. the study moved to another MLflow store
            return False
        return run.info.experiment_id == self.exp_id and run.info.lifecycle_stage == "active"

    def _update_parent(self, study, parent_id: str) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        n_done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        metrics = {"n_complete": sum(t.state == TrialState.COMPLETE for t in trials),
                   "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
                   "n_failed": sum(t.state == TrialState.FAIL and not t.user_attrs.get(SURPLUS_ATTR) for t in trials)}
        best = _best(study)
        tags = {}
        if best is not None:
            metrics.update({"best_value": float(best.value), "best_trial": float(best.number)})
            tags = {f"best.{k}": str(v) for k, v in best.params.items()}
            if "mlflow_run_id" in best.user_attrs:
                tags["attnlab.sweep.best_run_id"] = str(best.user_attrs["mlflow_run_id"])
        try:
            from mlflow.entities import Metric, RunTag

            now = int(time.time() * 1000)
            self.client.log_batch(parent_id, metrics=[Metric(k, float(v), now, n_done) for k, v in metrics.items()],
                                  tags=[RunTag(k, v) for k, v in tags.items()])
        except Exception as e:  # noqa: BLE001 - the sweep outlives a tracking blip
            log.warning("could not update the parent run %s: %s", parent_id, e)

    def _fail_mlflow_run(self, trial, reason: str) -> None:
        from attnlab.tracking import ERROR_TAG, STATUS_TAG

        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id:
            return
        try:
            run = self.client.get_run(run_id)
            if run.info.status == "RUNNING":
                self.client.set_tag(run_id, STATUS_TAG, "FAILED")
                self.client.set_tag(run_id, ERROR_TAG, reason)
                self.client.set_terminated(run_id, "FAILED")
                log.warning("trial %d: MLflow run %s marked FAILED (%s)", trial.number, run_id, reason)
        except Exception as e:  # noqa: BLE001
            log.warning("trial %d: could not close MLflow run %s: %s", trial.number, run_id, e)

    def _close_parent(self, study, parent_id: str, status: str) -> None:
        from optuna.trial import TrialState

        self._update_parent(study, parent_id)
        if self.cfg.get("plots", True):
            _log_plots(self.client, parent_id, study)
        others_running = any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))
        # Another worker still runs trials: it closes the parent when it stops.
        if status != "FINISHED" or not others_running:
            try:
                self.client.set_terminated(parent_id, status)
            except Exception as e:  # noqa: BLE001
                log.warning("could not close the parent run %s: %s", parent_id, e)


def _suggest(trial, name: str, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)


def _tell(study, trial, **kwargs: Any) -> None:
    import optuna

    try:
        study.tell(trial, **kwargs)
    except optuna.exceptions.UpdateFinishedTrialError as e:
        # Another worker declared this trial dead (heartbeat) while it ran; its retry stands.
        log.warning("trial %d was already finished by another worker: %s", trial.number, e)
    except RuntimeError as e:
        # GridSampler.after_trial calls study.stop() when the grid is exhausted, which Optuna
        # allows only inside optimize(); the state was written before it raised.
        if "Study.stop" not in str(e):
            raise


def _is_creation_race(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(k in text for k in ("uniqueviolation", "duplicate key", "already exists", "integrityerror"))


def _n_finished(study) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


def _best(study):
    try:
        return study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url


def _log_plots(client, parent_id: str, study) -> None:
    """Optimisation history, parameter importances and parallel coordinates on the parent run.

    HTML embeds plotly.js (no network here); PNG comes from Optuna's matplotlib backend because
    plotly's PNG export needs a browser it downloads at run time.
    """
    import tempfile
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import optuna.visualization as ov
    import optuna.visualization.matplotlib as om

    plots = {
        "optimization_history": (ov.plot_optimization_history, om.plot_optimization_history),
        "param_importances": (ov.plot_param_importances, om.plot_param_importances),
        "parallel_coordinate": (ov.plot_parallel_coordinate, om.plot_parallel_coordinate),
    }
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (html_fn, png_fn) in plots.items():
            try:
                html_fn(study).write_html(str(Path(tmp) / f"{name}.html"), include_plotlyjs=True)
                ax = png_fn(study)
                fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
                fig.savefig(Path(tmp) / f"{name}.png", dpi=100, bbox_inches="tight")
                plt.close(fig)
            except Exception as e:  # noqa: BLE001 - e.g. importances need 2 complete trials that differ
                log.info("plot %s skipped: %s", name, str(e).splitlines()[0] if str(e) else type(e).__name__)
        try:
            client.log_artifacts(parent_id, tmp, "plots")
        except Exception as e:  # noqa: BLE001
            log.warning("could not log plots on the parent run %s: %s", parent_id, e)
