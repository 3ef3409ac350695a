"""Tests for attnlab.layers: SelfAttention, SeedSelfAttention and poolings."""

import itertools
import math

from pathlib import Path

import keras
import numpy as np
import pytest

import numpy_attention

from attnlab.layers import (
    MASK_MODES,
    SCALES,
    AttentionPooling,
    FirstPooling,
    FlattenPooling,
    LastPooling,
    MaxPooling,
    MeanPooling,
    MultiWidthConv1D,
    SeedSelfAttention,
    SelfAttention,
    UniformAttention,
)

T = 5
D_IN = 3
# Row 0: 3 real tokens then padding; row 1: no padding; row 2: all padding.
MASK = np.array(
    [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool
)
# Token ids matching MASK for Embedding(mask_zero=True) models.
TOKENS = np.array([[3, 1, 4, 0, 0], [1, 5, 9, 2, 6], [0, 0, 0, 0, 0]], dtype="int32")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def _inputs(seed=0, batch=3, length=T, dim=D_IN):
    return np.random.default_rng(seed).normal(size=(batch, length, dim)).astype(
        "float32"
    )


def _np(x):
    return keras.ops.convert_to_numpy(x)


# --------------------------------------------------------------------------
# SelfAttention
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scale,mask_mode,heads", list(itertools.product(SCALES, MASK_MODES, (1, 2)))
)
def test_self_attention_shapes(scale, mask_mode, heads):
    layer = SelfAttention(4, heads=heads, scale=scale, mask=mask_mode)
    x = _inputs()
    out, weights = layer(x, mask=MASK, return_attention_scores=True)
    assert tuple(out.shape) == (3, T, 4)
    assert tuple(weights.shape) == (3, heads, T, T)
    assert np.isfinite(_np(out)).all() and np.isfinite(_np(weights)).all()
    assert layer.compute_output_shape((None, T, D_IN)) == (None, T, 4)
    assert tuple(layer(x, mask=MASK).shape) == (3, T, 4)


def test_self_attention_keys_mask_exact_zeros_and_all_padding():
    layer = SelfAttention(4, heads=2, mask="keys")
    out, weights = layer(_inputs(), mask=MASK, return_attention_scores=True)
    out, weights = _np(out), _np(weights)
    # Padded keys of row 0 get exactly zero weight from every query and head.
    assert (weights[0, :, :, 3:] == 0.0).all()
    # Rows with at least one real key are distributions over the real keys.
    np.testing.assert_allclose(weights[:2].sum(-1), 1.0, atol=1e-6)
    # Padded queries still attend (only keys are masked in this mode).
    assert (weights[0, :, 3:, :3] > 0).all()
    # All-padding sample: all-zero weights and outputs, no NaN.
    assert (weights[2] == 0.0).all()
    assert np.isfinite(out).all()
    assert (out[2] == 0.0).all()


def test_self_attention_keys_and_queries_zeroes_padded_rows():
    layer = SelfAttention(4, heads=2, mask="keys_and_queries")
    out, weights = layer(_inputs(), mask=MASK, return_attention_scores=True)
    out, weights = _np(out), _np(weights)
    assert (weights[0, :, :, 3:] == 0.0).all()
    assert (weights[0, :, 3:, :] == 0.0).all()
    assert (out[0, 3:] == 0.0).all()
    np.testing.assert_allclose(weights[0, :, :3].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights[1].sum(-1), 1.0, atol=1e-6)
    assert (weights[2] == 0.0).all() and (out[2] == 0.0).all()
    assert np.abs(out[0, :3]).sum() > 0


