"""Everything a sweep needs, checked before the study or any trial exists.

Hydra's typed config already refused wrong types and unknown keys; Optuna refuses bad
distributions, samplers and pruners (:mod:`.search_space`). What is left is checked here:
search-space keys that are not in the config or whose values do not compose, the launcher
(``n_jobs > 1`` needs one process per trial; jobs on other hosts need shared stores), and
counts and intervals. Every problem is one :class:`~attnlab.errors.ConfigError` line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf, open_dict

from attnlab.errors import ConfigError

from . import search_space as ss

log = logging.getLogger(__name__)

# Launchers that run a job inside the sweeper's process (one TensorFlow per process: n_jobs=1).
IN_PROCESS_LAUNCHERS = ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",)
# Launchers whose jobs may run on other hosts (they cannot open a file on the sweeper's host).
OTHER_HOST_LAUNCHERS = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                        "hydra_plugins.hydra_ray_launcher.ray_aws_launcher.RayAWSLauncher")


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True) if OmegaConf.is_config(node) else node


@dataclass
class Settings:
    base: list[str]  # the command's overrides: the same for every trial
    dists: dict[str, Any]  # config key -> Optuna distribution
    direction: str
    n_trials: int
    n_jobs: int
    study_name: str
    storage: str
    tracking: dict[str, Any]  # the trials' tracking config (plain)
    tracking_uri: str
    monitor: str
    sampler: dict[str, Any] | None  # `_target_` nodes (plain); null: Optuna's default / no pruning
    pruner: dict[str, Any] | None
    fixed: dict[str, Any] = field(default_factory=dict)  # composed settings every trial shares
    replicates: dict[str, Any] | None = None  # {"seeds": [...]} or {"folds": K}; None: one run per trial


def refuse_sweep_overrides(arguments: list[str]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for ov in OverridesParser.create().parse_overrides(arguments):
        if ov.is_sweep_override():
            raise ConfigError(f"{ov.input_line}: a sweep override under the Optuna sweeper; "
                              f"put the search space in hydra.sweeper.params")


def check_counts(c: Mapping[str, Any]) -> None:
    for key in ("n_trials", "n_jobs", "heartbeat_interval", "grace_period", "max_consecutive_failures"):
        if c[key] < 1:
            raise ConfigError(f"hydra.sweeper.{key}={c[key]!r}: must be >= 1")
    if c["grace_period"] <= c["heartbeat_interval"]:
        raise ConfigError(f"hydra.sweeper.grace_period={c['grace_period']}: must exceed "
                          f"hydra.sweeper.heartbeat_interval={c['heartbeat_interval']}")
    if c["max_retry"] < 0:
        raise ConfigError(f"hydra.sweeper.max_retry={c['max_retry']!r}: must be >= 0")


def check_key(loader, config: DictConfig, job: DictConfig, base: list[str], key: str, dist: Any) -> None:
    """The key exists and every categorical choice (or a numeric bound) composes into a config
    that passes attnlab's checks (``attnlab.config.validate``: a value the layer refuses)."""
    node = OmegaConf.select(job, key, default="__missing__", throw_on_missing=False)
    choices = job.hydra.runtime.choices if "hydra" in job else {}
    if isinstance(node, str) and node == "__missing__" and key not in choices:
        raise ConfigError(f"hydra.sweeper.params.{key}: no such config key")
    if OmegaConf.is_config(node) and key not in choices:
        raise ConfigError(f"hydra.sweeper.params.{key}: is a config section, not a value or a group")
    from attnlab.config import to_plain, validate
    from attnlab.errors import one_line

    for v in list(dist.choices) if hasattr(dist, "choices") else [dist.low, dist.high]:
        try:
            composed = loader.load_sweep_config(config, [*base, f"{key}={ss.override_value(v)}"])
            with open_dict(composed):
                del composed["hydra"]
            validate(to_plain(composed))
        except Exception as e:  # noqa: BLE001 - Hydra/OmegaConf composition errors, attnlab's checks
            raise ConfigError(f"hydra.sweeper.params.{key}: value {v!r} does not compose ({one_line(e)})") from e


def _check_seeds(seeds: Any, dists: Mapping[str, Any]) -> dict[str, Any]:
    key = "hydra.sweeper.replicates.seeds"
    if not seeds:
        raise ConfigError(f"{key}={seeds!r}: needs at least one seed")
    bad = [s for s in seeds if not 0 <= s < 2**32]
    if bad:
        raise ConfigError(f"{key}={seeds!r}: seed {bad[0]!r} is not in [0, 2**32)")
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"{key}={seeds!r}: repeats seed {next(s for s in seeds if seeds.count(s) > 1)!r}")
    if "seed" in dists:
        raise ConfigError(f"{key}={seeds!r}: seed is also searched (hydra.sweeper.params.seed); "
                          f"each replicate sets its own seed")
    return {"seeds": [int(s) for s in seeds]}


def _check_folds(folds: int, dists: Mapping[str, Any], job: DictConfig) -> dict[str, Any]:
    key = "hydra.sweeper.replicates.folds"
    if folds < 2:
        raise ConfigError(f"{key}={folds!r}: must be >= 2 (K-fold cross-validation inside the training part)")
    searched = [k for k in dists if k in ("data.inner_folds", "data.inner_fold")]
    if searched:
        raise ConfigError(f"{key}={folds}: {searched[0]} is also searched (hydra.sweeper.params); "
                          f"the replicates set data.inner_folds and data.inner_fold")
    if "split_seed" not in job.data:
        raise ConfigError(f"{key}={folds}: data {job.data.get('name')!r} has no data.split_seed to fix the folds; "
                          f"use hydra.sweeper.replicates={{seeds: [0, 1, 2]}}")
    return {"folds": int(folds)}


