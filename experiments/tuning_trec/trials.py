"""Print an Optuna study's trials as a Markdown table: state, value ± std over replicates, params.

    python experiments/tuning_trec/trials.py STORAGE_URL STUDY_NAME
"""

from __future__ import annotations

import sys

import optuna


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if 0 < v < 0.01 else f"{v:.2f}"
    return str(v)


def main(url: str, name: str) -> None:
    study = optuna.load_study(study_name=name, storage=url)
    names = list(study.best_trial.params)
    print("| trial | state | val acc (mean ± std over replicates) | " + " | ".join(names) + " |")
    print("|---" * (3 + len(names)) + "|")
    for t in sorted(study.trials, key=lambda t: -(t.value or 0)):
        if t.state.name not in ("COMPLETE", "PRUNED"):
            continue
        reps = t.user_attrs.get("attnlab.replicate_values", [])
        std = t.user_attrs.get("attnlab.value_std", float("nan"))
        value = f"{100 * t.value:.2f} ± {100 * std:.2f}" if t.value is not None else "–"
        if t.state.name == "PRUNED":
            value = f"pruned after {len(reps)}: {100 * t.value:.2f}" if t.value is not None else "pruned"
        cells = [_cell(t.params[n]) for n in names]
        print(f"| {t.number} | {t.state.name} | {value} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
