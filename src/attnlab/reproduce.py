"""``attnlab reproduce RUN_ID [overrides]``: re-run a logged run and compare its metrics.

The run's ``config_composed.yaml`` (logged unresolved, so paths re-resolve on this machine;
``config.yaml``, fully resolved, for runs that lack it) is checked against the structured
schema, overrides (``key=value``, OmegaConf dotlist) are applied, and the data files are
hashed: when a file's sha256 differs from the ``attnlab.data.sha256.<name>`` tag the run
logged, reproduce refuses before training. The new run lands in the same MLflow store and
experiment, tagged ``reproduces=<RUN_ID>``; each metric is printed next to the original's.
With the same seed on CPU (``train.deterministic=true``) the metrics match to 1e-6.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from attnlab import datasets, tracking
from attnlab.config import CONFIG_LAYOUT
from attnlab.errors import AttnlabError, ConfigError, DataError, first_line
from attnlab.report import REPRODUCES_TAG

SHA_TAG_PREFIX = "attnlab.data.sha256."
# Which data config key holds the file each sha256 tag names (see attnlab.data loaders).
_FILE_KEYS = {"data": "path", "train": "train_path", "val": "val_path", "test": "test_path"}
# Keras model keys added after runs of this config layout were logged, with the value those
# runs had (Keras' default uniform init in [-0.05, 0.05]; no max-norm): they reproduce unchanged.
KERAS_KEYS_ADDED = {"embedding_init": 0.05, "head": {"max_norm": None}}


def load_run_config(client, run_id: str) -> tuple[DictConfig, str]:
    """The run's composed config (schema-typed) and which artifact it came from."""
    from attnlab.config import Config, config_dir, register_configs

    register_configs()  # the resolvers (${attnlab.root:}, ${attnlab.cwd:}) the composed file uses
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("config_composed.yaml", "config.yaml"):
            try:
                local = client.download_artifacts(run_id, name, tmp)
            except Exception:  # noqa: BLE001 - absent artifact: try the next one
                continue
            loaded = OmegaConf.load(local)
            break
        else:
            raise AttnlabError(f"run {run_id} has no config_composed.yaml or config.yaml artifact: it was not logged by attnlab train")
    schema = OmegaConf.structured(Config)
    # tracking keys added since the run (what it shows, never what it computes) take today's defaults
    display = {"tracking": OmegaConf.load(config_dir() / "tracking" / "default.yaml")}
    # Keras model keys added since (not defaults: the values every run before them had)
    added = {"model": KERAS_KEYS_ADDED} if "_target_" not in (loaded.get("model") or {}) else {}
    try:
        return OmegaConf.merge(schema, display, added, loaded), name
    except Exception as e:  # noqa: BLE001 - a config from another attnlab version
        raise ConfigError(f"run {run_id}: its {name} does not fit this attnlab's config schema ({first_line(e)})") from e


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """``key=value`` overrides on the run's config; an unknown key or a bad value is a ConfigError."""
    for ov in overrides:
        if "=" not in ov or ov.startswith("="):
            raise ConfigError(f"override {ov!r}: expected key=value (e.g. train.epochs=5)")
    was_struct = OmegaConf.is_struct(cfg)
    OmegaConf.set_struct(cfg, True)  # untyped nodes (model, components) refuse unknown keys too
    try:
        merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except Exception as e:  # noqa: BLE001 - OmegaConf's messages span several lines
        first = first_line(e)
        raise ConfigError(f"override {' '.join(overrides)!r}: {first}") from e
    finally:
        OmegaConf.set_struct(cfg, was_struct)
    OmegaConf.set_struct(merged, was_struct)
    return merged


def check_data(plain: Mapping[str, Any], tags: Mapping[str, str], run_id: str) -> dict[str, str]:
    """Hash the data files the config points at and compare with the run's sha256 tags.

    Returns:
        {logical file name: path} of the files checked.

    Raises:
        DataError: a file is missing or its sha256 differs (naming the file).
    """
    from attnlab.data.dataset import resolve_path, sha256_file

    data_cfg = plain["data"]
    checked: dict[str, str] = {}
    for tag, logged in sorted(tags.items()):
        if not tag.startswith(SHA_TAG_PREFIX):
            continue
        name = tag[len(SHA_TAG_PREFIX):]
        key = _FILE_KEYS.get(name)
        if key is None:
            raise DataError(f"run {run_id} logged the sha256 of a data file {name!r} that reproduce does not know how to find")
        if data_cfg.get(key) is None:
            raise DataError(f"run {run_id} read a {name} file but data.{key} is not set now")
        path = resolve_path(data_cfg[key], data_cfg.get("base_dir"))
        if not path.is_file():
            raise DataError(f"data file {path} (data.{key}) does not exist; run {run_id} read it with sha256 {logged[:12]}…")
        now = sha256_file(path)
        if now != logged:
            raise DataError(f"data file {path} (data.{key}) changed since run {run_id}: sha256 {now[:12]}… "
                            f"now, {logged[:12]}… then; refusing to reproduce on different data")
        checked[name] = str(path)
    return checked


def _is_timing(name: str) -> bool:
    """Wall-clock times and system metrics (machine load): they differ by nature."""
    return name.startswith(("time_", "system/"))


