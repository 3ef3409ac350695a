"""``attnlab report ABLATION``: aggregate an ablation's runs into statistics a reader can trust.

Reads the FINISHED runs tagged ``attnlab.ablation=<ABLATION>`` with the MLflow client, groups
them by ``attnlab.variant``, and for each metric gives n, mean ± std and the 95 % confidence
interval of the mean (t distribution). Each variant is compared with its reference variant
(the ablation's ``reference``, e.g. ``scale=sqrt_dk``, substituted into the variant, so
``scale=constant,units=32`` is compared with ``scale=sqrt_dk,units=32``) over matched
(seed, fold) pairs: paired t-test and Wilcoxon signed-rank test (scipy.stats) and the effect
size Cohen's d_z = mean(diff) / sd(diff). The verdict says in words whether the difference
is significant.

Outputs (``--out``): ``report.md``, ``report.csv`` (per variant and metric),
``comparisons.csv`` (per variant, reference and metric) and ``report.png`` (means with 95 %
intervals), all logged to a new MLflow run tagged ``attnlab.report=<ABLATION>``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from attnlab import outputs, report_attention, tracking
from attnlab.errors import AttnlabError, ConfigError, OneLineParser

# Reported when the runs have them (faithfulness and attention only where the model has attention).
DEFAULT_METRICS = ("test_accuracy", "test_macro_f1", "val_accuracy", "attention_entropy", "attention_max_logit",
                   "faith/attention/comprehensiveness", "faith/attention/sufficiency", "faith/attention/tau_loo",
                   "faith/attention/tau_grad", "faith/random/comprehensiveness")
# The accuracy difference a study of these models should be able to see: 1 point.
ONE_POINT = 0.01
POWER = 0.8
REPORT_TAG = "attnlab.report"
REPRODUCES_TAG = "reproduces"  # runs made by `attnlab reproduce` never count as ablation runs


# ----------------------------------------------------------------------------- variants

def parse_variant(text: str) -> dict[str, str]:
    """``"scale=constant,units=32"`` -> ``{"scale": "constant", "units": "32"}``."""
    items: dict[str, str] = {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        if "=" not in part:
            raise AttnlabError(f"variant {text!r}: {part!r} is not key=value")
        k, v = part.split("=", 1)
        items[k.strip()] = v.strip()
    return items


def _variant_key(items: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(items.items())


def reference_pairs(variants: Sequence[str], reference: str) -> dict[str, str | None]:
    """For each variant, the variant it is compared with (None: it is a reference itself).

    ``reference`` is a partial variant: its items replace the variant's, the rest stay, so a
    grid compares each level with the reference at the same setting of the other keys.

    Raises:
        AttnlabError: no variant has the reference's keys and values.
    """
    ref = parse_variant(reference)
    if not ref:
        raise AttnlabError("the reference variant is empty; pass --reference KEY=VALUE[,KEY=VALUE]")
    by_key = {_variant_key(parse_variant(v)): v for v in variants}
    if not any(ref.items() <= parse_variant(v).items() for v in variants):
        raise AttnlabError(f"unknown reference variant {reference!r}: the runs' variants are {', '.join(sorted(variants))}")
    out: dict[str, str | None] = {}
    for v in variants:
        items = parse_variant(v)
        target = {**items, **ref}
        if target == items:
            out[v] = None
            continue
        # A variant lacking one of the reference's keys has no reference of its own.
        out[v] = by_key.get(_variant_key(target)) if ref.keys() <= items.keys() else None
    return out


# ----------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize(values: Iterable[float], confidence: float = 0.95) -> Summary:
    """n, mean, sample std (ddof=1) and the t-distribution CI of the mean (NaN where n < 2)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    if std == 0.0:
        return Summary(n, mean, 0.0, mean, mean)
    lo, hi = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Summary(n, mean, std, float(lo), float(hi))


@dataclass(frozen=True)
class Comparison:
    n_pairs: int
    mean_diff: float
    t_stat: float
    t_p: float
    wilcoxon_stat: float
    wilcoxon_p: float
    d_z: float
    significant: bool | None  # None: no test possible
    verdict: str


