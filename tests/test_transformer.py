"""Tests for TransformerEncoder and UniformAttention (issue 13, "Attention that has to work")."""

import math

import keras
import numpy as np
import pytest

from attnlab.analysis import attention_metrics
from attnlab.layers import (
    MeanPooling,
    SeedSelfAttention,
    SelfAttention,
    TransformerEncoder,
    UniformAttention,
)
from attnlab.layers.transformer import sinusoidal_positions

D = 8
# Row 0: 3 real tokens; row 1: 5; row 2: 1; row 3: none.
LENGTHS = (3, 5, 1, 0)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(4321)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _real(rng, batch=len(LENGTHS), dim=D):
    """The real-token vectors of each text: (batch, max(LENGTHS), dim)."""
    return rng.normal(size=(batch, max(LENGTHS), dim)).astype("float32")


def _padded(real, length, pad_seed, left=False):
    """`real` padded to `length` with random padding vectors, and its mask."""
    rng = np.random.default_rng(pad_seed)
    x = (rng.normal(size=(len(LENGTHS), length, D)) * 10).astype("float32")
    mask = np.zeros((len(LENGTHS), length), bool)
    for b, n in enumerate(LENGTHS):
        start = length - n if left else 0
        x[b, start:start + n] = real[b, :n]
        mask[b, start:start + n] = True
    return x, mask


def _real_rows(out, mask):
    return [out[b][mask[b]] for b in range(len(mask))]


def _serialized(layer):
    return keras.saving.serialize_keras_object(layer)


# --------------------------------------------------------------------------
# UniformAttention
# --------------------------------------------------------------------------


def test_uniform_weights_are_exactly_one_over_real_keys():
    x, mask = _padded(_real(np.random.default_rng(0)), 6, pad_seed=1)
    layer = UniformAttention(4)
    out, weights, max_logits = layer(x, mask=mask, return_attention_scores=True, return_max_logits=True)
    out, weights = _np(out), _np(weights)
    assert weights.shape == (4, 1, 6, 6) and out.shape == (4, 6, 4)
    for b, n in enumerate(LENGTHS):
        expected = np.where(mask[b], 1.0 / max(n, 1), 0.0)
        np.testing.assert_allclose(weights[b, 0], np.broadcast_to(expected, (6, 6)), atol=1e-6)
    assert (weights[3] == 0).all() and (out[3] == 0).all()
    ids = mask.astype("int32")  # attention_metrics reads padding as id 0
    assert attention_metrics(weights[:2], ids[:2])["attention_entropy"] == pytest.approx(1.0, abs=1e-6)
    # The output is the mean of the value projection over the real keys, for every query.
    v = x @ _np(layer.value_kernel) + _np(layer.value_bias)
    np.testing.assert_allclose(out[0], np.broadcast_to(v[0, :3].mean(0), (6, 4)), atol=1e-5)
    np.testing.assert_array_equal(_np(max_logits), 0.0)
    assert layer.effective_scale() == 0.0
    assert len(layer.trainable_weights) == 2  # value kernel and bias: no query/key weights


def test_uniform_mask_modes():
    x, mask = _padded(_real(np.random.default_rng(0)), 6, pad_seed=1)
    _, w_none = UniformAttention(4, mask="none")(x, mask=mask, return_attention_scores=True)
    np.testing.assert_allclose(_np(w_none), 1.0 / 6, atol=1e-7)
    out, w = UniformAttention(4, mask="keys_and_queries", use_bias=False)(x, mask=mask, return_attention_scores=True)
    out, w = _np(out), _np(w)
    assert (w[0, 0, 3:] == 0).all() and (out[0, 3:] == 0).all()
    np.testing.assert_allclose(w[0, 0, :3, :3], 1 / 3, atol=1e-7)


def test_uniform_heads_repeat_the_same_weights_and_bad_heads_are_refused():
    x, mask = _padded(_real(np.random.default_rng(0)), 6, pad_seed=1)
    out1, w1 = UniformAttention(4, use_bias=False, heads=1)(x, mask=mask, return_attention_scores=True)
    layer = UniformAttention(4, use_bias=False, heads=2)
    out2, w2, m2 = layer(x, mask=mask, return_attention_scores=True, return_max_logits=True)
    assert _np(w2).shape == (4, 2, 6, 6) and _np(m2).shape == (4, 2, 6)
    np.testing.assert_allclose(_np(w2)[:, 0], _np(w1)[:, 0], atol=1e-7)
    np.testing.assert_allclose(_np(w2)[:, 1], _np(w1)[:, 0], atol=1e-7)
    assert UniformAttention.from_config(layer.get_config()).heads == 2
    with pytest.raises(ValueError, match="Received: units=4, heads=3"):
        UniformAttention(4, heads=3)


# --------------------------------------------------------------------------
# TransformerEncoder
# --------------------------------------------------------------------------


