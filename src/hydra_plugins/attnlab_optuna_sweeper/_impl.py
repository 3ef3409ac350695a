"""The sweeper's worker: open the study, keep ``n_jobs`` trials in flight, beat their
heartbeats, tell Optuna how each ended.

A worker loops: fail stale trials (dead workers or jobs) -> count the study's trials -> if a
slot is free and the study needs more, ask for a trial and launch its job through Hydra's
launcher -> when any job ends, tell COMPLETE / PRUNED / FAIL. The job reopens its trial from
the storage (:mod:`attnlab.trial`: the ``trial`` config node), reports each epoch, prunes
itself and nests its MLflow run under the study's parent. With ``replicates`` the job runs one
``train`` per replicate and returns their mean (:mod:`attnlab.replicates`). The worker stops when the study
holds ``n_trials`` finished (COMPLETE or PRUNED) trials, whoever ran them: a resumed command
and extra workers share that target.

Hydra's launcher API takes a batch and returns when all of it is done; to start a new trial
as soon as any one ends, each trial is its own one-job batch, launched from its own thread
(``n_jobs > 1``, process launchers only) or from this thread (``n_jobs = 1``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import queue
import threading
import time
import warnings
from enum import Enum
from typing import Any, Callable, Optional

from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from attnlab.errors import AttnlabError, ConfigError, first_line
from attnlab.tracking import retry  # storage calls survive a database restart (issue 18)

from . import search_space as ss
from ._settings import Settings, load_settings, plain

log = logging.getLogger(__name__)

FIXED_ATTR = "attnlab.fixed_config"  # study user attr: the settings every trial shares
OVERRIDES_ATTR = "attnlab.overrides"  # study user attr: the command's overrides, for people
SWEEPER_PID_ATTR = "attnlab.sweeper_pid"  # trial user attr: the worker process that asked for it


class _Slots:
    """Up to ``k`` jobs in flight: each in a daemon thread when k > 1, in the caller's otherwise."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.busy: set[int] = set()
        self._done: queue.Queue = queue.Queue()

    @property
    def free(self) -> bool:
        return len(self.busy) < self.k

    def start(self, key: int, fn: Callable[[], Any]) -> None:
        self.busy.add(key)
        if self.k == 1:
            self._run(key, fn)
        else:
            threading.Thread(target=self._run, args=(key, fn), name=f"attnlab-trial-{key}", daemon=True).start()

    def _run(self, key: int, fn: Callable[[], Any]) -> None:
        try:
            self._done.put((key, fn(), None))
        except Exception as e:  # noqa: BLE001 - the launcher lost the job; the caller decides
            self._done.put((key, None, e))

    def finished(self, timeout: float) -> list[tuple[int, Any, Optional[BaseException]]]:
        """Jobs that ended, waiting up to ``timeout`` seconds for the first one."""
        out = []
        try:
            out.append(self._done.get(timeout=timeout) if timeout > 0 else self._done.get_nowait())
            while True:
                out.append(self._done.get_nowait())
        except queue.Empty:
            pass
        self.busy.difference_update(key for key, _, _ in out)
        return out


