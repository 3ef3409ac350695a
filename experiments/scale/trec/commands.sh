#!/bin/bash
# Scale ablation on TREC, reduced to fit the CPU time: all four scalings at 128 units (the
# default width) and constant 8 vs sqrt(d_k) at 32 and 512 units, seeds listed in report.md.
# The full preset grid is `attnlab train -m experiment=scale data=trec` (4 x 3 x 5 = 60 runs).
export MLFLOW_TRACKING_URI=sqlite:////work/runs/mlflow.db
cd /work/runs
Q="tracking.log_model=false tracking.n_attention_examples=2"
for s in 0 1 2 3 4; do
  attnlab train -m experiment=scale data=trec model.max_len=40 model.attention.units=128 seed=$s $Q
done
for s in 0 1 2; do
  attnlab train -m experiment=scale data=trec model.max_len=40 model.attention.units=32,512 \
      model.attention.scale=constant,sqrt_dk seed=$s $Q
done
cd /work/main && attnlab report scale --data trec --out experiments/scale/trec
