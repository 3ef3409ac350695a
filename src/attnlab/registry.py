"""``attnlab register``: register the best finished run's model and point an alias at it.

Selection is on a *validation* metric of FINISHED runs that logged a model (runs with
``tracking.log_model=false``, sweep parents and report runs have none and are skipped);
a ``test_*`` metric is refused, since choosing a model on test data leaks the test set
into the result it is judged by. The registered version is tagged with the run's variant and
its metrics (validation and test, for display). MLflow 3 aliases, not stages.

Idempotent: when the alias already points at the chosen run, or at a run at least as good
by the metric, nothing changes; a run already registered is reused, not registered twice.
Every move of the alias is recorded in the registry (:mod:`attnlab.history`); ``--rollback``
moves it back to the previous holder.

Defaults live in ``conf/registry/default.yaml`` (null keys follow ``conf/tracking`` and
``conf/train``). Imports neither Keras nor TensorFlow.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from attnlab import history, tracking
from attnlab.errors import AttnlabError, ConfigError, OneLineParser, first_line

# Run tags copied onto the registered version (besides the metrics).
_COPIED_TAGS = ("attnlab.variant", "attnlab.data", "attnlab.model", "attnlab.seed", "attnlab.fold",
                "attnlab.ablation", "optuna.study", "optuna.trial")
# Metrics copied onto the version as tags: what a person compares in the registry UI.
_METRIC_PREFIXES = ("val_", "test_", "best_val_")


def defaults() -> dict[str, Any]:
    """``conf/registry/default.yaml`` with its null keys filled from the training config."""
    from omegaconf import OmegaConf

    from attnlab.config import config_dir

    conf = config_dir()
    out = dict(OmegaConf.to_container(OmegaConf.load(conf / "registry" / "default.yaml")))
    if out.get("experiment") is None:
        out["experiment"] = str(OmegaConf.load(conf / "tracking" / "default.yaml")["experiment"])
    train = OmegaConf.load(conf / "train" / "default.yaml")["early_stopping"]
    if out.get("metric") is None:
        out["metric"] = str(train["monitor"])
    if out.get("mode") is None:
        out["mode"] = str(train["mode"])
    return out


def check_selection(metric: str, mode: str) -> None:
    """Refuse test metrics and unknown modes (raises ConfigError)."""
    if not metric:
        raise ConfigError("--metric is empty; give a validation metric such as val_accuracy")
    if metric.startswith("test_") or metric.startswith("best_test_"):
        raise ConfigError(
            f"--metric {metric}: refusing to select a model on a test metric (choosing on test data "
            f"leaks it into the score you report); use a validation metric such as val_accuracy"
        )
    if mode not in ("max", "min"):
        raise ConfigError(f"--mode {mode!r}: must be max or min")


@dataclass
class Selection:
    """The chosen run and its model, plus what was looked at (for messages)."""

    run: Any  # mlflow.entities.Run
    model: Any  # mlflow.entities.LoggedModel
    value: float
    counts: dict[str, int] = field(default_factory=dict)


def _logged_models(client, experiment_id: str) -> dict[str, Any]:
    """run id -> its READY logged model named ``model`` (the newest if several)."""
    from mlflow.entities import LoggedModelStatus

    by_run: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_logged_models([experiment_id], max_results=1000, page_token=token)
        for lm in page:
            if lm.name != tracking.MODEL_NAME or lm.status != LoggedModelStatus.READY or not lm.source_run_id:
                continue
            old = by_run.get(lm.source_run_id)
            if old is None or (lm.creation_timestamp or 0) > (old.creation_timestamp or 0):
                by_run[lm.source_run_id] = lm
        token = page.token
        if not token:
            return by_run


def select_best(client, experiment_id: str, metric: str, mode: str, filter_string: str = "") -> Selection:
    """The best FINISHED run with a logged model by ``metric`` (ties: the earliest run).

    Raises:
        AttnlabError: the filter is invalid, or no run qualifies (the message says why).
    """
    check_selection(metric, mode)
    models = _logged_models(client, experiment_id)
    counts = {"runs": 0, "finished": 0, "with_model": 0, "with_metric": 0, "non_finite": 0}
    best = None
    seen: set[str] = set()  # validation metrics of eligible runs, for the error message
    token = None
    while True:
        try:
            page = client.search_runs([experiment_id], filter_string=filter_string or "",
                                      max_results=1000, page_token=token)
        except Exception as e:  # noqa: BLE001 - MLflow's filter parser raises several types
            raise AttnlabError(f"--filter {filter_string!r}: {first_line(e)}") from e
        for run in page:
            counts["runs"] += 1
            if run.info.status != "FINISHED":
                continue
            counts["finished"] += 1
            if run.info.run_id not in models:
                continue
            counts["with_model"] += 1
            seen.update(k for k in run.data.metrics if k.startswith(("val_", "best_val_")))
            value = run.data.metrics.get(metric)
            if value is not None and not math.isfinite(value):
                counts["non_finite"] += 1
            if value is None or not math.isfinite(value):
                continue
            counts["with_metric"] += 1
            key = (value if mode == "max" else -value, -(run.info.start_time or 0))
            if best is None or key > best[0]:
                best = (key, run, value)
        token = page.token
        if not token:
            break
    if counts["non_finite"]:
        print(f"note: skipped {counts['non_finite']} run(s) whose {metric} is not finite (NaN or inf)",
              file=sys.stderr, flush=True)
    if best is None:
        where = f" matching --filter {filter_string!r}" if filter_string else ""
        raise AttnlabError(
            f"no run qualifies: {counts['runs']} run(s){where}, {counts['finished']} FINISHED, "
            f"{counts['with_model']} of those with a logged model, {counts['with_metric']} with metric "
            f"{metric!r}; register needs a FINISHED run that logged a model (tracking.log_model=true) "
            f"and the metric" + (f" (their validation metrics: {', '.join(sorted(seen))})" if seen else "")
        )
    _, run, value = best
    return Selection(run=run, model=models[run.info.run_id], value=float(value), counts=counts)


@dataclass
class Outcome:
    """What ``register`` did: ``changed`` False means the alias already held a run as good."""

    name: str
    alias: str
    version: str
    run_id: str
    metric: str
    value: float
    changed: bool
    created: bool  # a new version was created (False: an existing version of the run was reused)
    message: str


def _version_tags(run, metric: str, mode: str, experiment: str) -> dict[str, str]:
    tags = {k: str(run.data.tags[k]) for k in _COPIED_TAGS if k in run.data.tags}
    tags.update({k: f"{v:.6g}" for k, v in sorted(run.data.metrics.items()) if k.startswith(_METRIC_PREFIXES)})
    tags.update({"attnlab.selected_by": f"{metric} ({mode})", "attnlab.experiment": experiment,
                 "attnlab.run_name": run.info.run_name or ""})
    return tags


def _current(client, name: str, alias: str):
    """The version the alias points at, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _check_names(name: str, alias: str) -> None:
    for flag, value in (("--name", name), ("--alias", alias)):
        if not value or "'" in value or "/" in value or "@" in value:
            raise ConfigError(f"{flag} {value!r}: must be non-empty, without quotes, '/' or '@'")
    if alias.lower() == "latest" or (alias[:1] in "vV" and alias[1:].isdigit()):
        raise ConfigError(f"--alias {alias!r} is reserved by MLflow ('latest', 'v<number>'); pick another")


