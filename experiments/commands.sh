#!/bin/bash
# Every command behind the numbers in experiments/, in the order they ran (2026-11-25,
# 20:51-22:30 UTC, 2-core CPU shared with five other engineers, one training at a time).
# Training ran from a frozen copy of commit 317a7d2 (report: commit 0acab75 or later);
# paste from the repository root with the project's venv active.
set -euo pipefail
export MLFLOW_TRACKING_URI=sqlite:////work/runs/mlflow.db   # a store outside the repository
cd /work/runs                                               # artifacts go to ./mlruns here
Q="tracking.log_model=false tracking.n_attention_examples=2" # saves time and disk per run
T="data=trec model.max_len=40"   # TREC's longest question has 37 tokens: 40 truncates nothing

# 1. Step 1: the default configuration as shipped (experiment `attnlab`)
attnlab train data=trec $Q
attnlab train data=mr data.fold=0 $Q

# 2. Tuning on validation data only (experiment `tuning`, see tuning.md)
C="$T tracking.experiment=tuning tracking.log_model=false tracking.n_attention_examples=0"
attnlab train -m $C model.pooling.type=mean,max
attnlab train $C train.learning_rate=0.002
attnlab train $C model.embedding_dim=300
attnlab train $C model.encoder.units=128
attnlab train $C model.pooling.type=max model.embedding_dropout=0.5
attnlab train -m $C seed=1 model.embedding_dim=128,300

# 3. The default configuration on MR: 10-fold cross-validation (experiment `baseline`)
attnlab train -m data=mr 'data.fold=range(10)' seed=0 tracking.experiment=baseline $Q
# TREC: the default configuration's runs are the pooling ablation's `pool=mean` runs below.

# 4. Ablations on TREC (experiments `ablation-pooling`, `ablation-scale`), one seed at a time
# (actual order: pooling seed 0, the MR baseline, pooling 1-2, scale@128 0-2, scale@32/512 0-2,
#  pooling 3-4, scale@128 3-4)
for s in 0 1 2 3 4; do attnlab train -m experiment=pooling $T seed=$s $Q; done
for s in 0 1 2 3 4; do attnlab train -m experiment=scale $T model.attention.units=128 seed=$s $Q; done
for s in 0 1 2; do
  attnlab train -m experiment=scale $T model.attention.units=32,512 model.attention.scale=constant,sqrt_dk seed=$s $Q
done

# 5. Reports and the baseline table (from the repository root)
cd /work/main
attnlab report pooling --data trec --out experiments/pooling/trec
attnlab report scale --data trec --out experiments/scale/trec
python experiments/baselines.py

# ---------------------------------------------------------------------------------------------
# Session 2 (2026-11-25 23:47 - 11-26 01:27 UTC): MR ablations and a CNN encoder for TREC.
# A new, empty store at the same path. Two single-threaded streams ran side by side on the
# 2-core CPU (train.threads=1); ablation runs from a frozen copy of 2151523, model=cnn runs
# from a frozen copy of 2dac747. Commit 2151523 still put `threads=1` into the variant tag
# (fixed in the next commit), so every MR ablation run carries it; the four scale=constant
# runs of folds 0-3 first made without it were re-run with it and the old ones soft-deleted
# (`MlflowClient.delete_run`, recoverable), so that all runs of a variant group together.
Q="tracking.log_model=false tracking.n_attention_examples=2 train.threads=1"

# 6. Scale ablation on MR: four scalings at 128 units, 10 folds, seed 0 (experiment ablation-scale)
attnlab train -m experiment=scale data=mr 'data.fold=range(10)' model.attention.units=128 \
    model.attention.scale=constant,sqrt_dk,none,learned seed=0 $Q
# 7. Pooling ablation on MR: six poolings, 10 folds, seed 0 (experiment ablation-pooling)
attnlab train -m experiment=pooling data=mr 'data.fold=range(10)' seed=0 $Q
# 8. model=cnn on MR, 10 folds (experiment baseline)
attnlab train -m model=cnn data=mr 'data.fold=range(10)' seed=0 tracking.experiment=baseline $Q
# 9. TREC: the default and four CNN candidates, seeds 0-4, chosen on validation (tuning.md step 5)
C="$T $Q tracking.experiment=tuning-cnn"
attnlab train -m $C 'seed=range(5)'
attnlab train -m $C model.encoder.type=cnn model.encoder.units=100 model.pooling.type=max 'seed=range(5)'
attnlab train -m $C model=cnn model.embedding_dropout=0.5 'seed=range(5)'
attnlab train -m $C model=cnn model.embedding_dim=300 'seed=range(5)'
attnlab train -m $C model=cnn model.embedding_dim=300 model.embedding_dropout=0.5 'seed=range(5)'

# 10. Reports, the baseline table, one reproduction (from the repository root)
cd /work/main
attnlab report scale --data mr --tracking-uri sqlite:////work/runs/mlflow.db --out experiments/scale/mr
attnlab report pooling --data mr --tracking-uri sqlite:////work/runs/mlflow.db --out experiments/pooling/mr
python experiments/baselines.py --tracking-uri sqlite:////work/runs/mlflow.db
attnlab reproduce 2d78ccd5dd414b2bba9f8c998cf81c4f

# 11. TREC scale at 32 and 512 units: all four scalings, seeds 0-2 (experiments/scale/trec-widths)
attnlab train -m experiment=scale $T model.attention.units=32,512 \
    model.attention.scale=constant,sqrt_dk,none,learned seed=0,1,2 $Q
attnlab report scale --data trec --tracking-uri sqlite:////work/runs/mlflow.db --out experiments/scale/trec-widths
