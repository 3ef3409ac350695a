"""Mask-aware multi-width 1-D convolution: the sequence encoder of Kim (2014)'s CNN.

Kim's CNN-rand (the MR/TREC baseline attnlab is compared with) runs filters of widths
3, 4 and 5 over the embeddings and max-pools each feature map over time. This layer is
that convolution without the pooling, so attention and any attnlab pooling can follow it:
`(batch, T, d_in) -> (batch, T, filters * len(kernel_sizes))`, same length, mask passed on.
"""

import keras
from keras import ops

from attnlab.checks import check_multi_width_conv1d
from attnlab.layers.base import check_sequence_shape


@keras.saving.register_keras_serializable(package="attnlab")
class MultiWidthConv1D(keras.layers.Layer):
    """Parallel `Conv1D(filters, k, padding="same")` for each width k, concatenated.

    Padding positions are zeroed before the convolution (so the padding embedding never
    leaks into the windows of real tokens) and after it (so they stay exactly zero for
    the layers that follow); the Keras mask is passed on unchanged.

    Args:
        filters: Positive integer, feature maps per kernel width.
        kernel_sizes: Non-empty sequence of positive integers, the window widths.
        activation: Activation of each convolution (default `"relu"`, as in Kim 2014).
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d_in)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`, `True` at real tokens.
        training: Unused.

    Returns:
        Tensor of shape `(batch_size, T, filters * len(kernel_sizes))`.
    """

    def __init__(self, filters, kernel_sizes=(3, 4, 5), activation="relu", **kwargs):
        check_multi_width_conv1d(filters=filters, kernel_sizes=kernel_sizes, activation=activation, **kwargs)
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.activation = keras.activations.get(activation)
        self.supports_masking = True
        self.convs = [
            keras.layers.Conv1D(self.filters, k, padding="same", activation=self.activation, name=f"conv{k}")
            for k in self.kernel_sizes
        ]

    def build(self, input_shape):
        check_sequence_shape(self, input_shape)
        for conv in self.convs:
            conv.build(input_shape)

    def call(self, inputs, mask=None, training=None):
        if mask is not None:
            real = ops.cast(mask, inputs.dtype)[:, :, None]  # (B, T, 1)
            inputs = inputs * real
        x = ops.concatenate([conv(inputs) for conv in self.convs], axis=-1)  # (B, T, filters*n)
        if mask is not None:
            x = x * real
        return x

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.filters * len(self.kernel_sizes))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_sizes": list(self.kernel_sizes),
                "activation": keras.activations.serialize(self.activation),
            }
        )
        return config
