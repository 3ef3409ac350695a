"""Configurable multi-head scaled dot-product self-attention."""

import math

import keras
from keras import ops

from attnlab.checks import MASK_MODES, SCALES, check_self_attention
from attnlab.layers.base import SequenceAttention, attention_returns, large_negative

__all__ = ["MASK_MODES", "SCALES", "SelfAttention"]

# The scales whose factor is one number for the whole layer; it is folded into the query
# projection (a (d_in, units) multiply instead of one over every (T, T) score matrix).
_FOLDED = ("sqrt_dk", "constant", "learned", "log_n")


@keras.saving.register_keras_serializable(package="attnlab")
class SelfAttention(SequenceAttention):
    """Multi-head scaled dot-product self-attention over one sequence.

    Queries, keys and values are separate linear projections of the same
    input. The projected `units` features are split into `heads` heads of
    `d_k = units // heads` features each; every head computes
    `softmax(logits) V`, and the heads are concatenated back to `units`
    features. There is no output projection.

    Args:
        units: Positive integer, total projection size (all heads together).
            Must be divisible by `heads`.
        heads: Positive integer, number of attention heads. Defaults to `1`.
        scale: How the logits are formed from `q` and `k` (per head), one of
            `SCALES`:
            - `"sqrt_dk"`: `q.k / sqrt(d_k)` (Vaswani et al. 2017).
            - `"constant"`: `q.k / scale_constant`.
            - `"none"`: `q.k`.
            - `"learned"`: `s * q.k` with `s` a trainable scalar weight
              `scale_factor`, stored as the plain factor (not its log) and
              initialised to `1 / sqrt(d_k)`.
            - `"qk_norm"`: `g * (q / |q|).(k / |k|)` (Henry et al. 2020,
              "Query-Key Normalization for Transformers"): the cosine of `q`
              and `k` (L2 norms per head) times a trainable scalar gain `g`
              (the weight `scale_factor`), which replaces `1 / sqrt(d_k)`.
              The paper initialises `g` to `log2(L^2 - L)`, `L` the 97.5th
              percentile of the training sequence lengths: cosines lie in
              [-1, 1], so without a gain of that order a row of `L` keys
              could never put most of its weight on one key, and `L^2 - L`
              (the off-diagonal entries of an `L x L` map) makes the gain
              grow with the number of competitors. A layer cannot see the
              training lengths, so `g` starts at `qk_norm_gain` when given
              (pass `log2(L^2 - L)` computed from the data) and otherwise
              at `log2(T^2 - T)` with `T` the input's static length
              (`max_len` for attnlab models: an upper bound of the paper's
              `L`, about 12 for T = 64); T < 2 counts as 2 (g = 1).
            - `"log_n"`: `log(n) * q.k / sqrt(d_k)` with `n` the number of
              keys the row attends to (its real keys when keys are masked,
              `T` under `mask="none"`). Chiang & Cholak (2022), "Overcoming
              a theoretical limitation of self-attention", Sec. 5, multiply
              the usual scaled logits by `log n` (the change keeps
              `1 / sqrt(d_k)`; it multiplies, not replaces), so the softmax
              can stay peaked as `n` grows. A row with one real key has
              `log 1 = 0`: all its logits are 0 and its one key gets weight
              1 (finite); rows with no key use `log 1` as well.
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
        qk_norm_gain: Optional positive float, the initial gain `g` of
            `scale="qk_norm"` (ignored by the other scales). `None` (default)
            derives it from the input length as described above.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Float tensor of shape `(batch_size, T, d_in)`.
        mask: Optional boolean tensor of shape `(batch_size, T)`, `True` for
            real tokens. Filled in automatically from the Keras mask of
            `inputs` (e.g. from `Embedding(mask_zero=True)`).
        training: Python boolean, whether to apply attention dropout.
        return_attention_scores: Boolean, whether to also return the
            attention weights.
        return_max_logits: Boolean, whether to also return each query row's
            largest logit.

    Returns:
        Outputs of shape `(batch_size, T, units)`; with either flag, the
        tuple `(outputs, [weights], [max_logits])` of what was asked for, in
        that order (`attnlab.layers.base` states the contract):
        `weights` `(batch_size, heads, T, T)` post-softmax, post-mask,
        pre-dropout; `max_logits` `(batch_size, heads, T)`, each row's
        largest logit after scaling over the keys it attends to (0 for rows
        with none). The input mask is passed on unchanged to `outputs`.
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
        qk_norm_gain=None,
        **kwargs,
    ):
        check_self_attention(units=units, heads=heads, scale=scale, scale_constant=scale_constant,
                             qk_norm_gain=qk_norm_gain, mask=mask, dropout=dropout, use_bias=use_bias,
                             seed=seed, **kwargs)
        super().__init__(**kwargs)
        self.units = int(units)
        self.heads = int(heads)
        self.head_dim = self.units // self.heads
        self.scale = scale
        self.scale_constant = float(scale_constant)
        self.qk_norm_gain = None if qk_norm_gain is None else float(qk_norm_gain)
        # `mask` is also the name of the call argument, hence `mask_mode`.
        self.mask_mode = mask
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        self.seed = seed
        if self.dropout > 0:
            self.seed_generator = keras.random.SeedGenerator(seed=seed)

    def build(self, input_shape):
        super().build(input_shape)
        d_in = input_shape[-1]
        # Separate query/key/value variables (the layout of every saved model).
        for name in ("query", "key", "value"):
            kernel = self.add_weight(name=f"{name}_kernel", shape=(d_in, self.units), initializer="glorot_uniform")
            bias = (self.add_weight(name=f"{name}_bias", shape=(self.units,), initializer="zeros")
                    if self.use_bias else None)
            setattr(self, f"{name}_kernel", kernel)
            setattr(self, f"{name}_bias", bias)
        self.scale_factor = None
        if self.scale in ("learned", "qk_norm"):
            initial = 1.0 / math.sqrt(self.head_dim) if self.scale == "learned" else self._qk_norm_init(input_shape)
            self.scale_factor = self.add_weight(
                name="scale_factor", shape=(), initializer=keras.initializers.Constant(initial), trainable=True
            )

    def _qk_norm_init(self, input_shape):
        if self.qk_norm_gain is not None:
            return self.qk_norm_gain
        length = input_shape[1]
        if length is None:
            raise ValueError(
                "SelfAttention(scale='qk_norm') starts its gain at log2(T^2 - T) and needs a static "
                "sequence length T for that, or an explicit `qk_norm_gain`. "
                f"Received: input_shape={tuple(input_shape)}, qk_norm_gain=None"
            )
        length = max(int(length), 2)
        return math.log2(length * length - length)

    def _folded_factor(self):
        """The one-number part of the scale (a float or the weight), or None."""
        if self.scale in ("sqrt_dk", "log_n"):
            return 1.0 / math.sqrt(self.head_dim)
        if self.scale == "constant":
            return 1.0 / self.scale_constant
        if self.scale == "learned":
            return self.scale_factor
        return None

    def effective_scale(self, n_keys=None):
        """The factor the layer multiplies its query-key similarity by, as a Python float.

        `sqrt_dk`: `1 / sqrt(d_k)`; `constant`: `1 / scale_constant`; `none`: `1.0`;
        `learned`: the current value of `scale_factor`; `qk_norm`: the current gain `g` (it
        multiplies cosines in [-1, 1], not raw dot products); `log_n`: `log(n_keys) / sqrt(d_k)`
        for a row of `n_keys` attended keys, and with `n_keys=None` the length-free part
        `1 / sqrt(d_k)` (the factor at n = e). The learned values need a built layer.
        """
        if self.scale in ("learned", "qk_norm"):
            if not self.built:
                raise ValueError(f"{self.name}: effective_scale() of scale={self.scale!r} needs a built layer "
                                 "(call it on an input first).")
            return float(ops.convert_to_numpy(self.scale_factor))
        if self.scale == "none":
            return 1.0
        factor = float(self._folded_factor())
        if self.scale == "log_n" and n_keys is not None:
            factor *= math.log(max(int(n_keys), 1))
        return factor

    def _dense(self, inputs, kernel, bias, factor=None):
        # (batch, T, d_in) -> (batch, T, units); `factor` scales the kernel and bias.
        if factor is not None:
            factor = ops.cast(factor, kernel.dtype)
            kernel = kernel * factor
            bias = None if bias is None else bias * factor
        x = ops.matmul(inputs, kernel)
        return x if bias is None else ops.add(x, bias)

    def _split_heads(self, x):
        # (batch, T, units) -> (batch, heads, T, d_k); one head stays (batch, T, units).
        if self.heads == 1:
            return x
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], self.heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def _merge_heads(self, x):
        if self.heads == 1:
            return x
        x = ops.transpose(x, (0, 2, 1, 3))  # (batch, T, heads, d_k)
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], self.units))

    def _queries_keys(self, inputs, real):
        """Per-head queries (with every factor of the scale applied) and keys."""
        q = self._split_heads(self._dense(inputs, self.query_kernel, self.query_bias, self._folded_factor()))
        k = self._split_heads(self._dense(inputs, self.key_kernel, self.key_bias))
        if self.scale == "qk_norm":
            q = _l2_normalize(q) * ops.cast(self.scale_factor, q.dtype)
            k = _l2_normalize(k)
        elif self.scale == "log_n":
            q = q * self._log_n(inputs, real, ops.ndim(q))
        return q, k

    def _log_n(self, inputs, real, rank):
        """log(attended keys of each row), shaped to broadcast over (batch, [heads,] T, d_k)."""
        if real is None:
            n = ops.cast(ops.shape(inputs)[1], inputs.dtype) * ops.ones_like(inputs[:, 0, 0])
        else:
            n = ops.sum(ops.cast(real, inputs.dtype), axis=1)  # (batch,)
        return ops.reshape(ops.log(ops.maximum(n, 1.0)), (-1,) + (1,) * (rank - 1))

    def call(self, inputs, mask=None, training=None, return_attention_scores=False, return_max_logits=False):
        real = None if mask is None or self.mask_mode == "none" else ops.cast(mask, "bool")  # (batch, T)
        q, k = self._queries_keys(inputs, real)
        v = self._split_heads(self._dense(inputs, self.value_kernel, self.value_bias))
        keys = None
        if real is not None:  # (batch, [1,] 1, T): broadcasts over heads and queries
            keys = real[:, None, :] if self.heads == 1 else real[:, None, None, :]
        dropout = bool(training) and self.dropout > 0
        weights = logits = None
        if return_attention_scores or return_max_logits or dropout or self.permute_keys is not None:
            # Autodiff through every op: the weights and logits stay differentiable.
            logits = masked_logits(q, k, keys)
            weights = ops.softmax(logits, axis=-1)
            applied = self._applied(weights, mask)
            applied = keras.random.dropout(applied, self.dropout, seed=self.seed_generator) if dropout else applied
            attended = ops.matmul(applied, v)
        else:
            attended = attend(q, k, v, keys)  # the training path: same values, a shorter backward
        outputs = self._merge_heads(attended)  # (batch, T, units)
        rows = self._attending_rows(real)  # (batch, T, 1) or (batch, 1, 1), or None
        if rows is not None:
            # Rows without a real key (all padding; padded queries under keys_and_queries) get
            # uniform weights from the softmax: their outputs are zeroed here (which also zeroes
            # their gradient, as `attend` requires), their weights in _shown_weights.
            outputs = outputs * ops.cast(rows, outputs.dtype)
        return attention_returns(
            outputs, return_attention_scores, return_max_logits,
            weights=lambda: self._shown_weights(weights, keys, rows),
            max_logits=lambda: self._max_logits(logits, rows),
        )

    def _attending_rows(self, real):
        """Boolean: query rows that attend to at least one key (None when all do)."""
        if real is None:
            return None
        if self.mask_mode == "keys_and_queries":
            return real[:, :, None]  # a padded query attends to nothing; covers all-padding rows
        return ops.any(real, axis=1)[:, None, None]

    def _head_rows(self, rows):
        return rows if self.heads == 1 else rows[:, None]

    def _shown_weights(self, weights, keys, rows):
        """The weights as returned: exact zeros at padded keys and at rows attending to nothing."""
        if keys is not None:
            weights = weights * ops.cast(keys, weights.dtype)
            weights = weights * ops.cast(self._head_rows(rows), weights.dtype)
        return self._heads_first(weights)

    def _max_logits(self, logits, rows):
        """(batch, heads, T): each row's largest logit; 0 for rows attending to nothing."""
        top = ops.max(logits, axis=-1)  # the filler never wins in a row with a real key
        if rows is not None:
            attending = self._head_rows(rows)[..., 0]
            top = ops.where(attending, top, ops.zeros_like(top))
        return self._heads_first(top)

    def _heads_first(self, x):
        """Add the head axis that one-head tensors leave out."""
        return x if self.heads > 1 else ops.expand_dims(x, 1)

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
            "qk_norm_gain": self.qk_norm_gain,
        }
        return {**base_config, **config}


