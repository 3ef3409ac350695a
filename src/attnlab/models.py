"""Model builder: raw strings in, class probabilities out.

``Input(string) -> TextVectorization -> Embedding(mask_zero) -> [BiLSTM | CNN] -> attention
-> pooling -> [Dense(relu)] -> Dense(n_classes, softmax)``. The vectorizer lives inside the
model so a saved ``.keras`` file takes raw text. The attention layer is called with
``return_attention_scores=True`` so its weights are a tensor of the same graph:
:func:`explain_model` exposes them (and the token ids) without a second copy of the weights.
Knows nothing of Hydra or MLflow: it takes the plain ``model`` config dict.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

from attnlab.layers import POOLINGS, MultiWidthConv1D, SeedSelfAttention, SelfAttention

ATTENTION_LAYER = "attention"
VECTORIZER_LAYER = "vectorizer"


def _optimizer(train_cfg: dict[str, Any]) -> keras.optimizers.Optimizer:
    name = train_cfg["optimizer"]
    kwargs: dict[str, Any] = {"learning_rate": float(train_cfg["learning_rate"])}
    if train_cfg.get("clipnorm"):
        kwargs["clipnorm"] = float(train_cfg["clipnorm"])
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    if name == "adamw":
        return keras.optimizers.AdamW(weight_decay=float(train_cfg.get("weight_decay") or 0.0), **kwargs)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=0.9, **kwargs)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs)
    raise ValueError(f"train.optimizer={name!r}: expected one of adam, adamw, sgd, rmsprop")


def build_model(
    model_cfg: dict[str, Any],
    n_classes: int,
    train_texts: Sequence[str],
    train_cfg: dict[str, Any] | None = None,
) -> keras.Model:
    """Build (and compile, when ``train_cfg`` is given) the classifier.

    Args:
        model_cfg: the resolved ``model`` config group as a plain dict.
        n_classes: number of output classes (>= 2).
        train_texts: training texts; the vocabulary is adapted on them only.
        train_cfg: the ``train`` group; compiles with its optimizer when given.

    Returns:
        A ``keras.Model`` mapping strings of shape (batch, 1) to probabilities (batch, n_classes).
    """
    if n_classes < 2:
        raise ValueError(f"n_classes={n_classes}: a classifier needs at least 2 classes")
    max_len = int(model_cfg["max_len"])
    if max_len < 1:
        raise ValueError(f"model.max_len={max_len}: must be >= 1")
    standardize = model_cfg["standardize"]
    enc, att, pool, head = (model_cfg[k] for k in ("encoder", "attention", "pooling", "head"))

    vectorizer = keras.layers.TextVectorization(
        max_tokens=int(model_cfg["max_tokens"]),
        standardize=None if standardize == "none" else standardize,
        split="whitespace",
        output_sequence_length=max_len,
        name=VECTORIZER_LAYER,
    )
    vectorizer.adapt(np.asarray(list(train_texts), dtype=object))

    inputs = keras.Input(shape=(1,), dtype="string", name="text")
    ids = vectorizer(inputs)  # (B, T) int, 0 = padding
    x = keras.layers.Embedding(
        vectorizer.vocabulary_size(), int(model_cfg["embedding_dim"]), mask_zero=True, name="embedding"
    )(ids)  # (B, T, E), carries the padding mask
    if model_cfg.get("embedding_dropout"):
        x = keras.layers.Dropout(float(model_cfg["embedding_dropout"]), name="embedding_dropout")(x)
    if enc["type"] == "bilstm":
        x = keras.layers.Bidirectional(
            keras.layers.LSTM(int(enc["units"]), return_sequences=True, dropout=float(enc.get("dropout") or 0.0)),
            name="encoder",
        )(x)  # (B, T, 2*units)
    elif enc["type"] == "cnn":
        x = MultiWidthConv1D(int(enc["units"]), list(enc["kernel_sizes"]), name="encoder")(x)  # (B, T, units*n_k)
        if enc.get("dropout"):
            x = keras.layers.Dropout(float(enc["dropout"]), name="encoder_dropout")(x)
    elif enc["type"] != "none":
        raise ValueError(f"model.encoder.type={enc['type']!r}: expected bilstm, cnn or none")

    if att["type"] == "seed":
        layer = SeedSelfAttention(int(att["units"]), name=ATTENTION_LAYER)
    else:
        layer = SelfAttention(
            int(att["units"]),
            heads=int(att["heads"]),
            scale=att["scale"],
            scale_constant=float(att["scale_constant"]),
            mask=att["mask"],
            dropout=float(att["dropout"]),
            use_bias=bool(att["use_bias"]),
            name=ATTENTION_LAYER,
        )
    h, _weights = layer(x, return_attention_scores=True)  # (B, T, units), (B, heads, T, T)
    if att.get("residual"):
        if x.shape[-1] != h.shape[-1]:
            raise ValueError(
                f"model.attention.residual=true needs attention.units ({h.shape[-1]}) equal to "
                f"the encoder width ({x.shape[-1]})"
            )
        h = keras.layers.Add(name="residual")([x, h])

    if pool["type"] not in POOLINGS:
        raise ValueError(f"model.pooling.type={pool['type']!r}: expected one of {sorted(POOLINGS)}")
    pool_kwargs: dict[str, Any] = {"max_len": max_len} if pool["type"] == "flatten" else {}
    z = POOLINGS[pool["type"]](name="pooling", **pool_kwargs)(h)  # (B, units) or (B, T*units)
    if int(head.get("hidden") or 0) > 0:
        z = keras.layers.Dense(int(head["hidden"]), activation="relu", name="hidden")(z)
    if head.get("dropout"):
        z = keras.layers.Dropout(float(head["dropout"]), name="head_dropout")(z)
    probs = keras.layers.Dense(n_classes, activation="softmax", name="probs")(z)
    model = keras.Model(inputs, probs, name=f"attnlab_{model_cfg.get('name', 'model')}")

    if train_cfg is not None:
        model.compile(
            optimizer=_optimizer(train_cfg),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=bool(train_cfg.get("jit_compile", False)),
        )
    return model


def explain_model(model: keras.Model) -> keras.Model:
    """A view of ``model`` that also returns attention weights and token ids.

    Returns:
        ``keras.Model`` mapping strings (batch, 1) to
        ``[probs (B, C), weights (B, heads, T, T), token_ids (B, T)]``, sharing weights.
    """
    att_out = model.get_layer(ATTENTION_LAYER).output
    weights = att_out[1]
    ids = model.get_layer(VECTORIZER_LAYER).output
    return keras.Model(model.inputs, [model.outputs[0], weights, ids], name=model.name + "_explain")


def vocabulary(model: keras.Model) -> list[str]:
    return list(model.get_layer(VECTORIZER_LAYER).get_vocabulary())
