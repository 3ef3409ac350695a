#!/bin/bash
# Accuracy rows for the README (issues 13 and 15), 2026-12-01, in the order they ran. Training ran
# from a clone of the commit named in experiments/accuracy/README.md at /tmp/exp_frozen (PYTHONPATH),
# into sqlite:////work/runs/acc/mlflow.db, cwd /work/runs/acc, one run at a time (2 cores).
set -u
export MLFLOW_TRACKING_URI=sqlite:////work/runs/acc/mlflow.db PYTHONPATH=/tmp/exp_frozen/src TF_CPP_MIN_LOG_LEVEL=2
ATTNLAB=/work/main/.venv/bin/attnlab
COMMON="paths.data_dir=/work/shared/data tracking.log_model=false tracking.system_metrics=false"

# 1. The default of commit a7bb721 (model=small_transformer, positional none; training defaults, faithfulness on):
#    TREC seeds 0-4 (max_len 40: nothing truncated), MR folds 0-9 (seed 0).
for s in 0 1 2 3 4; do
  echo "== default trec seed $s $(date -u +%T)"
  $ATTNLAB --quiet train $COMMON tracking.experiment=accuracy-default data=trec model.max_len=40 seed=$s
done
for f in 0 1 2 3 4 5 6 7 8 9; do
  echo "== default mr fold $f $(date -u +%T)"
  $ATTNLAB --quiet train $COMMON tracking.experiment=accuracy-default data=mr data.fold=$f seed=0
done

# 2. model=transformer on MR folds 0-9, with the training its TREC row used (lr 0.001, batch 64).
for f in 0 1 2 3 4 5 6 7 8 9; do
  echo "== transformer mr fold $f $(date -u +%T)"
  $ATTNLAB --quiet train $COMMON tracking.experiment=accuracy-transformer model=transformer data=mr data.fold=$f \
    seed=0 tracking.faithfulness.enabled=false train.learning_rate=0.001 train.batch_size=64
done
echo "== done $(date -u +%T)"

# 3. the tables (run from the repository root; from /work/runs/acc this line failed and was rerun by hand)
python experiments/baselines/collect.py --tracking-uri sqlite:////work/runs/acc/mlflow.db \
  --experiments accuracy-default accuracy-transformer

# 4. After the default changed to learned positions (commit 810dcf3), the default's rows again,
#    from a clone of that commit at /tmp/exp_frozen2, in a second stream beside step 2 (typed by hand;
#    appended here while this script still ran, so the script also started them at 23:48: its three
#    TREC repeats gave identical numbers and were deleted from the store, see README.md):
export PYTHONPATH=/tmp/exp_frozen2/src
for s in 0 1 2 3 4; do
  echo "== default2 trec seed $s $(date -u +%T)"
  $ATTNLAB --quiet train $COMMON tracking.experiment=accuracy-default2 data=trec model.max_len=40 seed=$s
done
for f in 0 1 2 3 4 5 6 7 8 9; do
  echo "== default2 mr fold $f $(date -u +%T)"
  $ATTNLAB --quiet train $COMMON tracking.experiment=accuracy-default2 data=mr data.fold=$f seed=0
done
