"""What a run is, before it runs: its plain config, variant, name and tags.

A *variant* is what a run varies against the defaults (``scale=constant,pool=max``); seed and
fold are replicates, never part of it. Run names append them; the variant string is the
``attnlab.variant`` tag that `attnlab report` groups by.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

from attnlab import __version__, components
from attnlab.config import CONFIG_LAYOUT, project_root, to_plain, validate

# Short names for run names and variant tags: the last key component unless listed here.
SHORT = {
    "model.attention.scale": "scale",
    "model.attention.mask": "mask",
    "model.attention.units": "units",
    "model.attention.heads": "heads",
    "model/attention": "attention",
    "model/pooling": "pool",
    "model/encoder": "encoder",
    "model.encoder.units": "encoder_units",
    "train.learning_rate": "lr",
    "train/optimizer": "optimizer",
}
# Execution settings: they do not change what is being compared (where results go, verbosity,
# how many CPU threads run it, the sweeper's trial, ...), so runs launched with different ones
# group together, and a resumed sweep may change them.
EXECUTION_SETTINGS = ("hydra", "tracking", "train.verbose", "train.threads", "paths", "hparams_search", "experiment",
                      "trial")
# Seed and fold are replicates of a variant, never part of it.
NOT_VARIANT = (*EXECUTION_SETTINGS, "seed", "data.fold")


@dataclass
class RunSpec:
    """A validated run description (built by :func:`describe`)."""

    config: dict[str, Any]  # the resolved config, plain Python values
    composed_yaml: str | None  # the config as composed (unresolved), for `attnlab reproduce`
    overrides: list[str]
    variant: list[tuple[str, str]]
    run_name: str
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def monitor(self) -> str:
        return str(self.config["train"]["early_stopping"]["monitor"])


def describe(cfg: Any, overrides: list[str] | None = None) -> RunSpec:
    """Validate ``cfg`` (a composed DictConfig or a plain dict) and describe the run.

    Raises:
        ConfigError: a bad value, before any data is read or TensorFlow is imported.
    """
    from omegaconf import OmegaConf

    composed = _composed_yaml(cfg) if OmegaConf.is_config(cfg) else None
    plain = {k: v for k, v in to_plain(cfg).items() if k != "trial"}
    validate(plain)
    overrides = hydra_overrides() if overrides is None else list(overrides)
    variant = variant_items(plain, overrides)
    name = plain["tracking"]["run_name"] or run_name_for(plain, variant)
    return RunSpec(plain, composed, overrides, variant, name, run_tags(plain, variant, overrides))


def _composed_yaml(cfg: Any) -> str:
    """The config as composed, without the sweeper's trial node: `attnlab reproduce` re-runs it plainly."""
    from omegaconf import OmegaConf, open_dict

    composed = cfg.copy()
    with open_dict(composed):
        composed.trial = None
    return OmegaConf.to_yaml(composed)


def hydra_overrides() -> list[str]:
    """The command-line overrides of the Hydra job running now ([] outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    # Less the sweeper's `trial` node: which trial a run is, not a setting (it is in the tags).
    return [o for o in HydraConfig.get().overrides.task if _override_key(o) != "trial"]


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _is_variant_key(key: str, ablation: Mapping[str, Any]) -> bool:
    dotted = key.replace("/", ".")
    if any(dotted == p or dotted.startswith(p + ".") for p in NOT_VARIANT):
        return False
    if dotted.startswith("data.") or (ablation and key == "data"):
        # Data keys are the data set's own tags; an ablation groups across data sets.
        return False
    return True


def value_of(plain: Mapping[str, Any], key: str) -> str | None:
    """A config key's value for a variant: a component's short name for a group key
    (``model/pooling`` -> ``max``), the model preset's name for ``model``."""
    node: Any = plain
    for part in key.replace("/", ".").split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return components.short_name(node) if isinstance(node, Mapping) else str(node)


def variant_items(plain: Mapping[str, Any], overrides: list[str]) -> list[tuple[str, str]]:
    """(short key, value) pairs that say what this run varies, for run names and tags."""
    ablation = plain.get("ablation") or {}
    keys = list(ablation.get("variant_keys") or [])
    extra = [k for k in dict.fromkeys(_override_key(o) for o in overrides)
             if _is_variant_key(k, ablation) and k not in keys]
    # Ablation runs: extra overrides sorted, so separate launches give the same variant string.
    keys += sorted(extra) if ablation else extra
    items: dict[str, str] = {}
    for key in keys:
        value = value_of(plain, key)
        if value is None:
            continue
        short = SHORT.get(key, key.replace("/", ".").split(".")[-1])
        # Two keys with one short name: the later keeps its full key, so neither value is lost.
        items[key if short in items else short] = value
    if not ablation.get("variant_keys") and "attention" in plain["model"]:  # a Keras model (tfidf_lr has none)
        att = plain["model"]["attention"]
        items.setdefault("scale", str(att["scale"]) if "scale" in att else components.short_name(att))
        items.setdefault("pool", components.short_name(plain["model"]["pooling"]))
    return list(items.items())


def run_name_for(plain: Mapping[str, Any], variant: list[tuple[str, str]]) -> str:
    parts = [f"{k}={v}" for k, v in variant]
    if "fold" in plain["data"] and "n_folds" in plain["data"]:
        parts.append(f"fold={plain['data']['fold']}")
    if plain["data"].get("inner_folds") is not None:
        parts.append(f"inner_fold={plain['data']['inner_fold']}")
    parts.append(f"seed={plain['seed']}")
    return ",".join(parts)


def run_tags(plain: Mapping[str, Any], variant: list[tuple[str, str]], overrides: list[str]) -> dict[str, Any]:
    """The tags every run carries: what it is (variant, data, model, seed), where it came from."""
    tags: dict[str, Any] = {
        "attnlab.data": plain["data"]["name"],
        "attnlab.model": plain["model"]["name"],
        "attnlab.variant": ",".join(f"{k}={v}" for k, v in variant),
        "attnlab.seed": plain["seed"],
        "attnlab.overrides": " ".join(overrides)[:5000],
        **provenance(),
        **{str(k): v for k, v in (plain["tracking"]["tags"] or {}).items()},
    }
    if "fold" in plain["data"] and "n_folds" in plain["data"]:
        tags["attnlab.fold"] = plain["data"]["fold"]
    if plain["data"].get("inner_folds") is not None:
        tags["attnlab.inner_fold"] = f"{plain['data']['inner_fold']}/{plain['data']['inner_folds']}"
    if plain.get("ablation"):
        tags["attnlab.ablation"] = plain["ablation"]["name"]
    return tags


def provenance() -> dict[str, str]:
    """attnlab's version, config layout and git commit (``+dirty`` with uncommitted changes)."""
    return {"attnlab.version": __version__, "attnlab.config_layout": str(CONFIG_LAYOUT),
            "attnlab.git_commit": git_commit()}


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit, or ``unknown`` outside a git checkout."""
    root = str(project_root())
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
