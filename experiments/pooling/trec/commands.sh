#!/bin/bash
# Pooling ablation on TREC: all six poolings x seeds 0-4 (seeds listed in report.md), the rest of
# the default configuration unchanged. Store outside the repository; run from /work/runs.
export MLFLOW_TRACKING_URI=sqlite:////work/runs/mlflow.db
cd /work/runs
for s in 0 1 2 3 4; do   # one seed of every variant at a time, so a cut-off leaves complete seeds
  attnlab train -m experiment=pooling data=trec model.max_len=40 seed=$s \
      tracking.log_model=false tracking.n_attention_examples=2
done
cd /work/main && attnlab report pooling --data trec --out experiments/pooling/trec
