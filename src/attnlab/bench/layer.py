"""Layer benchmark: fwd+bwd throughput of SelfAttention vs Keras MultiHeadAttention vs the seed layer.

Per sequence length and ``jit_compile`` setting, four contenders are timed interleaved:
``SelfAttention(units, heads=1, mask="keys")`` with a padding mask, Keras
``MultiHeadAttention(num_heads=1, key_dim=units)`` with the same mask as
``attention_mask``, ``SeedSelfAttention(units)`` (no mask: the seed ignores it) and a NumPy
batched matmul of the ``Q K^T`` size (the machine's matmul speed, for the GFLOP/s ratio).
A step is one forward pass, a scalar loss and the gradients of the layer's weights.

Peak memory: TensorFlow's CPU allocator is invisible to ``tracemalloc`` and
``tf.config.experimental.get_memory_info('CPU:0')`` reports 0 here, so each (layer, length)
runs in its own subprocess that samples its resident set size (``/proc/self/statm``) every
millisecond; the figure is the peak growth over the baseline taken just before the first call
(it includes tracing).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from attnlab.bench.common import Result, fmt_x, interleaved, median, paired_ratio, spread, table

LAYERS = ("self", "mha", "seed")
LABELS = {"self": "SelfAttention", "mha": "MultiHeadAttention", "seed": "SeedSelfAttention"}


def make_step(kind: str, batch: int, length: int, units: int, d_in: int, jit: bool) -> Callable[[], Any]:
    """A zero-argument fwd+bwd step of one layer on fixed random inputs with a padding mask."""
    import keras
    import tensorflow as tf

    from attnlab.layers import SeedSelfAttention, SelfAttention

    if kind not in LAYERS:
        raise ValueError(f"layer kind {kind!r}: expected one of {LAYERS}")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, length, d_in), dtype=np.float32))
    # Real lengths between a quarter and all of the sequence, like padded text batches.
    lengths = rng.integers(max(1, length // 4), length + 1, size=batch)
    mask = tf.sequence_mask(lengths, length)  # (B, T) bool, True = real token
    if kind == "self":
        layer = SelfAttention(units, heads=1, mask="keys")

        def fwd():
            return layer(x, mask=mask)
    elif kind == "mha":
        layer = keras.layers.MultiHeadAttention(num_heads=1, key_dim=units)
        attention_mask = mask[:, None, :]  # (B, 1, T): every query sees the real keys only

        def fwd():
            return layer(x, x, attention_mask=attention_mask)
    else:
        layer = SeedSelfAttention(units)

        def fwd():
            return layer(x, mask=mask)

    fwd()  # builds the weights
    weights = layer.trainable_variables

    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(fwd()))
        return loss, tape.gradient(loss, weights)

    compiled = tf.function(step, jit_compile=bool(jit))

    def run():
        loss, _ = compiled()
        return float(loss)  # blocks until the step (and its gradients, same graph) finished

    return run


def self_attention_flops(batch: int, length: int, units: int, d_in: int) -> float:
    """Matmul FLOPs of one SelfAttention fwd+bwd step (1 head; gradients of weights only).

    Forward: Q/K/V projections 3 x 2*B*T*d_in*d, QK^T and AV 2 x 2*B*T*T*d. Backward: each
    attention matmul needs both of its input gradients (2x its forward cost), each projection
    only its weight gradient (1x) since the input gradient is not asked for.
    """
    attn = 2 * 2.0 * batch * length * length * units
    proj = 3 * 2.0 * batch * length * d_in * units
    return 3 * attn + 2 * proj


def numpy_matmul(batch: int, length: int, units: int) -> tuple[Callable[[], Any], float]:
    """NumPy ``(T,d) @ (d,T)`` for each of the batch (the QK^T size) and its FLOPs.

    One 2-D BLAS call per batch element, on one BLAS thread: NumPy's 3-D ``np.matmul`` measured
    3x slower than this loop here, and OpenBLAS with 2 threads ran these small matrices more than
    10x slower than with 1 on this shared 2-core machine. The reference is NumPy at its best.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    q = rng.standard_normal((batch, length, units), dtype=np.float32)
    kt = rng.standard_normal((batch, units, length), dtype=np.float32)
    out = np.empty((batch, length, length), dtype=np.float32)

    def run():
        with threadpool_limits(limits=1, user_api="blas"):
            for i in range(batch):
                np.matmul(q[i], kt[i], out=out[i])

    return run, 2.0 * batch * length * length * units


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import resource

    return pages * resource.getpagesize()


def memory_probe(kind: str, batch: int, length: int, units: int, d_in: int, jit: bool, steps: int) -> dict[str, float]:
    """Run in a fresh process: peak RSS growth (bytes) over ``1 + steps`` calls of the step."""
    import tensorflow as tf  # noqa: F401 - imported before the baseline so it is not counted

    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    base = _rss_bytes()
    peak[0] = base
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    step = make_step(kind, batch, length, units, d_in, jit)
    for _ in range(1 + steps):
        step()
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_bytes())
    return {"baseline_bytes": base, "peak_growth_bytes": peak[0] - base}


