"""Structured-config schema for attnlab, registered in Hydra's ConfigStore, and the checks a
composed config must pass before TensorFlow is imported.

Every default lives in ``conf/``: these dataclasses only fix *types* (fields are ``MISSING``),
so ``train.epochs=abc`` fails at composition with the key named. Components (encoder,
attention, pooling, optimizer, data source) are config nodes with a ``_target_``; their
arguments are checked by :mod:`attnlab.checks` (the same functions the layers run in
``__init__``), reached from :func:`validate`.

Each data source has its own schema (``schema/data/<name>``), included by its YAML file with
``- /schema/data/<name>@_here_``; a user's own data config needs none.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from attnlab import checks, components
from attnlab.errors import ConfigError

# Bumped whenever a config written by an older attnlab no longer composes here: runs record it
# (tag attnlab.config_layout) and `attnlab reproduce` refuses runs of another layout.
CONFIG_LAYOUT = 2


def project_root() -> Path:
    """The folder that holds ``conf/`` (the repository root of an editable install).

    ``ATTNLAB_ROOT`` overrides it, for an install whose package lives elsewhere.
    """
    env = os.environ.get("ATTNLAB_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    return project_root() / "conf"


# ----------------------------------------------------------------------------- data sources

@dataclass
class DataConfig:
    """Keys every data source has: its loader, its name and the options :func:`attnlab.data.load`
    applies after loading (``conf/common/data.yaml``)."""

    _target_: str = MISSING
    name: str = MISSING
    max_train_samples: Optional[int] = MISSING
    max_eval_samples: Optional[int] = MISSING
    lowercase: bool = MISSING
    inner_folds: Optional[int] = MISSING
    inner_fold: int = MISSING


@dataclass
class SyntheticData(DataConfig):
    task: str = MISSING
    n_train: int = MISSING
    n_val: int = MISSING
    n_test: int = MISSING
    n_classes: int = MISSING
    vocab_size: int = MISSING
    min_len: int = MISSING
    max_len: int = MISSING
    n_rationale: int = MISSING
    keywords_per_class: int = MISSING
    agree_rate: float = MISSING
    n_families: int = MISSING
    label_noise: float = MISSING
    split_seed: int = MISSING


@dataclass
class TableData(DataConfig):
    """A data source read from CSV / TSV / JSONL files."""

    text_column: str = MISSING
    label_column: str = MISSING
    format: str = MISSING
    val_fraction: float = MISSING


@dataclass
class MRData(TableData):
    path: str = MISSING
    n_folds: int = MISSING
    fold: int = MISSING
    split_seed: int = MISSING


@dataclass
class TRECData(TableData):
    train_path: str = MISSING
    test_path: str = MISSING
    split_seed: int = MISSING


@dataclass
class FilesData(TableData):
    train_path: str = MISSING
    val_path: Optional[str] = MISSING
    test_path: Optional[str] = MISSING
    test_fraction: float = MISSING
    split_seed: int = MISSING
    base_dir: str = MISSING


DATA_SCHEMAS = {"synthetic": SyntheticData, "mr": MRData, "trec": TRECData, "files": FilesData}


# ----------------------------------------------------------------------------- the run

@dataclass
class HeadConfig:
    hidden: int = MISSING
    dropout: float = MISSING
    max_norm: Optional[float] = MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    max_tokens: int = MISSING
    max_len: int = MISSING
    standardize: str = MISSING
    embedding_dim: int = MISSING
    embedding_init: float = MISSING
    embedding_dropout: float = MISSING
    # Components: {_target_: ..., <the layer's own arguments>}; untyped so a user's own
    # component brings its own keys.
    encoder: Any = MISSING
    attention: Any = MISSING
    pooling: Any = MISSING
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass
class EarlyStoppingConfig:
    monitor: str = MISSING
    mode: str = MISSING
    patience: int = MISSING
    restore_best_weights: bool = MISSING


@dataclass
class TrainConfig:
    optimizer: Any = MISSING  # component: {_target_: keras.optimizers.Adam, learning_rate: ...}
    epochs: int = MISSING
    batch_size: int = MISSING
    learning_rate: float = MISSING
    clipnorm: Optional[float] = MISSING
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    jit_compile: bool = MISSING
    deterministic: bool = MISSING
    threads: int = MISSING
    verbose: int = MISSING


@dataclass
class FaithfulnessConfig:
    enabled: bool = MISSING
    n: int = MISSING
    seed: int = MISSING
    eraser: bool = MISSING


@dataclass
class TrackingConfig:
    uri: Optional[str] = MISSING
    artifact_dir: str = MISSING
    experiment: str = MISSING
    run_name: Optional[str] = MISSING
    tags: dict[str, Any] = MISSING
    log_model: bool = MISSING
    n_attention_examples: int = MISSING
    parent_run_id: Optional[str] = MISSING
    probe_texts: Optional[list[str]] = MISSING
    probe_count: int = MISSING
    probe_max_tokens: int = MISSING
    epoch_images: bool = MISSING
    system_metrics: bool = MISSING
    system_metrics_interval: float = MISSING
    console: str = MISSING
    ui_url: str = MISSING
    faithfulness: FaithfulnessConfig = field(default_factory=FaithfulnessConfig)


@dataclass
class PathsConfig:
    root: str = MISSING
    data_dir: str = MISSING
    launch_dir: str = MISSING


@dataclass
class TfidfLRConfig:
    """``model=tfidf_lr``: the scikit-learn baseline (:mod:`attnlab.learners.tfidf`)."""

    _target_: str = MISSING
    _name_: str = MISSING
    name: str = MISSING
    ngram_max: int = MISSING
    C: float = MISSING
    sublinear_tf: bool = MISSING
    min_df: int = MISSING
    max_features: Optional[int] = MISSING
    max_iter: int = MISSING
    token_pattern: str = MISSING


# Each kind of model has its own schema (``schema/model/<kind>``), included by its YAML file
# with ``- /schema/model/<kind>@_here_``: a Keras model (conf/model/default.yaml and the
# presets built on it) or the TF-IDF baseline. A user's own model config needs none.
MODEL_SCHEMAS = {"keras": ModelConfig, "tfidf_lr": TfidfLRConfig}


@dataclass
class Config:
    data: Any = MISSING  # typed by the data source's own schema
    model: Any = MISSING  # typed by the model kind's own schema
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = MISSING
    name: Optional[str] = MISSING
    # Set by conf/experiment presets: the ablation a run belongs to, the config keys that
    # define its variant (run tags, grouped by `attnlab report`) and the reference variant.
    ablation: Optional[Any] = MISSING
    # Set by the Optuna sweeper for the job of one trial (attnlab.trial): not a hyperparameter.
    trial: Optional[Any] = None


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("attnlab.root"):
        OmegaConf.register_new_resolver("attnlab.root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("attnlab.cwd"):
        # No use_cache: OmegaConf keeps the cache on config nodes that Hydra reuses across
        # compositions in one process, which would pin the first launch dir forever.
        OmegaConf.register_new_resolver("attnlab.cwd", lambda: os.getcwd())


def register_configs() -> None:
    """Register the schemas and resolvers; idempotent, called before Hydra composes."""
    from hydra.core.config_store import ConfigStore

    _register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="attnlab_schema", node=Config)
    for name, schema in DATA_SCHEMAS.items():
        cs.store(group="schema/data", name=name, node=schema)
    for name, schema in MODEL_SCHEMAS.items():
        cs.store(group="schema/model", name=name, node=schema)


def to_plain(cfg: DictConfig | Any) -> Any:
    """Resolved config as plain dicts/lists/str."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return cfg


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: MLflow params are flat."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ----------------------------------------------------------------------------- validation