def masked_logits(q, k, keys):
    """`q k^T` per head, `(batch, [heads,] T, T)`, with the mask filler where `keys` is False.

    einsum rather than `matmul(q, transpose(k))`: a batched matmul with the adjoint flag, no
    transposed copy of `k`. `where()` rather than an additive bias: the filler does not depend
    on the logits and cannot overflow float16.
    """
    logits = ops.einsum("...qd,...kd->...qk", q, k)
    return logits if keys is None else ops.where(keys, logits, large_negative(logits.dtype))


def attend(q, k, v, keys):
    """`softmax(masked_logits(q, k, keys)) v`, with a hand-written gradient.

    The backward uses the identity FlashAttention (Dao et al. 2022) relies on: with
    `o = p v`, the softmax gradient's row term `sum_j p_ij dp_ij` equals `sum_d do_id o_id`,
    a `(.., T, d)` product instead of a `(.., T, T)` one, and the mask needs no gradient of
    its own (`p` is exactly 0 at masked keys, so is `ds = p * (dp - row)`). That saves two
    passes over `T x T` tensors per step. Exact for every row that attends to a real key;
    a row without one (uniform `p` over masked keys) must get a zero upstream gradient,
    which `SelfAttention` ensures by zeroing those rows' outputs.
    """

    @ops.custom_gradient
    def core(q, k, v):
        p = ops.softmax(masked_logits(q, k, keys), axis=-1)
        o = ops.matmul(p, v)

        def grad(*upstream, **unused):
            do = upstream[0]
            dv = ops.einsum("...qk,...qd->...kd", p, do)
            dp = ops.einsum("...qd,...kd->...qk", do, v)
            ds = (dp - ops.sum(do * o, axis=-1, keepdims=True)) * p
            return ops.matmul(ds, k), ops.einsum("...qk,...qd->...kd", ds, q), dv

        return o, grad

    return core(q, k, v)


def _l2_normalize(x, epsilon=1e-6):
    """`x / max(|x|, epsilon)` over the last axis (per head)."""
    squared = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, epsilon * epsilon))
