#!/bin/bash
# Pooling ablation on MR: all six poolings, 10-fold CV, seed 0 (the folds are the replicates,
# paired by fold). The full preset grid is
# `attnlab train -m experiment=pooling data=mr 'data.fold=range(10)'` (6 x 5 x 10 = 300 runs).
# Ran 2026-11-25/26 in two concurrent single-threaded streams (`train.threads=1`) on a 2-core
# CPU, from a frozen copy of commit 2151523 (which still put threads=1 into the variant name).
export MLFLOW_TRACKING_URI=sqlite:////work/runs/mlflow.db
cd /work/runs
Q="tracking.log_model=false tracking.n_attention_examples=2 train.threads=1"
attnlab train -m experiment=pooling data=mr 'data.fold=range(10)' seed=0 $Q
cd /work/main && attnlab report pooling --data mr --tracking-uri sqlite:////work/runs/mlflow.db --out experiments/pooling/mr
