"""Model views for :mod:`attnlab.faithfulness`: an attnlab text model run from token ids.

An attnlab text model is a functional ``keras.Model`` mapping strings (B, 1) to probabilities
(B, C) through layers named ``vectorizer`` (TextVectorization: ids (B, T), 0 = padding),
``embedding`` (``Embedding(mask_zero=True)``) and ``probs`` (the softmax output). Whatever
encoder sits between them, :class:`KerasView` relies on those names only.

How it runs the model (Keras 3, TensorFlow backend): two functional sub-models built from the
model's own intermediate tensors, sharing its weights (Keras clones the graph nodes and puts
new inputs where the given tensors were):

* ids -> probs (``Model(vectorizer.output, probs.output)``): the embedding recomputes the
  padding mask from the ids, so masking a token out = setting its id to 0.
* [ids, embedding output] -> probs: the mask the encoder sees is still computed from the ids
  input (Keras recorded it as ``ids != 0`` in the graph), while the embedding output is an
  input we can differentiate against. A sub-model from the embedding output alone does not
  exist: the graph's mask depends on the ids ("Output ... is not connected to inputs").

Both run as ``tf.function``s traced once per view (any batch size); the gradient uses
``tf.GradientTape``, so this module needs the TensorFlow backend (attnlab's only one).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from attnlab import checks
from attnlab.analysis import token_importance
from attnlab.faithfulness import BINS, PAD_ID, FaithfulnessResult, evaluate
from attnlab.models import EMBEDDING as EMBEDDING_LAYER
from attnlab.models import PROBS as PROBS_LAYER
from attnlab.models import VECTORIZER as VECTORIZER_LAYER
from attnlab.models import attention_sources
BATCH_SIZE = 1024  # rows per forward pass: masked copies are many and short
TRIM_CHECK_ROWS = 64
TRIM_ATOL = 1e-6


def _layer(model: keras.Model, name: str) -> keras.layers.Layer:
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"model {model.name!r} has no layer named {name!r} (an attnlab text model needs "
            f"{VECTORIZER_LAYER!r}, {EMBEDDING_LAYER!r} and {PROBS_LAYER!r}). "
            f"Received layers: {[layer.name for layer in model.layers]}"
        ) from None


class KerasView:
    """:class:`attnlab.faithfulness.ModelView` of an attnlab text model (weights shared).

    Masked copies are many, so :meth:`probs` cuts each row after its last real token
    (sorting rows by that length into batches) when the model's output does not depend on
    trailing padding: checked once, on the first rows with padding it is given, to
    ``TRIM_ATOL`` (the masked BiLSTM and CNN models pass exactly; ``model=seed`` attends to
    padding and flattens a fixed length, so it always runs at full length).

    Args:
        model: the text model (strings (B, 1) -> probabilities (B, C)).
        batch_size: rows per forward/backward pass.
        trim: None = decide by the check above; False = always full length.
    """

    def __init__(self, model: keras.Model, batch_size: int = BATCH_SIZE, trim: bool | None = None):
        self.batch_size = checks.positive_int("batch_size", batch_size)
        self.model, self._trim = model, (None if trim is None else checks.boolean("trim", trim))
        vec, emb, out = (_layer(model, n) for n in (VECTORIZER_LAYER, EMBEDDING_LAYER, PROBS_LAYER))
        self._embedding, self._ids_tensor = emb, vec.output
        self._to_ids = keras.Model(model.inputs, vec.output)
        from_ids = keras.Model(vec.output, out.output)
        from_ids.input_spec = keras.layers.InputSpec(ndim=2)  # any length (see `trim`)
        self._from_embedded = keras.Model([vec.output, emb.output], out.output)
        self._ids_spec = tf.TensorSpec((None, vec.output.shape[1]), vec.output.dtype)
        self._np_ids, self.n_classes = self._ids_spec.dtype.as_numpy_dtype, int(out.output.shape[-1])
        self._probs_fn = self._compiled(lambda ids: from_ids(ids, training=False), tf.TensorSpec((None, None), vec.output.dtype))
        self._grad_fn = self._compiled(self._grad_input, self._ids_spec, tf.TensorSpec((None,), tf.int64))
        self._weights_fn = None

    @staticmethod
    def _compiled(fn, *specs: tf.TensorSpec):
        """``fn`` traced once for any batch size. ``autograph=False``: Keras 3 layers are
        backend-agnostic (no Python control flow on tensors), and tracing the BiLSTM's
        gradient without AutoGraph's conversion is faster."""
        return tf.function(fn, input_signature=list(specs), autograph=False, reduce_retracing=True)

    @property
    def max_len(self) -> int | None:
        return self._ids_spec.shape[1]

    def ids(self, texts: Sequence[str]) -> np.ndarray:
        """(N, T) token ids of ``texts`` (0 = padding)."""
        texts = list(texts)
        chunks = [self._to_ids(tf.constant(texts[i : i + self.batch_size])[:, None], training=False)
                  for i in range(0, len(texts), self.batch_size)]
        return np.concatenate([np.asarray(c) for c in chunks]) if chunks else np.zeros((0, self.max_len or 0), int)

    def _batched(self, fn, *arrays: np.ndarray) -> np.ndarray:
        out = [np.asarray(fn(*(tf.constant(a[i : i + self.batch_size]) for a in arrays)))
               for i in range(0, len(arrays[0]), self.batch_size)]
        return np.concatenate(out)

    def _trim_allowed(self, ids: np.ndarray, extent: np.ndarray) -> bool:
        """Whether cutting trailing padding leaves the probabilities unchanged (up to
        ``TRIM_ATOL``) on up to ``TRIM_CHECK_ROWS`` of these rows that have padding."""
        rows = np.flatnonzero(extent < ids.shape[1])[:TRIM_CHECK_ROWS]
        if not len(rows):
            return False  # nothing to check yet: full length
        cut = max(int(extent[rows].max()), 1)
        try:
            full, trimmed = (np.asarray(self._probs_fn(tf.constant(x))) for x in (ids[rows], ids[rows, :cut]))
        except (ValueError, tf.errors.OpError):  # e.g. a layer that needs the full length
            return False
        return bool(np.abs(full - trimmed).max() <= TRIM_ATOL)

    def probs(self, ids: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """(M, C) probabilities of (M, T) ``ids`` with the tokens where ``keep`` is False masked
        out (id set to 0; the other tokens keep their positions)."""
        ids = np.asarray(ids).astype(self._np_ids)
        if keep is not None:
            if np.shape(keep) != ids.shape:
                raise ValueError(f"keep must have the shape of ids {ids.shape}. Received: keep.shape={np.shape(keep)}")
            ids = np.where(keep, ids, PAD_ID)
        extent = np.where(ids != PAD_ID, np.arange(1, ids.shape[1] + 1), 0).max(axis=1, initial=0)  # last real + 1
        if self._trim is None:
            self._trim = self._trim_allowed(ids, extent)
        if not len(ids):
            return np.zeros((0, self.n_classes), np.float32)
        if not self._trim:
            return self._batched(self._probs_fn, ids)
        order = np.argsort(extent, kind="stable")
        parts = [np.asarray(self._probs_fn(tf.constant(ids[rows, : max(int(extent[rows[-1]]), 1)])))
                 for rows in np.array_split(order, range(self.batch_size, len(order), self.batch_size))]
        out = np.empty((len(ids), parts[0].shape[1]), dtype=parts[0].dtype)
        out[order] = np.concatenate(parts)
        return out

    def _grad_input(self, ids: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        embedded = tf.identity(self._embedding(ids))  # identity: a plain tensor, no Keras mask attached
        with tf.GradientTape() as tape:
            tape.watch(embedded)
            probs = self._from_embedded([ids, embedded], training=False)
            chosen = tf.gather(probs, target, batch_dims=1)  # (B,) p(target) of each row
        grad = tape.gradient(chosen, embedded)  # rows are independent: d p_b / d e_b
        return tf.norm(grad * embedded, axis=-1) * tf.cast(tf.not_equal(ids, PAD_ID), embedded.dtype)

    def grad_input(self, ids: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(N, T) L2 norm over the embedding axis of gradient×input of p(target | ids)
        w.r.t. the embedding output; 0 at padding."""
        return self._batched(self._grad_fn, np.asarray(ids).astype(self._np_ids), np.asarray(target, np.int64))

    def attention(self, ids: np.ndarray) -> np.ndarray:
        """(N, T) attention each token receives (:func:`attnlab.analysis.token_importance`)
        in the model's last attention block."""
        if self._weights_fn is None:
            sources = attention_sources(self.model)
            if not sources:
                raise ValueError(f"model {self.model.name!r} has no attention layer returning weights")
            out = sources[-1].output[1]
            weights = keras.Model(self._ids_tensor, out[:, -1] if len(out.shape) == 5 else out)
            self._weights_fn = self._compiled(lambda ids: weights(ids, training=False), self._ids_spec)
        ids = np.asarray(ids).astype(self._np_ids)
        return token_importance(self._batched(self._weights_fn, ids), ids)


def evaluate_model(
    model: keras.Model,
    texts: Sequence[str],
    rationale: Any = None,
    *,
    n: int | None,
    seed: int,
    bins: Sequence[float] = BINS,
    batch_size: int = BATCH_SIZE,
) -> FaithfulnessResult:
    """:func:`attnlab.faithfulness.evaluate` on a seeded sample of ``n`` of ``texts``, with the
    attention of the model's last attention block computed for the sample only."""
    view = KerasView(model, batch_size)
    return evaluate(view, view.ids(texts), view.attention, rationale=rationale, n=n, seed=seed, bins=bins)