def test_self_attention_mask_none_attends_to_padding():
    layer = SelfAttention(4, mask="none")
    _, weights = layer(_inputs(), mask=MASK, return_attention_scores=True)
    weights = _np(weights)
    assert (weights[0, :, :, 3:] > 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("mask_mode,invariant", [("keys", True), ("none", False)])
def test_padding_content_affects_real_positions_only_without_mask(
    mask_mode, invariant
):
    layer = SelfAttention(4, heads=2, mask=mask_mode)
    x = _inputs()
    x_changed = x.copy()
    x_changed[0, 3:] = _inputs(seed=99)[0, 3:] * 10.0
    out = _np(layer(x, mask=MASK))
    out_changed = _np(layer(x_changed, mask=MASK))
    same = np.allclose(out[0, :3], out_changed[0, :3], atol=1e-6)
    assert same is invariant
    # The unchanged rows are unaffected either way.
    np.testing.assert_allclose(out[1], out_changed[1], atol=1e-6)


def test_self_attention_mask_none_equals_all_real_mask():
    layer = SelfAttention(4, heads=2, mask="keys_and_queries")
    x = _inputs()
    np.testing.assert_allclose(
        _np(layer(x)), _np(layer(x, mask=np.ones((3, T), bool))), atol=1e-6
    )


@pytest.mark.parametrize("units,equal", [(64, True), (128, False)])
def test_constant_scale_matches_sqrt_dk_only_when_dk_is_64(units, equal):
    x = _inputs()
    sqrt_dk = SelfAttention(units, heads=1, scale="sqrt_dk")
    constant = SelfAttention(units, heads=1, scale="constant", scale_constant=8.0)
    out_a = sqrt_dk(x, mask=MASK)
    constant.build(x.shape)
    constant.set_weights(sqrt_dk.get_weights())
    out_b = constant(x, mask=MASK)
    assert np.allclose(_np(out_a), _np(out_b), atol=1e-6) is equal


def _params(layer):
    """(wq, bq, wk, bk, wv, bv) of a built SelfAttention (biases None without use_bias)."""
    get = lambda name: None if getattr(layer, name) is None else _np(getattr(layer, name))  # noqa: E731
    return [get(f"{p}_{kind}") for p in ("query", "key", "value") for kind in ("kernel", "bias")]


@pytest.mark.parametrize(
    "scale,heads,mask_mode",
    list(itertools.product(SCALES, (1, 2), ("keys", "keys_and_queries"))) + [(s, 2, "none") for s in SCALES],
)
def test_self_attention_matches_numpy_reference(scale, heads, mask_mode):
    """Outputs, weights and max logits against tests/numpy_attention.py for every scale."""
    x = _inputs(seed=3)
    layer = SelfAttention(4, heads=heads, scale=scale, scale_constant=3.0, mask=mask_mode, use_bias=heads == 2)
    out, weights, max_logits = layer(x, mask=MASK, return_attention_scores=True, return_max_logits=True)
    factor = None if layer.scale_factor is None else float(_np(layer.scale_factor))
    ref_out, ref_w, ref_max = numpy_attention.self_attention(
        x, MASK, _params(layer), heads=heads, scale=scale, mask_mode=mask_mode, scale_constant=3.0, factor=factor)
    np.testing.assert_allclose(_np(weights), ref_w, atol=1e-5)
    np.testing.assert_allclose(_np(out), ref_out, atol=1e-5)
    np.testing.assert_allclose(_np(max_logits), ref_max, atol=1e-5)
    assert tuple(max_logits.shape) == (3, heads, T)


def test_scaled_logits_follow_the_factor():
    """The reference is not vacuous: the scalings really differ, by the factors they claim."""
    x = _inputs(seed=3)
    base = SelfAttention(4, heads=2, scale="none")
    base(x)
    logits = {}
    for scale in ("none", "sqrt_dk", "constant", "log_n"):
        layer = SelfAttention(4, heads=2, scale=scale, scale_constant=3.0)
        layer.build(x.shape)
        layer.set_weights(base.get_weights())
        logits[scale] = _np(layer(x, mask=MASK, return_max_logits=True)[1])
    np.testing.assert_allclose(logits["sqrt_dk"], logits["none"] / math.sqrt(2), rtol=1e-5)
    np.testing.assert_allclose(logits["constant"], logits["none"] / 3.0, rtol=1e-5)
    # log_n: row 0 has 3 real keys, row 1 has 5.
    np.testing.assert_allclose(logits["log_n"][0, :, :3], logits["sqrt_dk"][0, :, :3] * math.log(3), rtol=1e-5)
    np.testing.assert_allclose(logits["log_n"][1], logits["sqrt_dk"][1] * math.log(5), rtol=1e-5)


def test_qk_norm_bounds_logits_by_the_gain_and_initialises_it():
    x = _inputs(seed=4) * 50.0  # large inputs: raw dot products would be huge
    layer = SelfAttention(4, heads=2, scale="qk_norm", mask="keys")
    _, max_logits = layer(x, mask=MASK, return_max_logits=True)
    gain = math.log2(T * T - T)  # Henry et al.: log2(L^2 - L), here with L = T
    assert layer.effective_scale() == pytest.approx(gain, rel=1e-6)
    assert np.abs(_np(max_logits)).max() <= gain * (1 + 1e-5)
    assert np.abs(_np(max_logits)[:2]).max() > 0.5  # not all zero
    given = SelfAttention(4, scale="qk_norm", qk_norm_gain=3.0)
    given(x)
    assert given.effective_scale() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="qk_norm_gain"):
        SelfAttention(4, scale="qk_norm")(keras.Input(shape=(None, D_IN)))


