"""Uniform attention: the control of Wiegreffe & Pinter (2019), "Attention is not not Explanation"."""

import keras
from keras import ops

from attnlab.checks import check_uniform_attention
from attnlab.layers.base import SequenceAttention, attention_returns


@keras.saving.register_keras_serializable(package="attnlab")
class UniformAttention(SequenceAttention):
    """Attention frozen to the uniform distribution over the real keys.

    Wiegreffe & Pinter (2019) compare a trained attention layer with one whose weights are
    fixed to uniform: if a model does as well with it, its attention weights were not needed
    for the task. Here every query row gives weight exactly `1 / n` to each of the `n` keys it
    may attend to and 0 to the others; there are no query or key weights, only the value
    projection, so `outputs[b, i] = mean over those keys of (x W_v + b_v)`, the same for
    every query `i` (computed as one masked mean, never as a `T x T` product).

    Args:
        units: Positive integer, size of the value projection (the output width).
        mask: How the Keras padding mask is used, as in `SelfAttention`: `"none"` (all `T`
            keys, weight `1 / T`), `"keys"` (the real keys only) or `"keys_and_queries"`
            (also zero weight rows and outputs at padded queries). A row with no real key
            gets zero weights and a zero output. Defaults to `"keys"`.
        use_bias: Boolean, whether the value projection has a bias. Defaults to `True`.
        heads: Positive integer dividing `units`. Every head has the same uniform weights, so
            this only sets the head axis of the returned weights (so the layer drops into a
            multi-head configuration, e.g. `model=transformer model/attention=uniform`).
            Defaults to 1.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d_in)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`, `True` for real tokens.
        training: Unused (there is nothing to drop out).
        return_attention_scores: Boolean, whether to also return the weights.
        return_max_logits: Boolean, whether to also return each query row's largest logit.

    Returns:
        Outputs of shape `(batch_size, T, units)`; with either flag, the tuple
        `(outputs, [weights], [max_logits])` of `attnlab.layers.base`: `weights`
        `(batch_size, heads, T, T)` as described; `max_logits` `(batch_size, heads, T)` all zeros
        (uniform weights are the softmax of constant logits, taken as 0, so the
        `attention_max_logit` metric of this layer is 0). `effective_scale()` is 0.0 for
        the same reason. The input mask is passed on unchanged.
    """

    def __init__(self, units, mask="keys", use_bias=True, heads=1, **kwargs):
        check_uniform_attention(units=units, mask=mask, use_bias=use_bias, heads=heads, **kwargs)
        super().__init__(**kwargs)
        self.units = int(units)
        self.heads = int(heads)
        self.mask_mode = mask  # `mask` is also the call argument's name
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        super().build(input_shape)
        self.value_kernel = self.add_weight(
            name="value_kernel", shape=(input_shape[-1], self.units), initializer="glorot_uniform"
        )
        self.value_bias = (
            self.add_weight(name="value_bias", shape=(self.units,), initializer="zeros") if self.use_bias else None
        )

    def effective_scale(self):
        """0.0: the logits are constant (0), whatever the queries and keys."""
        return 0.0

    def call(self, inputs, mask=None, training=None, return_attention_scores=False, return_max_logits=False):
        v = ops.matmul(inputs, self.value_kernel)  # (batch, T, units)
        if self.value_bias is not None:
            v = v + self.value_bias
        if mask is None or self.mask_mode == "none":
            keys = ops.ones_like(inputs[:, :, 0])  # (batch, T): every key counts
        else:
            keys = ops.cast(mask, inputs.dtype)
        share = keys / ops.maximum(ops.sum(keys, axis=1, keepdims=True), 1.0)  # (batch, T): 1/n or 0
        outputs = ops.sum(v * share[:, :, None], axis=1, keepdims=True)  # (batch, 1, units)
        rows = keys if self.mask_mode == "keys_and_queries" else ops.ones_like(keys)  # (batch, T)
        outputs = outputs * rows[:, :, None]  # (batch, T, units); a row without keys is already 0
        return attention_returns(
            outputs, return_attention_scores, return_max_logits,
            weights=lambda: ops.repeat((rows[:, :, None] * share[:, None, :])[:, None], self.heads, axis=1),
            max_logits=lambda: ops.repeat(ops.zeros_like(rows)[:, None, :], self.heads, axis=1),  # (batch, H, T)
        )

    def get_config(self):
        return {**super().get_config(), "units": self.units, "mask": self.mask_mode, "use_bias": self.use_bias,
                "heads": self.heads}
