"""How tests/data/legacy_attention.keras was built, with the SelfAttention of commit e01f909 (separate
query/key/value kernels, computed one matmul each). Kept for the record; do not rerun it with newer code:
the point of the fixture is that it was written by the old code. Run from the project root."""
import keras, numpy as np
from attnlab.layers import SelfAttention, SeedSelfAttention, MeanPooling
keras.utils.set_random_seed(7)
T, D = 5, 3
tokens = keras.Input(shape=(T,), dtype="int32", name="tokens")
emb = keras.layers.Embedding(10, D, mask_zero=True, name="emb")(tokens)
a, wa = SelfAttention(4, heads=2, scale="learned", mask="keys", name="att_learned")(emb, return_attention_scores=True)
b, wb = SelfAttention(6, heads=3, scale="sqrt_dk", mask="keys_and_queries", use_bias=False, name="att_nobias")(a, return_attention_scores=True)
c, wc = SeedSelfAttention(4, name="seed")(b, return_attention_scores=True)
model = keras.Model(tokens, [a, wa, b, wb, c, wc, MeanPooling(name="pool")(c)])
# make the learned scale differ from its initial value so loading it is tested
model.get_layer("att_learned").scale_factor.assign(0.9)
ids = np.array([[3, 1, 4, 0, 0], [1, 5, 9, 2, 6], [0, 0, 0, 0, 0]], dtype="int32")
outs = [keras.ops.convert_to_numpy(o) for o in model(ids)]
model.save("tests/data/legacy_attention.keras")
np.savez("tests/data/legacy_attention_outputs.npz", ids=ids, *outs)
print([o.shape for o in outs], [w.path for w in model.weights])
