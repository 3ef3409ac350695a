"""The ``attnlab`` command. Subcommands import their (heavy) modules only when run.

``attnlab train [hydra overrides]`` hands its arguments to Hydra; every other subcommand
has its own ``--help``. Errors a user can fix print one line (``error: ...``) and exit 2;
``--verbose`` or ``HYDRA_FULL_ERROR=1`` shows the traceback. ``--quiet`` turns off the line
per epoch (and Keras' progress bar) of every run the command trains (:mod:`attnlab.console`).
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> (module with `main(argv) -> int`, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("attnlab.cli", "train one configuration, or a sweep with -m (Hydra overrides follow)"),
    "register": ("attnlab.registry", "register the best run's model under an alias"),
    "predict": ("attnlab.predict", "predict raw texts with a logged model and show the attention"),
    "report": ("attnlab.report", "aggregate an ablation's runs: mean, CI, paired tests"),
    "reproduce": ("attnlab.reproduce", "re-run a logged run from its config and compare metrics"),
    "bench": ("attnlab.bench", "benchmarks measured as side-by-side ratios"),
    "history": ("attnlab.history", "list the moves of a registry alias (champion); roll back with register --rollback"),
}

USAGE = """usage: attnlab [--verbose] [--quiet] COMMAND [ARGS...]

Experiment-tracking harness for self-attention text classifiers.

commands:
{commands}

examples:
  attnlab train                                   # default model on synthetic data
  attnlab train data=mr data.fold=3 model.attention.scale=constant
  attnlab train -m model.attention.scale=sqrt_dk,constant,none
  attnlab train -m hparams_search=synthetic_small  # Optuna sweep
  attnlab train --cfg job                         # print the composed config
Run `attnlab COMMAND --help` for a command's options; `attnlab train --help` lists config groups.
--verbose shows tracebacks; --quiet (-q) prints no line per epoch (results and errors still show).
"""


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    return USAGE.format(commands="\n".join(f"  {n:<{width}}  {d}" for n, (_, d) in COMMANDS.items()))


def verbose() -> bool:
    return bool(os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("ATTNLAB_VERBOSE") == "1")


def _hint(exc: BaseException) -> str:
    """For an unexpected exception (a crash, not bad input), its type and where the traceback is."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from attnlab.errors import AttnlabError

    cur: BaseException | None = exc
    while cur is not None:
        if isinstance(cur, (AttnlabError, HydraException, OmegaConfBaseException)):
            return ""
        cur = cur.__cause__ or cur.__context__
    return f" ({type(exc).__name__}; run `attnlab --verbose ...` for the traceback)"


def _patch_hydra_error_reporting() -> None:
    """Hydra prints composition errors over several lines; attnlab prints one (pinned hydra-core 1.3.8)."""
    import hydra._internal.utils as hu

    from attnlab.errors import one_line

    def run_and_report(func):
        try:
            return func()
        except Exception as ex:  # noqa: BLE001
            if verbose():
                raise
            print(f"error: {one_line(ex)}{_hint(ex)}", file=sys.stderr)
            sys.exit(2)

    hu.run_and_report = run_and_report

    import hydra.core.utils as hcu
    from hydra.types import RunMode

    def return_value(self):
        # Hydra writes "Error executing job with overrides: [...]" before re-raising; in a
        # single run those are the user's own arguments, so only the `error:` line remains.
        if self.status == hcu.JobStatus.COMPLETED:
            return self._return_value
        multirun = self.hydra_cfg is not None and self.hydra_cfg.hydra.mode == RunMode.MULTIRUN
        if verbose() or multirun:
            sys.stderr.write(f"Error executing job with overrides: {self.overrides}" + os.linesep)
        raise self._return_value

    hcu.JobReturn.return_value = hcu.JobReturn.return_value.getter(return_value)


def _task(cfg) -> float:
    """The Hydra task of every job: one training run (a sweep's job runs its trial)."""
    from attnlab.config import to_plain
    from attnlab.tracking import retry
    from attnlab.train import train
    from attnlab.trial import open_trial
    from attnlab.watch import finished_lines

    # None unless the Optuna sweeper launched this job; retried through a storage restart
    trial = retry.call(open_trial, cfg.get("trial"), what="opening the trial")
    try:
        if trial is not None and trial.replicates:  # hydra.sweeper.replicates: one run per replicate
            from attnlab.replicates import run_trial

            return run_trial(cfg, trial)
        result = train(cfg, trial=trial)
    finally:
        if trial is not None:
            trial.close()
    print("\n".join(finished_lines(result.run_id, result.metrics, to_plain(cfg.tracking))), flush=True)
    return result.value


def train_main(argv: list[str]) -> int:
    import hydra

    from attnlab.config import config_dir, register_configs

    register_configs()
    _patch_hydra_error_reporting()
    app = hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(_task)
    old_argv = sys.argv
    sys.argv = ["attnlab train", *argv]
    try:
        app()
    except ValueError as e:  # Hydra's own check of its flags, before any config is read
        if "can be specified" not in str(e):
            raise
        from attnlab.errors import ConfigError, first_line

        raise ConfigError(f"attnlab train: {first_line(e)}. Received: {' '.join(argv)}") from e
    finally:
        sys.argv = old_argv
    return 0


def _global_flags(argv: list[str]) -> list[str]:
    """Strip the leading ``--verbose`` / ``--quiet`` flags (any order) into the environment, so
    the jobs a command starts (a sweep's, a launcher's) inherit them."""
    flags = {"--verbose": "ATTNLAB_VERBOSE", "--quiet": "ATTNLAB_QUIET", "-q": "ATTNLAB_QUIET"}
    while argv and argv[0] in flags:
        os.environ[flags[argv.pop(0)]] = "1"
    return argv


_FLAG_VARS = ("ATTNLAB_VERBOSE", "ATTNLAB_QUIET")


def main(argv: list[str] | None = None) -> int:
    """The command; the global flags' environment is restored afterwards, so an in-process
    caller (a test, a notebook) is not left quiet or verbose."""
    saved = {k: os.environ.get(k) for k in _FLAG_VARS}
    try:
        return _main(argv)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _main(argv: list[str] | None) -> int:
    from attnlab.console import quiet_libraries

    quiet_libraries()  # before TensorFlow, MLflow or matplotlib load
    argv = _global_flags(list(sys.argv[1:] if argv is None else argv))
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from attnlab.errors import AttnlabError, one_line

    try:
        if name == "train":
            return train_main(rest)
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except AttnlabError as e:
        if verbose():
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    from attnlab.console import filter_native_stderr

    filter_native_stderr()  # the console script only: TensorFlow's fixed notes leave stderr
    sys.exit(main())


if __name__ == "__main__":
    entry()
