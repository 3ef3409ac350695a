"""Layer benchmark: fwd+bwd throughput of attnlab's attention and Transformer block vs Keras'.

Per sequence length and ``jit_compile`` setting, these contenders are timed interleaved, all
with the same padding mask:

* ``self``: ``SelfAttention(units, heads=1, mask="keys")``;
* ``mha``: Keras ``MultiHeadAttention(num_heads=1, key_dim=units)`` (the mask as
  ``attention_mask``);
* ``plain``: the plain masked ``keras.ops`` attention one would write by hand: three ``Dense``
  projections, ``matmul(q, k^T)``, ``where``-mask, softmax, ``matmul`` (no scaling: the
  fewest ops; the bar SelfAttention must come close to);
* ``seed``: ``SeedSelfAttention(units)`` (no mask: the seed ignores it);
* ``block``: one ``TransformerEncoder`` block (``layers=1``, ``positional="none"``,
  ``dropout=0``, ``SelfAttention(d_in, heads=block_heads)``, ``ff_dim=block_ff_dim``);
* ``mha_block``: the same block built from ``MultiHeadAttention(num_heads=block_heads,
  key_dim=d_in // block_heads)`` (which has its own output projection) and Keras layers;
* a NumPy batched matmul of the ``Q K^T`` size (the machine's matmul speed, for GFLOP/s).

A step is one forward pass, a scalar loss and the gradients of the contender's weights.

Peak memory: TensorFlow's CPU allocator is invisible to ``tracemalloc`` and
``tf.config.experimental.get_memory_info('CPU:0')`` reports 0 here, so each (layer, length)
runs in its own subprocess that samples its resident set size (``/proc/self/statm``) every
millisecond; the figure is the peak growth over the baseline taken just before the first call
(it includes tracing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from attnlab.bench.common import Result, fmt_x, interleaved, median, paired_ratio, spread, table

LAYERS = ("self", "mha", "seed")  # the memory probes
KINDS = ("self", "mha", "plain", "seed", "block", "mha_block")
LABELS = {"self": "SelfAttention", "mha": "MultiHeadAttention", "seed": "SeedSelfAttention",
          "plain": "plain keras.ops", "block": "Transformer block", "mha_block": "MHA block"}
# (numerator, denominator, label, target for jit off, target for jit on): the headline figures.
TARGETS = (
    ("mha", "self", "SelfAttention / MHA", 1.3, 1.3),
    ("plain", "self", "SelfAttention / plain keras.ops", 0.95, 0.95),
    ("mha_block", "block", "Transformer block / MHA block", 1.15, 1.0),
)


def _inputs(batch: int, length: int, d_in: int):
    """Fixed random inputs (B, T, d_in) and a padding mask (B, T) with ragged real lengths."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, length, d_in), dtype=np.float32))
    # Real lengths between a quarter and all of the sequence, like padded text batches.
    lengths = rng.integers(max(1, length // 4), length + 1, size=batch)
    return x, tf.sequence_mask(lengths, length)  # True = real token


class PlainAttention:
    """The plain masked attention of the module docstring (its weights are its Dense layers')."""

    def __init__(self, units: int):
        import keras

        self.projections = [keras.layers.Dense(units) for _ in range(3)]

    def __call__(self, x, mask):
        from keras import ops

        q, k, v = (dense(x) for dense in self.projections)
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1)))  # (B, T, T)
        scores = ops.where(mask[:, None, :], scores, -1e9)
        return ops.matmul(ops.softmax(scores, axis=-1), v)

    @property
    def trainable_variables(self):
        return [w for dense in self.projections for w in dense.trainable_variables]


