"""Print the best trial of an Optuna study as Hydra overrides (``key=value`` ...).

    python experiments/tuning_trec/best.py STORAGE_URL STUDY_NAME
"""

from __future__ import annotations

import sys

import optuna


def main(url: str, name: str) -> None:
    best = optuna.load_study(study_name=name, storage=url).best_trial
    print(" ".join(f"{k}={v}" for k, v in best.params.items()))


if __name__ == "__main__":
    main(*sys.argv[1:3])