def paired_test(variant: Sequence[float], reference: Sequence[float], alpha: float = 0.05) -> Comparison:
    """Paired t-test and Wilcoxon signed-rank test of ``variant - reference`` (matched pairs).

    A difference is called significant only when both tests give p < alpha; where they
    disagree the verdict says so. Degenerate cases (n < 2, all differences zero, constant
    differences) get a note instead of a test that would mislead.
    """
    from scipy import stats

    a, b = np.asarray(variant, dtype=float), np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired samples must have the same length")
    d = a - b
    n = len(d)
    nan = math.nan
    mean_diff = float(d.mean()) if n else nan
    if n < 2:
        return Comparison(n, mean_diff, nan, nan, nan, nan, nan, None,
                          f"no test: {n} matched pair(s), need at least 2")
    sd = float(d.std(ddof=1))
    # Metrics are floats: differences within rounding noise count as exactly zero / constant.
    eps = 1e-12 * max(1.0, float(np.abs(d).max()))
    if np.all(np.abs(d) <= eps):
        return Comparison(n, 0.0, nan, 1.0, nan, 1.0, 0.0, False,
                          "not significant: identical in every pair (all differences are 0)")
    if sd <= eps:
        # Every pair differs by the same amount: the t statistic is infinite, the effect exact.
        w = stats.wilcoxon(d)
        return Comparison(n, mean_diff, math.copysign(math.inf, mean_diff), 0.0, float(w.statistic),
                          float(w.pvalue), math.copysign(math.inf, mean_diff), bool(w.pvalue < alpha),
                          f"every pair differs by exactly {mean_diff:+.4g}; Wilcoxon p={w.pvalue:.3g}")
    t = stats.ttest_rel(a, b)
    w = stats.wilcoxon(a, b)
    d_z = mean_diff / sd
    t_sig, w_sig = bool(t.pvalue < alpha), bool(w.pvalue < alpha)
    if t_sig and w_sig:
        verdict, significant = f"significant at {alpha:g} (both tests)", True
    elif not t_sig and not w_sig:
        verdict, significant = f"not significant at {alpha:g}", False
    else:
        which = "t-test" if t_sig else "Wilcoxon"
        verdict, significant = f"inconclusive at {alpha:g}: only the {which} is significant", False
    if n < 6 and not w_sig:
        # With n <= 5 pairs the exact two-sided Wilcoxon p-value is at least 2/2**n >= 0.0625.
        verdict += f" (Wilcoxon cannot reach p<0.05 with {n} pairs)"
    return Comparison(n, mean_diff, float(t.statistic), float(t.pvalue), float(w.statistic), float(w.pvalue),
                      float(d_z), significant, verdict)