def open_experiment(uri: str, experiment: str) -> tuple[Any, Any]:
    """A client for ``uri`` and the (active) experiment named ``experiment``.

    Raises:
        AttnlabError: the store cannot be used, or has no such experiment.
    """
    try:
        client = tracking.client(uri)
        exp = client.get_experiment_by_name(experiment)
        tracking.reap_dead_runs(client)  # a killed run must not stay RUNNING (nor be chosen)
    except Exception as e:  # noqa: BLE001 - unreachable server or database, bad URI: one user problem
        raise AttnlabError(f"tracking uri {uri}: cannot use the MLflow store ({first_line(e)})") from e
    if exp is None or exp.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments())
        raise AttnlabError(f"no experiment named {experiment!r} in {uri} (experiments: {', '.join(names) or 'none'})")
    return client, exp


def _unchanged(client, sel: Selection, name: str, alias: str, metric: str, mode: str) -> Outcome | None:
    """An Outcome saying nothing changes when the alias already holds a run at least as good."""
    from mlflow.exceptions import MlflowException

    current = _current(client, name, alias)
    if current is None:
        return None
    run_id = sel.run.info.run_id
    held = sel.value if current.run_id == run_id else None
    if current.run_id != run_id and current.run_id:
        try:
            held = client.get_run(current.run_id).data.metrics.get(metric)
        except MlflowException:
            held = None  # the run behind the alias is gone: replace it
    if held is None or not math.isfinite(held) or (held < sel.value if mode == "max" else held > sel.value):
        return None
    why = ("it already points at the best run" if current.run_id == run_id else
           f"it holds run {current.run_id} with {metric}={held:.4f}, at least as good as the best candidate "
           f"{run_id} ({metric}={sel.value:.4f}); --force moves it anyway")
    return Outcome(name, alias, str(current.version), current.run_id, metric, float(held), False, False,
                   f"unchanged: {name}@{alias} is version {current.version}; {why}")