class MHABlock:
    """One pre-LayerNorm Transformer block (+ final LayerNorm) around Keras MultiHeadAttention."""

    def __init__(self, d_model: int, heads: int, ff_dim: int):
        import keras

        L = keras.layers
        self.mha = L.MultiHeadAttention(num_heads=heads, key_dim=d_model // heads)
        self.norms = [L.LayerNormalization() for _ in range(3)]
        self.hidden, self.out = L.Dense(ff_dim, activation="relu"), L.Dense(d_model)

    def __call__(self, x, mask):
        h = self.norms[0](x)
        x = x + self.mha(h, h, attention_mask=mask[:, None, :])
        x = x + self.out(self.hidden(self.norms[1](x)))
        return self.norms[2](x)

    @property
    def trainable_variables(self):
        layers = [self.mha, *self.norms, self.hidden, self.out]
        return [w for layer in layers for w in layer.trainable_variables]


def _contender(kind: str, units: int, d_in: int, heads: int, ff_dim: int):
    """A callable ``(x, mask) -> outputs`` whose ``trainable_variables`` are its weights."""
    import keras

    from attnlab.layers import SeedSelfAttention, SelfAttention, TransformerEncoder

    if kind == "self":
        layer = SelfAttention(units, heads=1, mask="keys")
        return lambda x, mask: layer(x, mask=mask), layer
    if kind == "mha":
        layer = keras.layers.MultiHeadAttention(num_heads=1, key_dim=units)
        # (B, 1, T): every query sees the real keys only
        return lambda x, mask: layer(x, x, attention_mask=mask[:, None, :]), layer
    if kind == "seed":
        layer = SeedSelfAttention(units)
        return lambda x, mask: layer(x, mask=mask), layer
    if kind == "plain":
        layer = PlainAttention(units)
        return layer, layer
    if kind == "block":
        layer = TransformerEncoder(layers=1, ff_dim=ff_dim, dropout=0.0, positional="none",
                                   attention=SelfAttention(d_in, heads=heads))
        return lambda x, mask: layer(x, mask=mask), layer
    if kind == "mha_block":
        layer = MHABlock(d_in, heads, ff_dim)
        return layer, layer
    raise ValueError(f"layer kind {kind!r}: expected one of {KINDS}")


def make_step(kind: str, batch: int, length: int, units: int, d_in: int, jit: bool,
              heads: int = 4, ff_dim: int = 512) -> Callable[[], Any]:
    """A zero-argument fwd+bwd step of one contender on fixed random inputs with a padding mask.

    ``heads`` and ``ff_dim`` size the two Transformer blocks (``block``, ``mha_block``) only.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    x, mask = _inputs(batch, length, d_in)
    fwd, holder = _contender(kind, units, d_in, heads, ff_dim)
    fwd(x, mask)  # builds the weights
    weights = holder.trainable_variables

    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(fwd(x, mask)))
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

    return run, numpy_matmul_flops(batch, length, units)


def numpy_matmul_flops(batch: int, length: int, units: int) -> float:
    """FLOPs of :func:`numpy_matmul`'s call: ``batch`` products ``(T, d) @ (d, T)``."""
    return 2.0 * batch * length * length * units


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
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return float(json.loads(line[7:])["peak_growth_bytes"])
    raise RuntimeError(f"memory probe {kind} T={length} failed: {proc.stderr.strip()[-500:]}")


def _with_cpu_time(fn: Callable[[], Any], sink: list[float]) -> Callable[[], Any]:
    """``fn`` that also appends the process CPU time (all threads) it took to ``sink``."""

    def run():
        start = time.process_time()
        fn()
        sink.append(time.process_time() - start)

    return run


def _time_cell(lc, T: int, jit: bool, repeats: int, warmup: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU times of every contender (and NumPy) at one (T, jit), interleaved.

    CPU time (every thread of this process) is measured in the same calls as wall time: it
    barely moves when other processes take the cores, which wall time on a shared machine does.
    """
    B, d, d_in, steps = int(lc.batch), int(lc.units), int(lc.d_in), int(lc.steps)
    contenders: dict[str, Callable[[], Any]] = {}
    for kind in KINDS:
        step = make_step(kind, B, T, d, d_in, jit, heads=int(lc.block_heads), ff_dim=int(lc.block_ff_dim))
        contenders[kind] = (lambda s=step: [s() for _ in range(steps)])
    np_mm, _ = numpy_matmul(B, T, d)
    contenders["numpy"] = lambda: [np_mm() for _ in range(steps)]
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    wall = interleaved({name: _with_cpu_time(fn, cpu[name]) for name, fn in contenders.items()}, repeats, warmup)
    return wall, {name: values[warmup:] for name, values in cpu.items()}  # the warm-up calls come first


def _cell_figures(lc, T: int, jit: bool, timed, out: dict[str, Any]) -> None:
    """Metrics, table rows and headline figures of one (T, jit) cell, appended to ``out``.

    ``timed`` is ``(wall, cpu)`` from :func:`_time_cell`; the targets are judged on wall time.
    """
    times, cpu = timed
    B, d, d_in, steps = int(lc.batch), int(lc.units), int(lc.d_in), int(lc.steps)
    tag, on = f"T{T}_{'jit' if jit else 'nojit'}", "on" if jit else "off"
    tokens = B * T * steps
    for kind in KINDS:
        out["metrics"][f"tokens_per_s_{kind}_{tag}"] = tokens / median(times[kind])
    out["metrics"][f"self_vs_seed_{tag}"] = paired_ratio(times["seed"], times["self"])
    ratios = []
    for num, den, label, target_off, target_on in TARGETS:
        r, (lo, hi) = paired_ratio(times[num], times[den]), spread(times[num], times[den])
        r_cpu = paired_ratio(cpu[num], cpu[den])
        target = target_on if jit else target_off
        out["metrics"][f"{den}_vs_{num}_{tag}"] = r  # e.g. self_vs_mha_T64_jit: >1 = ours faster
        out["metrics"][f"{den}_vs_{num}_cpu_{tag}"] = r_cpu
        out["figures"].append((f"layer: {label} throughput, T={T}, jit {on}", fmt_x(r), f">= {target}x",
                               r >= target))
        ratios.append(f"**{fmt_x(r)}** ({lo:.2f}–{hi:.2f}) · CPU {fmt_x(r_cpu)}")
    flops = self_attention_flops(B, T, d, d_in) * steps
    np_flops = numpy_matmul_flops(B, T, d) * steps
    r_flops = paired_ratio([flops / t for t in times["self"]], [np_flops / t for t in times["numpy"]])
    gf_self, gf_np = flops / median(times["self"]) / 1e9, np_flops / median(times["numpy"]) / 1e9
    out["metrics"].update({f"gflops_ratio_numpy_{tag}": r_flops, f"gflops_self_{tag}": gf_self,
                           f"gflops_numpy_{tag}": gf_np})
    out["rows"].append([T, on, *ratios, fmt_x(out["metrics"][f"self_vs_seed_{tag}"]),
                        f"{gf_self:.1f} / {gf_np:.1f} = {fmt_x(r_flops)}"])
    out["tok_rows"].append([T, on, *(f"{out['metrics'][f'tokens_per_s_{k}_{tag}']:,.0f}" for k in KINDS)])
    print(f"[layer] T={T} jit={jit}: " + "  ".join(f"{lab} {c.split()[0]}" for (_, _, lab, _, _), c
                                                   in zip(TARGETS, ratios)), flush=True)


def _memory_section(lc, metrics: dict[str, float]) -> str:
    """Peak-RSS table of the memory probes (one subprocess per layer, length and jit)."""
    B, d, d_in, steps = int(lc.batch), int(lc.units), int(lc.d_in), int(lc.steps)
    mem_rows = []
    for jit in [bool(j) for j in lc.memory_jit]:
        for T in [int(t) for t in lc.lengths]:
            tag = f"T{T}_{'jit' if jit else 'nojit'}"
            mib = {kind: _memory_in_subprocess(kind, B, T, d, d_in, jit, steps) / 2**20 for kind in LAYERS}
            for kind in LAYERS:
                metrics[f"peak_rss_mib_{kind}_{tag}"] = mib[kind]
            ratio = mib["self"] / mib["mha"] if mib["mha"] > 0 else float("nan")
            metrics[f"peak_rss_ratio_self_mha_{tag}"] = ratio
            mem_rows.append([T, "on" if jit else "off", *(f"{mib[k]:.1f}" for k in LAYERS), fmt_x(ratio)])
    return ("Peak memory: resident-set growth (MiB) over one process per cell, sampled every 1 ms "
            "(one run each: RSS is noisy for small tensors).\n\n"
            + table(["T", "jit", "SelfAttention MiB", "MHA MiB", "Seed MiB", "SelfAttention / MHA"], mem_rows))


def run(cfg, quick: bool) -> Result:
    lc = cfg.layer
    repeats, warmup = int(cfg.repeats), int(cfg.warmup)
    out: dict[str, Any] = {"metrics": {}, "figures": [], "rows": [], "tok_rows": []}
    for jit in [bool(j) for j in lc.jit]:
        for T in [int(t) for t in lc.lengths]:
            _cell_figures(lc, T, jit, _time_cell(lc, T, jit, repeats, warmup), out)
    md = [table(["T", "jit", *(f"{label} (min–max)" for _, _, label, _, _ in TARGETS), "SelfAttention / Seed",
                 "GFLOP/s self / NumPy"], out["rows"]),
          "Throughput (tokens/s):\n\n" + table(["T", "jit", *(LABELS[k] for k in KINDS)], out["tok_rows"])]
    if bool(lc.memory):
        md.append(_memory_section(lc, out["metrics"]))
    notes = [
        "MHA has an output projection (units x units) that SelfAttention, plain and the seed layer do not; "
        "the plain attention does not scale its logits (one op fewer than SelfAttention); "
        "SeedSelfAttention ignores the padding mask.",
        f"Both blocks: d_model {int(lc.d_in)}, {int(lc.block_heads)} heads, ff_dim {int(lc.block_ff_dim)}, "
        "pre-LayerNorm, output projection, final LayerNorm, no dropout.",
        "GFLOP/s counts matmul FLOPs only (projections + QK^T + AV, forward and the weight-gradient "
        "backward); NumPy is a float32 (T,d)@(d,T) OpenBLAS matmul per batch element (the QK^T size), "
        "one BLAS thread (its fastest setting here), in the same process.",
    ]
    text = "\n\n".join([
        f"Fwd+bwd throughput, batch {int(lc.batch)}, units {int(lc.units)}, input width {int(lc.d_in)}, "
        f"{int(lc.steps)} steps per repeat. Ratio columns: median of per-repeat time ratios "
        "(>1 = attnlab's side faster); in brackets the min–max over repeats; after it, the same "
        "ratio of process CPU time (all threads, same calls), which other load on the machine moves far less.",
        *md, "Notes: " + " ".join(notes)])
    params = {"batch": int(lc.batch), "lengths": list(lc.lengths), "units": int(lc.units), "d_in": int(lc.d_in),
              "jit": list(lc.jit), "steps": int(lc.steps), "repeats": repeats, "warmup": warmup,
              "block_heads": int(lc.block_heads), "block_ff_dim": int(lc.block_ff_dim),
              "memory_method": "rss_sampling_subprocess"}
    return Result("layer", params, out["metrics"], out["figures"], text, notes=notes)
