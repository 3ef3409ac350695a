"""The layers' argument checks in attnlab.checks: keras-free, one per component, the same
function the layer's __init__ calls (so both report the same message, naming the value)."""

import inspect
import re
import subprocess
import sys

import keras
import pytest

from attnlab import checks, layers
from attnlab.checks import COMPONENT_CHECKS, ArgumentError, check_component

COMPONENTS = ["SelfAttention", "SeedSelfAttention", "UniformAttention", "TransformerEncoder",
              "MultiWidthConv1D", "AttentionPooling", "FlattenPooling", "NoAttention"]


def test_importing_checks_loads_no_tensorflow():
    code = ("import sys, attnlab.checks; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'hydra', 'omegaconf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


REQUIRED = {"SelfAttention": {"units": 4}, "SeedSelfAttention": {"units": 4}, "UniformAttention": {"units": 4},
            "MultiWidthConv1D": {"filters": 2}}


def _init_args(cls):
    """The constructor's own arguments (without self and **kwargs), with their defaults."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD}


def _full(name, **kwargs):
    """Every constructor argument of component `name`: defaults, then REQUIRED, then kwargs."""
    args = {k: v for k, v in _init_args(getattr(layers, name)).items() if v is not inspect.Parameter.empty}
    return {**args, **REQUIRED.get(name, {}), **kwargs}


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_component_has_a_check_taking_exactly_its_arguments(name):
    fn = COMPONENT_CHECKS[f"attnlab.layers.{name}"]
    assert COMPONENT_CHECKS[f"{getattr(layers, name).__module__}.{name}"] is fn
    params = inspect.signature(fn).parameters.values()
    keyword = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    assert keyword == set(_init_args(getattr(layers, name)))
    assert all(p.default is p.empty for p in params if p.kind is p.KEYWORD_ONLY)  # defaults live in the layer
    fn(**_full(name), name="ok", dtype="float32", trainable=True)  # the defaults and Keras' own kwargs pass


BAD = [
    ("SelfAttention", dict(units=0), "units", "units=0"),
    ("SelfAttention", dict(units=6, heads=4), "heads", "units=6, heads=4"),
    ("SelfAttention", dict(units=4, scale="foo"), "scale", "scale='foo'"),
    ("SelfAttention", dict(units=4, scale="qk_norm", qk_norm_gain=-1.0), "qk_norm_gain", "qk_norm_gain=-1.0"),
    ("SelfAttention", dict(units=4, mask="bar"), "mask", "mask='bar'"),
    ("SelfAttention", dict(units=4, dropout=1.0), "dropout", "dropout=1.0"),
    ("SelfAttention", dict(units=4, use_bias="yes"), "use_bias", "use_bias='yes'"),
    ("SelfAttention", dict(units=4, seed=1.5), "seed", "seed=1.5"),
    ("SelfAttention", dict(units=4, unitz=5), "unitz", "unitz=5"),
    ("SeedSelfAttention", dict(units=True), "units", "units=True"),
    ("UniformAttention", dict(units=4, mask="queries"), "mask", "mask='queries'"),
    ("TransformerEncoder", dict(layers=0), "layers", "layers=0"),
    ("TransformerEncoder", dict(ff_dim=0), "ff_dim", "ff_dim=0"),
    ("TransformerEncoder", dict(dropout=-0.1), "dropout", "dropout=-0.1"),
    ("TransformerEncoder", dict(positional="rope"), "positional", "positional='rope'"),
    ("TransformerEncoder", dict(positional="learned"), "max_len", "max_len=None"),
    ("TransformerEncoder", dict(max_len=0), "max_len", "max_len=0"),
    ("TransformerEncoder", dict(attention="self"), "attention", "attention='self'"),
    ("MultiWidthConv1D", dict(filters=2, kernel_sizes=[3, -4]), "kernel_sizes[1]", "kernel_sizes[1]=-4"),
    ("MultiWidthConv1D", dict(filters=2, kernel_sizes="345"), "kernel_sizes", "kernel_sizes='345'"),
    ("AttentionPooling", dict(units=0), "units", "units=0"),
    ("FlattenPooling", dict(max_len=2.5), "max_len", "max_len=2.5"),
]


@pytest.mark.parametrize("name,kwargs,arg,fragment", BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD])
def test_bad_arguments_fail_alike_in_the_layer_and_in_the_check(name, kwargs, arg, fragment):
    cls = getattr(layers, name)
    with pytest.raises(ValueError, match=re.escape(fragment)) as from_layer:
        cls(**kwargs)
    with pytest.raises(ArgumentError, match=re.escape(fragment)) as from_check:
        check_component(f"attnlab.layers.{name}", _full(name, **kwargs))
    assert from_check.value.arg == arg
    assert str(from_layer.value) == str(from_check.value)
    assert "Received:" in str(from_check.value)
    allowed = {"scale": "'sqrt_dk'", "mask": "'keys_and_queries'", "positional": "'sinusoidal'"}
    if arg in allowed:  # the message lists the allowed values
        assert allowed[arg] in str(from_check.value)


def test_nested_attention_config_is_checked_with_the_encoder():
    bad = keras.saving.serialize_keras_object(layers.SelfAttention(4, heads=2))
    bad["config"]["heads"] = 3
    with pytest.raises(ArgumentError, match=re.escape("units=4, heads=3")) as info:
        layers.TransformerEncoder(attention=bad)
    assert info.value.arg == "attention.config.heads"
    node = {"_target_": "attnlab.layers.UniformAttention", "units": 0, "mask": "keys", "use_bias": True, "heads": 1}
    with pytest.raises(ArgumentError, match="units=0") as info:
        checks.check_transformer_encoder(layers=2, ff_dim=None, dropout=0.1, positional="none", max_len=None,
                                         attention=node)
    assert info.value.arg == "attention.units"  # the config side prefixes model.encoder.
    # A user-registered attention type is not known to the checks: accepted as it is.
    user = {"class_name": "Mine", "config": {"heads": 3}, "registered_name": "me>Mine", "module": None}
    checks.check_transformer_encoder(layers=1, ff_dim=None, dropout=0.0, positional="none", max_len=None,
                                     attention=user)


def test_optional_and_unknown_targets():
    assert checks.optional(checks.positive_int, "x", None) is None
    with pytest.raises(ArgumentError, match=re.escape("Expected a positive integer, or None. Received: x=0")):
        checks.optional(checks.positive_int, "x", 0)
    check_component("my.own.Layer", {"anything": 1})  # no check registered: nothing to say