def test_log_n_row_with_one_real_key_is_finite():
    mask = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    layer = SelfAttention(4, heads=2, scale="log_n", mask="keys")
    out, weights, max_logits = layer(_inputs(), mask=mask, return_attention_scores=True, return_max_logits=True)
    out, weights, max_logits = _np(out), _np(weights), _np(max_logits)
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    np.testing.assert_array_equal(weights[0, :, :, 0], 1.0)  # log 1 = 0: its one key gets everything
    np.testing.assert_array_equal(max_logits[0], 0.0)
    assert (out[2] == 0).all() and (weights[2] == 0).all()


def test_effective_scale_values():
    x = _inputs()
    expected = {"sqrt_dk": 1 / math.sqrt(2), "constant": 1 / 5.0, "none": 1.0, "log_n": 1 / math.sqrt(2)}
    for scale, value in expected.items():
        layer = SelfAttention(4, heads=2, scale=scale, scale_constant=5.0)
        assert layer.effective_scale() == pytest.approx(value)
    assert SelfAttention(4, heads=2, scale="log_n").effective_scale(n_keys=3) == pytest.approx(
        math.log(3) / math.sqrt(2))
    learned = SelfAttention(4, heads=2, scale="learned")
    with pytest.raises(ValueError, match="built"):
        learned.effective_scale()
    learned(x)
    learned.scale_factor.assign(0.25)
    assert learned.effective_scale() == pytest.approx(0.25)
    assert isinstance(learned.effective_scale(), float)
    assert SeedSelfAttention(4).effective_scale() == 1 / 8


def test_seed_layer_max_logits_include_padding():
    x = _inputs()
    layer = SeedSelfAttention(4)
    _, max_logits = layer(x, mask=MASK, return_max_logits=True)
    kernel = _np(layer.kernel)
    scores = (x @ kernel[0]) @ np.transpose(x @ kernel[1], (0, 2, 1)) / 8.0
    np.testing.assert_allclose(_np(max_logits)[:, 0], scores.max(-1), atol=1e-5)


def test_learned_scale_is_one_trainable_weight_with_gradient():
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check uses tf.GradientTape")
    x = _inputs()
    fixed = SelfAttention(4, heads=2, scale="sqrt_dk")
    learned = SelfAttention(4, heads=2, scale="learned")
    fixed.build(x.shape)
    learned.build(x.shape)
    assert len(learned.trainable_weights) == len(fixed.trainable_weights) + 1
    factor = learned.scale_factor
    np.testing.assert_allclose(_np(factor), 1 / math.sqrt(2), rtol=1e-6)
    with tf.GradientTape() as tape:
        out = learned(x, mask=MASK)
        loss = keras.ops.sum(keras.ops.square(out))
    grad = tape.gradient(loss, factor.value)
    assert grad is not None and abs(float(grad)) > 0


@pytest.mark.parametrize(
    "scale,heads,mask_mode",
    [("sqrt_dk", 1, "keys"), ("learned", 2, "keys_and_queries"), ("qk_norm", 2, "keys"), ("log_n", 1, "none")],
)
def test_hand_written_gradient_matches_autodiff(scale, heads, mask_mode):
    """The training path (attend(), custom gradient) and the explain path (plain autodiff,
    taken when max logits are asked for) give the same outputs and weight gradients, also
    with an all-padding row and padded queries."""
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check uses tf.GradientTape")
    x = tf.constant(_inputs(seed=8))
    layer = SelfAttention(4, heads=heads, scale=scale, mask=mask_mode)
    layer(x, mask=MASK)
    target = tf.constant(_inputs(seed=9, dim=4))
    grads = []
    for explain in (False, True):
        with tf.GradientTape() as tape:
            out = layer(x, mask=MASK, return_max_logits=explain)
            out = out[0] if explain else out
            loss = tf.reduce_sum(tf.square(out - target))
        grads.append((_np(out), [_np(g) for g in tape.gradient(loss, layer.trainable_variables)]))
    np.testing.assert_allclose(grads[0][0], grads[1][0], atol=1e-6)
    for fast, reference in zip(grads[0][1], grads[1][1]):
        assert np.abs(reference).max() > 0
        np.testing.assert_allclose(fast, reference, atol=1e-5, rtol=1e-4)


