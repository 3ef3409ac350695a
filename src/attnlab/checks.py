"""Argument checks: the one place each rule about a value is written.

Keras-free and Hydra-free, so the same function serves twice:

* a layer (or data loader) calls its check in ``__init__`` (Keras' style: ``Received: x=...``);
* :func:`attnlab.config.validate` calls the check of every built-in component named in the
  config (looked up by its ``_target_`` in :data:`COMPONENT_CHECKS`) before TensorFlow is
  imported, so ``model.encoder.layers=0`` fails in about a second with the key named.

A check raises :class:`ArgumentError` (a ``ValueError``) carrying the argument's name, so the
config side can prefix the config path (``model.encoder.layers=0: ...``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable

__all__ = [
    "COMPONENT_CHECKS",
    "MASK_MODES",
    "POSITIONAL",
    "SCALES",
    "ArgumentError",
    "boolean",
    "check_attention_pooling",
    "check_component",
    "check_flatten_pooling",
    "check_multi_width_conv1d",
    "check_seed_self_attention",
    "check_self_attention",
    "check_transformer_encoder",
    "check_uniform_attention",
    "check_no_attention",
    "check_tfidf_lr",
    "component_check",
    "fraction",
    "layer_base_kwargs",
    "non_negative_int",
    "one_of",
    "optional",
    "optional_seed",
    "positive_float",
    "positive_int",
    "rate",
]

# The allowed values of the layers' string arguments (attnlab.layers re-exports them).
SCALES = ("sqrt_dk", "constant", "none", "learned", "qk_norm", "log_n")
MASK_MODES = ("none", "keys", "keys_and_queries")
POSITIONAL = ("learned", "sinusoidal", "none")


class ArgumentError(ValueError):
    """A bad argument value; ``arg`` names the argument (the config key's last part)."""

    def __init__(self, arg: str, message: str) -> None:
        super().__init__(message)
        self.arg = arg


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int, or ArgumentError unless it is an integer > 0."""
    if not _is_int(value) or value <= 0:
        raise ArgumentError(name, f"Invalid value for argument `{name}`. Expected a positive integer. "
                                  f"Received: {name}={value!r}")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """``value`` as an int, or ArgumentError unless it is an integer >= 0."""
    if not _is_int(value) or value < 0:
        raise ArgumentError(name, f"Invalid value for argument `{name}`. Expected an integer >= 0. "
                                  f"Received: {name}={value!r}")
    return int(value)


def positive_float(name: str, value: Any) -> float:
    """``value`` as a float, or ArgumentError unless it is a finite number > 0."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)
            or value <= 0):
        raise ArgumentError(name, f"Invalid value for argument `{name}`. Expected a finite number > 0. "
                                  f"Received: {name}={value!r}")
    return float(value)


