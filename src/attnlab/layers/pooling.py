"""Mask-aware sequence poolings: (batch, T, d) + mask -> (batch, d_out).

Every pooling treats positions where the Keras mask is `False` as padding
and, when called without a mask, treats all positions as real. A row with no
real token pools to zeros (never NaN). To add a pooling, write one
`_MaskedPooling` subclass and one YAML in `conf/model/pooling/` naming it by `_target_`.
"""

import keras
from keras import ops

from attnlab.checks import check_attention_pooling, check_flatten_pooling
from attnlab.layers.base import large_negative


class _MaskedPooling(keras.layers.Layer):
    """Base class: validates the input rank and consumes the mask.

    Subclasses implement `call(inputs, mask=None, training=None)` and, when
    the output is not `(batch, d)`, `compute_output_shape`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Accept the mask (so Keras does not warn about dropping it) and
        # consume it: the pooled output has no time axis left to mask.
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.__class__.__name__} expects inputs of shape "
                f"(batch_size, T, d). Received: input_shape={tuple(input_shape)}"
            )

    def _real(self, inputs, mask):
        """Boolean `(batch, T)` tensor, `True` at real (non-padding) tokens."""
        if mask is None:
            return ops.ones_like(inputs[:, :, 0], dtype="bool")
        return ops.cast(mask, "bool")

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package="attnlab")
class MeanPooling(_MaskedPooling):
    """Mean over the real tokens of each sequence.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`.
        training: Unused.

    Returns:
        Tensor of shape `(batch_size, d)`; zeros for rows without real
        tokens.
    """

    def call(self, inputs, mask=None, training=None):
        real = ops.cast(self._real(inputs, mask), inputs.dtype)  # (batch, T)
        total = ops.sum(inputs * real[:, :, None], axis=1)  # (batch, d)
        count = ops.sum(real, axis=1, keepdims=True)  # (batch, 1)
        # max(count, 1): an all-padding row has total 0, so it gives 0, not NaN.
        return total / ops.maximum(count, 1.0)


@keras.saving.register_keras_serializable(package="attnlab")
class MaxPooling(_MaskedPooling):
    """Feature-wise max over the real tokens of each sequence.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`.
        training: Unused.

    Returns:
        Tensor of shape `(batch_size, d)`; padding never wins, and rows
        without real tokens give zeros.
    """

    def call(self, inputs, mask=None, training=None):
        real = self._real(inputs, mask)  # (batch, T)
        # -inf (not a finite filler) so padding loses even to very
        # negative real values.
        filled = ops.where(real[:, :, None], inputs, float("-inf"))
        pooled = ops.max(filled, axis=1)  # (batch, d)
        has_real = ops.any(real, axis=1, keepdims=True)  # (batch, 1)
        return ops.where(has_real, pooled, ops.zeros_like(pooled))


@keras.saving.register_keras_serializable(package="attnlab")
class FirstPooling(_MaskedPooling):
    """The vector at position 0 (e.g. a `[CLS]`-style token).

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`.
        training: Unused.

    Returns:
        Tensor of shape `(batch_size, d)`: `inputs[:, 0, :]`, zeroed in rows
        where position 0 is padding (so all-padding rows give zeros like the
        other poolings).
    """

    def call(self, inputs, mask=None, training=None):
        real = ops.cast(self._real(inputs, mask), inputs.dtype)  # (batch, T)
        return inputs[:, 0, :] * real[:, 0:1]  # (batch, d)


@keras.saving.register_keras_serializable(package="attnlab")
class LastPooling(_MaskedPooling):
    """The vector of the last real token of each sequence.

    The index is the largest position where the mask is `True` (that is,
    `num_real - 1` for end-padded batches), so any mask layout works. This
    is not the last position `T - 1` unless the row has no padding.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`.
        training: Unused.

    Returns:
        Tensor of shape `(batch_size, d)`; zeros for rows without real
        tokens.
    """

    def call(self, inputs, mask=None, training=None):
        real = self._real(inputs, mask)  # (batch, T)
        positions = ops.arange(ops.shape(inputs)[1], dtype="int32")  # (T,)
        # -1 for padding, so an all-padding row selects no position at all.
        last = ops.max(ops.where(real, positions[None, :], -1), axis=1)  # (batch,)
        select = ops.cast(ops.equal(positions[None, :], last[:, None]), inputs.dtype)
        # One-hot selection instead of a gather: works with a dynamic T.
        return ops.sum(inputs * select[:, :, None], axis=1)  # (batch, d)


@keras.saving.register_keras_serializable(package="attnlab")
class AttentionPooling(_MaskedPooling):
    """Learned-query attention pooling.

    `score_t = v^T tanh(W h_t + b)`; the scores are softmax-normalised over
    the real tokens and the output is the weighted sum of the inputs.

    Args:
        units: Positive integer, size of the hidden scoring projection, or
            `None` (default) to use the input feature size `d`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`.
        training: Unused.
        return_attention_scores: Boolean, whether to also return the
            pooling weights.

    Returns:
        Tensor of shape `(batch_size, d)`, or, with
        `return_attention_scores=True`, a tuple `(pooled, weights)` with
        `weights` of shape `(batch_size, T)`: exactly 0 at padding, summing
        to 1 over real tokens (all zeros for rows without real tokens).
    """

    def __init__(self, units=None, **kwargs):
        check_attention_pooling(units=units, **kwargs)
        super().__init__(**kwargs)
        self.units = None if units is None else int(units)

    def build(self, input_shape):
        super().build(input_shape)
        d = input_shape[-1]
        if d is None:
            raise ValueError(
                f"{self.__class__.__name__} needs a known feature size d. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        hidden = self.units or d
        self.kernel = self.add_weight(
            name="kernel", shape=(d, hidden), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(hidden,), initializer="zeros")
        self.query = self.add_weight(
            name="query", shape=(hidden,), initializer="glorot_uniform"
        )

    def call(self, inputs, mask=None, training=None, return_attention_scores=False):
        real = self._real(inputs, mask)  # (batch, T)
        hidden = ops.tanh(ops.matmul(inputs, self.kernel) + self.bias)  # (b, T, h)
        scores = ops.matmul(hidden, self.query)  # (batch, T)
        scores = ops.where(real, scores, large_negative(scores.dtype))
        weights = ops.softmax(scores, axis=-1)  # (batch, T)
        # Exact zeros at padding; all-padding rows become all-zero, not uniform.
        weights = weights * ops.cast(real, weights.dtype)
        pooled = ops.sum(inputs * weights[:, :, None], axis=1)  # (batch, d)
        if return_attention_scores:
            return pooled, weights
        return pooled

    def compute_output_spec(
        self, inputs, mask=None, training=None, return_attention_scores=False
    ):
        pooled = keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype=self.compute_dtype
        )
        if return_attention_scores:
            weights = keras.KerasTensor(inputs.shape[:2], dtype=self.compute_dtype)
            return pooled, weights
        return pooled

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="attnlab")
class FlattenPooling(_MaskedPooling):
    """Zero the padded positions, then flatten to `(batch, T * d)`.

    Needs a static sequence length: the input's own `T` if known, else
    `max_len`.

    Args:
        max_len: Positive integer sequence length `T`, or `None` (default)
            to take it from the input shape. When both are known they must
            agree.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`.
        training: Unused.

    Returns:
        Tensor of shape `(batch_size, T * d)`.
    """

    def __init__(self, max_len=None, **kwargs):
        check_flatten_pooling(max_len=max_len, **kwargs)
        super().__init__(**kwargs)
        self.max_len = None if max_len is None else int(max_len)

    def _length(self, input_shape):
        length = input_shape[1]
        if length is None and self.max_len is None:
            raise ValueError(
                f"{self.__class__.__name__} needs a static sequence length: "
                "the input's time dimension is None and `max_len` is None. "
                "Pass `max_len` or give the model input a fixed length. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if length is not None and self.max_len is not None and length != self.max_len:
            raise ValueError(
                f"{self.__class__.__name__}: the input's time dimension "
                f"({length}) differs from `max_len`. "
                f"Received: max_len={self.max_len}"
            )
        return length if length is not None else self.max_len

    def build(self, input_shape):
        super().build(input_shape)
        if input_shape[-1] is None:
            raise ValueError(
                f"{self.__class__.__name__} needs a known feature size d. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self._flat_size = self._length(input_shape) * input_shape[-1]

    def call(self, inputs, mask=None, training=None):
        real = ops.cast(self._real(inputs, mask), inputs.dtype)  # (batch, T)
        zeroed = inputs * real[:, :, None]  # (batch, T, d)
        return ops.reshape(zeroed, (ops.shape(inputs)[0], self._flat_size))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._length(input_shape) * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len}
