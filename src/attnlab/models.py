"""Model builder: raw strings in, class probabilities out, every part a config component.

``Input(string) -> TextVectorization -> Embedding(mask_zero) -> encoder -> [attention]
-> pooling -> [Dense(relu)] -> Dense(n_classes, softmax)``. The vectorizer lives inside the
model so a saved ``.keras`` file takes raw text. Encoder, attention and pooling are built from
their config nodes (``_target_`` + the layer's own arguments) by :mod:`attnlab.components`.
An encoder whose constructor takes ``attention`` (the transformer) receives the attention
component, serialized, for each of its blocks; any other encoder is followed by one attention
layer. Attention layers are called with ``return_attention_scores=True`` inside the training
graph, so :func:`explain_model` exposes the weights of the very model that was trained.
Knows nothing of Hydra or MLflow: it takes the plain ``model`` and ``train`` config dicts.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from attnlab import components
from attnlab.errors import DataError

VECTORIZER = "vectorizer"
EMBEDDING = "embedding"
ENCODER = "encoder"
ATTENTION = "attention"
POOLING = "pooling"
PROBS = "probs"


def build_model(model_cfg: Mapping[str, Any], n_classes: int, train_texts: Sequence[str],
                train_cfg: Mapping[str, Any] | None = None) -> keras.Model:
    """Build (and compile, when ``train_cfg`` is given) the classifier.

    Args:
        model_cfg: the resolved ``model`` config node as a plain dict.
        n_classes: number of output classes (>= 2).
        train_texts: training texts; the vocabulary is adapted on them only.
        train_cfg: the ``train`` node; compiles with its optimizer when given.

    Returns:
        A ``keras.Model`` mapping strings of shape (batch, 1) to probabilities (batch, n_classes).
    """
    if n_classes < 2:
        raise ValueError(f"n_classes={n_classes}: a classifier needs at least 2 classes")
    inputs = keras.Input(shape=(1,), dtype="string", name="text")
    vectorizer = _vectorizer(model_cfg, train_texts)
    ids = vectorizer(inputs)  # (B, T) int, 0 = padding
    x = _embed(model_cfg, vectorizer.vocabulary_size(), ids)  # (B, T, E), carries the padding mask
    x = _encode_and_attend(model_cfg, x)  # (B, T, d)
    z = components.instantiate(model_cfg["pooling"], "model.pooling", name=POOLING)(x)
    probs = _head(model_cfg["head"], n_classes, z)
    model = keras.Model(inputs, probs, name=f"attnlab_{model_cfg['name']}")
    if train_cfg is not None:
        compile_model(model, train_cfg)
    return model


def _vectorizer(model_cfg: Mapping[str, Any], train_texts: Sequence[str]) -> keras.layers.TextVectorization:
    from attnlab.layers.text import STANDARDIZERS

    standardize = model_cfg["standardize"]
    vectorizer = keras.layers.TextVectorization(
        max_tokens=int(model_cfg["max_tokens"]),
        standardize=STANDARDIZERS.get(standardize, None if standardize == "none" else standardize),
        split="whitespace",
        output_sequence_length=int(model_cfg["max_len"]),
        name=VECTORIZER,
    )
    vectorizer.adapt(np.asarray(list(train_texts), dtype=object))
    if vectorizer.vocabulary_size() <= 2:  # only the padding and [UNK] entries
        raise DataError(f"the training texts have no tokens after model.standardize={standardize!r}: the "
                        f"vocabulary is empty (check data.text_column, or use model.standardize=none)")
    return vectorizer


def token_ids(model: keras.Model, texts: Sequence[str]) -> np.ndarray:
    """The (N, max_len) token ids the model's own vectorizer gives ``texts`` (0 = padding)."""
    layer = model.get_layer(VECTORIZER)
    return np.asarray(layer(np.asarray(list(texts), dtype=object)))


def _embed(model_cfg: Mapping[str, Any], vocab: int, ids: Any) -> Any:
    init = float(model_cfg["embedding_init"])
    x = keras.layers.Embedding(vocab, int(model_cfg["embedding_dim"]), mask_zero=True, name=EMBEDDING,
                               embeddings_initializer=keras.initializers.RandomUniform(-init, init))(ids)
    if model_cfg["embedding_dropout"]:
        x = keras.layers.Dropout(float(model_cfg["embedding_dropout"]), name="embedding_dropout")(x)
    return x


