#!/bin/bash
# Scale ablation on MR: all four scalings at 128 units (the default width), 10-fold CV, seed 0
# (the folds are the replicates, paired by fold). The full preset grid is
# `attnlab train -m experiment=scale data=mr 'data.fold=range(10)'` (4 x 3 x 5 x 10 = 600 runs).
# Ran 2026-11-25/26 in two concurrent single-threaded streams (`train.threads=1`) on a 2-core
# CPU, from a frozen copy of commit 2151523 (which still put threads=1 into the variant name).
export MLFLOW_TRACKING_URI=sqlite:////work/runs/mlflow.db
cd /work/runs
Q="tracking.log_model=false tracking.n_attention_examples=2 train.threads=1"
attnlab train -m experiment=scale data=mr 'data.fold=range(10)' model.attention.units=128 \
    model.attention.scale=constant,sqrt_dk,none,learned seed=0 $Q
cd /work/main && attnlab report scale --data mr --tracking-uri sqlite:////work/runs/mlflow.db --out experiments/scale/mr