STANDARDIZE = ("lower", "lower_and_strip_punctuation", "none", "kim_clean_str")
MODES = ("max", "min")
CONSOLE = ("auto", "lines", "bar", "none")


def _at(path: str, fn: Callable[..., Any], value: Any, *args: Any) -> None:
    """``fn(name, value, *args)``; its ArgumentError becomes a ConfigError naming ``path``."""
    try:
        fn(path.rsplit(".", 1)[-1], value, *args)
    except checks.ArgumentError as e:
        raise components.config_error(e, path, value) from None


def _validate_model(m: Mapping[str, Any]) -> None:
    for key in ("attention", "pooling"):
        components.check(m[key], f"model.{key}")
    # An encoder that runs attention itself (its check takes `attention`) gets model.attention.
    encoder_check = checks.COMPONENT_CHECKS.get(str(m["encoder"].get("_target_")))
    takes = encoder_check is not None and "attention" in inspect.signature(encoder_check).parameters
    components.check(m["encoder"], "model.encoder", **({"attention": m["attention"]} if takes else {}))
    _at("model.max_len", checks.positive_int, m["max_len"])
    _at("model.max_tokens", checks.positive_int, m["max_tokens"])
    if m["max_tokens"] < 3:
        raise ConfigError(f"model.max_tokens={m['max_tokens']}: must be >= 3 (padding, OOV and a word)")
    _at("model.standardize", checks.one_of, m["standardize"], STANDARDIZE)
    _at("model.embedding_dim", checks.positive_int, m["embedding_dim"])
    _at("model.embedding_init", checks.positive_float, m["embedding_init"])
    _at("model.embedding_dropout", checks.rate, m["embedding_dropout"])
    _at("model.head.hidden", checks.non_negative_int, m["head"]["hidden"])
    _at("model.head.dropout", checks.rate, m["head"]["dropout"])
    if m["head"]["max_norm"] is not None:
        _at("model.head.max_norm", checks.positive_float, m["head"]["max_norm"])


