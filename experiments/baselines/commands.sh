#!/bin/bash
# Issue 15 baselines, in the order they ran (2026-12-01). Training ran from a clone of commit c29c685
# at /tmp/base_frozen (PYTHONPATH), into sqlite:////work/runs/base/mlflow.db, cwd /work/runs/base.

# 1. tfidf_lr hyperparameters on validation only (TREC seed-0 val, MR fold-0 val):
PYTHONPATH=/tmp/base_frozen/src OMP_NUM_THREADS=1 python experiments/baselines/tfidf_grid.py

# 2. Kim CNN-rand on TREC (seed 0, then seeds 1 and 2 in two parallel streams) and MR (seed 0; fold 0, then fold 1
#    started alone at 20:12; the loop was stopped there, folds 2-9 never ran):
export MLFLOW_TRACKING_URI=sqlite:////work/runs/base/mlflow.db PYTHONPATH=/tmp/base_frozen/src TF_CPP_MIN_LOG_LEVEL=2
COMMON="experiment=kim_cnn_rand paths.data_dir=/work/shared/data tracking.experiment=baselines-kim tracking.log_model=false tracking.n_attention_examples=2 tracking.probe_count=0 tracking.system_metrics=false train.threads=1"
for s in 0 1 2; do
  echo "== trec seed $s $(date -u +%T)"; /work/w-base/.venv/bin/attnlab train $COMMON data=trec model.max_len=40 seed=$s
done
echo "== done $(date -u +%T)"
for f in 0 1 2 3 4 5 6 7 8 9; do
  echo "== mr fold $f $(date -u +%T)"; /work/w-base/.venv/bin/attnlab train $COMMON data=mr data.fold=$f seed=0
done

# 3. tfidf_lr, TREC seeds 0-4 and MR folds 0-9:
export MLFLOW_TRACKING_URI=sqlite:////work/runs/base/mlflow.db PYTHONPATH=/tmp/base_frozen/src TF_CPP_MIN_LOG_LEVEL=2 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
COMMON="model=tfidf_lr paths.data_dir=/work/shared/data tracking.experiment=baselines-tfidf tracking.log_model=false tracking.system_metrics=false"
for s in 0 1 2 3 4; do
  echo "== trec seed $s $(date -u +%T)"; /work/w-base/.venv/bin/attnlab train $COMMON data=trec seed=$s
done
for f in 0 1 2 3 4 5 6 7 8 9; do
  echo "== mr fold $f $(date -u +%T)"; /work/w-base/.venv/bin/attnlab train $COMMON data=mr data.fold=$f seed=0
done

# 4. the tables
python experiments/baselines/collect.py --tracking-uri sqlite:////work/runs/base/mlflow.db

# 5. Kim CNN-rand on MR folds 2-9 (2026-12-02, 05:31-06:04 UTC), from a clone of commit e88df7a at
#    /tmp/exp_frozen, beside the MR sweep (experiments/tuning_mr/commands.sh), in its own store:
export MLFLOW_TRACKING_URI=sqlite:////work/runs/kim_mr/mlflow.db PYTHONPATH=/tmp/exp_frozen/src TF_CPP_MIN_LOG_LEVEL=2
COMMON="experiment=kim_cnn_rand paths.data_dir=/work/shared/data tracking.experiment=baselines-kim tracking.log_model=false tracking.n_attention_examples=2 tracking.probe_count=0 tracking.system_metrics=false train.threads=1"
for f in 2 3 4 5 6 7 8 9; do
  echo "== mr fold $f $(date -u +%T)"; /work/main/.venv/bin/attnlab --quiet train $COMMON data=mr data.fold=$f seed=0
done
python experiments/baselines/collect.py --tracking-uri sqlite:////work/runs/kim_mr/mlflow.db

# 6. Kim CNN-rand on TREC seeds 3 and 4 (2026-12-02, 07:00-07:04 UTC), same clone and store as step 5:
for s in 3 4; do
  echo "== trec seed $s $(date -u +%T)"; /work/main/.venv/bin/attnlab --quiet train $COMMON data=trec model.max_len=40 seed=$s
done
