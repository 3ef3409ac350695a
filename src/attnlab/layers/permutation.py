"""Jain & Wallace (2019)'s permutation test, inside the attention layers.

An attention layer whose ``permute_keys`` attribute is an integer seed applies, in place of its
weights, each row's weights permuted at random among that row's real keys (padding keeps its
weight), so the rest of the network sees the same weights in another order. The attribute is
read when the layer's call is traced: set it, trace a fresh function, predict, and reset it
(:func:`attnlab.fitting.permutation_tvd` does this). The seed is an integer, so every batch of
the same shape draws the same random keys; the texts differ, so the permutations do too.
"""

from keras import ops
import keras


def permute_real_keys(weights, mask, seed):
    """Each row of `weights` permuted among its real keys.

    Args:
        weights: `(batch, heads, T, T)` attention weights (row i: query i over keys j).
        mask: Boolean `(batch, T)`, `True` at real tokens, or `None` (every key is real).
        seed: Integer seed of the random permutation.

    Returns:
        Tensor like `weights`: for every row, the weights at the real keys are a random
        permutation of that row's weights at the real keys; weights at padding are unchanged.
    """
    shape = ops.shape(weights)
    length = shape[-1]
    real = ops.ones((shape[0], length), dtype="bool") if mask is None else ops.cast(mask, "bool")
    real = real[:, None, None, :]  # (batch, 1, 1, T)
    # A random order of the real keys first, then the padding (u = 2 > any uniform draw).
    u = keras.random.uniform(shape, seed=seed)
    order = ops.argsort(ops.where(real, u, 2.0), axis=-1)
    shuffled = ops.take_along_axis(weights, order, axis=-1)  # shuffled[k] = w[order[k]]
    # The k-th real position is the k-th element of `ordered`; rank[j] says where j stands in it.
    positions = ops.arange(length, dtype="int32")[None, None, None, :]
    ordered = ops.argsort(ops.where(real, positions, length + positions), axis=-1)
    rank = ops.argsort(ordered, axis=-1)
    rank = ops.broadcast_to(rank, shape)
    permuted = ops.take_along_axis(shuffled, rank, axis=-1)  # real j <- a real key's weight
    return ops.where(real, permuted, weights)
