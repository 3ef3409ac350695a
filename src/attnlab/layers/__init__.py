"""Keras layers for attnlab: self-attention variants, a Transformer encoder and mask-aware poolings.

Every layer here checks its arguments with the keras-free function of `attnlab.checks`
registered under its `_target_` (`attnlab.layers.<Class>`), so a config can be checked before
TensorFlow is imported.
"""

from attnlab.layers.attention import MASK_MODES, SCALES, SelfAttention
from attnlab.layers.conv import MultiWidthConv1D
from attnlab.layers.encoders import bilstm, identity
from attnlab.layers.no_attention import NoAttention
from attnlab.layers.pooling import (
    AttentionPooling,
    FirstPooling,
    FlattenPooling,
    LastPooling,
    MaxPooling,
    MeanPooling,
)
from attnlab.layers.seed import SeedSelfAttention
from attnlab.layers.text import kim_clean_str
from attnlab.layers.transformer import POSITIONAL, TransformerEncoder
from attnlab.layers.uniform import UniformAttention

__all__ = [
    "MASK_MODES",
    "POSITIONAL",
    "SCALES",
    "AttentionPooling",
    "FirstPooling",
    "FlattenPooling",
    "LastPooling",
    "MaxPooling",
    "MeanPooling",
    "MultiWidthConv1D",
    "NoAttention",
    "SeedSelfAttention",
    "SelfAttention",
    "TransformerEncoder",
    "UniformAttention",
    "bilstm",
    "identity",
    "kim_clean_str",
]
