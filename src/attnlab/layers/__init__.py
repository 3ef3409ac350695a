"""Keras layers for attnlab: self-attention variants and mask-aware poolings."""

from attnlab.layers.attention import MASK_MODES, SCALES, SelfAttention
from attnlab.layers.conv import MultiWidthConv1D
from attnlab.layers.pooling import (
    POOLINGS,
    AttentionPooling,
    FirstPooling,
    FlattenPooling,
    LastPooling,
    MaxPooling,
    MeanPooling,
    build_pooling,
)
from attnlab.layers.seed import SeedSelfAttention

__all__ = [
    "MASK_MODES",
    "POOLINGS",
    "SCALES",
    "AttentionPooling",
    "FirstPooling",
    "FlattenPooling",
    "LastPooling",
    "MaxPooling",
    "MeanPooling",
    "MultiWidthConv1D",
    "SeedSelfAttention",
    "SelfAttention",
    "build_pooling",
]
