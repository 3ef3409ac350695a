"""Configurable multi-head scaled dot-product self-attention."""

import math
import numbers

import keras
from keras import ops

SCALES = ("sqrt_dk", "constant", "none", "learned")
MASK_MODES = ("none", "keys", "keys_and_queries")


def _large_negative(dtype):
    # Large enough to underflow exp() to 0, small enough not to overflow the
    # dtype (65504 is the float16 maximum).
    return -65504.0 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


def check_positive_int(name, value):
    """Raise ValueError (showing the value) unless `value` is an integer > 0."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a positive "
            f"integer. Received: {name}={value!r}"
        )


def check_sequence_shape(layer, input_shape):
    """Raise ValueError unless `input_shape` is (batch, T, d_in) with a known d_in."""
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"{layer.__class__.__name__} expects inputs of shape "
            "(batch_size, T, d_in) with a known d_in. "
            f"Received: input_shape={tuple(input_shape)}"
        )


class _SequenceAttentionShapes:
    """Mask and shape methods shared by `SelfAttention` and `SeedSelfAttention`.

    Both map (batch, T, d_in) to (batch, T, units) and, with
    `return_attention_scores=True`, also return weights (batch, heads, T, T).
    Needs `self.units` and `self.heads`.
    """

    def compute_mask(self, inputs, mask=None):
        # The sequence length is unchanged, so downstream layers (pooling)
        # still need to know which positions are padding.
        return mask

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def compute_output_spec(
        self, inputs, mask=None, training=None, return_attention_scores=False
    ):
        output_spec = keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype=self.compute_dtype
        )
        if return_attention_scores:
            batch, length = inputs.shape[0], inputs.shape[1]
            weights_spec = keras.KerasTensor(
                (batch, self.heads, length, length), dtype=self.compute_dtype
            )
            return output_spec, weights_spec
        return output_spec


@keras.saving.register_keras_serializable(package="attnlab")
class SelfAttention(_SequenceAttentionShapes, keras.layers.Layer):
    """Multi-head scaled dot-product self-attention over one sequence.

    Queries, keys and values are separate linear projections of the same
    input. The projected `units` features are split into `heads` heads of
    `d_k = units // heads` features each; every head computes
    `softmax(Q K^T * factor) V`, and the heads are concatenated back to
    `units` features. There is no output projection.

    Args:
        units: Positive integer, total projection size (all heads together).
            Must be divisible by `heads`.
        heads: Positive integer, number of attention heads. Defaults to `1`.
        scale: How attention scores are scaled before the softmax, one of
            `SCALES`:
            - `"sqrt_dk"`: multiply by `1 / sqrt(d_k)` (Vaswani et al.).
            - `"constant"`: multiply by `1 / scale_constant`.
            - `"none"`: no scaling.
            - `"learned"`: multiply by a trainable scalar weight
              `scale_factor`, stored as the plain factor (not its log) and
              initialised to `1 / sqrt(d_k)`.
            Defaults to `"sqrt_dk"`.
        scale_constant: Positive float, divisor used by `scale="constant"`.
            Defaults to `8.0` (`64 ** 0.5`, the constant of
            `SeedSelfAttention`).
        mask: How the Keras padding mask is used, one of `MASK_MODES`:
            - `"none"`: ignore it; padding is attended to like real tokens.
            - `"keys"`: padded keys get exactly zero attention weight.
            - `"keys_and_queries"`: as `"keys"`, and the weight rows and
              outputs of padded query positions are zero as well.
            A query with no real key at all gets all-zero weights and a zero
            output (never NaN). Defaults to `"keys"`.
        dropout: Float in `[0, 1)`, dropout rate applied to the attention
            weights in training mode only. Defaults to `0.0`.
        use_bias: Boolean, whether the Q/K/V projections have a bias.
            Defaults to `True`.
        seed: Optional integer seed for the attention dropout.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d_in)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`, `True` for
            real tokens. Filled in automatically from the Keras mask of
            `inputs` (e.g. from `Embedding(mask_zero=True)`).
        training: Python boolean, whether to apply attention dropout.
        return_attention_scores: Boolean, whether to also return the
            attention weights.

    Returns:
        Outputs of shape `(batch_size, T, units)`, or, with
        `return_attention_scores=True`, a tuple `(outputs, weights)` where
        `weights` has shape `(batch_size, heads, T, T)` and holds the
        post-softmax, post-mask, pre-dropout attention weights
        (`weights[b, h, i, j]` is how much query `i` attends to key `j`).
        The input mask is passed on unchanged to `outputs`.
    """

    def __init__(
        self,
        units,
        heads=1,
        scale="sqrt_dk",
        scale_constant=8.0,
        mask="keys",
        dropout=0.0,
        use_bias=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("units", units)
        check_positive_int("heads", heads)
        if units % heads != 0:
            raise ValueError(
                "Argument `units` must be divisible by `heads`. "
                f"Received: units={units}, heads={heads}"
            )
        if scale not in SCALES:
            raise ValueError(
                "Invalid value for argument `scale`. Expected one of "
                f"{SCALES}. Received: scale={scale!r}"
            )
        if (
            not isinstance(scale_constant, numbers.Real)
            or isinstance(scale_constant, bool)
            or not math.isfinite(scale_constant)
            or scale_constant <= 0
        ):
            raise ValueError(
                "Invalid value for argument `scale_constant`. Expected a "
                f"finite number > 0. Received: scale_constant={scale_constant!r}"
            )
        if mask not in MASK_MODES:
            raise ValueError(
                "Invalid value for argument `mask`. Expected one of "
                f"{MASK_MODES}. Received: mask={mask!r}"
            )
        if (
            not isinstance(dropout, numbers.Real)
            or isinstance(dropout, bool)
            or not 0.0 <= dropout < 1.0
        ):
            raise ValueError(
                "Invalid value for argument `dropout`. Expected a float in "
                f"[0, 1). Received: dropout={dropout!r}"
            )
        self.units = int(units)
        self.heads = int(heads)
        self.head_dim = self.units // self.heads
        self.scale = scale
        self.scale_constant = float(scale_constant)
        # `mask` is also the name of the call argument, hence `mask_mode`.
        self.mask_mode = mask
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        self.seed = seed
        if self.dropout > 0:
            self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.supports_masking = True

    def build(self, input_shape):
        check_sequence_shape(self, input_shape)
        d_in = input_shape[-1]
        for name in ("query", "key", "value"):
            kernel = self.add_weight(
                name=f"{name}_kernel",
                shape=(d_in, self.units),
                initializer="glorot_uniform",
            )
            bias = (
                self.add_weight(
                    name=f"{name}_bias", shape=(self.units,), initializer="zeros"
                )
                if self.use_bias
                else None
            )
            setattr(self, f"{name}_kernel", kernel)
            setattr(self, f"{name}_bias", bias)
        self.scale_factor = None
        if self.scale == "learned":
            self.scale_factor = self.add_weight(
                name="scale_factor",
                shape=(),
                initializer=keras.initializers.Constant(
                    1.0 / math.sqrt(self.head_dim)
                ),
                trainable=True,
            )

    def _score_factor(self):
        """Multiplier of the raw `Q K^T` scores (a float or the weight)."""
        if self.scale == "sqrt_dk":
            return 1.0 / math.sqrt(self.head_dim)
        if self.scale == "constant":
            return 1.0 / self.scale_constant
        if self.scale == "learned":
            return self.scale_factor
        return None

    def _project(self, inputs, kernel, bias):
        # (batch, T, d_in) -> (batch, heads, T, d_k)
        x = ops.matmul(inputs, kernel)  # (batch, T, units)
        if bias is not None:
            x = ops.add(x, bias)
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], self.heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, inputs, mask=None, training=None, return_attention_scores=False):
        q = self._project(inputs, self.query_kernel, self.query_bias)
        k = self._project(inputs, self.key_kernel, self.key_bias)
        v = self._project(inputs, self.value_kernel, self.value_bias)

        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # (b, h, T, T)
        factor = self._score_factor()
        if factor is not None:
            scores = ops.multiply(scores, ops.cast(factor, scores.dtype))

        use_mask = mask is not None and self.mask_mode != "none"
        if use_mask:
            mask = ops.cast(mask, "bool")  # (batch, T)
            key_mask = mask[:, None, None, :]  # (batch, 1, 1, T)
            # where() rather than an additive bias: the filler value does
            # not depend on the score magnitude.
            scores = ops.where(key_mask, scores, _large_negative(scores.dtype))
        weights = ops.softmax(scores, axis=-1)  # (batch, heads, T, T)
        if use_mask:
            # exp(-1e9 - max) already underflows to 0 for padded keys, but a
            # row whose keys are all padding would be uniform; multiplying
            # makes padded weights exactly 0 and such rows all-zero.
            weights = ops.multiply(weights, ops.cast(key_mask, weights.dtype))
            if self.mask_mode == "keys_and_queries":
                query_mask = mask[:, None, :, None]  # (batch, 1, T, 1)
                weights = ops.multiply(weights, ops.cast(query_mask, weights.dtype))

        applied = weights
        if training and self.dropout > 0:
            applied = keras.random.dropout(
                weights, self.dropout, seed=self.seed_generator
            )
        # Zero weight rows give zero outputs, so padded queries are zeroed
        # under "keys_and_queries" without a separate output mask.
        outputs = ops.matmul(applied, v)  # (batch, heads, T, d_k)
        outputs = ops.transpose(outputs, (0, 2, 1, 3))  # (batch, T, heads, d_k)
        shape = ops.shape(outputs)
        outputs = ops.reshape(outputs, (shape[0], shape[1], self.units))
        if return_attention_scores:
            return outputs, weights
        return outputs

    def get_config(self):
        base_config = super().get_config()
        config = {
            "units": self.units,
            "heads": self.heads,
            "scale": self.scale,
            "scale_constant": self.scale_constant,
            "mask": self.mask_mode,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "seed": self.seed,
        }
        return {**base_config, **config}
