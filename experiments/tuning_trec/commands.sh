#!/bin/bash
# Issue 15, step 7 of experiments/tuning.md: a replicate-averaged Optuna sweep of the default model on
# TREC (validation only), then the winner and the default over seeds 0-4, test scored once per run.
# 2026-12-02, from a clone of commit e15abaf at /tmp/exp_frozen (PYTHONPATH), cwd /work/runs/tune,
# one process at a time on the 2-core box.
set -u
export PYTHONPATH=/tmp/exp_frozen/src TF_CPP_MIN_LOG_LEVEL=2
ATTNLAB=/work/main/.venv/bin/attnlab
STORES="hydra.sweeper.storage=sqlite:////work/runs/tune/optuna.db tracking.uri=sqlite:////work/runs/tune/mlflow.db"

# 1. The shipped preset (7 parameters, TPE seed 0, median pruner on the running mean, the value of a
#    trial = mean val_accuracy over seeds 0, 1, 2), 20 trials, then resumed to 32 (same study).
for n in 20 32; do
  $ATTNLAB train -m hparams_search=trec paths.data_dir=/work/shared/data hydra.sweeper.n_trials=$n $STORES \
    hydra.sweeper.study_name=trec-default-replicates model.max_len=40 tracking.experiment=tune-trec \
    tracking.n_attention_examples=0
done

# 2. The table of trials (mean ± std over the three replicates, params), from the study.
python experiments/tuning_trec/trials.py sqlite:////work/runs/tune/optuna.db trec-default-replicates

# 3. Test once: the study's best trial (chosen on the replicate mean, validation only) and the default,
#    both on seeds 0-4 (seeds 3 and 4 were not seen by the sweep); the accuracy rows' settings.
COMMON="paths.data_dir=/work/shared/data tracking.log_model=false tracking.system_metrics=false data=trec model.max_len=40"
BEST="train.epochs=15 $(python experiments/tuning_trec/best.py sqlite:////work/runs/tune/optuna.db trec-default-replicates)"
for s in 0 1 2 3 4; do
  $ATTNLAB --quiet train $COMMON tracking.uri=sqlite:////work/runs/tune/mlflow.db tracking.experiment=tuned-trec-best $BEST seed=$s
  $ATTNLAB --quiet train $COMMON tracking.uri=sqlite:////work/runs/tune/mlflow.db tracking.experiment=tuned-trec-default seed=$s
done
python experiments/tuning_trec/paired.py sqlite:////work/runs/tune/mlflow.db tuned-trec-best tuned-trec-default

# 4. The same preset over model=cnn (Kim's widths 3/4/5 x 100 before the attention; embedding 300 as
#    tuning.md step 5 chose on validation), 10 trials, then its winner on seeds 0-4, and model=tfidf_lr
#    on seeds 0-4 in the same store (the anchor, paired by seed).
$ATTNLAB train -m hparams_search=trec model=cnn model.embedding_dim=300 paths.data_dir=/work/shared/data \
  hydra.sweeper.n_trials=10 $STORES hydra.sweeper.study_name=trec-cnn-rep10 model.max_len=40 \
  tracking.experiment=tune-trec-cnn tracking.n_attention_examples=0
COMMON="paths.data_dir=/work/shared/data tracking.log_model=false tracking.system_metrics=false data=trec tracking.uri=sqlite:////work/runs/tune/mlflow.db"
BEST="model=cnn model.max_len=40 model.embedding_dim=300 train.epochs=15 $(python experiments/tuning_trec/best.py sqlite:////work/runs/tune/optuna.db trec-cnn-rep10)"
for s in 0 1 2 3 4; do
  $ATTNLAB --quiet train $COMMON tracking.experiment=tuned-trec-tfidf model=tfidf_lr seed=$s
  $ATTNLAB --quiet train $COMMON tracking.experiment=tuned-trec-cnn-best $BEST seed=$s
done
python experiments/tuning_trec/trials.py sqlite:////work/runs/tune/optuna.db trec-cnn-rep10
python experiments/tuning_trec/paired.py sqlite:////work/runs/tune/mlflow.db tuned-trec-cnn-best tuned-trec-tfidf
python experiments/tuning_trec/paired.py sqlite:////work/runs/tune/mlflow.db tuned-trec-best tuned-trec-tfidf

# 5. The same preset over model=bilstm (2026-12-02, 07:32-07:58 UTC, from a clone of e88df7a; tuning.md step 10):
#    8 trials asked, stopped with Ctrl-C during trial 7 (FAIL, reason recorded), then the winner on seeds 0-4.
STORES="hydra.sweeper.storage=sqlite:////work/runs/tune_bilstm/optuna.db tracking.uri=sqlite:////work/runs/tune_bilstm/mlflow.db"
$ATTNLAB train -m hparams_search=trec model=bilstm paths.data_dir=/work/shared/data hydra.sweeper.n_trials=8 $STORES \
  hydra.sweeper.study_name=trec-bilstm-rep8 model.max_len=40 tracking.experiment=tune-trec-bilstm tracking.n_attention_examples=0
COMMON="paths.data_dir=/work/shared/data tracking.log_model=false tracking.system_metrics=false data=trec model.max_len=40 model=bilstm tracking.uri=sqlite:////work/runs/tune_bilstm/mlflow.db"
BEST="train.epochs=15 $(python experiments/tuning_trec/best.py sqlite:////work/runs/tune_bilstm/optuna.db trec-bilstm-rep8)"
for s in 0 1 2 3 4; do
  $ATTNLAB --quiet train $COMMON tracking.experiment=tuned-trec-bilstm-win $BEST seed=$s
done
python experiments/tuning_trec/trials.py sqlite:////work/runs/tune_bilstm/optuna.db trec-bilstm-rep8
