"""What the attention layers share: the input check, the mask filler, and the call contract.

Every attention layer of attnlab (`SelfAttention`, `SeedSelfAttention`, `UniformAttention`)
maps `(batch, T, d_in)` to `(batch, T, units)`, passes the Keras mask on, and answers
`call(inputs, mask=None, training=None, return_attention_scores=False,
return_max_logits=False)` with

* `outputs` alone when both flags are False;
* otherwise a tuple `(outputs, [weights], [max_logits])` holding, in this order, only what was
  asked for:
  - `weights`: `(batch, heads, T, T)` post-softmax, post-mask, pre-dropout attention weights
    (`weights[b, h, i, j]`: how much query `i` attends to key `j`);
  - `max_logits`: `(batch, heads, T)`, for each query row the largest pre-softmax logit
    (after scaling, so exactly what the softmax saw) over the keys the row attends to: the
    real keys when the layer masks keys, every key when it does not (`mask="none"`, the seed
    layer). A row with no key to attend to (an all-padding text, or a padded query under
    `mask="keys_and_queries"`) gets 0. The metric `attention_max_logit` is the mean of this
    over real query rows.

`effective_scale()` returns, as a Python float, the factor the layer multiplies its query-key
similarity by (see each layer's docstring).
"""

import keras


def large_negative(dtype):
    """Filler for masked logits: exp() of it underflows to 0, and it does not overflow `dtype`.

    65504 is the float16 maximum; -1e9 would become -inf there (and an all -inf row is NaN).
    """
    return -65504.0 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


def check_sequence_shape(layer, input_shape):
    """Raise ValueError unless `input_shape` is (batch, T, d_in) with a known d_in."""
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"{layer.__class__.__name__} expects inputs of shape "
            "(batch_size, T, d_in) with a known d_in. "
            f"Received: input_shape={tuple(input_shape)}"
        )


def attention_returns(outputs, return_attention_scores, return_max_logits, weights=None, max_logits=None):
    """`outputs`, or the tuple `(outputs, [weights], [max_logits])` of what was asked for.

    `weights` and `max_logits` may be zero-argument callables, called only when asked for (so
    the training path never builds them).
    """
    parts = [outputs]
    if return_attention_scores:
        parts.append(weights() if callable(weights) else weights)
    if return_max_logits:
        parts.append(max_logits() if callable(max_logits) else max_logits)
    return parts[0] if len(parts) == 1 else tuple(parts)


class SequenceAttention(keras.layers.Layer):
    """Base class of attnlab's attention layers: mask, shapes and the return contract.

    Subclasses set `self.units` and `self.heads` in `__init__` and implement `call` (returning
    through `attention_returns`) and `effective_scale`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Accept the Keras mask and pass it on: the sequence length is unchanged, so the
        # layers after (pooling) still need to know which positions are padding.
        self.supports_masking = True
        # An integer seed: the weights applied are each row's permuted among its real keys
        # (Jain & Wallace's permutation test; read when the call is traced; see
        # attnlab.layers.permutation). Never saved: a model always loads unpermuted.
        self.permute_keys = None

    def _applied(self, weights, mask):
        """`weights` (batch, [heads,] T, T) as applied to the values: permuted under `permute_keys`."""
        if self.permute_keys is None:
            return weights
        from attnlab.layers.permutation import permute_real_keys

        if len(weights.shape) == 3:
            return permute_real_keys(weights[:, None], mask, self.permute_keys)[:, 0]
        return permute_real_keys(weights, mask, self.permute_keys)

    def build(self, input_shape):
        check_sequence_shape(self, input_shape)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def compute_output_spec(
        self, inputs, mask=None, training=None, return_attention_scores=False, return_max_logits=False
    ):
        batch, length = inputs.shape[0], inputs.shape[1]
        return attention_returns(
            keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype),
            return_attention_scores,
            return_max_logits,
            keras.KerasTensor((batch, self.heads, length, length), dtype=self.compute_dtype),
            keras.KerasTensor((batch, self.heads, length), dtype=self.compute_dtype),
        )

    def effective_scale(self):
        """The factor applied to the query-key similarity, as a Python float."""
        raise NotImplementedError