class _Heartbeats:
    """One thread beating every ``interval`` seconds for the trials this worker holds."""

    def __init__(self, storage: Any, interval: float) -> None:
        self.storage, self.interval = storage, interval
        self.ids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="attnlab-heartbeats", daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        retry.call(self.storage.record_heartbeat, trial_id)
        self.ids.add(trial_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for trial_id in list(self.ids):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as e:  # noqa: BLE001 - a blip in the DB must not kill the trial
                    log.warning("heartbeat for trial id %d failed: %s", trial_id, e)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _suggest(trial, name: str, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)


def _fail(study, trial, reason: str) -> None:
    """Tell FAIL, first writing why on the trial (optuna-dashboard shows it among the user attrs)."""
    from optuna.trial import TrialState

    _note_failure(trial, reason)
    _tell(study, trial, state=TrialState.FAIL)


def _note_failure(trial, reason: str) -> None:
    """Write why the trial failed, best effort: a trial another worker already closed keeps its own."""
    import optuna

    from attnlab.tracking.sweeps import FAIL_REASON_ATTR

    try:
        retry.call(trial.set_user_attr, FAIL_REASON_ATTR, reason[:500])
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def _tell(study, trial, **kwargs: Any) -> None:
    import optuna

    try:
        retry.call(study.tell, trial, what=f"telling trial {trial.number}", **kwargs)
    except optuna.exceptions.UpdateFinishedTrialError as e:
        # A heartbeat check declared this trial dead while its job ran; its retry stands.
        log.warning("trial %d was already finished by another worker: %s", trial.number, e)
    except RuntimeError as e:
        # GridSampler.after_trial calls study.stop() when the grid is exhausted, which Optuna
        # allows only inside optimize(); the state was written before it raised.
        if "Study.stop" not in str(e):
            raise


def _counts(study) -> tuple[int, int, int]:
    """(finished, active, waiting) trials: COMPLETE+PRUNED, RUNNING+WAITING, WAITING."""
    from optuna.trial import TrialState

    states = [t.state for t in retry.call(study.get_trials, deepcopy=False)]
    finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    waiting = sum(s == TrialState.WAITING for s in states)
    return finished, waiting + sum(s == TrialState.RUNNING for s in states), waiting


def _spread(study, trial, s: Settings) -> str:
    """`` ± std over n replicates`` for the log line of a replicated trial ('' otherwise)."""
    from attnlab.tracking.sweeps import REPLICATE_VALUES_ATTR, VALUE_STD_ATTR

    if s.replicates is None:
        return ""
    attrs = study._storage.get_trial(trial._trial_id).user_attrs
    return f" ± {attrs.get(VALUE_STD_ATTR, float('nan')):.4f} over {len(attrs.get(REPLICATE_VALUES_ATTR, []))} replicates"


class SweeperImpl:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = {k: v.value if isinstance(v, Enum) else plain(v) for k, v in cfg.items()}
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.runs = None  # attnlab.tracking.sweeps.SweepRuns, once the study is open

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.config_loader = hydra_context.config_loader
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> Any:
        s = load_settings(self.cfg, self.config, self.config_loader, list(arguments))
        study = self._open_study(s)  # first: a storage problem stops the sweep before MLflow is touched
        parent_id = self._open_parent(study, s)
        status = "FAILED"
        try:
            self._run(study, s, parent_id)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            retry.call(self.runs.close_parent, study, parent_id, status, bool(self.cfg["plots"]))
        return self._report(study, s, parent_id)

    # ------------------------------------------------------------------ the study
    def _open_study(self, s: Settings):
        import optuna
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        from attnlab.tracking.sweeps import FAIL_REASON_ATTR, hide_password
        from attnlab.trial import rdb_storage

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # We run the heartbeat ourselves (see _Heartbeats): Optuna's warning does not apply.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        requeue = RetryHeartbeatStaleTrialCallback(max_retry=int(self.cfg["max_retry"]))

        def on_stale(study, trial) -> None:
            # The dead worker or job could not close its MLflow run: do it for it, then queue the retry.
            if self.runs is not None:
                self.runs.fail_run(trial, f"worker or job stopped (no heartbeat for {self.cfg['grace_period']} s); "
                                          f"trial retried")
            trial.user_attrs.pop(FAIL_REASON_ATTR, None)  # the retry starts clean (it copies user attrs)
            requeue(study, trial)

        for attempt in range(4):
            try:
                storage = rdb_storage(s.storage, heartbeat_interval=int(self.cfg["heartbeat_interval"]),
                                      grace_period=int(self.cfg["grace_period"]), heartbeat_stale_trial_callback=on_stale)
                study = optuna.create_study(storage=storage, study_name=s.study_name, direction=s.direction,
                                            load_if_exists=True)
                break
            except Exception as e:  # noqa: BLE001 - a bad URL, an unreachable server, a missing driver
                # Workers started together on a fresh database race to create Optuna's tables
                # (PostgreSQL: UniqueViolation on pg_type); the loser succeeds on a second try.
                if attempt < 3 and retry.is_creation_race(e):
                    log.info("Optuna storage busy being created by another worker; retrying")
                    time.sleep(1.0 + attempt)
                    continue
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise AttnlabError(f"hydra.sweeper.storage={hide_password(s.storage)}: cannot open the Optuna "
                                   f"storage ({msg[:200]})") from e
        self._check_study(study, s)
        return study

    def _check_study(self, study, s: Settings) -> None:
        """Same direction, same fixed settings as when the study began (or ``force``)."""
        from attnlab.tracking.sweeps import hide_password

        if study.direction.name.lower() != s.direction:
            raise ConfigError(f"hydra.sweeper.direction={s.direction}: study {s.study_name!r} in "
                              f"{hide_password(s.storage)} was created to {study.direction.name.lower()}")
        stored = study.user_attrs.get(FIXED_ATTR)
        if stored is None:
            study.set_user_attr(FIXED_ATTR, s.fixed)
            study.set_user_attr(OVERRIDES_ATTR, " ".join(s.base))
        elif stored != s.fixed:
            diff = sorted(k for k in stored.keys() | s.fixed.keys() if stored.get(k, "<unset>") != s.fixed.get(k, "<unset>"))
            shown = "; ".join(f"{k}={s.fixed.get(k, '<unset>')!r} (the study's: {stored.get(k, '<unset>')!r})"
                              for k in diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            if not self.cfg["force"]:
                raise ConfigError(f"study {s.study_name!r} was started with other fixed settings: {shown}; run it with "
                                  f"its own, or start a new study (hydra.sweeper.study_name=<new name>), or mix them "
                                  f"with hydra.sweeper.force=true")
            log.warning("study %r: resumed with other fixed settings (hydra.sweeper.force=true): %s", s.study_name, shown)
        if study.metric_names != [s.monitor]:
            study.set_metric_names([s.monitor])  # optuna-dashboard's axes read e.g. val_accuracy

    def _open_parent(self, study, s: Settings) -> str:
        """The MLflow store and experiment, made before any job starts (jobs racing to create a
        SQLite store break its migration), and the study's parent run."""
        from attnlab import tracking
        from attnlab.tracking.sweeps import SweepRuns, hide_password

        exp_id = tracking.setup(s.tracking)
        self.runs = SweepRuns(tracking.client(s.tracking_uri), exp_id)
        parent_id = self.runs.open_parent(study, {
            "optuna.storage": hide_password(s.storage), "attnlab.sweep.direction": s.direction,
            "attnlab.sweep.overrides": " ".join(s.base)[:5000],
            "attnlab.sweep.search_space": str({k: repr(d) for k, d in s.dists.items()})[:5000]})
        log.info("study %r in %s: %d finished trial(s) of %d; %d in flight at most; MLflow parent run %s",
                 s.study_name, hide_password(s.storage), _counts(study)[0], s.n_trials, s.n_jobs, parent_id)
        return parent_id

    def _report(self, study, s: Settings, parent_id: str) -> Any:
        from attnlab.tracking.sweeps import best_trial

        best = best_trial(study)
        if best is not None:
            log.info("study %r: best value %.4f (trial %d) with %s", s.study_name, best.value, best.number, best.params)
            print(f"study {s.study_name}: {_counts(study)[0]} finished trials; best {s.monitor}="
                  f"{best.value:.4f} (trial {best.number}) {best.params}; MLflow parent run {parent_id}", flush=True)
        return best

    # ------------------------------------------------------------------ the loop
    def _run(self, study, s: Settings, parent_id: str) -> None:
        """Keep up to n_jobs trials in flight until the study holds n_trials finished ones."""
        slots = _Slots(s.n_jobs)
        beats = _Heartbeats(study._storage, float(self.cfg["heartbeat_interval"]))
        held: dict[int, tuple[Any, dict[str, Any]]] = {}
        failures, waited = 0, False
        try:
            while True:
                for number, ret, err in slots.finished(float(self.cfg["poll_interval"]) if waited else 0):
                    trial, params = held.pop(number)
                    beats.ids.discard(trial._trial_id)
                    ok = self._conclude(study, trial, params, ret, err, s, parent_id)
                    failures = 0 if ok else failures + 1
                stopping = failures >= int(self.cfg["max_consecutive_failures"])
                want = None if stopping else self._want(study, s.n_trials)
                if want is None and not held:
                    break
                waited = not (want and slots.free)
                if not waited:
                    got = self._next_trial(study, s)
                    if got is not None:
                        held[got[0].number] = got
                        beats.add(got[0]._trial_id)
                        slots.start(got[0].number, functools.partial(self._launch, *got, s, parent_id))
        except BaseException as e:
            why = "interrupted (Ctrl-C or SIGTERM)" if isinstance(e, KeyboardInterrupt) else \
                f"{type(e).__name__}: {first_line(e)}"
            for trial, _ in held.values():
                _fail(study, trial, f"its worker stopped: {why}")
            raise
        finally:
            beats.stop()
        if stopping:
            raise AttnlabError(f"{failures} trials in a row failed (see the log and their MLflow runs' "
                               f"attnlab.error tag); stopping this worker")

    @staticmethod
    def _want(study, n: int) -> Optional[bool]:
        """None: the study is done; True: it needs another trial; False: wait (the last ones run)."""
        from optuna.storages import fail_stale_trials

        retry.call(fail_stale_trials, study)
        finished, active, waiting = _counts(study)
        if finished >= n:
            return None
        return finished + active < n or waiting > 0

    def _next_trial(self, study, s: Settings) -> Optional[tuple[Any, dict[str, Any]]]:
        """Ask for a trial (a retry waiting in the queue first) and sample its parameters."""
        study.sampler = ss.make_sampler(s.sampler, s.dists, len(retry.call(study.get_trials, deepcopy=False)))
        trial = retry.call(study.ask)
        if self._surplus(study, trial, s.n_trials):
            return None
        if not ss.is_grid(s.sampler):  # seed by our trial's number, whoever asked in between
            study.sampler = ss.make_sampler(s.sampler, s.dists, trial.number)
        retry.call(trial.set_user_attr, SWEEPER_PID_ATTR, os.getpid())
        try:
            return trial, {k: retry.call(_suggest, trial, k, d) for k, d in s.dists.items()}
        except ValueError as e:  # e.g. a categorical's choices changed since the study began
            _fail(study, trial, f"cannot sample its parameters: {first_line(e)}")
            raise ConfigError(f"hydra.sweeper.params: {str(e).splitlines()[0]} (study {s.study_name!r} was sampled "
                              f"with another search space; pick a new hydra.sweeper.study_name)") from e

    @staticmethod
    def _surplus(study, trial, n: int) -> bool:
        """True (and the trial told FAIL) if ``n`` lower-numbered trials already count toward n_trials.

        Two workers can both see n-1 trials and ask; ranking by trial number gives every worker
        the same answer, so exactly one of the two runs.
        """
        from attnlab.tracking.sweeps import SURPLUS_ATTR
        from optuna.trial import TrialState

        counted = sorted(t.number for t in retry.call(study.get_trials, deepcopy=False)
                         if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING))
        if trial.number not in counted or counted.index(trial.number) < n:
            return False
        retry.call(trial.set_user_attr, SURPLUS_ATTR, True)
        _fail(study, trial, f"surplus: {n} lower-numbered trials already count toward n_trials; not run")
        log.info("trial %d: another worker filled the study to %d trials first; not run", trial.number, n)
        return True

    def _launch(self, trial, params: dict[str, Any], s: Settings, parent_id: str) -> Any:
        """Run the trial's job (blocks until it ends); the job reopens the trial from ``trial``."""
        from attnlab.trial import TrialRef

        ref = dataclasses.asdict(TrialRef(study_name=s.study_name, storage=s.storage, number=trial.number,
                                          parent_run_id=parent_id, pruner=s.pruner, replicates=s.replicates))
        if self.cfg.get("storage"):  # the user's URL, maybe with a password: not in the launcher's log line
            ref["storage"] = ss.Interpolation("${hydra:sweeper.storage}")  # the job's own hydra config has it
        overrides = [*s.base, *(f"{k}={ss.override_value(v)}" for k, v in params.items()),
                     f"++trial={ss.override_value(ref)}"]
        (ret,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
        return ret

    def _conclude(self, study, trial, params: dict[str, Any], ret: Any, err: Optional[BaseException],
                  s: Settings, parent_id: str) -> bool:
        """Tell Optuna how the job ended; False for a failure (counted toward stopping)."""
        import optuna
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        if err is not None:  # the job died or was never run: no heartbeat now, so it is retried
            why = f"job lost ({type(err).__name__}: {first_line(err)})"
            log.error("trial %d: %s; FAIL and retried after %s s without heartbeat", trial.number, why,
                      self.cfg["grace_period"])
            _note_failure(trial, f"{why}; failed by its stale heartbeat and retried")
            return False
        value = ret._return_value
        if ret.status == JobStatus.COMPLETED and isinstance(value, (int, float)) and math.isfinite(value):
            _tell(study, trial, values=float(value))
            log.info("trial %d COMPLETE: %s=%.4f%s %s", trial.number, s.monitor, value, _spread(study, trial, s), params)
        elif isinstance(value, optuna.TrialPruned):
            _tell(study, trial, state=TrialState.PRUNED)
            log.info("trial %d PRUNED (%s) %s", trial.number, value, params)
        else:
            what = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else f"returned {value!r}"
            log.error("trial %d FAIL: %s %s", trial.number, what, params)
            _fail(study, trial, f"job failed: {what}")
            return False
        retry.call(self.runs.update_parent, study, parent_id)
        return True
