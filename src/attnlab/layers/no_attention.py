"""No attention: the control that leaves the sequence as the encoder gave it (Kim 2014's CNN)."""

import keras
from keras import ops

from attnlab.checks import check_no_attention
from attnlab.layers.base import SequenceAttention, attention_returns


@keras.saving.register_keras_serializable(package="attnlab")
class NoAttention(SequenceAttention):
    """Attention fixed to the identity: each real query attends to itself only, so
    `outputs == inputs` (no weights, no projection; the layer has no parameters).

    It keeps the attention contract of `attnlab.layers.base`, so a model without attention
    (Kim's CNN: convolutions straight into max-over-time pooling) is trained, evaluated,
    saved and served by the same code as the others; its attention metrics describe the
    identity (entropy 0, each token attends to itself) and mean nothing more.

    Args:
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d_in)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`, `True` for real tokens.
        training: Unused.
        return_attention_scores: Boolean, whether to also return the weights.
        return_max_logits: Boolean, whether to also return each query row's largest logit.

    Returns:
        `inputs` unchanged; with either flag, the tuple `(outputs, [weights], [max_logits])`:
        `weights` `(batch_size, 1, T, T)`, the identity on real tokens (a padded row is 0);
        `max_logits` zeros. Under `permute_keys` (the permutation test) the permuted identity
        is applied to the inputs. `effective_scale()` is 0.0. The mask is passed on.
    """

    def __init__(self, **kwargs):
        check_no_attention(**kwargs)
        super().__init__(**kwargs)
        self.units = None  # set in build: the output width is the input width
        self.heads = 1

    def build(self, input_shape):
        super().build(input_shape)
        self.units = int(input_shape[-1])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def effective_scale(self):
        """0.0: there are no query-key logits."""
        return 0.0

    def call(self, inputs, mask=None, training=None, return_attention_scores=False, return_max_logits=False):
        length = ops.shape(inputs)[1]
        real = ops.ones_like(inputs[:, :, 0]) if mask is None else ops.cast(mask, inputs.dtype)  # (batch, T)
        weights = ops.eye(length, dtype=inputs.dtype)[None] * real[:, :, None]  # (batch, T, T)
        outputs = inputs
        if self.permute_keys is not None:
            outputs = ops.matmul(self._applied(weights, mask), inputs)
        return attention_returns(
            outputs, return_attention_scores, return_max_logits,
            weights=lambda: weights[:, None], max_logits=lambda: ops.zeros_like(real)[:, None, :],
        )
