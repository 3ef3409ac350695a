"""Structured-config schema for attnlab, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` hold every default; these dataclasses only fix the *types*
and the allowed values, so ``model.attention.scale=foo`` or ``train.epochs=abc`` fails at
composition with the key named, before any run starts. Enum fields come back from OmegaConf
as Enum members; :func:`to_plain` turns a config into plain Python values for the builders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf


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


class Scale(str, Enum):
    sqrt_dk = "sqrt_dk"
    constant = "constant"
    none = "none"
    learned = "learned"


class MaskMode(str, Enum):
    none = "none"
    keys = "keys"
    keys_and_queries = "keys_and_queries"


class Pooling(str, Enum):
    mean = "mean"
    max = "max"
    first = "first"
    last = "last"
    attention = "attention"
    flatten = "flatten"


class Encoder(str, Enum):
    bilstm = "bilstm"
    cnn = "cnn"
    none = "none"


class AttentionType(str, Enum):
    self = "self"
    seed = "seed"


class Standardize(str, Enum):
    lower = "lower"
    lower_and_strip_punctuation = "lower_and_strip_punctuation"
    none = "none"


class DataName(str, Enum):
    synthetic = "synthetic"
    mr = "mr"
    trec = "trec"
    files = "files"


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    rmsprop = "rmsprop"


class Mode(str, Enum):
    max = "max"
    min = "min"


@dataclass
class EncoderConfig:
    type: Encoder = MISSING
    units: int = MISSING
    dropout: float = MISSING
    kernel_sizes: List[int] = MISSING


@dataclass
class AttentionConfig:
    type: AttentionType = MISSING
    units: int = MISSING
    heads: int = MISSING
    scale: Scale = MISSING
    scale_constant: float = MISSING
    mask: MaskMode = MISSING
    dropout: float = MISSING
    use_bias: bool = MISSING
    residual: bool = MISSING


@dataclass
class PoolingConfig:
    type: Pooling = MISSING


@dataclass
class HeadConfig:
    hidden: int = MISSING
    dropout: float = MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    max_tokens: int = MISSING
    max_len: int = MISSING
    standardize: Standardize = MISSING
    embedding_dim: int = MISSING
    embedding_dropout: float = MISSING
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass
class DataConfig:
    """Superset of every dataset's keys; each data/*.yaml sets the ones it uses."""

    name: DataName = MISSING
    text_column: str = "text"
    label_column: str = "label"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    lowercase: bool = True
    # synthetic
    n_train: Optional[int] = None
    n_val: Optional[int] = None
    n_test: Optional[int] = None
    n_classes: Optional[int] = None
    vocab_size: Optional[int] = None
    min_len: Optional[int] = None
    max_len: Optional[int] = None
    n_rationale: Optional[int] = None
    keywords_per_class: Optional[int] = None
    label_noise: Optional[float] = None
    # mr
    path: Optional[str] = None
    n_folds: Optional[int] = None
    fold: Optional[int] = None
    split_seed: Optional[int] = None
    # trec / files
    train_path: Optional[str] = None
    val_path: Optional[str] = None
    test_path: Optional[str] = None
    format: Optional[str] = None
    base_dir: Optional[str] = None


@dataclass
class EarlyStoppingConfig:
    monitor: str = MISSING
    mode: Mode = MISSING
    patience: int = MISSING
    restore_best_weights: bool = MISSING


@dataclass
class TrainConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    optimizer: Optimizer = MISSING
    learning_rate: float = MISSING
    weight_decay: float = MISSING
    clipnorm: Optional[float] = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    jit_compile: bool = MISSING
    deterministic: bool = MISSING
    threads: int = MISSING
    verbose: int = MISSING


@dataclass
class TrackingConfig:
    uri: Optional[str] = None
    artifact_dir: str = MISSING
    experiment: str = MISSING
    run_name: Optional[str] = None
    tags: dict[str, Any] = field(default_factory=dict)
    log_model: bool = MISSING
    n_attention_examples: int = MISSING
    parent_run_id: Optional[str] = None


@dataclass
class PathsConfig:
    root: str = MISSING
    data_dir: str = MISSING
    launch_dir: str = MISSING


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    name: Optional[str] = None
    # Set by conf/experiment presets: the ablation a run belongs to and the config keys that
    # define its variant (written as run tags, grouped by `attnlab report`).
    ablation: Optional[dict[str, Any]] = None


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("attnlab.root"):
        OmegaConf.register_new_resolver("attnlab.root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("attnlab.cwd"):
        # No use_cache: OmegaConf keeps the cache on config nodes that Hydra reuses across
        # compositions in one process, which would pin the first launch dir forever.
        OmegaConf.register_new_resolver("attnlab.cwd", lambda: os.getcwd())


def register_configs() -> None:
    """Register the schema and resolvers; idempotent, called before Hydra composes."""
    from hydra.core.config_store import ConfigStore

    _register_resolvers()
    ConfigStore.instance().store(name="attnlab_schema", node=Config)


def to_plain(cfg: DictConfig | Any) -> Any:
    """Resolved config as plain dicts/lists/str (Enum members become their values)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return cfg


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: MLflow params are flat."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
