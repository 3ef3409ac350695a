#!/bin/bash
# Issue 15, step 9 of experiments/tuning.md: the replicate-averaged Optuna sweep of the default model on
# MR (validation only: 3 stratified inner folds of outer fold 0's training part), then the winner, the
# default and model=tfidf_lr on the 10 outer folds (seed 0), test scored once per run.
# 2026-12-02, from a clone of commit e88df7a at /tmp/exp_frozen (PYTHONPATH), cwd /work/runs/tune_mr,
# beside a second stream (Kim CNN-rand on MR folds 2-9, experiments/baselines/commands.sh step 5).
set -u
export PYTHONPATH=/tmp/exp_frozen/src TF_CPP_MIN_LOG_LEVEL=2
ATTNLAB=/work/main/.venv/bin/attnlab
STORES="hydra.sweeper.storage=sqlite:////work/runs/tune_mr/optuna.db tracking.uri=sqlite:////work/runs/tune_mr/mlflow.db"

# 1. The shipped preset (7 parameters, TPE seed 0, median pruner on the running mean of the replicates;
#    the value of a trial = mean val_accuracy over the 3 inner folds), 20 trials.
$ATTNLAB train -m hparams_search=mr paths.data_dir=/work/shared/data hydra.sweeper.n_trials=20 $STORES \
  hydra.sweeper.study_name=mr-default-replicates tracking.experiment=tune-mr tracking.n_attention_examples=0

# 2. The table of trials, from the study.
python experiments/tuning_trec/trials.py sqlite:////work/runs/tune_mr/optuna.db mr-default-replicates

# 3. Test once: the study's best trial (chosen on the inner-fold mean, validation only), the default and
#    model=tfidf_lr on the 10 outer folds (seed 0), paired by fold (the default and tfidf_lr ran first, in the
#    second stream once the Kim folds were done; the winner after the sweep).
COMMON="paths.data_dir=/work/shared/data tracking.log_model=false tracking.system_metrics=false data=mr seed=0 tracking.uri=sqlite:////work/runs/tune_mr/mlflow.db"
BEST="train.epochs=15 $(python experiments/tuning_trec/best.py sqlite:////work/runs/tune_mr/optuna.db mr-default-replicates)"
for f in 0 1 2 3 4 5 6 7 8 9; do
  $ATTNLAB --quiet train $COMMON tracking.experiment=tuned-mr-tfidf model=tfidf_lr data.fold=$f
  $ATTNLAB --quiet train $COMMON tracking.experiment=tuned-mr-default data.fold=$f
done
for f in 0 1 2 3 4 5 6 7 8 9; do
  $ATTNLAB --quiet train $COMMON tracking.experiment=tuned-mr-best $BEST data.fold=$f
done
python experiments/tuning_trec/paired.py sqlite:////work/runs/tune_mr/mlflow.db tuned-mr-best tuned-mr-default
python experiments/tuning_trec/paired.py sqlite:////work/runs/tune_mr/mlflow.db tuned-mr-best tuned-mr-tfidf
python experiments/baselines/collect.py --tracking-uri sqlite:////work/runs/tune_mr/mlflow.db --experiments tuned-mr-best tuned-mr-default

# 4. The winner's settings on the default synthetic pointer task (the default's attention bar), seeds 0-2.
T7="model.attention.units=64 model.attention.scale=sqrt_dk model.attention.mask=keys_and_queries model/pooling=attention train.learning_rate=0.0002671595523907358 model.attention.dropout=0.2 model.embedding_dropout=0.5"
for s in 0 1 2; do
  $ATTNLAB --quiet train tracking.uri=sqlite:////work/runs/cand/mlflow.db tracking.experiment=cand-pointer tracking.log_model=false $T7 seed=$s
done
# ... and again with train.epochs=25 (early stopping as shipped):
for s in 0 1 2; do
  $ATTNLAB --quiet train tracking.uri=sqlite:////work/runs/cand/mlflow.db tracking.experiment=cand-pointer-25 tracking.log_model=false $T7 train.epochs=25 seed=$s
done

# 5. Which of trial 7's values costs the bar: the default plus one group at a time, seeds 0-2.
declare -A G=(
  [lr]="train.learning_rate=0.0002671595523907358"
  [dropout]="model.attention.dropout=0.2 model.embedding_dropout=0.5"
  [pool_mask]="model/pooling=attention model.attention.mask=keys_and_queries"
)
for g in lr dropout pool_mask; do for s in 0 1 2; do
  $ATTNLAB --quiet train tracking.uri=sqlite:////work/runs/cand/mlflow.db tracking.experiment=cand-split-$g tracking.log_model=false ${G[$g]} seed=$s
done; done

# 6. The default plus only the dropouts, or only the learning rate: TREC seeds 0-4 (with the default beside
#    it, cand-default-trec), MR folds 0-9 (paired with tuned-mr-default); validation decides.
COMMON="paths.data_dir=/work/shared/data tracking.log_model=false tracking.system_metrics=false seed=0 tracking.uri=sqlite:////work/runs/tune_mr/mlflow.db"
DROP="model.attention.dropout=0.2 model.embedding_dropout=0.5"
LR="train.learning_rate=0.0002671595523907358"
for s in 0 1 2 3 4; do
  $ATTNLAB --quiet train $COMMON data=trec model.max_len=40 tracking.experiment=cand-drop-trec $DROP seed=$s
  $ATTNLAB --quiet train $COMMON data=trec model.max_len=40 tracking.experiment=cand-default-trec seed=$s
done
for f in 0 1 2 3 4 5 6 7 8 9; do
  $ATTNLAB --quiet train $COMMON data=mr tracking.experiment=cand-drop-mr $DROP data.fold=$f
done
for s in 0 1 2 3 4; do
  $ATTNLAB --quiet train $COMMON $LR data=trec model.max_len=40 tracking.experiment=cand-lr-trec seed=$s
done
for f in 0 1 2 3 4 5 6 7 8 9; do
  $ATTNLAB --quiet train $COMMON $LR data=mr tracking.experiment=cand-lr-mr data.fold=$f
done
for x in drop lr; do
  python experiments/tuning_trec/paired.py sqlite:////work/runs/tune_mr/mlflow.db cand-$x-trec cand-default-trec
  python experiments/tuning_trec/paired.py sqlite:////work/runs/tune_mr/mlflow.db cand-$x-mr tuned-mr-default
done