def rate(name: str, value: Any) -> float:
    """``value`` as a float, or ArgumentError unless it is a number in [0, 1)."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)
            or not 0.0 <= value < 1.0):
        raise ArgumentError(name, f"Invalid value for argument `{name}`. Expected a float in [0, 1). "
                                  f"Received: {name}={value!r}")
    return float(value)


def fraction(name: str, value: Any) -> float:
    """``value`` as a float, or ArgumentError unless it is a number in (0, 1)."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)
            or not 0.0 < value < 1.0):
        raise ArgumentError(name, f"Invalid value for argument `{name}`. Expected a number in (0, 1). "
                                  f"Received: {name}={value!r}")
    return float(value)


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value``, or ArgumentError unless it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ArgumentError(name, f"Invalid value for argument `{name}`. Expected one of {choices}. "
                                  f"Received: {name}={value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    """``value``, or ArgumentError unless it is True or False."""
    if not isinstance(value, bool):
        raise ArgumentError(name, f"Invalid value for argument `{name}`. Expected true or false. "
                                  f"Received: {name}={value!r}")
    return value


def optional(check: Callable[[str, Any], Any], name: str, value: Any) -> Any:
    """None, or ``check(name, value)`` (whose message then also says None is allowed)."""
    if value is None:
        return None
    try:
        return check(name, value)
    except ArgumentError as e:
        raise ArgumentError(name, str(e).replace(". Received:", ", or None. Received:", 1)) from None


def optional_seed(name: str, value: Any) -> int | None:
    """None, or ``value`` as an int (any integer: a random seed)."""
    if value is not None and not _is_int(value):
        raise ArgumentError(name, f"Invalid value for argument `{name}`. Expected an integer or None. "
                                  f"Received: {name}={value!r}")
    return None if value is None else int(value)


# What keras.layers.Layer itself accepts: a component's ``**kwargs`` may hold these, nothing else.
LAYER_BASE_KWARGS = frozenset({"name", "dtype", "trainable", "autocast", "activity_regularizer",
                               "input_shape", "input_dim", "batch_input_shape", "batch_size"})


def layer_base_kwargs(kwargs: Mapping[str, Any]) -> None:
    """ArgumentError naming the first key of ``kwargs`` that keras.layers.Layer would refuse."""
    for key in kwargs:
        if key not in LAYER_BASE_KWARGS:
            raise ArgumentError(key, f"Unrecognized argument `{key}`. Received: {key}={kwargs[key]!r}")


# ``_target_`` (as written in conf/) -> the component's argument check. The check takes the
# component's keyword arguments (the config node without ``_target_``) and raises ArgumentError.
COMPONENT_CHECKS: dict[str, Callable[..., None]] = {}


def component_check(*targets: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a check function for the given ``_target_`` paths (decorator)."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        for target in targets:
            COMPONENT_CHECKS[target] = fn
        return fn

    return register


def check_component(target: str, kwargs: dict[str, Any]) -> None:
    """Run the registered check of ``target`` on ``kwargs`` (nothing for unknown targets)."""
    fn = COMPONENT_CHECKS.get(target)
    if fn is not None:
        fn(**kwargs)


# --------------------------------------------------------------------------------------------
# Component checks: one per layer of attnlab.layers that a config can name by ``_target_``.
# Each takes exactly the layer's constructor arguments (keyword-only, no defaults: the defaults
# live once, in the layer's signature) and is what the layer's ``__init__`` calls.
# --------------------------------------------------------------------------------------------


def _targets(cls: str) -> tuple[str, ...]:
    """The public path of a layer class and the path of the module that defines it."""
    module = {"SelfAttention": "attention", "SeedSelfAttention": "seed", "UniformAttention": "uniform",
              "NoAttention": "no_attention", "TransformerEncoder": "transformer", "MultiWidthConv1D": "conv",
              "AttentionPooling": "pooling", "FlattenPooling": "pooling"}[cls]
    return f"attnlab.layers.{cls}", f"attnlab.layers.{module}.{cls}"


def _units_and_heads(units, heads) -> None:
    units, heads = positive_int("units", units), positive_int("heads", heads)
    if units % heads:
        raise ArgumentError("heads", "Invalid value for argument `heads`. Expected a divisor of `units`. "
                                     f"Received: units={units}, heads={heads}")


@component_check(*_targets("SelfAttention"))
def check_self_attention(*, units, heads, scale, scale_constant, qk_norm_gain, mask, dropout, use_bias,
                         seed, **kwargs) -> None:
    """Arguments of :class:`attnlab.layers.SelfAttention` (``units`` must be divisible by ``heads``)."""
    _units_and_heads(units, heads)
    one_of("scale", scale, SCALES)
    positive_float("scale_constant", scale_constant)
    optional(positive_float, "qk_norm_gain", qk_norm_gain)
    one_of("mask", mask, MASK_MODES)
    rate("dropout", dropout)
    boolean("use_bias", use_bias)
    optional_seed("seed", seed)
    layer_base_kwargs(kwargs)


@component_check(*_targets("SeedSelfAttention"))
def check_seed_self_attention(*, units, **kwargs) -> None:
    """Arguments of :class:`attnlab.layers.SeedSelfAttention`."""
    positive_int("units", units)
    layer_base_kwargs(kwargs)


@component_check(*_targets("UniformAttention"))
def check_uniform_attention(*, units, mask, use_bias, heads, **kwargs) -> None:
    """Arguments of :class:`attnlab.layers.UniformAttention` (``heads`` divides ``units``, as for self)."""
    _units_and_heads(units, heads)
    one_of("mask", mask, MASK_MODES)
    boolean("use_bias", use_bias)
    layer_base_kwargs(kwargs)


@component_check(*_targets("NoAttention"))
def check_no_attention(**kwargs) -> None:
    """Arguments of :class:`attnlab.layers.NoAttention` (only the base layer's)."""
    layer_base_kwargs(kwargs)


@component_check("attnlab.learners.tfidf.TfidfLogisticRegression")
def check_tfidf_lr(*, name, ngram_max, C, sublinear_tf, min_df, max_features, max_iter, token_pattern) -> None:
    """Arguments of :class:`attnlab.learners.tfidf.TfidfLogisticRegression` (``model=tfidf_lr``)."""
    import re

    positive_int("ngram_max", ngram_max)
    positive_float("C", C)
    boolean("sublinear_tf", sublinear_tf)
    positive_int("min_df", min_df)
    optional(positive_int, "max_features", max_features)
    positive_int("max_iter", max_iter)
    try:
        re.compile(str(token_pattern))
    except re.error as e:
        raise ArgumentError("token_pattern", f"Invalid value for argument `token_pattern`. Expected a regular "
                                             f"expression ({e}). Received: token_pattern={token_pattern!r}") from None


# Keras' registered name of each attnlab layer -> its component target, to check nested configs.
_REGISTERED = {f"attnlab>{cls}": _targets(cls)[0]
               for cls in ("SelfAttention", "SeedSelfAttention", "UniformAttention")}


def _check_attention_arg(value: Any) -> None:
    """``attention`` of TransformerEncoder: None, a layer, a Keras-serialized layer or a ``_target_`` node.

    A nested node of a known component is checked too; its error names the nested key
    (``attention.heads``, or ``attention.config.heads`` in the Keras-serialized form).
    """
    if value is None or (hasattr(value, "get_config") and hasattr(value, "__call__")):
        return
    if isinstance(value, Mapping) and "_target_" in value:
        target, kwargs, prefix = str(value["_target_"]), {k: v for k, v in value.items()
                                                         if not str(k).startswith("_")}, "attention."
    elif isinstance(value, Mapping) and isinstance(value.get("class_name"), str) \
            and isinstance(value.get("config"), Mapping):
        target, kwargs, prefix = _REGISTERED.get(str(value.get("registered_name"))), dict(value["config"]), \
            "attention.config."
    else:
        raise ArgumentError("attention", "Invalid value for argument `attention`. Expected None, an attention "
                                         "layer, its keras.saving.serialize_keras_object() dict or a `_target_` "
                                         f"node. Received: attention={value!r}")
    try:
        if target is not None:  # a user-registered type: its own __init__ checks it
            check_component(target, kwargs)
    except ArgumentError as e:
        raise ArgumentError(prefix + e.arg, str(e)) from None


@component_check(*_targets("TransformerEncoder"))
def check_transformer_encoder(*, layers, ff_dim, dropout, positional, max_len, attention, **kwargs) -> None:
    """Arguments of :class:`attnlab.layers.TransformerEncoder` (``positional="learned"`` needs ``max_len``)."""
    positive_int("layers", layers)
    optional(positive_int, "ff_dim", ff_dim)
    rate("dropout", dropout)
    one_of("positional", positional, POSITIONAL)
    optional(positive_int, "max_len", max_len)
    if positional == "learned" and max_len is None:
        raise ArgumentError("max_len", "Invalid value for argument `max_len`. Expected a positive integer "
                                       "(learned positions need a table size). "
                                       f"Received: positional={positional!r}, max_len=None")
    _check_attention_arg(attention)
    layer_base_kwargs(kwargs)


@component_check(*_targets("MultiWidthConv1D"))
def check_multi_width_conv1d(*, filters, kernel_sizes, activation, **kwargs) -> None:
    """Arguments of :class:`attnlab.layers.MultiWidthConv1D` (``activation`` is left to Keras)."""
    positive_int("filters", filters)
    if isinstance(kernel_sizes, (str, bytes)) or not isinstance(kernel_sizes, Sequence) or not kernel_sizes:
        shown = kernel_sizes if isinstance(kernel_sizes, (str, bytes)) or not isinstance(kernel_sizes, Sequence) \
            else list(kernel_sizes)
        raise ArgumentError("kernel_sizes", "Invalid value for argument `kernel_sizes`. Expected a non-empty "
                                            f"list of positive integers. Received: kernel_sizes={shown!r}")
    for i, k in enumerate(kernel_sizes):
        positive_int(f"kernel_sizes[{i}]", k)
    layer_base_kwargs(kwargs)


@component_check(*_targets("AttentionPooling"))
def check_attention_pooling(*, units, **kwargs) -> None:
    """Arguments of :class:`attnlab.layers.AttentionPooling`."""
    optional(positive_int, "units", units)
    layer_base_kwargs(kwargs)


@component_check(*_targets("FlattenPooling"))
def check_flatten_pooling(*, max_len, **kwargs) -> None:
    """Arguments of :class:`attnlab.layers.FlattenPooling`."""
    optional(positive_int, "max_len", max_len)
    layer_base_kwargs(kwargs)


@component_check("attnlab.layers.bilstm", "attnlab.layers.encoders.bilstm")
def check_bilstm(*, units: Any, dropout: Any, **kwargs: Any) -> None:
    """Arguments of :func:`attnlab.layers.bilstm`."""
    positive_int("units", units)
    rate("dropout", dropout)
    layer_base_kwargs(kwargs)
