"""Scaling: epoch time against ``model.max_len`` and against the number of training texts.

For each length, one epoch of the real model (``build_model`` from ``conf/``, fit on
synthetic texts that fill the length) is timed interleaved with the same number of fwd+bwd
steps of its ``SelfAttention`` layer alone (same batch, length, widths and padding mask);
their per-repeat ratio is the share of the epoch spent in attention. Every model pads to
``max_len``, so the cost depends on the length, not on how long the texts are. The
dataset-size sweep fits one model on nested subsets of a synthetic set, interleaved.
"""

from __future__ import annotations

import math

from attnlab.bench.common import Result, compose_train, interleaved, median, out_dir, paired_ratio, table
from attnlab.bench.layer import make_step


def _model_and_data(overrides: list[str], max_len: int, n: int, seed: int = 0):
    from attnlab import data as data_mod
    from attnlab.config import to_plain
    from attnlab.fitting import configure_runtime
    from attnlab.models import ATTENTION, build_model

    # Synthetic texts between half and all of max_len tokens, so little of the work is padding.
    cfg = to_plain(compose_train([*overrides, "data=synthetic", f"model.max_len={max_len}", f"data.n_train={n}",
                                  "data.n_val=16", "data.n_test=16", f"data.min_len={max(1, max_len // 2)}",
                                  f"data.max_len={max_len}"]))
    configure_runtime(cfg["train"], seed)
    ds = data_mod.load(cfg["data"], seed)
    model = build_model(cfg["model"], len(ds.classes), ds.train.texts, cfg["train"])
    # The attention layer's input width, read off the built model (whatever the encoder).
    d_in = int(model.get_layer(ATTENTION).input.shape[-1])
    return model, ds, int(cfg["model"]["attention"]["units"]), d_in


def _epoch(model, texts, labels, batch: int):
    from attnlab.fitting import text_dataset

    ds = text_dataset(texts, labels, batch, None)
    return lambda: model.fit(ds, epochs=1, verbose=0, shuffle=False)


def _length_sweep(cfg, extra: list[str]) -> tuple[list[int], list[float], list[float], list[float], dict]:
    """Per max_len: epoch seconds, attention-alone seconds, their paired ratio; metrics."""
    import keras

    sc = cfg.scaling
    B, n = int(sc.batch), int(sc.n_texts)
    steps = math.ceil(n / B)
    lengths = [int(t) for t in sc.lengths]
    epoch_s, att_s, fracs, metrics = [], [], [], {}
    for T in lengths:
        keras.backend.clear_session()
        model, ds, units, d_in = _model_and_data(extra, T, n)
        att_step = make_step("self", B, T, units, d_in, False)
        times = interleaved({"epoch": _epoch(model, ds.train.texts[:n], ds.train.labels[:n], B),
                             "attention": lambda: [att_step() for _ in range(steps)]},
                            int(cfg.repeats), max(1, int(cfg.warmup)))
        frac = paired_ratio(times["attention"], times["epoch"])
        epoch_s.append(median(times["epoch"]))
        att_s.append(median(times["attention"]))
        fracs.append(frac)
        metrics.update({f"attention_fraction_T{T}": frac, f"epoch_s_T{T}": epoch_s[-1]})
        print(f"[scaling] T={T}: epoch {epoch_s[-1]:.2f}s, attention {frac:.0%}", flush=True)
    return lengths, epoch_s, att_s, fracs, metrics


def _size_sweep(cfg, extra: list[str]) -> tuple[list[int], dict, list[list], dict]:
    """One model fit on nested subsets, interleaved: per size the epoch times, rows, metrics."""
    import keras

    sc = cfg.scaling
    keras.backend.clear_session()
    sizes = [int(s) for s in sc.sizes]
    model, ds, _, _ = _model_and_data(extra, int(sc.size_max_len), max(sizes))
    times = interleaved({s: _epoch(model, ds.train.texts[:s], ds.train.labels[:s], int(sc.batch)) for s in sizes},
                        int(cfg.repeats), max(1, int(cfg.warmup)))
    rows, metrics = [], {}
    for s in sizes:
        r = paired_ratio(times[s], times[sizes[0]])
        metrics[f"epoch_ratio_n{s}"] = r
        rows.append([s, f"{median(times[s]):.2f}", f"{r:.2f}x", f"{s / sizes[0]:.1f}x"])
    return sizes, times, rows, metrics


def run(cfg, quick: bool) -> Result:
    sc = cfg.scaling
    B, n, L = int(sc.batch), int(sc.n_texts), int(sc.size_max_len)
    extra = [str(o) for o in sc.model_overrides] + [f"train.batch_size={B}"]
    lengths, epoch_s, att_s, fracs, metrics = _length_sweep(cfg, extra)
    len_rows = [[T, f"{e:.2f}", f"{e / epoch_s[0]:.2f}x", f"{T / lengths[0]:.0f}x", f"{a:.2f}", f"{f:.0%}"]
                for T, e, a, f in zip(lengths, epoch_s, att_s, fracs)]
    dominant = next((T for T, f in zip(lengths, fracs) if f >= 0.5), None)
    metrics["attention_dominates_from_len"] = float(dominant) if dominant is not None else float("nan")
    sizes, size_times, size_rows, size_metrics = _size_sweep(cfg, extra)
    metrics.update(size_metrics)
    png = out_dir(cfg) / "scaling.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    _plot(png, lengths, epoch_s, att_s, fracs, sizes, [median(size_times[s]) for s in sizes], n, L)
    dom_text = (f"attention is at least half of the epoch from max_len={dominant} on" if dominant is not None
                else f"attention stays below half of the epoch up to max_len={lengths[-1]}")
    text = "\n\n".join([
        f"Epoch of the default model (overrides: `{' '.join(extra) or 'none'}`) on {n} synthetic texts, batch {B}, "
        f"vs {math.ceil(n / B)} fwd+bwd steps of its SelfAttention layer alone, interleaved; seconds are medians of "
        f"{cfg.repeats} repeats. **{dom_text}.**",
        table(["max_len", "epoch s", "epoch vs first", "length vs first", "attention s", "attention share"], len_rows),
        f"Dataset size at max_len={L} (one model, nested subsets, interleaved):",
        table(["texts", "epoch s", "epoch vs first", "texts vs first"], size_rows),
        "![scaling](scaling.png)",
    ])
    figures = [("scaling: max_len from which attention is >= half an epoch",
                str(dominant) if dominant is not None else f"> {lengths[-1]}", "", None)]
    params = {"batch": B, "n_texts": n, "lengths": lengths, "sizes": sizes, "size_max_len": L,
              "model_overrides": extra, "repeats": int(cfg.repeats)}
    return Result("scaling", params, metrics, figures, text, artifacts=[png])


def _plot(path, lengths, epoch_s, att_s, fracs, sizes, size_s, n, L) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    a1.plot(lengths, epoch_s, "o-", label="epoch (whole model)")
    a1.plot(lengths, att_s, "s--", label="SelfAttention alone, same steps")
    a1.set_xscale("log", base=2)
    a1.set_yscale("log")
    a1.set_xlabel("model.max_len (tokens)")
    a1.set_ylabel(f"seconds per epoch of {n} texts")
    for T, e, f in zip(lengths, epoch_s, fracs):
        a1.annotate(f"{f:.0%}", (T, e), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    a1.set_title("epoch time vs length (labels: attention share)")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3, which="both")
    a2.plot(sizes, size_s, "o-")
    a2.set_xlabel("training texts per epoch")
    a2.set_ylabel("seconds per epoch")
    a2.set_title(f"epoch time vs dataset size (max_len={L})")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