def _power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test (n pairs, sd of the differences) for a true mean difference."""
    from scipy import stats

    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(n) / sd
    p = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    # SciPy's noncentral t gives NaN far in the tail (df = 1, nc >> crit), where the power is ~1.
    return p if not math.isnan(p) else float(abs(nc) > crit)


def detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = POWER) -> float:
    """Minimum detectable effect: the smallest true mean difference the paired t-test finds with
    probability ``power`` at level ``alpha``, given the observed sd of the differences and n pairs
    (exact, noncentral t). NaN where it cannot be computed (n < 2, sd not positive)."""
    from scipy.optimize import brentq

    if n < 2 or not sd > 0 or not math.isfinite(sd):
        return math.nan
    hi = sd
    while _power(hi, sd, n, alpha) < power:
        hi *= 2
    return float(brentq(lambda e: _power(e, sd, n, alpha) - power, 0.0, hi, xtol=1e-10 * sd))


def pairs_needed(sd: float, effect: float, alpha: float = 0.05, power: float = POWER, limit: int = 100_000) -> int | None:
    """Pairs (seeds, folds) needed to detect ``effect`` with ``power``; None past ``limit`` or without an sd."""
    if not sd > 0 or not math.isfinite(sd):
        return None
    n = 2
    while n <= limit and _power(effect, sd, n, alpha) < power:
        n = n + 1 if n < 64 else int(n * 1.1)
    if n > limit:
        return None
    while n > 2 and _power(effect, sd, n - 1, alpha) >= power:  # back from a geometric step
        n -= 1
    return n


# ----------------------------------------------------------------------------- runs

def _experiments(client, experiment: str | None) -> list[Any]:
    from mlflow.entities import ViewType

    try:
        if experiment is not None:
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                raise AttnlabError(f"no MLflow experiment named {experiment!r} in {client.tracking_uri}")
            return [exp]
        return list(client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
    except AttnlabError:
        raise
    except Exception as e:  # noqa: BLE001 - any backend failure is the same user problem
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise AttnlabError(f"cannot read the MLflow store {client.tracking_uri}: {first[:200]}") from e


def _search_all(client, exp_ids: list[str], filter_string: str) -> list[Any]:
    out, token = [], None
    while True:
        page = client.search_runs(exp_ids, filter_string=filter_string, max_results=5000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def collect_runs(client, ablation: str, *, experiment: str | None = None, data: str | None = None) -> pd.DataFrame:
    """One row per FINISHED run of the ablation: ids, variant, seed, fold, data and metrics.

    Runs made by ``attnlab reproduce`` and report runs are excluded. When one
    (data, variant, seed, fold) was run more than once, the latest run counts. The runs that
    did not finish (FAILED, KILLED, RUNNING) and were not run again to the end are described
    in ``df.attrs["unfinished"]``, one line each: the report names them instead of dropping
    them silently.

    Raises:
        AttnlabError: no run matches, or the runs mix datasets and ``data`` is not given.
    """
    exps = _experiments(client, experiment)
    if not exps:
        raise AttnlabError(f"no MLflow experiments in {client.tracking_uri}")
    esc = ablation.replace("'", "\\'")
    every = [_row(r) for r in _search_all(client, [e.experiment_id for e in exps], f"tags.\"attnlab.ablation\" = '{esc}'")
             if REPRODUCES_TAG not in r.data.tags and REPORT_TAG not in r.data.tags]
    rows = [x for x in every if x["status"] == "FINISHED"]
    others = [x for x in every if x["status"] != "FINISHED" and data in (None, x["data"])]
    where = f"experiment {experiment!r}" if experiment else "any experiment"
    if not rows:
        ended = Counter(o["status"] for o in others)
        besides = f" ({', '.join(f'{n} {s}' for s, n in sorted(ended.items()))})" if ended else ""
        raise AttnlabError(f"no FINISHED runs tagged attnlab.ablation={ablation!r} in {where} of {client.tracking_uri}"
                           f"{besides}; launch them with `attnlab train -m experiment={ablation} ...`")
    df = pd.DataFrame(rows)
    if data is not None:
        df = df[df["data"] == data]
        if df.empty:
            raise AttnlabError(f"no FINISHED runs of ablation {ablation!r} on data={data!r} in {where}; "
                               f"found data: {', '.join(sorted(set(r['data'] for r in rows)))}")
    elif df["data"].nunique() > 1:
        raise AttnlabError(f"the runs of ablation {ablation!r} use several datasets "
                           f"({', '.join(sorted(df['data'].unique()))}): pick one with --data")
    n_all = len(df)
    df = df.sort_values("start_time").drop_duplicates(["data", "variant", "seed", "fold"], keep="last")
    df = df.reset_index(drop=True)
    df.attrs["n_duplicates"] = n_all - len(df)
    df.attrs["unfinished"] = _unfinished(others, df)
    return df


def _row(r) -> dict[str, Any]:
    """A run as one row: ids, status, variant, seed, fold, data, error and metrics."""
    tags = r.data.tags
    fold = tags.get("attnlab.fold")
    return {
        "run_id": r.info.run_id,
        "experiment_id": r.info.experiment_id,
        "start_time": r.info.start_time or 0,
        "status": r.info.status,
        "data": tags.get("attnlab.data", ""),
        "variant": tags.get("attnlab.variant", ""),
        "seed": int(tags.get("attnlab.seed", -1)),
        "fold": int(fold) if fold not in (None, "") else -1,
        "reference": r.data.params.get("ablation.reference", ""),
        "error": tags.get(tracking.ERROR_TAG, ""),
        **{f"metric.{k}": v for k, v in r.data.metrics.items()},
        "non_finite": ",".join(k for k, v in r.data.metrics.items() if not math.isfinite(v)),
    }


def _unfinished(others: list[dict[str, Any]], finished: pd.DataFrame) -> list[str]:
    """One line per unfinished run whose (data, variant, seed, fold) has no FINISHED run, oldest first."""
    done = set(zip(finished["data"], finished["variant"], finished["seed"], finished["fold"]))
    lines = []
    for o in sorted(others, key=lambda o: o["start_time"]):
        if (o["data"], o["variant"], o["seed"], o["fold"]) in done:
            continue
        where = f"seed {o['seed']}" + (f" fold {o['fold']}" if o["fold"] >= 0 else "")
        why = f": {o['error'].strip().splitlines()[0][:160]}" if o["error"].strip() else ""
        lines.append(f"{o['variant'] or '(no variant)'} {where} ended {o['status']}{why} (run {o['run_id']})")
    return lines


# ----------------------------------------------------------------------------- the report

@dataclass
class Report:
    ablation: str
    data: str
    reference: str
    unit: str
    alpha: float
    metrics: list[str]
    summary: pd.DataFrame  # variant, metric, n, mean, std, ci_low, ci_high
    comparisons: pd.DataFrame  # variant, reference, metric, n_pairs, mean_diff, t, p, W, p, d_z, verdict
    n_runs: int
    experiment_ids: list[str]
    notes: list[str]


def _units(df: pd.DataFrame, metric: str, unit: str, notes: list[str]) -> pd.DataFrame:
    """Per (variant, seed, fold) values, or per (variant, seed) means over folds for unit=seed.

    unit=seed keeps only seeds with every fold: a mean over fewer folds is another quantity.
    """
    col = f"metric.{metric}"
    x = df[["variant", "seed", "fold", col]].dropna().rename(columns={col: "value"})
    if unit == "seed":
        g = x.groupby(["variant", "seed"])["value"]
        agg = g.agg(["mean", "size"]).reset_index()
        full = int(agg["size"].max()) if len(agg) else 0
        short = agg[agg["size"] < full]
        if len(short):
            notes.append(f"{metric}: {len(short)} (variant, seed) with fewer than {full} folds left out: "
                         + "; ".join(f"{r.variant} seed {r.seed} ({r.size} folds)" for r in short.itertuples()))
        x = agg[agg["size"] == full].rename(columns={"mean": "value"})[["variant", "seed", "value"]]
        x["fold"] = -1
    return x


def build_report(df: pd.DataFrame, ablation: str, metrics: Sequence[str], reference: str | None = None,
                 unit: str = "run", alpha: float = 0.05) -> Report:
    """Statistics of the collected runs (see :func:`collect_runs`): summaries and paired tests.

    Raises:
        AttnlabError: a metric no run has, an unknown reference, or no reference at all.
    """
    if unit not in ("run", "seed"):
        raise AttnlabError(f"--unit {unit!r}: choose run (one value per seed and fold) or seed (fold mean per seed)")
    if not 0 < alpha < 1:
        raise AttnlabError(f"--alpha {alpha}: must be in (0, 1)")
    for m in metrics:
        if f"metric.{m}" not in df.columns or df[f"metric.{m}"].isna().all():
            have = sorted(c[len("metric."):] for c in df.columns if c.startswith("metric.") and not c.startswith("metric.time_"))
            raise AttnlabError(f"metric {m!r} is in none of the {len(df)} runs; they have: {', '.join(have)}")
    if not reference:
        logged = Counter(r for r in df["reference"] if r)
        if not logged:
            raise AttnlabError(f"the runs of ablation {ablation!r} log no reference variant: pass --reference KEY=VALUE")
        reference = logged.most_common(1)[0][0]
    variants = sorted(df["variant"].unique(), key=lambda v: tuple(sorted(parse_variant(v).items())))
    pairs = reference_pairs(variants, reference)

    srows, crows, notes = [], [], unfinished_notes(df.attrs.get("unfinished", []))
    for m in metrics:
        vals = _units(df, m, unit, notes)
        for v in variants:
            s = summarize(vals.loc[vals["variant"] == v, "value"])
            srows.append({"variant": v, "metric": m, "n": s.n, "mean": s.mean, "std": s.std,
                          "ci_low": s.ci_low, "ci_high": s.ci_high, "is_reference": pairs[v] is None})
        for v in variants:
            ref_v = pairs[v]
            if ref_v is None:
                continue
            a = vals[vals["variant"] == v].set_index(["seed", "fold"])["value"]
            b = vals[vals["variant"] == ref_v].set_index(["seed", "fold"])["value"]
            common = a.index.intersection(b.index).sort_values()
            c = paired_test(a.loc[common].to_numpy(), b.loc[common].to_numpy(), alpha)
            unmatched = len(a) + len(b) - 2 * len(common)
            verdict = c.verdict + (f"; {unmatched} unmatched run(s) left out" if unmatched else "")
            diffs = a.loc[common].to_numpy() - b.loc[common].to_numpy()
            crows.append({"variant": v, "reference": ref_v, "metric": m, "n_pairs": c.n_pairs,
                          "mean_diff": c.mean_diff, "t": c.t_stat, "t_p": c.t_p, "wilcoxon_W": c.wilcoxon_stat,
                          "wilcoxon_p": c.wilcoxon_p, "d_z": c.d_z, "significant": c.significant,
                          "verdict": verdict, **_power_columns(diffs, m, alpha)})
    comp_cols = ["variant", "reference", "metric", "n_pairs", "mean_diff", "t", "t_p", "wilcoxon_W",
                 "wilcoxon_p", "d_z", "significant", "verdict", "mde", "n_for_1pt"]
    return Report(ablation=ablation, data=str(df["data"].iloc[0]), reference=reference, unit=unit, alpha=alpha,
                  metrics=list(metrics), summary=pd.DataFrame(srows),
                  comparisons=pd.DataFrame(crows, columns=comp_cols), n_runs=len(df),
                  experiment_ids=sorted(df["experiment_id"].unique()), notes=notes)


def unfinished_notes(lines: Sequence[str], show: int = 5) -> list[str]:
    """The report's notes on runs that did not finish: the first ``show``, then how many more."""
    notes = [f"left out, did not finish: {line}" for line in lines[:show]]
    if len(lines) > show:
        notes.append(f"left out, did not finish: {len(lines) - show} more run(s) (search the store for them)")
    return notes


