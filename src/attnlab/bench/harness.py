"""Harness overhead: ``train(cfg)`` with full tracking vs plain Keras on the same model and data.

The plain side is what a researcher writes without attnlab: load the same data, build the
same compiled model (same vocabulary, optimizer, TF runtime settings), ``model.fit`` with
validation data for the same epochs, ``model.evaluate`` on test. The harness side is
``attnlab.train.train(cfg)``: the same plus the MLflow run (params, config, per-epoch
metrics), early stopping, validation/test predictions with sklearn metrics, attention
metrics and heatmaps, and the logged pyfunc model. The per-phase timings that ``train``
logs (``time_*`` metrics) show where the difference goes.
"""

from __future__ import annotations

import time

from attnlab.bench.common import Result, compose_train, fmt_x, interleaved, median, paired_ratio, spread, table

PHASES = ("time_setup", "time_data", "time_build", "time_fit", "time_eval", "time_attention", "time_log_model")


def plain_keras(cfg) -> dict[str, float]:
    """Plain-Keras equivalent of ``train(cfg)``: data, model, fit, evaluate; phase times."""
    from attnlab import data as data_mod
    from attnlab.config import to_plain
    from attnlab.models import build_model
    from attnlab.fitting import configure_runtime, text_dataset

    plain = to_plain(cfg)
    tcfg, seed = plain["train"], int(plain["seed"])
    t0 = time.perf_counter()
    configure_runtime(tcfg, seed)
    t = time.perf_counter()
    ds = data_mod.load(plain["data"], seed)
    out = {"time_setup": t - t0, "time_data": time.perf_counter() - t}
    t = time.perf_counter()
    model = build_model(plain["model"], len(ds.classes), ds.train.texts, tcfg)
    out["time_build"] = time.perf_counter() - t
    bs = int(tcfg["batch_size"])
    t = time.perf_counter()
    model.fit(text_dataset(ds.train.texts, ds.train.labels, bs, seed),
              validation_data=text_dataset(ds.val.texts, ds.val.labels, bs, None),
              epochs=int(tcfg["epochs"]), verbose=0, shuffle=False)
    out["time_fit"] = time.perf_counter() - t
    t = time.perf_counter()
    model.evaluate(text_dataset(ds.test.texts, ds.test.labels, bs, None), verbose=0)
    out["time_eval"] = time.perf_counter() - t
    out["time_total"] = time.perf_counter() - t0
    return out


LABELS = {
    "time_setup": "set-up (runtime, MLflow store/experiment)", "time_data": "data loading",
    "time_build": "vectorizer adapt + build + compile", "time_fit": "fit (harness: + MLflow per-epoch, early stopping)",
    "time_eval": "evaluation (harness: val+test predictions, attention metrics, sklearn; plain: evaluate test)",
    "time_attention": "heatmaps + maps.npz + final metrics logged",
    "time_log_model": "log pyfunc model (.keras save + MLflow model)",
}


def _measure(cfg, tracking_uri: str | None) -> tuple[dict[str, list[float]], list[dict], list[dict]]:
    """Interleaved wall times of harness and plain runs, and each side's per-phase seconds."""
    import mlflow

    from attnlab import tracking
    from attnlab.train import train

    hc = cfg.harness
    # The harness's own runs go to a side experiment of the same store, so `benchmarks` holds
    # only one run per benchmark.
    track = [f"tracking.experiment={cfg.experiment}_harness_runs"]
    if tracking_uri:
        track.append(f"tracking.uri={tracking_uri}")
    cfg_h = compose_train([*hc.overrides, *track])
    cfg_w = compose_train([*hc.warmup_overrides, *track])
    run_ids: list[str] = []
    plain_phases: list[dict[str, float]] = []
    # Warm-up on a small config: imports, the MLflow store and TF's first-use costs; the
    # timed runs each build and trace their own model, as every real run does.
    for _ in range(int(cfg.warmup)):
        train(cfg_w)
        plain_keras(cfg_w)
    times = interleaved({"harness": lambda: run_ids.append(train(cfg_h).run_id),
                         "plain": lambda: plain_phases.append(plain_keras(cfg_h))}, int(cfg.repeats), 0)
    client = tracking.client(mlflow.get_tracking_uri())
    return times, [client.get_run(r).data.metrics for r in run_ids], plain_phases