@pytest.mark.parametrize("heads,layers", [(1, 1), (2, 3)])
def test_encoder_shapes_and_stacked_scores(heads, layers):
    x, mask = _padded(_real(np.random.default_rng(0)), 6, pad_seed=1)
    enc = TransformerEncoder(layers=layers, ff_dim=16, attention=_serialized(SelfAttention(4, heads=heads)))
    out, weights, max_logits = enc(x, mask=mask, return_attention_scores=True, return_max_logits=True)
    assert tuple(out.shape) == (4, 6, D)
    assert tuple(weights.shape) == (4, layers, heads, 6, 6)
    assert tuple(max_logits.shape) == (4, layers, heads, 6)
    w = _np(weights)
    assert (w[:, :, :, :, ~mask[0]][0] == 0).all()  # padded keys get no weight in any block
    np.testing.assert_allclose(w[:3].sum(-1), 1.0, atol=1e-5)
    _, only_logits = enc(x, mask=mask, return_max_logits=True)
    np.testing.assert_allclose(_np(only_logits), _np(max_logits), atol=1e-6)
    assert enc.compute_mask(x, mask) is mask
    assert len(enc.effective_scales()) == layers
    assert tuple(enc(x, mask=mask).shape) == (4, 6, D)


@pytest.mark.parametrize(
    "positional,attention",
    [
        ("sinusoidal", SelfAttention(8, heads=2)),
        ("learned", SelfAttention(8, heads=2, scale="log_n", mask="keys_and_queries")),
        ("sinusoidal", SelfAttention(8, heads=4, scale="qk_norm", qk_norm_gain=5.0)),
        ("none", UniformAttention(6)),
    ],
    ids=["sinusoidal", "learned-log_n", "qk_norm", "uniform"],
)
def test_padding_never_matters(positional, attention):
    """Same texts, padded to other lengths, with other padding vectors, on either side:
    the real tokens' outputs do not move."""
    real = _real(np.random.default_rng(5))
    enc = TransformerEncoder(layers=2, ff_dim=16, positional=positional, max_len=12,
                             attention=_serialized(attention))
    reference = None
    for length, pad_seed, left in ((5, 1, False), (9, 2, False), (12, 3, True)):
        x, mask = _padded(real, length, pad_seed, left=left)
        rows = _real_rows(_np(enc(x, mask=mask)), mask)
        if reference is None:
            reference = rows
        for got, want in zip(rows, reference):
            np.testing.assert_allclose(got, want, atol=1e-5)
    assert reference[0].shape == (3, D)


def test_padding_matters_when_attention_does_not_mask():
    real = _real(np.random.default_rng(5))
    enc = TransformerEncoder(layers=1, attention=_serialized(SelfAttention(8, mask="none")))
    (x1, m1), (x2, m2) = _padded(real, 5, 1), _padded(real, 5, 2)
    assert not np.allclose(_real_rows(_np(enc(x1, mask=m1)), m1)[0], _real_rows(_np(enc(x2, mask=m2)), m2)[0],
                           atol=1e-3)


def test_positions_are_added_and_matter():
    x, mask = _padded(_real(np.random.default_rng(6)), 5, pad_seed=1)
    flipped = x.copy()
    flipped[0, :3] = x[0, 2::-1]  # the same tokens in the reverse order
    for positional, moves in (("none", False), ("sinusoidal", True), ("learned", True)):
        enc = TransformerEncoder(layers=1, positional=positional, max_len=5)
        a, b = _np(enc(x, mask=mask)), _np(enc(flipped, mask=mask))
        # Without positions the encoder is permutation-equivariant: token 0 <-> 2 swap places.
        assert np.allclose(a[0, 0], b[0, 2], atol=1e-5) is not moves
    enc = TransformerEncoder(layers=1, positional="sinusoidal")
    enc(x)
    encodings = _np(sinusoidal_positions(np.arange(5), D))
    np.testing.assert_allclose(encodings[2, :4], np.sin(2 * 10000.0 ** (-2 * np.arange(4) / D)), atol=1e-6)
    np.testing.assert_allclose(encodings[2, 4:], np.cos(2 * 10000.0 ** (-2 * np.arange(4) / D)), atol=1e-6)


def test_learned_positions_refuse_longer_inputs():
    enc = TransformerEncoder(positional="learned", max_len=4)
    with pytest.raises(ValueError, match="max_len=4"):
        enc(np.zeros((1, 6, D), "float32"))


def test_encoder_blocks_get_fresh_attention_of_any_type():
    x, mask = _padded(_real(np.random.default_rng(0)), 5, pad_seed=1)
    for attention, heads in ((SeedSelfAttention(6), 1), (UniformAttention(6), 1), (None, 1)):
        enc = TransformerEncoder(layers=2, ff_dim=8, attention=attention)
        _, weights = enc(x, mask=mask, return_attention_scores=True)
        assert tuple(weights.shape) == (4, 2, heads, 5, 5)
        first, second = enc.blocks[0].attention, enc.blocks[1].attention
        assert first is not second and type(first) is type(second)
        assert not any(a is b for a in first.weights for b in second.weights)
    assert enc.blocks[0].attention.units == D  # None: SelfAttention(units=d_model)