def test_dropout_only_in_training_and_scores_are_pre_dropout():
    layer = SelfAttention(4, heads=2, dropout=0.5, seed=3)
    x = _inputs()
    out_inf, w_inf = layer(x, mask=MASK, return_attention_scores=True)
    out_inf2 = layer(x, mask=MASK, training=False)
    out_tr, w_tr = layer(x, mask=MASK, training=True, return_attention_scores=True)
    np.testing.assert_allclose(_np(out_inf), _np(out_inf2), atol=1e-7)
    assert not np.allclose(_np(out_inf), _np(out_tr))
    np.testing.assert_allclose(_np(w_inf), _np(w_tr), atol=1e-7)


def test_compute_mask_passes_mask_on():
    for layer in (SelfAttention(4), SeedSelfAttention(4)):
        assert layer.supports_masking
        assert layer.compute_mask(_inputs(), MASK) is MASK
        assert layer.compute_mask(_inputs(), None) is None
    for cls in (MeanPooling, MaxPooling, FirstPooling, LastPooling, AttentionPooling, FlattenPooling):
        layer = cls(max_len=T) if cls is FlattenPooling else cls()
        assert layer.compute_mask(_inputs(), MASK) is None


# --------------------------------------------------------------------------
# SeedSelfAttention
# --------------------------------------------------------------------------


def test_seed_layer_matches_numpy_formula():
    x = _inputs()
    layer = SeedSelfAttention(4)
    out, weights = layer(x, mask=MASK, return_attention_scores=True)
    kernel = _np(layer.kernel)
    assert kernel.shape == (3, D_IN, 4)
    assert np.abs(kernel).max() <= 0.05  # Keras-2 "uniform" initializer range
    assert len(layer.weights) == 1  # no bias
    wq, wk, wv = x @ kernel[0], x @ kernel[1], x @ kernel[2]
    qk = wq @ np.transpose(wk, (0, 2, 1)) / 64**0.5
    qk = np.exp(qk - qk.max(-1, keepdims=True))
    qk /= qk.sum(-1, keepdims=True)
    # The mask is ignored: padding is attended to, as in the original.
    np.testing.assert_allclose(_np(out), qk @ wv, atol=1e-5)
    assert tuple(weights.shape) == (3, 1, T, T)
    np.testing.assert_allclose(_np(weights)[:, 0], qk, atol=1e-5)


# --------------------------------------------------------------------------
# Poolings
# --------------------------------------------------------------------------


def _pool_inputs():
    x = _inputs(seed=5, dim=4)
    # Huge values at padding: any pooling that lets padding in fails loudly.
    x[~MASK] = 100.0
    return x


def _ref_mean(x, m):
    counts = m.sum(1, keepdims=True)
    return np.where(counts > 0, (x * m[..., None]).sum(1) / np.maximum(counts, 1), 0)


def _ref_max(x, m):
    out = np.where(m[..., None], x, -np.inf).max(1)
    return np.where(m.any(1, keepdims=True), out, 0)


def _ref_first(x, m):
    return x[:, 0] * m[:, :1]


def _ref_last(x, m):
    out = np.zeros(x.shape[::2], dtype=x.dtype)
    for b in range(x.shape[0]):
        real = np.flatnonzero(m[b])
        if real.size:
            out[b] = x[b, real[-1]]
    return out


@pytest.mark.parametrize(
    "name,reference",
    [("mean", _ref_mean), ("max", _ref_max), ("first", _ref_first), ("last", _ref_last)],
)
def test_pooling_matches_numpy_reference(name, reference):
    x = _pool_inputs()
    layer = {"mean": MeanPooling, "max": MaxPooling, "first": FirstPooling, "last": LastPooling}[name]()
    out = _np(layer(x, mask=MASK))
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, reference(x, MASK), atol=1e-6)
    assert (out[2] == 0.0).all()  # all-padding row
    assert (np.abs(out) < 100.0).all()  # padding never leaks in
    # Without a mask every position is real.
    all_real = np.ones((3, T), bool)
    np.testing.assert_allclose(_np(layer(x)), reference(x, all_real), atol=1e-6)