def compare_metrics(old: Mapping[str, float], new: Mapping[str, float]) -> list[tuple[str, float, float, float]]:
    """(metric, original, reproduced, difference) for every metric either run has, timings excluded."""
    rows = []
    for k in sorted(set(old) | set(new)):
        if _is_timing(k):
            continue  # wall-clock times differ by nature
        a, b = old.get(k, math.nan), new.get(k, math.nan)
        rows.append((k, a, b, b - a))
    return rows


def check_original(run: Any) -> None:
    """Refuse a run that did not finish, or one logged under another config layout (with the
    attnlab version and commit that can reproduce it)."""
    run_id = run.info.run_id
    if run.info.status != "FINISHED":
        raise AttnlabError(f"run {run_id} is {run.info.status}, not FINISHED: its metrics are partial, "
                           f"so there is nothing to compare against")
    tags = run.data.tags
    layout = int(tags.get("attnlab.config_layout", "1"))
    if layout != CONFIG_LAYOUT:
        version = tags.get("attnlab.version", "0.1.0")
        commit = tags.get("attnlab.git_commit", "")
        where = f" (git checkout {commit.removesuffix('+dirty')})" if commit and commit != "unknown" else ""
        raise AttnlabError(f"run {run_id} was logged by attnlab {version} with config layout {layout}; this attnlab "
                           f"reads layout {CONFIG_LAYOUT}: reproduce it with attnlab {version}{where}")


def _reproduction_tags(run: Any, overrides: list[str]) -> dict[str, str]:
    tags = {REPRODUCES_TAG: run.info.run_id}
    if overrides:
        tags["attnlab.reproduce.overrides"] = " ".join(overrides)[:5000]
        return tags
    # The same run again: keep its variant and recorded overrides, which train() derives
    # from Hydra's command line (absent here).
    return {**tags, **{k: run.data.tags[k] for k in ("attnlab.variant", "attnlab.overrides") if k in run.data.tags}}


def reproduce(run_id: str, overrides: list[str] | None = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """Re-run ``run_id`` from its logged config (with ``overrides``) and compare its metrics.

    Returns:
        {"run_id": new id, "original": id, "rows": compare_metrics(...), "files": checked files,
        "config_source": artifact name}.

    Raises:
        AttnlabError: unknown or unfinished run, another config layout, a config that does not
        fit, a changed or missing data file.
    """
    from attnlab.config import to_plain
    from attnlab.train import train

    overrides = list(overrides or [])
    uri = tracking.launch_uri(tracking_uri)
    client = tracking.client(uri, must_exist=True)
    try:
        run = client.get_run(run_id)
    except Exception as e:  # noqa: BLE001 - MLflow raises for unknown ids
        raise AttnlabError(f"run {run_id!r} not found in {uri}") from e
    check_original(run)
    cfg, source = load_run_config(client, run_id)
    cfg = apply_overrides(cfg, overrides)
    # Log next to the original (same store; the experiment comes from the config) unless overridden.
    if not any(o.split("=", 1)[0] == "tracking.uri" for o in overrides):
        cfg.tracking.uri = uri
    cfg.tracking.tags = {**dict(cfg.tracking.tags or {}), **_reproduction_tags(run, overrides)}
    if not cfg.tracking.run_name:
        cfg.tracking.run_name = f"reproduce:{run.info.run_name or run_id}"
    try:
        plain = to_plain(cfg)
    except Exception as e:  # noqa: BLE001 - an interpolation that cannot resolve here
        raise ConfigError(f"run {run_id}: its config does not resolve on this machine ({first_line(e)})") from e
    files = check_data(plain, run.data.tags, run_id)
    datasets.check_same_data(plain, run)  # each split's content against the run's dataset inputs
    result = train(cfg)
    new = client.get_run(result.run_id)
    return {"run_id": result.run_id, "original": run_id, "rows": compare_metrics(run.data.metrics, new.data.metrics),
            "files": files, "config_source": source}


def format_rows(rows: list[tuple[str, float, float, float]], tolerance: float) -> str:
    width = max([len(r[0]) for r in rows] + [6])
    out = [f"{'metric':<{width}}  {'original':>12}  {'reproduced':>12}  {'difference':>12}"]
    for k, a, b, d in rows:
        flag = "" if abs(d) <= tolerance else "  *"
        out.append(f"{k:<{width}}  {a:>12.6f}  {b:>12.6f}  {d:>+12.2e}{flag}")
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attnlab reproduce",
        description="Re-run a logged run from its composed config (refusing if the data files changed) "
                    "and print each metric's difference.")
    p.add_argument("run_id", help="the MLflow run id to reproduce")
    p.add_argument("overrides", nargs="*", help="config overrides, key=value (e.g. train.epochs=5)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--tolerance", type=float, default=1e-6,
                   help="largest |difference| counted as a match (default 1e-6)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a metric differs by more than the tolerance")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    res = reproduce(args.run_id, args.overrides, args.tracking_uri)
    rows = res["rows"]
    print(f"reproduced run {res['original']} as {res['run_id']} (config from {res['config_source']}; "
          f"data checked: {', '.join(f'{k}={v}' for k, v in res['files'].items()) or 'generated, no files'})")
    print(format_rows(rows, args.tolerance))
    bad = [r[0] for r in rows if not abs(r[3]) <= args.tolerance]
    if bad:
        print(f"{len(bad)} of {len(rows)} metrics differ by more than {args.tolerance:g} (marked *): {', '.join(bad)}"
              + (" (expected: you passed overrides)" if args.overrides else ""))
    else:
        print(f"all {len(rows)} metrics match to {args.tolerance:g} (timings excluded)")
    return 1 if bad and args.strict else 0
