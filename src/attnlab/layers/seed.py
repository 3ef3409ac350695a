"""The widely copied Keras-2 self-attention layer, ported to Keras 3."""

import keras
from keras import ops

from attnlab.layers.attention import _SequenceAttentionShapes, check_positive_int, check_sequence_shape

# The original divides by sqrt(64) whatever the projection size is.
SEED_SCALE = 64**0.5


@keras.saving.register_keras_serializable(package="attnlab")
class SeedSelfAttention(_SequenceAttentionShapes, keras.layers.Layer):
    """Single-head self-attention with the seed layer's exact math.

    Reproduces the original Keras-2 layer (without its debug prints):

    ```
    kernel = add_weight(shape=(3, d_in, units), initializer="uniform")
    WQ, WK, WV = x @ kernel[0], x @ kernel[1], x @ kernel[2]
    weights = softmax(WQ @ WK^T / 64 ** 0.5)
    outputs = weights @ WV
    ```

    Keras 2's `"uniform"` initializer is `RandomUniform(-0.05, 0.05)`. There
    is no bias and the padding mask is ignored for the computation (padding
    is attended to), but it is passed on unchanged so downstream layers
    still see it. Kept as a baseline; prefer `SelfAttention`.

    Args:
        units: Positive integer, projection size (`output_dim` in the
            original).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d_in)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`. Ignored by
            the computation, passed on by `compute_mask`.
        training: Unused; accepted for signature compatibility.
        return_attention_scores: Boolean, whether to also return the
            attention weights.

    Returns:
        Outputs of shape `(batch_size, T, units)`, or, with
        `return_attention_scores=True`, a tuple `(outputs, weights)` with
        `weights` of shape `(batch_size, 1, T, T)` (one head, so callers can
        treat it like a 1-head `SelfAttention`).
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("units", units)
        self.units = int(units)
        self.heads = 1  # one head: weights are (batch, 1, T, T), like SelfAttention's
        # Without this Keras would drop the mask; the seed layer ignores it
        # but poolings after it need it.
        self.supports_masking = True

    def build(self, input_shape):
        check_sequence_shape(self, input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(3, input_shape[-1], self.units),
            initializer=keras.initializers.RandomUniform(-0.05, 0.05),
        )

    def call(self, inputs, mask=None, training=None, return_attention_scores=False):
        wq = ops.matmul(inputs, self.kernel[0])  # (batch, T, units)
        wk = ops.matmul(inputs, self.kernel[1])  # (batch, T, units)
        wv = ops.matmul(inputs, self.kernel[2])  # (batch, T, units)
        scores = ops.matmul(wq, ops.transpose(wk, (0, 2, 1)))  # (batch, T, T)
        scores = ops.divide(scores, SEED_SCALE)
        weights = ops.softmax(scores, axis=-1)  # (batch, T, T)
        outputs = ops.matmul(weights, wv)  # (batch, T, units)
        if return_attention_scores:
            return outputs, ops.expand_dims(weights, 1)  # (batch, 1, T, T)
        return outputs

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "units": self.units}
