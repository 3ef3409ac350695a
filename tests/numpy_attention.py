"""NumPy (float64) references of attnlab's attention layers, written from the papers' formulas.

Straightforward on purpose: per-head loops, masks as -inf, no folding of factors.
"""

import math

import numpy as np


def softmax_rows(logits):
    """Softmax over the last axis; rows that are all -inf give zeros."""
    top = logits.max(-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(logits - top)
    total = e.sum(-1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def self_attention(x, mask, params, *, heads, scale, mask_mode, scale_constant=8.0, factor=None):
    """outputs (B, T, units), weights (B, H, T, T), max_logits (B, H, T) of SelfAttention.

    `params`: (wq, bq, wk, bk, wv, bv) (biases may be None); `factor`: the learned scale
    or the qk_norm gain.
    """
    x = np.asarray(x, np.float64)
    wq, bq, wk, bk, wv, bv = (None if p is None else np.asarray(p, np.float64) for p in params)
    proj = [x @ w + (0 if b is None else b) for w, b in ((wq, bq), (wk, bk), (wv, bv))]
    batch, length, units = proj[0].shape
    dk = units // heads
    q, k, v = (p.reshape(batch, length, heads, dk).transpose(0, 2, 1, 3) for p in proj)  # (B, H, T, dk)
    real = np.ones((batch, length), bool) if mask is None or mask_mode == "none" else np.asarray(mask, bool)
    if scale == "qk_norm":
        qn = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-6)
        kn = k / np.maximum(np.linalg.norm(k, axis=-1, keepdims=True), 1e-6)
        logits = factor * qn @ kn.transpose(0, 1, 3, 2)
    else:
        dots = q @ k.transpose(0, 1, 3, 2)
        n = np.maximum(real.sum(1), 1)[:, None, None, None]
        logits = {
            "sqrt_dk": dots / math.sqrt(dk),
            "constant": dots / scale_constant,
            "none": dots,
            "learned": dots * (factor if factor is not None else 1 / math.sqrt(dk)),
            "log_n": np.log(n) * dots / math.sqrt(dk),
        }[scale]
    logits = np.where(real[:, None, None, :], logits, -np.inf)
    weights = softmax_rows(logits)
    if mask_mode == "keys_and_queries" and mask is not None:
        weights = weights * real[:, None, :, None]
    outputs = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, units)
    attending = np.isfinite(logits.max(-1)) & (weights.sum(-1) > 0)
    max_logits = np.where(attending, logits.max(-1), 0.0)
    return outputs, weights, max_logits