def test_last_pooling_picks_last_real_token_for_any_mask():
    x = np.arange(3 * T, dtype="float32").reshape(3, T, 1) + 1.0
    mask = np.array(
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]], dtype=bool
    )
    out = _np(LastPooling()(x, mask=mask))[:, 0]
    # Positions 2, 4 and 3 (not the last position 4 for rows 0 and 2).
    np.testing.assert_array_equal(out, [x[0, 2, 0], x[1, 4, 0], x[2, 3, 0]])


def test_attention_pooling_weights_and_weighted_sum():
    x = _pool_inputs()
    layer = AttentionPooling(units=6)
    pooled, weights = layer(x, mask=MASK, return_attention_scores=True)
    pooled, weights = _np(pooled), _np(weights)
    assert pooled.shape == (3, 4) and weights.shape == (3, T)
    assert (weights[~MASK] == 0.0).all()
    np.testing.assert_allclose(weights[:2].sum(-1), 1.0, atol=1e-6)
    assert (weights[2] == 0.0).all() and (pooled[2] == 0.0).all()
    np.testing.assert_allclose(pooled, (x * weights[..., None]).sum(1), atol=1e-5)
    # Reference scores: v^T tanh(W h + b), softmax over real tokens of row 1.
    kernel, bias, query = (_np(w) for w in layer.get_weights())
    scores = np.tanh(x[1] @ kernel + bias) @ query
    expected = np.exp(scores - scores.max())
    np.testing.assert_allclose(weights[1], expected / expected.sum(), atol=1e-5)
    assert kernel.shape == (4, 6)
    assert AttentionPooling()(x).shape == (3, 4)


def test_flatten_pooling_zeroes_padding_and_needs_static_length():
    x = _pool_inputs()
    out = _np(FlattenPooling()(x, mask=MASK))
    np.testing.assert_allclose(out, (x * MASK[..., None]).reshape(3, T * 4))
    dynamic = keras.Input(shape=(None, 4))
    with pytest.raises(ValueError, match="static sequence length"):
        FlattenPooling()(dynamic)
    assert tuple(FlattenPooling(max_len=T)(dynamic).shape) == (None, T * 4)
    with pytest.raises(ValueError, match="max_len=7"):
        FlattenPooling(max_len=7)(keras.Input(shape=(T, 4)))


def test_every_pooling_option_in_conf_builds_its_layer():
    """The config group is the registry: each conf/model/pooling/*.yaml names a layer by _target_."""
    from conftest import compose

    from attnlab import components
    from attnlab.config import to_plain

    options = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf/model/pooling").glob("*.yaml"))
    assert options == ["attention", "first", "flatten", "last", "max", "mean"]
    for name in options:
        spec = to_plain(compose([f"model/pooling={name}"]))["model"]["pooling"]
        layer = components.instantiate(spec, "model.pooling")
        assert type(layer).__name__.lower().startswith(name) and layer.compute_mask(_inputs(), MASK) is None

# --------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------

CONFIG_CASES = [
    lambda: SelfAttention(
        8, heads=2, scale="learned", scale_constant=4.0, mask="keys_and_queries",
        dropout=0.1, use_bias=False, seed=7, name="att",
    ),
    lambda: SeedSelfAttention(8, name="seed_att"),
    lambda: UniformAttention(8, heads=2, mask="none", name="uniform"),
    lambda: AttentionPooling(units=5),
    lambda: FlattenPooling(max_len=T),
    MeanPooling, MaxPooling, FirstPooling, LastPooling,
    lambda: MultiWidthConv1D(4, kernel_sizes=[2, 3], activation="tanh", name="conv"),
]


@pytest.mark.parametrize("make", CONFIG_CASES)
def test_get_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is type(layer) and restored.get_config() == config


def _attention_model(layer):
    tokens = keras.Input(shape=(T,), dtype="int32")
    emb = keras.layers.Embedding(10, D_IN, mask_zero=True)(tokens)
    out, weights = layer(emb, return_attention_scores=True)
    # A mask-aware pooling after the attention checks the mask is passed on.
    return keras.Model(tokens, [out, weights, MeanPooling()(out)])


POOLING_LAYERS = {"mean": MeanPooling, "max": MaxPooling, "first": FirstPooling, "last": LastPooling,
                  "attention": AttentionPooling, "flatten": lambda: FlattenPooling(max_len=T)}


def _pooling_model(name):
    tokens = keras.Input(shape=(T,), dtype="int32")
    emb = keras.layers.Embedding(10, D_IN, mask_zero=True)(tokens)
    return keras.Model(tokens, POOLING_LAYERS[name]()(emb))


