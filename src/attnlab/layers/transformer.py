"""A pre-LayerNorm Transformer encoder whose attention layer is any attnlab attention (or yours)."""

import json
import math

import keras
from keras import ops

from attnlab.checks import POSITIONAL, check_transformer_encoder
from attnlab.layers.base import attention_returns, check_sequence_shape

__all__ = ["POSITIONAL", "TransformerEncoder"]

POSITION_INIT_STDDEV = 0.02  # the learned position table's initial scale (BERT's)


@keras.saving.register_keras_serializable(package="attnlab")
class TransformerEncoder(keras.layers.Layer):
    """`layers` pre-LayerNorm Transformer blocks over a padded sequence, then a LayerNorm.

    With `d_model` the input width, each block computes

    ```
    x = x + Dropout(Dense(d_model)(attention(LayerNorm(x), mask)))
    x = x + Dropout(Dense(d_model)(Dense(ff_dim, relu)(LayerNorm(x))))
    ```

    and the encoder returns `LayerNorm(x)` after the last block. Positions, if any, are added
    to the inputs first.

    Padding never matters as long as the attention masks keys (`SelfAttention` with
    `mask="keys"` or `"keys_and_queries"`, `UniformAttention` with either): the outputs at
    real tokens do not depend on the padding's content or amount, because attention is the
    only place where positions mix, and the position of a token is its rank among the real
    tokens of its row (0, 1, ...), not its index, so left, right or ragged padding all give
    the same positions. `mask="none"` and `SeedSelfAttention` attend to padding by design.

    Args:
        layers: Positive integer, number of blocks. Defaults to `2`.
        ff_dim: Positive integer, hidden width of the feed-forward network, or `None`
            (default) for `4 * d_model` (Vaswani et al. 2017).
        dropout: Float in `[0, 1)`, dropout after the attention's output projection and after
            the feed-forward network (training only). Defaults to `0.1`.
        positional: Position information added to the inputs, one of `POSITIONAL`:
            - `"sinusoidal"`: the fixed encoding of Vaswani et al. (2017), `sin` of the
              `ceil(d_model / 2)` frequencies `10000 ** (-2i / d_model)` in the first half of
              the features and `cos` in the second (cut to `d_model`).
            - `"learned"`: a trainable `(max_len, d_model)` table (needs `max_len`), initialised
              from N(0, 0.02) as BERT's: at the scale of small-init token embeddings, so position
              does not drown content at the start (Glorot's ~0.2 did, 4x the 0.05-uniform
              embeddings, and the pointer task then failed to train).
            - `"none"`: nothing (the encoder is then permutation-equivariant).
            Defaults to `"sinusoidal"`.
        max_len: Positive integer, the number of learned positions (a text may have at most
            this many real tokens), or `None` (default). Only `"learned"` uses it.
        attention: The attention layer of every block, as a layer or as
            `keras.saving.serialize_keras_object(layer)`; each block gets a fresh copy
            (deserialized from the same config, its own weights). Any layer with attnlab's
            attention contract works (`SelfAttention` with every scale, mask and head option,
            `UniformAttention`, `SeedSelfAttention`, layers you register): `call(x, mask=,
            training=, return_attention_scores=, return_max_logits=)` (the last only needed
            when asked for), output `(batch, T, units)` with any `units` (the block projects
            back to `d_model`), weights `(batch, heads, T, T)`. `None` (default) means
            `SelfAttention(units=d_model)` with its defaults.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d_model)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`, `True` at real tokens
            (from the Keras mask of `inputs` when there is one).
        training: Python boolean, whether dropout is active.
        return_attention_scores: Boolean, whether to also return every block's weights.
        return_max_logits: Boolean, whether to also return every block's per-row largest
            pre-softmax logit.

    Returns:
        Outputs `(batch_size, T, d_model)`; with either flag the tuple
        `(outputs, [weights], [max_logits])` of what was asked for, in that order, stacked
        over blocks: `weights` `(batch_size, layers, heads, T, T)` and `max_logits`
        `(batch_size, layers, heads, T)` (each block's attention layer defines them: see
        `attnlab.layers.base`). The input mask is passed on unchanged.
    """

    def __init__(self, layers=2, ff_dim=None, dropout=0.1, positional="sinusoidal", max_len=None,
                 attention=None, **kwargs):
        check_transformer_encoder(layers=layers, ff_dim=ff_dim, dropout=dropout, positional=positional,
                                  max_len=max_len, attention=attention, **kwargs)
        super().__init__(**kwargs)
        self.num_layers = int(layers)  # `layers` is a config key, not Keras' list of sublayers
        self.ff_dim = None if ff_dim is None else int(ff_dim)
        self.dropout = float(dropout)
        self.positional = positional
        self.max_len = None if max_len is None else int(max_len)
        if attention is not None and not isinstance(attention, dict):
            attention = keras.saving.serialize_keras_object(attention)
        # Kept as JSON text: Keras wraps dict attributes of a layer in tracking containers.
        self._attention_json = None if attention is None else json.dumps(attention)
        self.supports_masking = True

    def build(self, input_shape):
        check_sequence_shape(self, input_shape)
        d_model, length = int(input_shape[-1]), input_shape[1]
        if self.positional == "learned":
            if length is not None and length > self.max_len:
                raise ValueError(f"{self.name}: the input has T={length} positions but only max_len="
                                 f"{self.max_len} are learned. Received: input_shape={tuple(input_shape)}")
            self.position_table = self.add_weight(
                name="position_table", shape=(self.max_len, d_model),
                initializer=keras.initializers.RandomNormal(stddev=POSITION_INIT_STDDEV))
        ff_dim = self.ff_dim or 4 * d_model
        self.blocks = [
            _Block(self._new_attention(d_model, i), d_model, ff_dim, self.dropout, name=f"block_{i}")
            for i in range(self.num_layers)
        ]
        for block in self.blocks:
            block.build(input_shape)
        self.final_norm = keras.layers.LayerNormalization(name="final_norm")
        self.final_norm.build(input_shape)

    def _new_attention(self, d_model, index):
        if self._attention_json is None:
            from attnlab.layers.attention import SelfAttention

            return SelfAttention(d_model, name=f"attention_{index}")
        return keras.saving.deserialize_keras_object(self.attention)

    def call(self, inputs, mask=None, training=None, return_attention_scores=False, return_max_logits=False):
        x = self._add_positions(inputs, mask)
        per_block = []
        for block in self.blocks:
            x, extras = block(x, mask=mask, training=training, return_attention_scores=return_attention_scores,
                              return_max_logits=return_max_logits)
            per_block.append(extras)
        outputs = self.final_norm(x)
        stacked = [ops.stack(parts, axis=1) for parts in zip(*per_block)]  # over blocks: axis 1
        return attention_returns(outputs, return_attention_scores, return_max_logits,
                                 weights=stacked[0] if return_attention_scores else None,
                                 max_logits=stacked[-1] if return_max_logits else None)

    def _add_positions(self, x, mask):
        if self.positional == "none":
            return x
        if mask is None:
            positions = ops.arange(ops.shape(x)[1], dtype="int32")[None, :]  # (1, T)
        else:
            # The rank of each token among the real ones (padding gets a position it never uses).
            positions = ops.maximum(ops.cumsum(ops.cast(mask, "int32"), axis=1) - 1, 0)  # (batch, T)
        if self.positional == "learned":
            vectors = ops.take(self.position_table, positions, axis=0)
        else:
            vectors = sinusoidal_positions(positions, x.shape[-1], x.dtype)
        return x + ops.cast(vectors, x.dtype)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, mask=None, training=None, return_attention_scores=False,
                            return_max_logits=False):
        batch, length = inputs.shape[0], inputs.shape[1]
        heads = getattr(self.blocks[0].attention, "heads", None)
        return attention_returns(
            keras.KerasTensor(inputs.shape, dtype=self.compute_dtype),
            return_attention_scores, return_max_logits,
            keras.KerasTensor((batch, self.num_layers, heads, length, length), dtype=self.compute_dtype),
            keras.KerasTensor((batch, self.num_layers, heads, length), dtype=self.compute_dtype),
        )

    def effective_scales(self):
        """Each block's `attention.effective_scale()` (a list of Python floats, block order)."""
        return [block.attention.effective_scale() for block in self.blocks]

    def get_config(self):
        return {**super().get_config(), "layers": self.num_layers, "ff_dim": self.ff_dim, "dropout": self.dropout,
                "positional": self.positional, "max_len": self.max_len, "attention": self.attention}

    @property
    def attention(self):
        """The `attention` argument as a fresh Keras-serialized dict (None for the default)."""
        return None if self._attention_json is None else json.loads(self._attention_json)