def takes_attention(spec: Mapping[str, Any]) -> bool:
    """Whether an encoder component runs attention itself (its constructor takes ``attention``)."""
    target = components.locate(str(spec["_target_"]), "model.encoder")
    try:
        return "attention" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def _encode_and_attend(model_cfg: Mapping[str, Any], x: Any) -> Any:
    enc_spec, att_spec = model_cfg["encoder"], model_cfg["attention"]
    attention = components.instantiate(att_spec, "model.attention", name=ATTENTION)
    if takes_attention(enc_spec):
        encoder = components.instantiate(enc_spec, "model.encoder", name=ENCODER,
                                         attention=keras.saving.serialize_keras_object(attention))
        return _attending(encoder, x)
    x = components.instantiate(enc_spec, "model.encoder", name=ENCODER)(x)
    return _attending(attention, x)


def _attending(layer: keras.layers.Layer, x: Any) -> Any:
    """Call an attention-bearing layer so its weights (and, where it has them, its rows' largest
    logits) are graph outputs; return its sequence."""
    if "return_max_logits" in inspect.signature(layer.call).parameters:
        return layer(x, return_attention_scores=True, return_max_logits=True)[0]
    return layer(x, return_attention_scores=True)[0]


def _head(head_cfg: Mapping[str, Any], n_classes: int, z: Any) -> Any:
    if int(head_cfg["hidden"]) > 0:
        z = keras.layers.Dense(int(head_cfg["hidden"]), activation="relu", name="hidden")(z)
    if head_cfg["dropout"]:
        z = keras.layers.Dropout(float(head_cfg["dropout"]), name="head_dropout")(z)
    # Kim (2014): each class's weight vector is rescaled to L2 norm max_norm when it grows past it.
    cap = head_cfg["max_norm"]
    constraint = keras.constraints.MaxNorm(float(cap), axis=0) if cap is not None else None
    return keras.layers.Dense(n_classes, activation="softmax", name=PROBS, kernel_constraint=constraint)(z)


def compile_model(model: keras.Model, train_cfg: Mapping[str, Any]) -> None:
    """Compile with the ``train.optimizer`` component and sparse cross-entropy."""
    model.compile(
        optimizer=components.instantiate(train_cfg["optimizer"], "train.optimizer"),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=bool(train_cfg["jit_compile"]),
    )


def attention_sources(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers whose graph output carries attention weights (encoder and/or attention)."""
    found = []
    for name in (ENCODER, ATTENTION):
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        if isinstance(layer.output, (tuple, list)):
            found.append(layer)
    return found


def explain_model(model: keras.Model) -> keras.Model:
    """A view of ``model`` that also returns attention weights and token ids (shared weights).

    Returns:
        ``keras.Model`` mapping strings (batch, 1) to a dict: ``probs`` (B, C), ``ids`` (B, T),
        ``weights`` (B, L, H, T, T): the attention weights of every block (L = 1 for a single
        attention layer), post-softmax and post-mask, and, when the layer gives them,
        ``max_logits`` (B, L, H, T): each query row's largest pre-softmax logit.
    """
    outputs = {"probs": model.outputs[0], "ids": model.get_layer(VECTORIZER).output}
    sources = attention_sources(model)
    if not sources:
        raise ValueError(f"model {model.name!r} has no attention layer returning weights")
    produced = sources[-1].output
    outputs["weights"] = _blocks(produced[1], 4, "weights_blocks")
    if len(produced) > 2:
        outputs["max_logits"] = _blocks(produced[2], 3, "max_logits_blocks")
    return keras.Model(model.inputs, outputs, name=model.name + "_explain")


def _blocks(tensor: Any, single_rank: int, name: str) -> Any:
    """One attention layer's tensor with a block axis of 1 added (an encoder's has one already)."""
    if len(tensor.shape) == single_rank:
        # expand_dims, not Reshape: Reshape's target holds the static T and can fail to trace
        # with an unknown batch size ("Failed to convert elements of (None, 1, 1, T, T)")
        return keras.ops.expand_dims(tensor, 1)
    return tensor


def attention_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every attention layer in the model, inside encoders too, in call order."""
    from attnlab.layers.base import SequenceAttention

    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, SequenceAttention)]


def effective_scales(model: keras.Model, n_keys: float | None = None) -> list[float]:
    """The scale each attention block applies (``effective_scale``; ``log_n`` at ``n_keys``)."""
    scales = []
    for layer in attention_layers(model):
        params = inspect.signature(layer.effective_scale).parameters
        scales.append(float(layer.effective_scale(n_keys) if "n_keys" in params else layer.effective_scale()))
    return scales


def component_modules(model_cfg: Mapping[str, Any]) -> list[str]:
    """Modules of the model's components that are neither attnlab's nor Keras': what must be
    imported (registering their layers) before the saved model can be loaded."""
    found = []
    for key in ("encoder", "attention", "pooling"):
        module = str(model_cfg[key]["_target_"]).rpartition(".")[0]
        if module and not module.startswith(("attnlab.", "keras.")) and module not in found:
            found.append(module)
    return found


def vocabulary(model: keras.Model) -> list[str]:
    return list(model.get_layer(VECTORIZER).get_vocabulary())