SAVE_CASES = {
    "self_attention": lambda: _attention_model(
        SelfAttention(4, heads=2, scale="learned", mask="keys_and_queries")
    ),
    "seed_self_attention": lambda: _attention_model(SeedSelfAttention(4)),
    **{f"pool_{n}": (lambda n=n: _pooling_model(n)) for n in POOLING_LAYERS},
}


@pytest.mark.parametrize("case", sorted(SAVE_CASES))
def test_keras_save_load_reproduces_outputs(case, tmp_path):
    model = SAVE_CASES[case]()
    expected = model(TOKENS)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    actual = loaded(TOKENS)
    expected, actual = keras.tree.flatten(expected), keras.tree.flatten(actual)
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(_np(a), _np(e), atol=1e-6)
    if case.startswith("pool_"):
        # The mask reached the pooling: the all-padding row pools to zeros
        # (Embedding vectors of token 0 are not zero).
        assert (_np(actual[0])[2] == 0.0).all()
    else:
        assert tuple(actual[1].shape)[:2] == (3, 2 if case == "self_attention" else 1)
        # The mask was passed on: MeanPooling averages real positions only.
        out, pooled = _np(actual[0]), _np(actual[2])
        np.testing.assert_allclose(pooled[0], out[0, :3].mean(0), atol=1e-6)
        assert (pooled[2] == 0.0).all()


# ---- MultiWidthConv1D (the encoder=cnn option) ----


def test_multi_width_conv_shape_and_mask_passed_on():
    layer = MultiWidthConv1D(4, kernel_sizes=[3, 4, 5])
    x = keras.random.normal((3, T, D_IN), seed=0)
    out = _np(layer(x, mask=MASK))
    assert out.shape == (3, T, 12)
    assert (out[~MASK] == 0.0).all()  # padded positions are exactly zero
    assert np.abs(out[MASK]).sum() > 0
    assert layer.compute_mask(x, MASK) is MASK
    assert layer.compute_output_shape((None, T, D_IN)) == (None, T, 12)


def test_multi_width_conv_padding_content_never_reaches_real_tokens():
    layer = MultiWidthConv1D(3, kernel_sizes=[5])
    x = np.asarray(keras.random.normal((3, T, D_IN), seed=1))
    noisy = x.copy()
    noisy[~MASK] = 100.0  # what an Embedding holds at id 0 is arbitrary
    a, b = _np(layer(x, mask=MASK)), _np(layer(noisy, mask=MASK))
    np.testing.assert_allclose(a, b, atol=1e-6)
    # Without a mask the padding does leak into the real tokens' windows.
    assert not np.allclose(_np(layer(x))[0, :3], _np(layer(noisy))[0, :3], atol=1e-3)


def test_multi_width_conv_matches_separate_conv1d():
    layer = MultiWidthConv1D(2, kernel_sizes=[1, 3])
    x = keras.random.normal((2, T, D_IN), seed=2)
    out = _np(layer(x))
    for i, conv in enumerate(layer.convs):
        np.testing.assert_allclose(out[..., 2 * i:2 * i + 2], _np(conv(x)), atol=1e-6)


def test_multi_width_conv_save_load_keeps_mask(tmp_path):
    tokens = keras.Input(shape=(T,), dtype="int32")
    emb = keras.layers.Embedding(10, D_IN, mask_zero=True)(tokens)
    model = keras.Model(tokens, MeanPooling()(MultiWidthConv1D(3, kernel_sizes=[2, 3])(emb)))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(_np(loaded(TOKENS)), _np(model(TOKENS)), atol=1e-6)
    assert (_np(loaded(TOKENS))[2] == 0.0).all()  # all-padding row: the mask reached the pooling


# ---- models saved by earlier versions still load ----

DATA = __import__("pathlib").Path(__file__).parent / "data"


def test_model_saved_before_fused_qkv_loads_with_same_outputs():
    """tests/data/legacy_attention.keras was written by the SelfAttention of e01f909 (one matmul per
    projection); the weights keep their names and shapes, so it loads and computes the same."""
    expected = np.load(DATA / "legacy_attention_outputs.npz")
    model = keras.models.load_model(DATA / "legacy_attention.keras", safe_mode=True)
    actual = model(expected["ids"])
    assert len(actual) == 7
    for i, a in enumerate(actual):
        np.testing.assert_allclose(_np(a), expected[f"arr_{i}"], atol=1e-5)
    np.testing.assert_allclose(_np(model.get_layer("att_learned").scale_factor), 0.9, rtol=1e-6)
