"""The sweeper's loop with a stand-in launcher (no TensorFlow, seconds): trials in flight,
refilled as soon as any one ends, exact n_trials, a lost job failed by its heartbeat and retried.

The launcher is the only stand-in: the study is a real Optuna SQLite storage with heartbeats.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict

import pytest


class FakeLauncher:
    """Hydra's launcher API (one batch in, its returns out, blocking); each job sleeps
    ``seconds(trial number)``, or waits for the Event it returns."""

    def __init__(self, seconds, lose=()):
        self.seconds = seconds  # trial number -> seconds
        self.lose = set(lose)  # trial numbers whose job dies (the launcher raises)
        self.spans: dict[int, tuple[float, float]] = {}
        self.overrides: list[list[str]] = []
        self.lock = threading.Lock()

    def launch(self, job_overrides, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        (overrides,) = job_overrides
        self.overrides.append(list(overrides))
        t0 = time.monotonic()
        wait = self.seconds(initial_job_idx)
        if isinstance(wait, threading.Event):
            assert wait.wait(timeout=120), f"job {initial_job_idx} was never released"
        else:
            time.sleep(wait)
        with self.lock:
            self.spans[initial_job_idx] = (t0, time.monotonic())
        if initial_job_idx in self.lose:
            self.lose.discard(initial_job_idx)
            raise RuntimeError("job died (stand-in for submitit's UncompletedJobError)")
        ret = JobReturn()
        ret.status, ret._return_value = JobStatus.COMPLETED, 0.5 + 0.01 * initial_job_idx
        return [ret]


class FakeRuns:
    def __init__(self):
        self.failed = []

    def update_parent(self, study, parent_id):
        pass

    def fail_run(self, trial, reason):
        self.failed.append((trial.number, reason))


def _impl(tmp_path, launcher, n_trials, n_jobs, **cfg):
    from hydra_plugins.attnlab_optuna_sweeper._impl import SweeperImpl
    from hydra_plugins.attnlab_optuna_sweeper._settings import Settings
    from hydra_plugins.attnlab_optuna_sweeper.config import AttnlabOptunaSweeperConf, RandomSamplerConf
    from hydra_plugins.attnlab_optuna_sweeper.search_space import parse_params

    conf = {**asdict(AttnlabOptunaSweeperConf()), "poll_interval": 0.05, **cfg}
    impl = SweeperImpl(conf)
    impl.launcher, impl.runs = launcher, FakeRuns()
    s = Settings(base=["train.epochs=1"], dists=parse_params({"x": {"type": "float", "low": 0.0, "high": 1.0}}),
                 direction="maximize", n_trials=n_trials, n_jobs=n_jobs, study_name="loop",
                 storage=f"sqlite:///{tmp_path / 'optuna.db'}", tracking={}, tracking_uri="", monitor="val_accuracy",
                 sampler=asdict(RandomSamplerConf()), pruner=None)
    return impl, s, impl._open_study(s)


def test_k_trials_in_flight_refilled_as_soon_as_one_ends(tmp_path):
    """n_jobs=2: trial 0's job ends only once trial 4's has: trials 1, 2, 3, 4 must run one
    after another beside it (batches of two would wait for trial 0 forever)."""
    from optuna.trial import TrialState

    release = threading.Event()

    def seconds(n):
        if n == 0:
            return release
        if n == 4:
            threading.Timer(0.1, release.set).start()
        return 0.1

    launcher = FakeLauncher(seconds)
    impl, s, study = _impl(tmp_path, launcher, n_trials=5, n_jobs=2)
    impl._run(study, s, parent_id="p")
    spans = launcher.spans
    assert sorted(spans) == [0, 1, 2, 3, 4]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5
    # Every short trial started while trial 0 still ran; never more than two at once.
    assert all(spans[n][0] < spans[0][1] for n in (1, 2, 3, 4))
    for n in (2, 3, 4):
        assert spans[n][0] >= spans[n - 1][1] - 0.01  # the freed slot, not a third one
    assert len({t.params["x"] for t in study.trials}) == 5  # seeded by trial number: draws apart


def test_n_jobs_1_runs_in_this_thread_one_at_a_time(tmp_path):
    launcher = FakeLauncher(lambda n: 0.05)
    impl, s, study = _impl(tmp_path, launcher, n_trials=3, n_jobs=1)
    caller = threading.current_thread()
    seen = []
    inner = launcher.launch

    def launch(job_overrides, initial_job_idx):
        seen.append(threading.current_thread())
        return inner(job_overrides, initial_job_idx)

    launcher.launch = launch
    impl._run(study, s, parent_id="p")
    assert seen == [caller] * 3 and len(study.trials) == 3


def test_a_lost_job_is_failed_by_its_heartbeat_and_retried(tmp_path):
    """The launcher loses trial 1's job: this worker stops beating for it; after the grace
    period it is FAIL, its run closed, and the same parameters run again; n_trials stays exact."""
    from optuna.trial import TrialState

    launcher = FakeLauncher(lambda n: 0.1, lose={1})
    impl, s, study = _impl(tmp_path, launcher, n_trials=3, n_jobs=2, heartbeat_interval=1, grace_period=4)
    impl._run(study, s, parent_id="p")
    trials = {t.number: t for t in study.trials}
    assert trials[1].state == TrialState.FAIL
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == 1]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[1].params
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 3
    assert [n for n, _ in impl.runs.failed] == [1] and "no heartbeat" in impl.runs.failed[0][1]
    # The lost trial says why; its retry does not inherit that.
    assert trials[1].user_attrs["attnlab.fail_reason"].startswith("job lost (RuntimeError: job died")
    assert "attnlab.fail_reason" not in retry.user_attrs


def test_a_worker_stops_after_consecutive_failures_and_fails_nothing_in_flight(tmp_path):
    """Every job returns a non-number: after max_consecutive_failures the worker raises, once
    the trials it had in flight ended (none is left RUNNING)."""
    from optuna.trial import TrialState

    from attnlab.errors import AttnlabError

    launcher = FakeLauncher(lambda n: 0.05)
    launcher.launch = lambda job_overrides, initial_job_idx: [type("R", (), {"status": None, "_return_value": "x"})()]
    impl, s, study = _impl(tmp_path, launcher, n_trials=10, n_jobs=2, max_consecutive_failures=3)
    with pytest.raises(AttnlabError, match="trials in a row failed"):
        impl._run(study, s, parent_id="p")
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and states.count(TrialState.FAIL) >= 3
    assert {t.user_attrs["attnlab.fail_reason"] for t in study.trials} == {"job failed: returned 'x'"}


def test_ctrl_c_in_a_worker_fails_its_trial_in_flight_and_says_why(tmp_path):
    """n_jobs=1: the job runs in the worker's thread, so Ctrl-C (or SIGTERM, which attnlab turns
    into the same exception) reaches the loop; the trial in flight is FAIL at once, not left
    RUNNING for a heartbeat check."""
    from optuna.trial import TrialState

    launcher = FakeLauncher(lambda n: 0.01)
    inner = launcher.launch

    def launch(job_overrides, initial_job_idx):
        if initial_job_idx == 1:
            raise KeyboardInterrupt
        return inner(job_overrides, initial_job_idx)

    launcher.launch = launch
    impl, s, study = _impl(tmp_path, launcher, n_trials=3, n_jobs=1)
    with pytest.raises(KeyboardInterrupt):
        impl._run(study, s, parent_id="p")
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.COMPLETE, 1: TrialState.FAIL}
    assert study.trials[1].user_attrs["attnlab.fail_reason"] == "its worker stopped: interrupted (Ctrl-C or SIGTERM)"


def test_the_job_is_told_its_trial_and_a_users_storage_url_stays_out_of_the_log_line(tmp_path):
    """The launcher logs each job's overrides: the trial node names the default storage itself,
    but a storage URL the user gave (maybe with a password) only as `${hydra:sweeper.storage}`,
    which the job resolves from its own Hydra config."""
    launcher = FakeLauncher(lambda n: 0.0)
    impl, s, study = _impl(tmp_path, launcher, n_trials=1, n_jobs=1)
    impl._run(study, s, parent_id="p0")
    (trial_ov,) = [o for o in launcher.overrides[0] if o.startswith("++trial=")]
    assert trial_ov.startswith(f"++trial={{study_name:loop,storage:'{s.storage}',number:0,parent_run_id:p0,pruner:null")
    assert launcher.overrides[0][0] == "train.epochs=1" and launcher.overrides[0][1].startswith("x=")

    impl, s, study = _impl(tmp_path, launcher, n_trials=2, n_jobs=1, storage="postgresql://me:secret@db/sweeps")
    impl._run(study, s, parent_id="p0")
    (trial_ov,) = [o for o in launcher.overrides[-1] if o.startswith("++trial=")]
    assert "storage:'${hydra:sweeper.storage}'" in trial_ov and "secret" not in trial_ov