def check_replicates(rep: Mapping[str, Any] | None, dists: Mapping[str, Any], job: DictConfig) -> dict[str, Any] | None:
    """``hydra.sweeper.replicates``: None (null, or both keys null), ``{"seeds": [distinct seeds]}``
    or ``{"folds": K >= 2}``."""
    seeds, folds = (rep or {}).get("seeds"), (rep or {}).get("folds")
    if seeds is None and folds is None:
        return None
    if seeds is not None and folds is not None:
        raise ConfigError(f"hydra.sweeper.replicates={dict(rep)!r}: set one of seeds and folds, the other null "
                          f"(e.g. hydra.sweeper.replicates.folds=null)")
    return _check_seeds(list(seeds), dists) if seeds is not None else _check_folds(folds, dists, job)


def _is_local_file(url: str) -> bool:
    return url.startswith(("sqlite:", "file:")) or "://" not in url


def check_launcher(config: DictConfig, n_jobs: int, storage: str, tracking_uri: str) -> None:
    """n_jobs > 1 needs a process per trial; jobs on other hosts need stores they can reach."""
    target = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
    name = OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/launcher", target)
    if n_jobs > 1 and target in IN_PROCESS_LAUNCHERS:
        raise ConfigError(f"hydra.sweeper.n_jobs={n_jobs}: hydra/launcher={name} runs trials in this process "
                          f"(one TensorFlow per process); add hydra/launcher=submitit_local "
                          f"(or submitit_slurm on a cluster), or set hydra.sweeper.n_jobs=1")
    if target not in OTHER_HOST_LAUNCHERS:
        return
    where = f"a file on this host, and hydra/launcher={name} runs jobs on other hosts"
    if _is_local_file(storage):
        raise ConfigError(f"hydra.sweeper.storage={storage} is {where}: use PostgreSQL, e.g. "
                          f"hydra.sweeper.storage=postgresql://USER@DBHOST:5432/attnlab_sweeps")
    if _is_local_file(tracking_uri):
        raise ConfigError(f"tracking.uri={tracking_uri} is {where}: use PostgreSQL or an MLflow server, e.g. "
                          f"tracking.uri=postgresql://USER@DBHOST:5432/attnlab_mlflow or "
                          f"tracking.uri=http://MLFLOW_HOST:5000")


def fixed_config(job: DictConfig, searched: list[str]) -> dict[str, Any]:
    """The composed (unresolved) settings every trial shares, as ``{flat key: value}``: not
    the searched keys, not execution settings (where results go, verbosity, threads, paths)."""
    from attnlab.config import flatten
    from attnlab.run_spec import EXECUTION_SETTINGS

    tree = OmegaConf.to_container(job, resolve=False, enum_to_str=True)
    tree.pop("hydra", None)
    flat = flatten(tree)
    keep = {k: v for k, v in flat.items()
            if not k.startswith(EXECUTION_SETTINGS) and not any(k == p or k.startswith(p + ".") for p in searched)}
    return json.loads(json.dumps(keep, default=str))  # as the study's user attrs will give it back


def _n_trials(c: Mapping[str, Any], dists: Mapping[str, Any]) -> int:
    n = int(c["n_trials"])
    if ss.is_grid(c.get("sampler")) and n > ss.grid_size(dists):
        log.warning("hydra.sweeper.n_trials=%d exceeds the grid's %d points; running %d", n, ss.grid_size(dists),
                    ss.grid_size(dists))
        return ss.grid_size(dists)
    return n


def load_settings(c: Mapping[str, Any], config: DictConfig, loader, arguments: list[str]) -> Settings:
    """The sweep's settings from the sweeper's config ``c`` (plain) and this command's overrides."""
    from attnlab.tracking import resolve_uri

    refuse_sweep_overrides(arguments)
    check_counts(c)
    base = list(arguments)
    job = loader.load_sweep_config(config, base)
    dists = ss.parse_params(c.get("params"))
    ss.make_sampler(c.get("sampler"), dists)
    ss.make_pruner(c.get("pruner"))
    trk = plain(job.tracking)
    preset = OmegaConf.select(job, "hydra.runtime.choices", default={}).get("hparams_search")
    mode = plain(job.train.early_stopping)["mode"]
    settings = Settings(
        base=base, dists=dists, direction=c.get("direction") or ("maximize" if mode == "max" else "minimize"),
        n_trials=_n_trials(c, dists), n_jobs=int(c["n_jobs"]),
        study_name=str(c.get("study_name") or (f"{trk['experiment']}-{preset}" if preset else trk["experiment"])),
        storage=str(c.get("storage") or f"sqlite:///{plain(job.paths.launch_dir)}/optuna.db"),
        tracking=trk, tracking_uri=resolve_uri(trk), monitor=str(plain(job.train.early_stopping)["monitor"]),
        sampler=c.get("sampler"), pruner=c.get("pruner"), fixed=fixed_config(job, list(dists)),
        replicates=check_replicates(c.get("replicates"), dists, job))
    if settings.replicates is not None:  # a resumed study must average over the same replicates
        settings.fixed["hydra.sweeper.replicates"] = settings.replicates
    check_launcher(config, settings.n_jobs, settings.storage, settings.tracking_uri)
    for key, dist in dists.items():  # last: one composition per value
        check_key(loader, config, job, base, key, dist)
    return settings