def _phase_rows(med_h, med_p, logging_h: float, wall_h: float, wall_p: float) -> list[list[str]]:
    rows = []
    for p in PHASES:
        diff = med_h[p] - med_p[p]
        rows.append([LABELS[p], f"{med_h[p]:.2f}", f"{med_p[p]:.2f}", f"{diff:+.2f}", f"{100 * diff / wall_p:+.1f}%"])
    rest = wall_h - med_h["time_total"]
    rows.append(["params, config, tags logged; run start", f"{logging_h:.2f}", "0.00", f"{logging_h:+.2f}",
                 f"{100 * logging_h / wall_p:+.1f}%"])
    rows.append(["outside train's timers (run end)", f"{rest:.2f}", f"{wall_p - med_p['time_total']:.2f}",
                 f"{rest - (wall_p - med_p['time_total']):+.2f}", ""])
    rows.append(["**wall time (median)**", f"**{wall_h:.2f}**", f"**{wall_p:.2f}**", f"{wall_h - wall_p:+.2f}",
                 f"{100 * (wall_h - wall_p) / wall_p:+.1f}%"])
    return rows


def run(cfg, quick: bool, tracking_uri: str | None) -> Result:
    times, h_phases, plain_phases = _measure(cfg, tracking_uri)
    ratio = paired_ratio(times["harness"], times["plain"])
    lo, hi = spread(times["harness"], times["plain"])
    med_h = {p: median([m.get(p, 0.0) for m in h_phases]) for p in (*PHASES, "time_total")}
    med_p = {p: median([m.get(p, 0.0) for m in plain_phases]) for p in (*PHASES, "time_total")}
    wall_h, wall_p = median(times["harness"]), median(times["plain"])
    # What train's own timers do not cover (params/config/tag logging, closing the run), per
    # run, then the median (a difference of medians can come out negative).
    logging_h = median([m.get("time_total", 0.0) - sum(m.get(p, 0.0) for p in PHASES) for m in h_phases])
    rest = wall_h - med_h["time_total"]
    # What tracking adds outside `fit`, whose time swings with the machine's load on both sides
    # alike: the deterministic part of the overhead.
    outside = (sum(med_h[p] - med_p[p] for p in PHASES if p != "time_fit") + logging_h
               + rest - (wall_p - med_p["time_total"]))
    fit_only = paired_ratio([m.get("time_fit", float("nan")) for m in h_phases], [m["time_fit"] for m in plain_phases])
    metrics = {"overhead_ratio": ratio, "overhead_ratio_min": lo, "overhead_ratio_max": hi, "wall_harness_s": wall_h,
               "wall_plain_s": wall_p, "outside_fit_ratio": 1.0 + outside / wall_p, "harness_logging_s": logging_h,
               "fit_ratio": fit_only, **{f"harness_{p}": med_h[p] for p in PHASES}, **{f"plain_{p}": med_p[p] for p in PHASES}}
    text = "\n\n".join([
        f"`train(cfg)` with full tracking vs plain Keras `fit` + `evaluate`, same model, data and epochs "
        f"(overrides: `{' '.join(cfg.harness.overrides)}`), interleaved, {cfg.repeats} pairs. "
        f"**Harness / plain wall time: {fmt_x(ratio, 3)}** (min–max over pairs {lo:.3f}–{hi:.3f}); "
        f"fit alone (callbacks' cost): {fmt_x(fit_only, 3)}. Everything the harness adds outside `fit`: "
        f"{outside:+.2f} s, i.e. {fmt_x(1.0 + outside / wall_p, 3)} of the plain run.",
        "Where the time goes (seconds, medians over the repeats; the last column is the share of the plain run's time):",
        table(["phase", "harness s", "plain s", "difference s", "of plain"], _phase_rows(med_h, med_p, logging_h, wall_h, wall_p)),
    ])
    figures = [("harness: train(cfg) / plain Keras wall time", fmt_x(ratio, 3), "<= 1.03x", ratio <= 1.03),
               ("harness: (plain + what tracking adds outside fit) / plain", fmt_x(1.0 + outside / wall_p, 3),
                "<= 1.03x", 1.0 + outside / wall_p <= 1.03),
               ("harness: fit with tracking callbacks / plain fit", fmt_x(fit_only, 3), "", None)]
    params = {"overrides": list(cfg.harness.overrides), "repeats": int(cfg.repeats), "warmup": int(cfg.warmup)}
    print(f"[harness] harness/plain {ratio:.3f}x (fit {fit_only:.3f}x); wall {wall_h:.1f}s vs {wall_p:.1f}s", flush=True)
    return Result("harness", params, metrics, figures, text)