def _version_for(client, uri: str, sel: Selection, name: str, description: str, tags: dict[str, str]) -> tuple[Any, bool]:
    """The run's model version under ``name``: an existing one reused, else a new one (created=True)."""
    from mlflow.exceptions import MlflowException

    run_id = sel.run.info.run_id
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        return max(existing, key=lambda v: int(v.version)), False
    try:
        client.create_registered_model(
            name, description="attnlab text classifiers: raw strings -> label, probabilities, attention")
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise AttnlabError(f"cannot create registered model {name!r} in {uri}: {first_line(e)}") from e
    with tracking.uri_scope(uri):  # the registry looks the logged model up in the *global* store
        mv = client.create_model_version(name, source=sel.model.model_uri, run_id=run_id,
                                         model_id=sel.model.model_id, tags=tags, description=description)
    return mv, True


def register(experiment: str, metric: str, mode: str, filter_string: str = "", name: str = "attnlab",
             alias: str = "champion", uri: str | None = None, force: bool = False, command: str = "") -> Outcome:
    """Register the best run's model under ``name`` and point ``alias`` at it.

    Args:
        force: move the alias even when it holds a run that is as good or better
            (e.g. after narrowing ``filter_string`` to another data set).
        command: the command line, recorded with the move in the alias history.

    Raises:
        AttnlabError: bad arguments, an unknown experiment, or no qualifying run.
    """
    check_selection(metric, mode)
    _check_names(name, alias)
    uri = tracking.launch_uri(uri)
    client, exp = open_experiment(uri, experiment)
    sel = select_best(client, exp.experiment_id, metric, mode, filter_string)
    unchanged = None if force else _unchanged(client, sel, name, alias, metric, mode)
    if unchanged is not None:
        return unchanged
    run_id, variant = sel.run.info.run_id, sel.run.data.tags.get("attnlab.variant", "")
    where = f", filter {filter_string!r}" if filter_string else ""
    description = (f"best of {sel.counts['with_metric']} finished run(s) in experiment {experiment!r} by "
                   f"{metric} ({mode}{where}): {variant}")
    mv, created = _version_for(client, uri, sel, name, description, _version_tags(sel.run, metric, mode, experiment))
    previous = _current(client, name, alias)
    client.set_registered_model_alias(name, alias, str(mv.version))
    history.record(client, name, alias, None if previous is None else str(previous.version), str(mv.version),
                   run_id, metric, sel.value, command or "attnlab register")
    verb = "registered" if created else "reused"
    return Outcome(name, alias, str(mv.version), run_id, metric, sel.value, True, created,
                   f"{verb} {name} version {mv.version} (run {run_id}, {metric}={sel.value:.4f}, {variant}); "
                   f"alias {alias} -> version {mv.version}")


def build_parser(d: dict[str, Any]) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="attnlab register",
        description="Register the model of the best FINISHED run (by a validation metric) and point an alias at it. "
                    "Running it again with nothing better changes nothing.",
        epilog="example: attnlab register --experiment attnlab --metric val_accuracy --mode max "
               "--filter \"tags.`attnlab.data` = 'mr'\" --name attnlab-mr --alias champion",
    )
    p.add_argument("--experiment", default=d["experiment"], help="MLflow experiment name (default: %(default)s)")
    p.add_argument("--metric", default=d["metric"],
                   help="validation metric to select by; test_* is refused (default: %(default)s)")
    p.add_argument("--mode", default=d["mode"], choices=("max", "min"), help="default: %(default)s")
    p.add_argument("--filter", default="", dest="filter_string",
                   help="MLflow search filter on runs, e.g. \"params.`model.attention.scale` = 'sqrt_dk'\"")
    p.add_argument("--name", default=d["name"], help="registered model name (default: %(default)s)")
    p.add_argument("--alias", default=d["alias"], help="alias to point at the best version (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="move the alias even if it holds a run that is as good by the metric")
    p.add_argument("--rollback", action="store_true",
                   help="move the alias back to its previous holder (see `attnlab history`); selects nothing")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)")
    return p


def main(argv: list[str]) -> int:
    """``attnlab register``; prints what it did (or why nothing changed) and returns 0."""
    args = build_parser(defaults()).parse_args(argv)
    command = history.command_line("attnlab register", argv)
    if args.rollback:
        _check_names(args.name, args.alias)
        print(history.rollback(tracking.client(tracking.launch_uri(args.tracking_uri), must_exist=True),
                               args.name, args.alias, command))
        return 0
    out = register(args.experiment, args.metric, args.mode, args.filter_string, args.name, args.alias,
                   args.tracking_uri, args.force, command)
    print(out.message)
    print(f"use it: attnlab predict --model models:/{out.name}@{out.alias} \"some text\"")
    sys.stdout.flush()
    return 0
