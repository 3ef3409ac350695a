"""The widely copied Keras-2 self-attention layer, ported to Keras 3."""

import keras
from keras import ops

from attnlab.checks import check_seed_self_attention
from attnlab.layers.base import SequenceAttention, attention_returns

# The original divides by sqrt(64) whatever the projection size is.
SEED_SCALE = 64**0.5


@keras.saving.register_keras_serializable(package="attnlab")
class SeedSelfAttention(SequenceAttention):
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
        return_max_logits: Boolean, whether to also return each query row's
            largest logit.

    Returns:
        Outputs of shape `(batch_size, T, units)`; with either flag, the
        tuple `(outputs, [weights], [max_logits])` of what was asked for
        (the contract of `attnlab.layers.base`), as a 1-head layer:
        `weights` `(batch_size, 1, T, T)`, `max_logits` `(batch_size, 1, T)`,
        the largest of `WQ WK^T / 8` over all keys (padding included: the
        seed layer attends to it).
    """

    def __init__(self, units, **kwargs):
        check_seed_self_attention(units=units, **kwargs)
        super().__init__(**kwargs)  # supports_masking: ignored here, but poolings after need it
        self.units = int(units)
        self.heads = 1  # one head: weights are (batch, 1, T, T), like SelfAttention's

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(3, input_shape[-1], self.units),
            initializer=keras.initializers.RandomUniform(-0.05, 0.05),
        )

    def effective_scale(self):
        """`1 / 8` (`1 / 64 ** 0.5`), whatever `units` is."""
        return 1.0 / SEED_SCALE

    def call(self, inputs, mask=None, training=None, return_attention_scores=False, return_max_logits=False):
        wq = ops.matmul(inputs, self.kernel[0])  # (batch, T, units)
        wk = ops.matmul(inputs, self.kernel[1])  # (batch, T, units)
        wv = ops.matmul(inputs, self.kernel[2])  # (batch, T, units)
        scores = ops.matmul(wq, ops.transpose(wk, (0, 2, 1)))  # (batch, T, T)
        scores = ops.divide(scores, SEED_SCALE)
        weights = ops.softmax(scores, axis=-1)  # (batch, T, T)
        outputs = ops.matmul(self._applied(weights, mask), wv)  # (batch, T, units)
        return attention_returns(
            outputs, return_attention_scores, return_max_logits,
            weights=lambda: ops.expand_dims(weights, 1),  # (batch, 1, T, T)
            max_logits=lambda: ops.expand_dims(ops.max(scores, axis=-1), 1),  # (batch, 1, T)
        )

    def get_config(self):
        base_config = super().get_config()
        return {**base_config, "units": self.units}