def _power_columns(diffs: np.ndarray, metric: str, alpha: float) -> dict[str, Any]:
    """Minimum detectable effect at 80 % power from the observed paired sd and n; for accuracy
    metrics also the pairs needed to detect a 1-point difference."""
    sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan
    needed = pairs_needed(sd, ONE_POINT, alpha) if "accuracy" in metric else None
    return {"mde": detectable_effect(sd, len(diffs), alpha), "n_for_1pt": needed}


def common_items(variants: Sequence[str]) -> dict[str, str]:
    """Items every variant shares (settings held fixed), shown once instead of in every name."""
    parsed = [parse_variant(v) for v in variants]
    if len(parsed) < 2:
        return {}
    return {k: v for k, v in parsed[0].items() if all(p.get(k) == v for p in parsed[1:])}


def display_name(variant: str, common: dict[str, str]) -> str:
    left = {k: v for k, v in parse_variant(variant).items() if common.get(k) != v}
    return ",".join(f"{k}={v}" for k, v in left.items()) or variant


def _f(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _p(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.2e}" if x < 1e-3 else f"{x:.3f}"


def _needed(n: Any) -> str:
    return "–" if n is None or (isinstance(n, float) and math.isnan(n)) else str(int(n))


def _power_words(r: Any) -> str:
    """"not shown" in numbers: what these pairs could have detected, and what 1 point would need."""
    if r.mde is None or math.isnan(r.mde):
        return ""
    words = f" (with {r.n_pairs} pairs only differences of about {r.mde:.4f} or more are detectable at 80 % power"
    if "accuracy" in r.metric and r.mde > ONE_POINT:
        words += f"; a 1-point difference needs ≈ {_needed(r.n_for_1pt)} pairs"
    return words + ")"


def to_markdown(rep: Report, command: str | None = None) -> str:
    """The report as Markdown: summary table per metric, comparison table, plain-words findings."""
    unit_words = ("one value per run (matched by seed and fold)" if rep.unit == "run"
                  else "one value per seed (the mean over its folds)")
    lines = [f"# Ablation `{rep.ablation}` on `{rep.data}`", "",
             f"- runs: {rep.n_runs} FINISHED (latest per variant, seed and fold); unit of analysis: {unit_words}",
             f"- reference: `{rep.reference}` (each variant is compared with the reference at the same other settings)",
             f"- tests: paired t-test and Wilcoxon signed-rank, two-sided, alpha = {rep.alpha:g}, no correction "
             f"for multiple comparisons; effect size Cohen's d_z = mean(diff) / sd(diff); 95 % CI: t distribution; "
             f"MDE: the smallest true difference the paired t-test detects with 80 % power, from the observed sd "
             f"of the differences and the number of pairs (noncentral t); 'pairs for 1 pt': pairs needed to "
             f"detect a 1-point accuracy difference",
             f"- generated: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [f"- note: {n}" for n in rep.notes]
    common = common_items(list(rep.summary["variant"].drop_duplicates()))
    if common:
        lines.append(f"- held fixed in every variant (left out of the names below): "
                     f"`{','.join(f'{k}={v}' for k, v in common.items())}`")

    def dn(v: str) -> str:
        return display_name(v, common)

    lines += ["", "## Mean ± std [95 % CI]", ""]
    header = "| variant | n | " + " | ".join(rep.metrics) + " |"
    lines += [header, "|" + "---|" * (2 + len(rep.metrics))]
    for v in rep.summary["variant"].drop_duplicates():
        s = rep.summary[rep.summary["variant"] == v].set_index("metric")
        cells = [f"{_f(s.loc[m, 'mean'])} ± {_f(s.loc[m, 'std'])} [{_f(s.loc[m, 'ci_low'])}, {_f(s.loc[m, 'ci_high'])}]"
                 for m in rep.metrics]
        name = f"**{dn(v)}** (ref)" if bool(s["is_reference"].iloc[0]) else dn(v)
        lines.append(f"| {name} | {int(s['n'].max())} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired comparisons with the reference", ""]
    if rep.comparisons.empty:
        lines.append("No variant has a reference to be compared with.")
    else:
        lines += ["| variant | vs | metric | pairs | mean diff | t-test p | Wilcoxon p | d_z | MDE (80 % power) "
                  "| pairs for 1 pt | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rep.comparisons.itertuples():
            lines.append(f"| {dn(r.variant)} | {dn(r.reference)} | {r.metric} | {r.n_pairs} | {r.mean_diff:+.4f} | {_p(r.t_p)} | "
                         f"{_p(r.wilcoxon_p)} | {_f(r.d_z, 2)} | {_f(r.mde)} | {_needed(r.n_for_1pt)} | {r.verdict} |")
        lines += ["", "## Findings", ""]
        for r in rep.comparisons.itertuples():
            word = "significantly " + ("higher" if r.mean_diff > 0 else "lower") if r.significant else None
            if word:
                lines.append(f"- `{dn(r.variant)}` is {word} than `{dn(r.reference)}` on {r.metric} "
                             f"({r.mean_diff:+.4f}, d_z={_f(r.d_z, 2)}, t-test p={_p(r.t_p)}, Wilcoxon p={_p(r.wilcoxon_p)}).")
            else:
                lines.append(f"- `{dn(r.variant)}` vs `{dn(r.reference)}` on {r.metric}: {r.mean_diff:+.4f} — "
                             f"{r.verdict}; the data do not show a difference{_power_words(r)}.")
    return "\n".join(lines) + "\n"


def plot(rep: Report, path: Path) -> None:
    """Bar chart: one panel per metric, one bar per variant, 95 % CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(rep.summary["variant"].drop_duplicates())
    k = len(rep.metrics)
    fig, axes = plt.subplots(k, 1, figsize=(max(6.0, 0.55 * len(variants) + 2), 3.2 * k), squeeze=False)
    for ax, m in zip(axes[:, 0], rep.metrics):
        s = rep.summary[rep.summary["metric"] == m].set_index("variant").loc[variants]
        means = s["mean"].to_numpy(float)
        err = np.vstack([means - s["ci_low"].to_numpy(float), s["ci_high"].to_numpy(float) - means])
        err = np.nan_to_num(err, nan=0.0)
        colors = ["tab:orange" if r else "tab:blue" for r in s["is_reference"]]
        ax.bar(range(len(variants)), means, yerr=err, capsize=3, color=colors)
        lo = np.nanmin(s["ci_low"].fillna(s["mean"])) if len(s) else 0
        hi = np.nanmax(s["ci_high"].fillna(s["mean"])) if len(s) else 1
        pad = max((hi - lo) * 0.3, 0.01)
        ax.set_ylim(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)
        ax.set_ylabel(m)
        ax.set_xticks(range(len(variants)))
        common = common_items(variants)
        ax.set_xticklabels([display_name(v, common) for v in variants], rotation=35, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_title(f"{rep.ablation} on {rep.data}: mean and 95 % CI (orange: reference)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(rep: Report, out: Path, command: str | None = None) -> dict[str, Path]:
    """Write report.md, report.csv, comparisons.csv and report.png under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "comparisons": out / "comparisons.csv",
             "png": out / "report.png"}
    paths["md"].write_text(to_markdown(rep, command))
    rep.summary.assign(ablation=rep.ablation, data=rep.data, unit=rep.unit).to_csv(paths["csv"], index=False)
    rep.comparisons.assign(ablation=rep.ablation, data=rep.data, unit=rep.unit).to_csv(paths["comparisons"], index=False)
    plot(rep, paths["png"])
    return paths


def log_report_run(client, rep: Report, out: Path) -> str:
    """Log the report files to a new run in the runs' experiment, tagged ``attnlab.report``."""
    exp_id = rep.experiment_ids[0]
    run = client.create_run(exp_id, run_name=f"report:{rep.ablation}:{rep.data}",
                            tags={REPORT_TAG: rep.ablation, "attnlab.report.data": rep.data,
                                  "attnlab.report.unit": rep.unit, "attnlab.report.reference": rep.reference})
    status = "FAILED"
    try:
        client.log_param(run.info.run_id, "n_runs", rep.n_runs)
        for f in sorted(out.iterdir()):
            if f.is_file():
                client.log_artifact(run.info.run_id, str(f))
        status = "FINISHED"
    finally:
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def non_finite_notes(df: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """One line per metric with NaN/inf values: they are left out of every summary and test."""
    out = []
    for m in metrics:
        if "non_finite" not in df:
            break
        bad = df.loc[df["non_finite"].map(lambda names, m=m: m in names.split(",")), "run_id"].tolist()
        if bad:
            out.append(f"{m}: {len(bad)} run(s) with a non-finite value left out ({', '.join(bad[:3])}"
                       f"{' ...' if len(bad) > 3 else ''})")
    return out


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="attnlab report",
        description="Aggregate an ablation's MLflow runs: mean ± std, 95 % CI, paired tests against the reference.")
    p.add_argument("ablation", help="ablation name (the preset, e.g. scale, pooling)")
    p.add_argument("--data", help="dataset (attnlab.data tag) when the runs use several, e.g. mr or trec")
    p.add_argument("--experiment", help="MLflow experiment to read (default: every active experiment)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    p.add_argument("--metric", action="append", dest="metrics",
                   help=f"metric to report; repeatable (default: {', '.join(DEFAULT_METRICS)})")
    p.add_argument("--reference", help="reference variant, e.g. scale=sqrt_dk (default: the preset's)")
    p.add_argument("--unit", choices=("run", "seed"), default="run",
                   help="run: one value per (seed, fold); seed: the fold mean per seed (default: run)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--out", help="output folder (default: ./experiments/<ablation>-<data>)")
    p.add_argument("--no-log", action="store_true", help="do not log the report to a new MLflow run")
    p.add_argument("--force", action="store_true", help="replace report files already in the output folder")
    return p


def _out_names() -> tuple[str, ...]:
    from attnlab.pictures import RUN_PAGE

    return ("report.md", "report.csv", "comparisons.csv", "report.png", Path(RUN_PAGE).name)


def _check_args(args: argparse.Namespace) -> None:
    """Every option checked before a run is read (one ConfigError line each)."""
    if not 0.0 < args.alpha < 1.0:
        raise ConfigError(f"--alpha {args.alpha}: must be in (0, 1)")
    if args.out:
        outputs.out_dir(args.out, "--out", _out_names(), args.force)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    _check_args(args)
    uri = tracking.launch_uri(args.tracking_uri)
    client = tracking.client(uri, must_exist=True)
    df = collect_runs(client, args.ablation, experiment=args.experiment, data=args.data)
    metrics = args.metrics or [m for m in DEFAULT_METRICS if f"metric.{m}" in df.columns]
    for line in non_finite_notes(df, metrics):
        print(f"note: {line}", file=sys.stderr)
    rep = build_report(df, args.ablation, metrics, reference=args.reference, unit=args.unit, alpha=args.alpha)
    out = Path(args.out) if args.out else Path("experiments") / f"{rep.ablation}-{rep.data}"
    outputs.out_dir(out, "--out", _out_names(), args.force)
    command = "attnlab report " + " ".join(shlex.quote(a) for a in argv)
    paths = write(rep, out, command)
    paths.update(report_attention.write(client, df, rep, out))  # attention.html: probe texts across variants
    print(paths["md"].read_text(), end="")
    dups = df.attrs.get("n_duplicates")
    if dups:
        print(f"\nnote: {dups} older duplicate run(s) (same variant, seed and fold) were left out")
    print(f"\nsaved: {', '.join(str(p) for p in paths.values())}")
    if not args.no_log:
        run_id = log_report_run(client, rep, out)
        print(f"report run {run_id} (tag {REPORT_TAG}={rep.ablation}) in {uri}")
    return 0
