#!/bin/bash
# Scale ablation on TREC at the widths where the seed's constant 8 differs most from
# sqrt(d_k) (32: 5.7, 512: 22.6): all four scalings x seeds 0-2 (session 2, 2026-11-26;
# frozen copy of 2dac747, two single-threaded streams). Completes experiments/scale/trec/,
# which has only constant vs sqrt_dk at these widths; those 12 runs came out identical here.
export MLFLOW_TRACKING_URI=sqlite:////work/runs/mlflow.db
cd /work/runs
Q="data=trec model.max_len=40 tracking.log_model=false tracking.n_attention_examples=2 train.threads=1"
attnlab train -m experiment=scale model.attention.units=32,512 \
    model.attention.scale=constant,sqrt_dk,none,learned seed=0,1,2 $Q
cd /work/main && attnlab report scale --data trec --tracking-uri sqlite:////work/runs/mlflow.db \
    --out experiments/scale/trec-widths