@keras.saving.register_keras_serializable(package="attnlab_tests")
class HalfScaleAttention(SelfAttention):
    """A user-registered attention type: SelfAttention with its logits halved."""

    def effective_scale(self, n_keys=None):
        return super().effective_scale(n_keys) / 2


def _encoder_model(attention, positional="learned"):
    tokens = keras.Input(shape=(6,), dtype="int32")
    emb = keras.layers.Embedding(12, D, mask_zero=True)(tokens)
    enc = TransformerEncoder(layers=2, ff_dim=16, dropout=0.2, positional=positional, max_len=6,
                             attention=_serialized(attention), name="encoder")
    out, weights, max_logits = enc(emb, return_attention_scores=True, return_max_logits=True)
    return keras.Model(tokens, [out, weights, max_logits, MeanPooling()(out)])


@pytest.mark.parametrize(
    "attention",
    [SelfAttention(8, heads=2, scale="qk_norm", mask="keys_and_queries"), UniformAttention(4),
     HalfScaleAttention(4, heads=2, scale="learned")],
    ids=["qk_norm", "uniform", "user-registered"],
)
def test_encoder_keras_save_load_round_trip(attention, tmp_path):
    model = _encoder_model(attention)
    ids = np.array([[3, 1, 4, 0, 0, 0], [1, 5, 9, 2, 6, 5], [0, 0, 0, 0, 0, 0]], "int32")
    expected = [_np(t) for t in model(ids)]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    actual = [_np(t) for t in loaded(ids)]
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(a, e, atol=1e-5)
    np.testing.assert_allclose(actual[3][0], actual[0][0, :3].mean(0), atol=1e-5)  # the mask reached pooling
    enc = loaded.get_layer("encoder")
    assert type(enc.blocks[1].attention) is type(attention)
    assert enc.get_config() == model.get_layer("encoder").get_config()


def test_encoder_get_config_mirrors_init():
    enc = TransformerEncoder(layers=3, ff_dim=32, dropout=0.0, positional="learned", max_len=7,
                             attention=SelfAttention(8, heads=4, scale="log_n"), name="enc")
    config = enc.get_config()
    assert {k: config[k] for k in ("layers", "ff_dim", "dropout", "positional", "max_len")} == {
        "layers": 3, "ff_dim": 32, "dropout": 0.0, "positional": "learned", "max_len": 7}
    assert config["attention"]["config"]["scale"] == "log_n"
    clone = TransformerEncoder.from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(0).normal(size=(2, 7, 8)).astype("float32")
    clone(x)
    assert [block.attention.heads for block in clone.blocks] == [4, 4, 4]
    assert UniformAttention.from_config(UniformAttention(3, mask="none").get_config()).mask_mode == "none"


def test_encoder_dropout_only_in_training():
    x, mask = _padded(_real(np.random.default_rng(0)), 5, pad_seed=1)
    enc = TransformerEncoder(layers=1, dropout=0.5)
    a, b = _np(enc(x, mask=mask)), _np(enc(x, mask=mask, training=False))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, _np(enc(x, mask=mask, training=True)), atol=1e-3)


def test_block_math_matches_numpy_for_one_block():
    """One block + final norm, written out in NumPy from the block's own weights."""
    x, mask = _padded(_real(np.random.default_rng(2)), 5, pad_seed=1)
    enc = TransformerEncoder(layers=1, ff_dim=6, dropout=0.0, positional="none",
                             attention=UniformAttention(5))
    out = _np(enc(x, mask=mask))
    block = enc.blocks[0]

    def norm(h, layer):
        gamma, beta = (_np(w) for w in layer.weights)
        mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        return (h - mean) / np.sqrt(var + layer.epsilon) * gamma + beta

    def dense(h, layer, relu=False):
        kernel, bias = (_np(w) for w in layer.weights)
        y = h @ kernel + bias
        return np.maximum(y, 0) if relu else y

    h = norm(x, block.norm1)
    v = h @ _np(block.attention.value_kernel) + _np(block.attention.value_bias)
    share = mask / np.maximum(mask.sum(1, keepdims=True), 1)
    attended = np.broadcast_to((v * share[..., None]).sum(1, keepdims=True), v.shape)
    y = x + dense(attended, block.projection)
    y = y + dense(dense(norm(y, block.norm2), block.hidden, relu=True), block.output_dense)
    np.testing.assert_allclose(out, norm(y, enc.final_norm), atol=1e-4)
    assert math.isclose(block.hidden.units, 6)
