"""The ``attnlab`` command. Subcommands import their (heavy) modules only when run.

``attnlab train [hydra overrides]`` hands its arguments to Hydra; every other subcommand
has its own ``--help``. Errors a user can fix print one line (``error: ...``) and exit 2;
``--verbose`` or ``HYDRA_FULL_ERROR=1`` shows the traceback.
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
}

USAGE = """usage: attnlab [--verbose] COMMAND [ARGS...]

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
"""


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    return USAGE.format(commands="\n".join(f"  {n:<{width}}  {d}" for n, (_, d) in COMMANDS.items()))


def verbose() -> bool:
    return bool(os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("ATTNLAB_VERBOSE") == "1")


def one_line(exc: BaseException) -> str:
    """Collapse a (possibly multi-line Hydra/OmegaConf) error message into one line."""
    from attnlab.errors import AttnlabError

    cur: BaseException | None = exc
    # Hydra wraps the task's exception; report the innermost attnlab error when there is one.
    while cur is not None:
        if isinstance(cur, AttnlabError):
            return str(cur).strip().splitlines()[0] if str(cur).strip() else type(cur).__name__
        cur = cur.__cause__ or cur.__context__
    lines = []
    text = str(exc)
    # Hydra's "Error merging override x=y" keeps the reason (allowed values, type) in its cause.
    if exc.__cause__ is not None and str(exc.__cause__).strip():
        text += "\n" + str(exc.__cause__)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("reference_type", "object_type", "Set the environment variable")):
            continue
        if line.startswith("Config search path"):
            break
        lines.append(line)
    text = "; ".join(lines) or type(exc).__name__
    text = text.replace("Available options in", "available options in").replace(":;", ":")
    return f"{type(exc).__name__}: {text}" if not lines else text


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
    from attnlab.train import last_run, train
    from attnlab.tracking import resolve_uri
    from attnlab.config import to_plain

    value = train(cfg)
    info = last_run()
    if info:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in info["metrics"].items() if k in ("val_accuracy", "test_accuracy"))
        uri = resolve_uri(to_plain(cfg.tracking))
        print(f"run {info['id']} FINISHED: {metrics}", flush=True)
        print(f"view it: mlflow ui --backend-store-uri {uri}  (then open http://127.0.0.1:5000)", flush=True)
    return value


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
    finally:
        sys.argv = old_argv
    return 0


def _quiet_defaults() -> None:
    """Library chatter a user did not ask for; each stays overridable from the environment."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import warnings

    warnings.filterwarnings("ignore", message=".*An input example was not provided.*")
    warnings.filterwarnings("ignore", message=".*Failed to infer signature from type hint.*")
    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_defaults()
    if argv and argv[0] == "--verbose":
        os.environ["ATTNLAB_VERBOSE"] = "1"
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from attnlab.errors import AttnlabError

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
    sys.exit(main())


if __name__ == "__main__":
    entry()
