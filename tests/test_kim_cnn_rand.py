"""Kim (2014)'s CNN-rand recipe (`experiment=kim_cnn_rand`) and its pieces: no attention,
Kim's clean_str, uniform embedding init, max-norm on the classifier, Adadelta."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import compose


def kim_clean_str_reference(string: str) -> str:
    """Kim's process_data.py clean_str (MR path), his " \\( " replacements written " ( "."""
    string = re.sub(r"[^A-Za-z0-9(),!?\'\`]", " ", string)
    for a, b in ((r"\'s", " 's"), (r"\'ve", " 've"), (r"n\'t", " n't"), (r"\'re", " 're"), (r"\'d", " 'd"),
                 (r"\'ll", " 'll"), (r",", " , "), (r"!", " ! "), (r"\(", " ( "), (r"\)", " ) "), (r"\?", " ? "),
                 (r"\s{2,}", " ")):
        string = re.sub(a, b, string)
    return string.strip().lower()


def test_recipe_composes_to_kims_settings():
    cfg = compose(["experiment=kim_cnn_rand", "data=trec"])
    m, t = cfg.model, cfg.train
    assert m.encoder._target_ == "attnlab.layers.MultiWidthConv1D" and list(m.encoder.kernel_sizes) == [3, 4, 5]
    assert m.encoder.filters == 100 and m.pooling._name_ == "max" and m.attention._target_ == "attnlab.layers.NoAttention"
    assert (m.embedding_dim, m.embedding_init, m.embedding_dropout) == (300, 0.25, 0.0)
    assert (m.head.hidden, m.head.dropout, m.head.max_norm, m.standardize) == (0, 0.5, 3.0, "kim_clean_str")
    assert t.optimizer._target_ == "keras.optimizers.Adadelta" and (t.optimizer.rho, t.optimizer.epsilon) == (0.95, 1e-6)
    assert (t.learning_rate, t.batch_size, t.epochs) == (1.0, 50, 25) and t.early_stopping.monitor == "val_accuracy"
    assert cfg.data.val_fraction == 0.1


@pytest.mark.parametrize("text", ["It's a (very) good film, isn't it?!  They'll've   seen \"Amélie\"...",
                                  "what 's the `best' -- answer ? i'd say 42 ; no : 7", ""])
def test_kim_clean_str_matches_his_python(text):
    import tensorflow as tf

    from attnlab.layers import kim_clean_str

    assert kim_clean_str(tf.constant([text])).numpy()[0].decode() == kim_clean_str_reference(text)


def test_no_attention_is_the_identity_and_permutes_under_the_test():
    import keras

    from attnlab.layers import NoAttention

    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    layer = NoAttention()
    out, w = layer(x, mask=mask, return_attention_scores=True)
    np.testing.assert_array_equal(np.asarray(out), x)
    expected = np.eye(5)[None] * mask[:, :, None]
    np.testing.assert_array_equal(np.asarray(w)[:, 0], expected)
    layer.permute_keys = 3  # Jain & Wallace's test: each real row now takes another real token
    permuted = np.asarray(layer(x, mask=mask))
    assert not np.allclose(permuted, x)
    for b in range(2):  # each real row is some real token's vector (rows are permuted independently)
        real = x[b][mask[b]]
        assert all(np.abs(real - row).max(axis=1).min() < 1e-6 for row in permuted[b][mask[b]])
    assert keras.saving.get_registered_object("attnlab>NoAttention") is NoAttention


def test_built_model_has_uniform_embeddings_and_a_max_norm_classifier():
    import keras
    import tensorflow as tf

    from attnlab.models import build_model

    cfg = compose(["experiment=kim_cnn_rand", "model.encoder.filters=4", "model.max_len=12"])
    plain = {k: v for k, v in dict(cfg.model).items()}
    from attnlab.config import to_plain

    model_cfg, train_cfg = to_plain(cfg.model), to_plain(cfg.train)
    texts = [f"w{i} w{i + 1} w{i + 2}" for i in range(200)]
    model = build_model(model_cfg, 2, texts, train_cfg)
    emb = model.get_layer("embedding").embeddings.numpy()
    assert np.abs(emb).max() <= 0.25 and np.abs(emb).max() > 0.2 and emb.shape[1] == 300
    assert isinstance(model.get_layer("probs").kernel.constraint, keras.constraints.MaxNorm)
    # One step with a huge learning rate: each class's weight vector ends at L2 norm <= 3.
    model.optimizer.learning_rate.assign(1e4)
    model.fit(tf.constant(texts)[:, None], np.arange(200) % 2, batch_size=50, epochs=1, verbose=0)
    norms = np.linalg.norm(model.get_layer("probs").kernel.numpy(), axis=0)
    assert norms.max() == pytest.approx(3.0, rel=1e-4)
    assert "attention" not in [type(x).__name__ for x in model.layers] and plain


def test_saved_model_loads_with_safe_mode_in_a_fresh_process(tmp_path):
    """The clean_str standardizer and NoAttention are found by name when a fresh process imports
    attnlab.layers (what the pyfunc does), and the loaded model answers the same."""
    import tensorflow as tf

    from attnlab.config import to_plain
    from attnlab.models import build_model

    cfg = compose(["experiment=kim_cnn_rand", "model.encoder.filters=4", "model.embedding_dim=8", "model.max_len=12"])
    model = build_model(to_plain(cfg.model), 2, ["It's good, isn't it?", "a (bad) film!"], to_plain(cfg.train))
    model.save(tmp_path / "m.keras")
    want = np.asarray(model(tf.constant(["It's GOOD!"])[:, None]))
    code = ("import attnlab.layers, keras, tensorflow as tf, sys; "
            f"m = keras.models.load_model(r'{tmp_path / 'm.keras'}', safe_mode=True); "
            "print(repr(m(tf.constant([\"It's GOOD!\"])[:, None]).numpy().tolist()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.array(eval(proc.stdout.strip().splitlines()[-1])), want, atol=1e-6)


@pytest.mark.parametrize("override, message", [
    ("model.head.max_norm=0", "model.head.max_norm=0"),
    ("model.embedding_init=-1", "model.embedding_init=-1"),
    ("model.standardize=kim", "model.standardize='kim'"),
])
def test_bad_recipe_values_are_one_line(override, message):
    from attnlab.errors import ConfigError
    from attnlab.run_spec import describe

    with pytest.raises(ConfigError) as e:
        describe(compose(["experiment=kim_cnn_rand", override]), [])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
