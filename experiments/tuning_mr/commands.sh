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
