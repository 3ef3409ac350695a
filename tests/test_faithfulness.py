"""Faithfulness measures: known answers on a linear bag-of-words model, hand computations,
independent re-implementations (scipy's τ-b, sklearn's AP, the ERASER formulas on the
exported files) and the Keras view on attnlab models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from attnlab import faithfulness as F


class LinearView:
    """Known answers: logit(class 1) − logit(class 0) = sum of the kept tokens' weights
    ``w[id]``; the embedding is one-dimensional, e_i = w[id_i]. So removing token i moves the
    logit by −w_i, and gradient×input of p(ŷ) is p(1−p)·|w_i| (binary softmax)."""

    def __init__(self, weights):
        self.w = np.asarray(weights, dtype=np.float64)
        self.rows = 0

    def _p1(self, ids, keep):
        s = (self.w[ids] * (keep & (ids != 0))).sum(axis=1)
        return 1.0 / (1.0 + np.exp(-s))

    def probs(self, ids, keep):
        self.rows += len(ids)
        p1 = self._p1(np.asarray(ids), np.asarray(keep, bool))
        return np.stack([1.0 - p1, p1], axis=1)

    def grad_input(self, ids, target):
        p1 = self._p1(ids, ids != 0)
        return (p1 * (1.0 - p1))[:, None] * np.abs(self.w[ids]) * (ids != 0)


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _texts(rng, n, vocab, min_len=4, max_len=20, t=24):
    ids = np.zeros((n, t), dtype=np.int64)
    for i in range(n):
        length = rng.integers(min_len, max_len + 1)
        ids[i, :length] = rng.choice(np.arange(1, vocab), size=length, replace=False)
    return ids


# --------------------------------------------------------------------------- known answers


def test_loo_and_gradient_recover_the_known_order_random_does_not():
    rng = np.random.default_rng(0)
    w = np.r_[0.0, rng.uniform(0.05, 1.0, 199)]  # distinct positive weights: ŷ = 1, order = w
    ids = _texts(rng, 300, 200)
    truth = w[ids] * (ids != 0)
    res = F.evaluate(LinearView(w), ids, truth, seed=3)
    real = ids != 0
    for method in ("loo", "gradient"):
        tau, counts = F.kendall_tau(res.importance[method], truth, real)
        assert np.allclose(tau, 1.0) and counts["short"] == 0, method
    m = res.metrics()
    assert m["faith/attention/tau_loo"] == pytest.approx(1.0)  # "attention" = the true weights here
    assert m["faith/gradient/tau_loo"] == pytest.approx(1.0)
    assert abs(m["faith/random/tau_loo"]) < 0.05 and abs(m["faith/random/tau_grad"]) < 0.05
    assert m["faith/loo/comprehensiveness"] > m["faith/random/comprehensiveness"]
    assert m["faith/loo/sufficiency"] < m["faith/random/sufficiency"]
    assert "faith/loo/tau_loo" not in m and "faith/gradient/tau_grad" not in m  # no self-comparison


def test_comprehensiveness_and_sufficiency_match_a_hand_computation():
    # 5 tokens (ids 1..5), weights 1, 2, -0.5, 0.75, 0.25: logit 3.5, ŷ = 1.
    w = np.array([0.0, 1.0, 2.0, -0.5, 0.75, 0.25])
    ids = np.array([[1, 2, 3, 4, 5, 0, 0]])
    attention = np.array([[0.1, 0.5, 0.2, 0.15, 0.05, 0.0, 0.0]])  # order: tok 2, 3, 4, 1, 5
    res = F.evaluate(LinearView(w), ids, attention)
    # k = ceil(f * 5) for 1, 5, 10, 20, 50 % -> 1, 1, 1, 1, 3: top-1 = {token 2}, top-3 = {2, 3, 4}
    assert res.k[:, 0].tolist() == [1, 1, 1, 1, 3]
    full = _sigmoid(3.5)
    comp = [full - _sigmoid(3.5 - 2.0)] * 4 + [full - _sigmoid(1.0 + 0.25)]  # without top-k
    suff = [full - _sigmoid(2.0)] * 4 + [full - _sigmoid(2.0 - 0.5 + 0.75)]  # top-k only
    m = res.metrics()
    assert m["faith/attention/comprehensiveness"] == pytest.approx(sum(comp) / 5, abs=1e-12)
    assert m["faith/attention/sufficiency"] == pytest.approx(sum(suff) / 5, abs=1e-12)
    curves = res.to_json()["methods"]["attention"]["curves"]
    assert curves["comprehensiveness"] == pytest.approx(comp) and curves["sufficiency"] == pytest.approx(suff)
    # leave-one-out by hand: drop of p(1) when each token alone is removed
    loo = [full - _sigmoid(3.5 - x) for x in (1.0, 2.0, -0.5, 0.75, 0.25)]
    assert res.importance["loo"][0, :5] == pytest.approx(loo, abs=1e-12)


def test_bins_use_the_exact_ceiling():
    got = F.bin_sizes(np.array([1, 5, 30, 100, 101]), F.BINS).T  # (texts, bins)
    assert got.tolist() == [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 3],
        [1, 2, 3, 6, 15],  # 0.1 * 30 is 3, not ceil(3.0000000000000004) = 4
        [1, 5, 10, 20, 50],
        [2, 6, 11, 21, 51],
    ]


def test_rationale_average_precision_by_hand_and_against_sklearn():
    from sklearn.metrics import average_precision_score

    # ranks 1..4 hold truth 0, 1, 0, 1: AP = 1/2 * 1/2 + 1/2 * 2/4 = 0.5
    assert F.average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 1, 0, 1])) == pytest.approx(0.5)
    # a tie at the top: one threshold takes both, precision 1/2 at recall 1
    assert F.average_precision(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0])) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    for _ in range(50):
        s, y = rng.integers(0, 5, 12).astype(float), rng.integers(0, 2, 12)
        if 0 < y.sum() < 12:
            assert F.average_precision(s, y) == pytest.approx(average_precision_score(y, s))
    # in evaluate: the rationale = the two heaviest tokens, which leave-one-out ranks first
    w = np.array([0.0, 0.1, 0.2, 3.0, 0.3, 2.0])
    ids = np.array([[1, 2, 3, 4, 5, 0], [3, 1, 0, 0, 0, 0]])
    rationale = [np.array([0, 0, 1, 0, 1]), np.array([1, 1])]  # 2nd text: all real tokens, not scored
    res = F.evaluate(LinearView(w), ids, np.ones(ids.shape), rationale=rationale)
    m = res.metrics()
    assert m["faith/loo/ap_rationale"] == 1.0
    assert m["faith/attention/ap_rationale"] == pytest.approx(2 / 5)  # all tied: precision = 2/5
    assert res.summary["loo"]["counts"]["ap_rationale"]["n_scored"] == 1


def test_kendall_tau_b_matches_scipy_with_ties():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 4, (40, 15)).astype(float), rng.integers(0, 6, (40, 15)).astype(float)
    real = np.arange(15)[None, :] < rng.integers(2, 16, 40)[:, None]
    tau, _ = F.kendall_tau(x, y, real)
    for i in range(40):
        a, b = x[i][real[i]], y[i][real[i]]
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            assert tau[i] == pytest.approx(kendalltau(a, b, variant="b").statistic)


def test_uniform_attention_and_one_token_texts_give_a_defined_tau():
    w = np.r_[0.0, np.linspace(0.1, 2.0, 30)]
    ids = np.array([[1, 5, 9, 20, 0, 0], [7, 3, 12, 0, 0, 0], [4, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    uniform = (ids != 0) / np.maximum((ids != 0).sum(axis=1, keepdims=True), 1)
    res = F.evaluate(LinearView(w), ids, uniform)
    m = res.metrics()
    assert m["faith/attention/tau_loo"] == 0.0 and m["faith/attention/tau_grad"] == 0.0
    assert all(math.isfinite(v) for v in m.values())
    json.dumps(res.to_json(), allow_nan=False)
    counts = res.summary["attention"]["counts"]["tau_loo"]
    assert counts == {"n_scored": 2, "short": 1, "reference_constant": 0, "method_constant": 2}
    assert res.counts["n_empty_dropped"] == 1 and len(res.pred) == 3  # the all-padding text
    # a one-token text: every bin removes (comprehensiveness) or keeps (sufficiency) that token
    one = list(res.indices).index(2)
    assert res.k[:, one].tolist() == [1] * 5
    assert np.all(res.deltas("attention")[1][:, one] == 0.0)
    # reference constant (a zero-weight text: leave-one-out drops are all 0) -> skipped, counted
    tau, c = F.kendall_tau(np.array([[1.0, 2.0, 3.0]]), np.zeros((1, 3)), np.ones((1, 3), bool))
    assert np.isnan(tau[0]) and c["reference_constant"] == 1


def test_subset_is_seeded_and_results_serialise():
    assert F.subset_indices(10, 4, 0).tolist() == F.subset_indices(10, 4, 0).tolist()
    assert F.subset_indices(10, 4, 0).tolist() != F.subset_indices(10, 4, 1).tolist()
    assert F.subset_indices(3, 200, 0).tolist() == [0, 1, 2]
    rng = np.random.default_rng(4)
    w = np.r_[0.0, rng.normal(0, 1, 99)]
    ids = _texts(rng, 50, 100)
    view = LinearView(w)
    res = F.evaluate(view, ids, rng.random(ids.shape), n=20, seed=5)
    assert res.indices.tolist() == F.subset_indices(50, 20, 5).tolist()
    body = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert body["n"] == 20 and body["seed"] == 5 and body["bins"] == list(F.BINS) and body["protocol"]
    assert set(body["methods"]) == {"attention", "gradient", "loo", "random"}
    assert len(body["methods"]["loo"]["curves"]["comprehensiveness"]) == 5
    # every distinct masked row ran once: fewer rows than LOO + bins without sharing
    n_real = (ids[res.indices] != 0).sum()
    assert view.rows == res.counts["model_rows"] < 1 + n_real + 4 * 5 * 2 * 20


@pytest.mark.parametrize("kwargs, match", [
    ({"bins": (0.0, 0.5)}, "bins"), ({"bins": (0.1, 0.1)}, "bins"), ({"n": 0}, "argument `n`"), ({"seed": -1}, "argument `seed`"),
    ({"attention": np.ones((2, 3))}, "attention must have the shape"),
    ({"extra": {"loo": np.ones((2, 4))}}, "reuse"),
    ({"attention": np.full((2, 4), np.nan)}, "non-finite"),
])
def test_bad_arguments_fail_with_the_value(kwargs, match):
    args = {"attention": np.ones((2, 4)), **kwargs}
    with pytest.raises(ValueError, match=match):
        F.evaluate(LinearView(np.ones(10)), np.array([[1, 2, 0, 0], [3, 0, 0, 0]]), **args)


# --------------------------------------------------------------------------- ERASER files


def _eraser_aopc(records, key):
    """The paper's formulas on the exported records, written again: per instance and bin
    p(ŷ|x) − p(ŷ|x'), ŷ = the recorded classification; AOPC = mean over bins and instances."""
    deltas = []
    for r in records:
        cls = r["classification"]
        base = r["classification_scores"][cls]
        deltas.append([base - t[key][cls] for t in sorted(r["thresholded_scores"], key=lambda t: t["threshold"])])
    return float(np.mean(deltas)), np.mean(deltas, axis=0)


def test_eraser_export_recomputes_to_the_same_measures(tmp_path):
    rng = np.random.default_rng(6)
    w = np.r_[0.0, rng.normal(0, 1, 59)]
    ids = _texts(rng, 30, 60, max_len=12, t=16)
    rationale = [(rng.random(16) < 0.3).astype(int) for _ in range(30)]
    res = F.evaluate(LinearView(w), ids, rng.random(ids.shape), rationale=rationale, n=25, seed=1)
    tokens = [[f"w{t}" for t in row[row != 0]] for row in ids]
    labels = rng.integers(0, 2, 30)
    paths = F.write_eraser(res, tmp_path / "eraser", tokens, labels, ["neg", "pos"])
    m = res.metrics()
    for method in res.methods:
        records = [json.loads(line) for line in paths[method].read_text().splitlines()]
        assert len(records) == 25
        for key, measure in (("comprehensiveness_classification_scores", "comprehensiveness"),
                             ("sufficiency_classification_scores", "sufficiency")):
            aopc, curve = _eraser_aopc(records, key)
            assert aopc == pytest.approx(m[f"faith/{method}/{measure}"], abs=1e-12)
            assert curve == pytest.approx(res.summary[method]["curves"][measure], abs=1e-12)
        for r in records:
            doc = (paths["data"] / "docs" / r["annotation_id"]).read_text().split()
            (rat,) = r["rationales"]
            assert len(rat["soft_rationale_predictions"]) == len(doc)
            hard = [t for s in rat["hard_rationale_predictions"] for t in range(s["start_token"], s["end_token"])]
            assert len(hard) == len(set(hard)) and max(hard) < len(doc)
            assert r["classification"] in ("neg", "pos") and abs(sum(r["classification_scores"].values()) - 1) < 1e-9
    annotations = [json.loads(line) for line in paths["annotations"].read_text().splitlines()]
    assert [a["annotation_id"] for a in annotations] == [f"val_{i}" for i in res.indices]
    first = res.indices[0]
    marked = np.flatnonzero(np.asarray(rationale[first])[: (ids[first] != 0).sum()])
    spans = [t for ev in (annotations[0]["evidences"] or [[]])[0] for t in range(ev["start_token"], ev["end_token"])]
    assert spans == marked.tolist()
    with pytest.raises(FileExistsError, match="force"):
        F.write_eraser(res, tmp_path / "eraser", tokens, labels, ["neg", "pos"])


# --------------------------------------------------------------------------- Keras view


def _keras_bow(weights_by_id, max_len):
    """The linear bag-of-words model as an attnlab-shaped Keras model (layers `vectorizer`,
    `embedding` (1-d, mask_zero), a masked sum, `probs`)."""
    import keras
    from keras import ops

    class MaskedSum(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs, mask=None):
            return ops.sum(inputs * ops.cast(mask, inputs.dtype)[:, :, None], axis=1)

        def compute_mask(self, inputs, mask=None):
            return None

    vocab = [f"w{i}" for i in range(2, len(weights_by_id))]  # ids 0 (padding) and 1 (OOV) come first
    vec = keras.layers.TextVectorization(vocabulary=vocab, standardize=None, split="whitespace",
                                         output_sequence_length=max_len, name="vectorizer")
    inputs = keras.Input(shape=(1,), dtype="string")
    emb = keras.layers.Embedding(len(weights_by_id), 1, mask_zero=True, name="embedding")
    dense = keras.layers.Dense(2, activation="softmax", name="probs")
    model = keras.Model(inputs, dense(MaskedSum()(emb(vec(inputs)))))
    emb.set_weights([np.asarray(weights_by_id, np.float32)[:, None]])
    dense.set_weights([np.array([[0.0, 1.0]], np.float32), np.zeros(2, np.float32)])
    return model


def test_keras_view_of_the_linear_model_gives_the_known_answers():
    from attnlab.explain import KerasView

    rng = np.random.default_rng(7)
    w = np.r_[0.0, 0.0, rng.normal(0, 1, 40)]
    model = _keras_bow(w, max_len=12)
    texts = [" ".join(f"w{i}" for i in rng.choice(np.arange(2, 42), rng.integers(2, 10), replace=False))
             for _ in range(30)]
    view, ref = KerasView(model), LinearView(w)
    ids = view.ids(texts)
    keep = rng.random(ids.shape) < 0.6
    assert np.allclose(view.probs(ids, keep), ref.probs(ids, keep), atol=1e-6)
    pred = ref.probs(ids, ids != 0).argmax(axis=1)
    assert np.allclose(view.grad_input(ids, pred), ref.grad_input(ids, pred), rtol=1e-4, atol=1e-7)
    att = np.random.default_rng(8).random(ids.shape)
    got, want = F.evaluate(view, ids, att).metrics(), F.evaluate(ref, ids, att).metrics()
    assert got.keys() == want.keys()
    assert all(abs(got[k] - want[k]) < 1e-5 for k in got), {k: (got[k], want[k]) for k in got}
    assert view._trim is True  # a masked sum ignores trailing padding: rows were cut


@pytest.fixture(scope="module")
def tiny_models():
    """Untrained attnlab models of the three shipped kinds, tiny widths (the CNN with 3 classes)."""
    import keras

    from attnlab.config import to_plain
    from attnlab.data import load
    from attnlab.models import build_model
    from conftest import compose, tiny

    out = {}
    for name in ("default", "cnn", "seed"):
        cfg = to_plain(compose(tiny(f"model={name}")))
        data = load(cfg["data"], 0)
        keras.utils.set_random_seed(0)
        n_classes = 3 if name == "cnn" else len(data.classes)  # one multi-class model (untrained: labels unused)
        out[name] = (build_model(cfg["model"], n_classes, data.train.texts), data.val.texts[:40])
    return out


@pytest.mark.parametrize("name, trims, masking_is_deletion", [
    ("default", True, True), ("cnn", True, False), ("seed", False, False)])
def test_keras_view_matches_the_text_model_and_masks(tiny_models, name, trims, masking_is_deletion):
    import tensorflow as tf

    from attnlab.explain import KerasView

    model, texts = tiny_models[name]
    view = KerasView(model, batch_size=16)
    ids = view.ids(texts)
    want = np.asarray(model(tf.constant(texts)[:, None], training=False))
    assert np.abs(view.probs(ids, ids != 0) - want).max() <= 1e-6
    assert view._trim is trims  # seed: attends to padding and flattens, so rows keep full length
    keep = (ids != 0) & (np.arange(ids.shape[1]) != 1)  # drop the 2nd token of every text
    dropped = view.probs(ids, keep)
    assert np.allclose(dropped, view.probs(np.where(keep, ids, 0)), atol=1e-7)
    assert np.abs(dropped - want).max() > 1e-5  # masking a token changes the output (untrained: small)
    deleted = np.asarray(model(tf.constant([" ".join(t.split()[:1] + t.split()[2:]) for t in texts])[:, None]))
    assert bool(np.abs(dropped - deleted).max() <= 1e-6) is masking_is_deletion  # ERASER deletes tokens
    g = view.grad_input(ids, want.argmax(axis=1))
    assert g.shape == ids.shape and np.all(g[ids == 0] == 0) and np.all(g[ids != 0] > 0)
    att = view.attention(ids)
    assert np.allclose(att.sum(axis=1), 1.0, atol=1e-5) or name == "seed"  # seed: mass on padding too


def test_trained_model_end_to_end(tmp_path):
    """A small BiLSTM learns the synthetic keyword task; leave-one-out, gradient and attention
    beat random on comprehensiveness and find the planted keywords; every measure is finite."""
    import keras
    import tensorflow as tf

    from attnlab.analysis import tokens_for
    from attnlab.config import to_plain
    from attnlab.data import load
    from attnlab.explain import KerasView, evaluate_model
    from attnlab.models import build_model, vocabulary
    from conftest import TINY, compose

    cfg = to_plain(compose(TINY))
    data = load(cfg["data"], 0)
    keras.utils.set_random_seed(0)
    model = build_model(cfg["model"], len(data.classes), data.train.texts, cfg["train"])
    model.fit(tf.constant(data.train.texts)[:, None], data.train.labels, epochs=6, batch_size=32, verbose=0)
    val = np.asarray(model(tf.constant(data.val.texts)[:, None], training=False)).argmax(axis=1)
    assert (val == data.val.labels).mean() > 0.9

    res = evaluate_model(model, data.val.texts, data.val.rationale, n=60, seed=0)
    m = res.metrics()
    assert len(res.pred) == 60 and len(m) == 18 and all(math.isfinite(v) for v in m.values())
    for method in ("loo", "gradient", "attention"):  # attention is a good explanation here (0.6 vs 0.12)
        assert m[f"faith/{method}/comprehensiveness"] > m["faith/random/comprehensiveness"] + 0.2
        assert m[f"faith/{method}/ap_rationale"] > m["faith/random/ap_rationale"] + 0.3
    ids = KerasView(model).ids(data.val.texts)
    tokens = tokens_for(data.val.texts, ids, vocabulary(model))
    paths = F.write_eraser(res, tmp_path, tokens, data.val.labels, data.classes, methods=["attention"])
    assert len(paths["attention"].read_text().splitlines()) == 60