def sinusoidal_positions(positions, width, dtype="float32"):
    """`(..., width)` sinusoidal encodings of the integer `positions` `(...)`.

    Feature `i < ceil(width / 2)` is `sin(p * 10000 ** (-2i / width))` and feature
    `ceil(width / 2) + i` the matching `cos`, cut to `width` features.
    """
    half = (width + 1) // 2
    frequencies = [math.exp(-math.log(10000.0) * 2 * i / width) for i in range(half)]
    angles = ops.cast(positions, dtype)[..., None] * ops.convert_to_tensor(frequencies, dtype=dtype)
    return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)[..., :width]


class _Block(keras.layers.Layer):
    """One pre-LayerNorm block (built and saved as part of its TransformerEncoder)."""

    def __init__(self, attention, d_model, ff_dim, dropout, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.attention = attention
        self.norm1 = keras.layers.LayerNormalization(name="norm1")
        self.projection = keras.layers.Dense(d_model, name="projection")
        self.dropout1 = keras.layers.Dropout(dropout)
        self.norm2 = keras.layers.LayerNormalization(name="norm2")
        self.hidden = keras.layers.Dense(ff_dim, activation="relu", name="hidden")
        self.output_dense = keras.layers.Dense(d_model, name="output_dense")
        self.dropout2 = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attention.build(input_shape)
        units = self.attention.compute_output_shape(tuple(input_shape))[-1]
        self.projection.build((*input_shape[:-1], units))
        self.norm2.build(input_shape)
        self.hidden.build(input_shape)
        self.output_dense.build((*input_shape[:-1], self.hidden.units))

    def call(self, x, mask=None, training=None, return_attention_scores=False, return_max_logits=False):
        flags = {"return_attention_scores": True} if return_attention_scores else {}
        if return_max_logits:
            flags["return_max_logits"] = True
        got = self.attention(self.norm1(x), mask=mask, training=training, **flags)
        attended, extras = (got[0], tuple(got[1:])) if flags else (got, ())
        x = x + self.dropout1(self.projection(attended), training=training)
        x = x + self.dropout2(self.output_dense(self.hidden(self.norm2(x))), training=training)
        return x, extras

    def compute_mask(self, x, mask=None):
        return mask