def _memory_in_subprocess(kind: str, batch: int, length: int, units: int, d_in: int, jit: bool, steps: int) -> float:
    args = json.dumps([kind, batch, length, units, d_in, jit, steps])
    code = ("import json, sys; from attnlab.bench.layer import memory_probe; "
            "print('RESULT', json.dumps(memory_probe(*json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return float(json.loads(line[7:])["peak_growth_bytes"])
    raise RuntimeError(f"memory probe {kind} T={length} failed: {proc.stderr.strip()[-500:]}")


def run(cfg, quick: bool) -> Result:
    lc = cfg.layer
    B, d, d_in, steps = int(lc.batch), int(lc.units), int(lc.d_in), int(lc.steps)
    repeats, warmup = int(cfg.repeats), int(cfg.warmup)
    rows, metrics = [], {}
    figures: list[tuple[str, str, str, bool | None]] = []
    notes: list[str] = []
    for jit in [bool(j) for j in lc.jit]:
        for T in [int(t) for t in lc.lengths]:
            contenders: dict[str, Callable[[], Any]] = {}
            for kind in LAYERS:
                step = make_step(kind, B, T, d, d_in, jit)
                contenders[kind] = (lambda s=step: [s() for _ in range(steps)])
            np_mm, np_flops = numpy_matmul(B, T, d)
            contenders["numpy"] = lambda: [np_mm() for _ in range(steps)]
            times = interleaved(contenders, repeats, warmup)
            tokens = B * T * steps
            tag = f"T{T}_{'jit' if jit else 'nojit'}"
            r_mha = paired_ratio(times["mha"], times["self"])  # >1: SelfAttention faster
            r_seed = paired_ratio(times["seed"], times["self"])
            lo, hi = spread(times["mha"], times["self"])
            # GFLOP/s of SelfAttention's matmuls vs NumPy's matmul, per repeat, then the median ratio.
            flops = self_attention_flops(B, T, d, d_in) * steps
            gf_self = flops / median(times["self"]) / 1e9
            gf_np = np_flops * steps / median(times["numpy"]) / 1e9
            r_flops = paired_ratio([flops / t for t in times["self"]], [np_flops * steps / t for t in times["numpy"]])
            metrics.update({
                f"self_vs_mha_{tag}": r_mha, f"self_vs_seed_{tag}": r_seed, f"gflops_ratio_numpy_{tag}": r_flops,
                f"tokens_per_s_self_{tag}": tokens / median(times["self"]),
                f"tokens_per_s_mha_{tag}": tokens / median(times["mha"]),
                f"tokens_per_s_seed_{tag}": tokens / median(times["seed"]),
                f"gflops_self_{tag}": gf_self, f"gflops_numpy_{tag}": gf_np,
            })
            rows.append([T, "on" if jit else "off",
                         *(f"{tokens / median(times[k]):,.0f}" for k in LAYERS),
                         f"**{fmt_x(r_mha)}** ({lo:.2f}–{hi:.2f})", fmt_x(r_seed),
                         f"{gf_self:.1f} / {gf_np:.1f} = {fmt_x(r_flops)}"])
            figures.append((f"layer: SelfAttention / MHA throughput, T={T}, jit {'on' if jit else 'off'}",
                            fmt_x(r_mha), ">= 1.0x", r_mha >= 1.0))
            print(f"[layer] T={T} jit={jit}: self/mha {r_mha:.2f}x  self/seed {r_seed:.2f}x  "
                  f"GFLOP/s self {gf_self:.1f} numpy {gf_np:.1f}", flush=True)
    md = [table(["T", "jit", "SelfAttention tok/s", "MHA tok/s", "Seed tok/s",
                 "SelfAttention / MHA (min–max)", "SelfAttention / Seed", "GFLOP/s self / NumPy"], rows)]

    if bool(lc.memory):
        mem_rows = []
        for jit in [bool(j) for j in lc.memory_jit]:
            for T in [int(t) for t in lc.lengths]:
                mib = {}
                for kind in LAYERS:
                    mib[kind] = _memory_in_subprocess(kind, B, T, d, d_in, jit, steps) / 2**20
                    metrics[f"peak_rss_mib_{kind}_T{T}_{'jit' if jit else 'nojit'}"] = mib[kind]
                ratio = mib["self"] / mib["mha"] if mib["mha"] > 0 else float("nan")
                metrics[f"peak_rss_ratio_self_mha_T{T}_{'jit' if jit else 'nojit'}"] = ratio
                mem_rows.append([T, "on" if jit else "off", *(f"{mib[k]:.1f}" for k in LAYERS), fmt_x(ratio)])
        md.append("Peak memory: resident-set growth (MiB) over one process per cell, sampled every 1 ms "
                  "(one run each: RSS is noisy for small tensors).\n\n"
                  + table(["T", "jit", "SelfAttention MiB", "MHA MiB", "Seed MiB", "SelfAttention / MHA"], mem_rows))

    notes.append("MHA has an output projection (units x units) that SelfAttention and the seed layer do not; "
                 "SeedSelfAttention ignores the padding mask.")
    notes.append("GFLOP/s counts matmul FLOPs only (projections + QK^T + AV, forward and the weight-gradient "
                 "backward); NumPy is a float32 (T,d)@(d,T) OpenBLAS matmul per batch element (the QK^T size), one BLAS thread (its fastest setting here), in the same process.")
    text = "\n\n".join([
        f"Fwd+bwd throughput (tokens/s = batch x T x steps / median time), batch {B}, units {d}, "
        f"input width {d_in}, {steps} steps per repeat. Ratio columns: median of per-repeat ratios "
        "(>1 = SelfAttention faster); in brackets the min–max over repeats.",
        *md, "Notes: " + " ".join(notes)])
    params = {"batch": B, "lengths": list(lc.lengths), "units": d, "d_in": d_in, "jit": list(lc.jit),
              "steps": steps, "repeats": repeats, "warmup": warmup, "memory_method": "rss_sampling_subprocess"}
    return Result("layer", params, metrics, figures, text, notes=notes)
