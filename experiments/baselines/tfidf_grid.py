"""Validation-only grid for model=tfidf_lr (the machine is loaded: a small one):
TREC (validation of seed 0) and MR fold 0 (its validation part, seed 0). Test is never scored here."""
import json, time
import numpy as np
from hydra import compose, initialize_config_dir
from sklearn.metrics import accuracy_score
from attnlab.config import config_dir, register_configs, to_plain
from attnlab import data
from attnlab.learners.tfidf import TfidfLogisticRegression

register_configs()
def load(ov, seed):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = to_plain(compose(config_name="config", overrides=ov + ["paths.data_dir=/work/shared/data", f"seed={seed}"]))
    return data.load(cfg["data"], seed)
sets = {"trec": load(["data=trec"], 0), "mr": load(["data=mr", "data.fold=0"], 0)}
P2 = r"(?u)\b\w\w+\b"
grid = [(2, C, sub, P2) for C in (10.0, 30.0, 100.0) for sub in (False, True)] + [(1, 30.0, False, P2), (3, 30.0, False, P2), (2, 30.0, False, r"(?u)\b\w+\b")]
out = []
for ng, C, sub, tp in grid:
    for name, ds in sets.items():
        t = time.time()
        lr = TfidfLogisticRegression(name="x", ngram_max=ng, C=C, sublinear_tf=sub, min_df=1, max_features=None, max_iter=1000, token_pattern=tp)
        pipe = lr.fit(ds.train.texts, ds.train.labels, 0)
        acc = float(accuracy_score(ds.val.labels, pipe.predict(list(ds.val.texts))))
        row = {"data": name, "ngram_max": ng, "C": C, "sublinear_tf": sub, "token_pattern": tp, "val_accuracy": acc, "n_val": len(ds.val), "s": round(time.time() - t, 1)}
        out.append(row); print(json.dumps(row), flush=True)
json.dump(out, open("experiments/baselines/tfidf_grid.json", "w"), indent=1)