def _validate_train(t: Mapping[str, Any]) -> None:
    components.check(t["optimizer"], "train.optimizer")
    _at("train.epochs", checks.positive_int, t["epochs"])
    _at("train.batch_size", checks.positive_int, t["batch_size"])
    _at("train.learning_rate", checks.positive_float, t["learning_rate"])
    if t["clipnorm"] is not None:
        _at("train.clipnorm", checks.positive_float, t["clipnorm"])
    _at("train.early_stopping.mode", checks.one_of, t["early_stopping"]["mode"], MODES)
    _at("train.early_stopping.patience", checks.non_negative_int, t["early_stopping"]["patience"])
    _at("train.threads", checks.non_negative_int, t["threads"])


def _validate_data(d: Mapping[str, Any]) -> None:
    components.check(d, "data")
    missing = [k for k in ("name", "max_train_samples", "max_eval_samples", "lowercase") if k not in d]
    if missing:
        raise ConfigError(f"data: missing {', '.join(missing)}; a data config includes the common options "
                          f"with `- /common/data@_here_` in its defaults list (see conf/data/mr.yaml)")


def _validate_tracking(t: Mapping[str, Any]) -> None:
    _at("tracking.n_attention_examples", checks.non_negative_int, t["n_attention_examples"])
    _at("tracking.probe_count", checks.non_negative_int, t["probe_count"])
    _at("tracking.probe_max_tokens", checks.positive_int, t["probe_max_tokens"])
    _at("tracking.system_metrics_interval", checks.positive_float, t["system_metrics_interval"])
    _at("tracking.console", checks.one_of, t["console"], CONSOLE)
    if t["probe_texts"] is not None and not all(isinstance(x, str) and x.strip() for x in t["probe_texts"]):
        raise ConfigError(f"tracking.probe_texts={t['probe_texts']!r}: must be a list of non-empty texts")
    _at("tracking.faithfulness.n", checks.positive_int, t["faithfulness"]["n"])
    _at("tracking.faithfulness.seed", checks.non_negative_int, t["faithfulness"]["seed"])


def validate(cfg: Mapping[str, Any]) -> None:
    """Every check a composed config must pass before data is read or TensorFlow loads.

    Raises:
        ConfigError: naming the key and the bad value.
    """
    _validate_data(cfg["data"])
    if "_target_" in cfg["model"]:  # a learner of its own (model=tfidf_lr), checked by its _target_
        components.check(cfg["model"], "model")
    else:
        _validate_model(cfg["model"])
    _validate_train(cfg["train"])
    _validate_tracking(cfg["tracking"])
    _at("seed", checks.non_negative_int, cfg["seed"])
