"""Is the attention an explanation? Faithfulness measures of per-token importance scores.

Pure NumPy. The model is reached only through a *view* (:class:`ModelView`): probabilities
of token-id rows with some tokens masked out, and gradient×input per token. The Keras view
of an attnlab model is :class:`attnlab.explain.KerasView`; any object with the two methods
works (the tests use a linear bag-of-words view whose importances are known exactly).

The exact definitions are in ``PROTOCOL`` (also written into ``faithfulness.json``). The
choices, and why:

* **Removing a token** = setting its id to the padding id 0, so ``Embedding(mask_zero=True)``
  masks it and the other tokens keep their positions. ERASER deletes tokens instead; for the
  default masked BiLSTM with mean pooling the two give the same probabilities (tested), for
  the CNN (a zero vector inside its windows) and ``model=seed`` (attends to padding,
  flattens positions) they differ.
* **Gradient target**: ``p(ŷ|x)``, not the logit: it is the quantity every removal measure
  changes, and it needs only the softmax output (the logit would need the ``probs`` layer's
  internals). For two classes the ranking within a text is the logit margin's
  (``dp/de = p(1−p)·d(z_ŷ − z_other)/de``); saturation scales a text's scores together, so
  ranks survive unless float32 underflows them to exact zeros, which then count as ties.
* **Bins**: ``k = ceil(f · n_real)`` as ERASER's baseline code (``math.ceil``), but the exact
  ceiling: ``0.1 · 30`` is 3, not ``ceil(3.0000000000000004) = 4``. AOPC = mean over the bins
  and texts, as ERASER's ``metrics.py`` (no ``k = 0`` term).
* **Kendall τ-b** (ties as in scipy's default). A text is skipped (and counted) when it has
  fewer than 2 real tokens or the *reference* (loo, gradient) is constant there: there is no
  ranking to agree with. A *method* that is constant where the reference is not (uniform
  attention, Wiegreffe & Pinter's baseline) ranks nothing and gets τ = 0: defined, never NaN.
* **ap_rationale** averages over texts whose rationale marks some but not all real tokens,
  as ERASER's ``discard_single_class_answers``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from attnlab import checks

BINS = (0.01, 0.05, 0.1, 0.2, 0.5)
COMPUTED = ("gradient", "loo", "random")  # methods evaluate() computes; "attention" (and extras) are given
METHODS = ("attention", *COMPUTED)
# tau measure -> the reference method it compares against
REFERENCES = {"tau_loo": "loo", "tau_grad": "gradient"}
PAD_ID = 0
PREFIX = "faith"

PROTOCOL = {
    "removal": "token id set to the padding id 0 (masked by Embedding(mask_zero=True)); other tokens keep their positions",
    "prediction": "y_hat = argmax p(.|x) on the full text; all measures use p(y_hat|.)",
    "gradient": "L2 norm over the embedding axis of gradient x input of p(y_hat|x) w.r.t. the embedding output",
    "loo": "p(y_hat|x) - p(y_hat|x without token i) (signed)",
    "random": "uniform [0, 1) scores from numpy default_rng((seed, 1))",
    "ranking": "descending score over real tokens; ties go to the earlier position",
    "bins": "k = ceil(f * n_real) tokens per fraction f (exact ceiling), 1 <= k <= n_real",
    "comprehensiveness": "p(y_hat|x) - p(y_hat|x without top-k); AOPC = mean over bins and texts (higher = more faithful)",
    "sufficiency": "p(y_hat|x) - p(y_hat|top-k only); AOPC = mean over bins and texts (lower = more faithful)",
    "tau": "Kendall tau-b over real tokens, mean over texts; texts with < 2 real tokens or constant "
           "reference scores skipped (counted); constant method scores -> tau = 0; no self-comparison",
    "ap_rationale": "average precision (step-wise, sklearn's definition) against the rationale over real tokens, "
                    "mean over texts whose rationale marks some but not all real tokens",
}


class ModelView(Protocol):
    """What the measures need from a model (batched, NumPy in and out)."""

    def probs(self, ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """(M, T) ids and (M, T) bool keep-mask -> (M, C) probabilities, dropped tokens masked."""

    def grad_input(self, ids: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(N, T) ids and (N,) class ids -> (N, T) L2 norm of gradient×input of p(target)."""


# --------------------------------------------------------------------------- checks


def check_bins(bins: Any) -> tuple[float, ...]:
    """Bins as a sorted tuple of distinct fractions in (0, 1]; ArgumentError naming the value."""
    try:
        out = tuple(float(b) for b in bins)
    except (TypeError, ValueError):
        out = ()
    if not out or any(not 0.0 < b <= 1.0 for b in out) or len(set(out)) != len(out):
        raise checks.ArgumentError("bins", "Invalid value for argument `bins`. Expected distinct fractions in "
                                           f"(0, 1]. Received: bins={bins!r}")
    return tuple(sorted(out))


def _check_ids(ids: Any) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be an integer array of shape (N, T). Received: shape={ids.shape}, dtype={ids.dtype}")
    return ids


def _check_scores(name: str, scores: Any, shape: tuple[int, ...]) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != shape:
        raise ValueError(f"{name} must have the shape of ids {shape}. Received: {name}.shape={scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} has non-finite values (e.g. NaN). Received: {int((~np.isfinite(scores)).sum())} of them")
    return scores


def rationale_mask(rationale: Any, shape: tuple[int, int]) -> np.ndarray:
    """(N, T) bool from an (N, T) array or N per-text 0/1 sequences (cut or zero-padded to T)."""
    n, t = shape
    if len(rationale) != n:
        raise ValueError(f"rationale must have one entry per text ({n}). Received: len(rationale)={len(rationale)}")
    out = np.zeros(shape, dtype=bool)
    for i, r in enumerate(rationale):
        r = np.asarray(r).astype(bool).ravel()[:t]
        out[i, : len(r)] = r
    return out


# --------------------------------------------------------------------------- selection


def subset_indices(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``min(n, n_total)`` texts (all when ``n`` is None)."""
    if n is None or checks.positive_int("n", n) >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def random_scores(shape: tuple[int, int], seed: int) -> np.ndarray:
    """The ``random`` method: uniform [0, 1) scores, a stream separate from the subset's."""
    return np.random.default_rng((seed, 1)).random(shape)


def bin_sizes(n_real: np.ndarray, bins: Sequence[float]) -> np.ndarray:
    """(B, N) top-k sizes ``ceil(f * n_real)``, the exact ceiling (rounded to 9 decimals first)."""
    f = np.asarray(bins, dtype=np.float64)[:, None]
    return np.ceil(np.round(f * np.asarray(n_real)[None, :], 9)).astype(np.int64)


def ranks(scores: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(N, T) rank of each real token by descending score (0 = most important; ties: earlier
    position first); padding gets rank T, so ``ranks < k`` is the top-k mask for any k <= n_real."""
    n, t = scores.shape
    key = np.where(real, -scores, np.inf)
    order = np.argsort(key, axis=1, kind="stable")  # stable: equal scores keep position order
    out = np.empty((n, t), dtype=np.int64)
    np.put_along_axis(out, order, np.broadcast_to(np.arange(t), (n, t)), axis=1)
    return np.where(real, out, t)


# --------------------------------------------------------------------------- agreement


def _tau_stats(method: np.ndarray, reference: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(N, 4) pair counts per text: all pairs, pairs untied in method, untied in reference, S."""
    t = real.shape[1]
    pairs = real[:, :, None] & real[:, None, :] & np.triu(np.ones((t, t), dtype=bool), k=1)  # (N, T, T)
    sx = np.sign(method[:, :, None] - method[:, None, :]) * pairs
    sy = np.sign(reference[:, :, None] - reference[:, None, :]) * pairs
    return np.stack([pairs.sum(axis=(1, 2)), (sx != 0).sum(axis=(1, 2)), (sy != 0).sum(axis=(1, 2)),
                     (sx * sy).sum(axis=(1, 2))], axis=1)


def kendall_tau(method: np.ndarray, reference: np.ndarray, real: np.ndarray,
                chunk: int = 128) -> tuple[np.ndarray, dict[str, int]]:
    """Per-text Kendall τ-b of ``method`` against ``reference`` (both (N, T)) over the real tokens.

    Returns:
        ``(tau, counts)``: ``tau`` (N,) with NaN for skipped texts; ``counts`` has
        ``short`` (texts with < 2 real tokens) and ``reference_constant`` (reference scores
        all equal), both skipped, and ``method_constant`` (method scores all equal while the
        reference's are not), scored τ = 0.
    """
    stats = np.concatenate([_tau_stats(method[i : i + chunk], reference[i : i + chunk], real[i : i + chunk])
                            for i in range(0, max(len(real), 1), chunk)]).astype(np.float64)
    n0, untied_x, untied_y, s = stats.T
    short, ref_const = n0 == 0, (n0 > 0) & (untied_y == 0)
    meth_const = ~short & ~ref_const & (untied_x == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(meth_const, 0.0, s / np.sqrt(untied_x * untied_y))
    tau[short | ref_const] = np.nan
    counts = {"short": int(short.sum()), "reference_constant": int(ref_const.sum()),
              "method_constant": int(meth_const.sum())}
    return tau, counts


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Average precision of ``scores`` for the binary ``truth`` (1-D), as sklearn's
    ``average_precision_score``: sum over distinct thresholds of (R_k − R_{k−1}) · P_k."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    s, y = np.asarray(scores)[order], np.asarray(truth, dtype=bool)[order]
    tp = np.cumsum(y)
    last = np.r_[s[1:] != s[:-1], True]  # last index of each group of tied scores
    precision = tp[last] / (np.flatnonzero(last) + 1)
    recall = tp[last] / max(int(y.sum()), 1)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def rationale_ap(scores: np.ndarray, rationale: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-text AP over real tokens (NaN where the rationale marks none or all of them) and
    the number of texts scored."""
    out = np.full(len(scores), np.nan)
    for i in range(len(scores)):
        y = rationale[i][real[i]]
        if 0 < y.sum() < len(y):
            out[i] = average_precision(scores[i][real[i]], y)
    return out, int(np.isfinite(out).sum())


# --------------------------------------------------------------------------- model calls


class _ProbCache:
    """p(·|x) for (text, keep-mask) rows; each distinct row goes through the view once.

    Distinct requests often coincide (the 1 % bin's comprehensiveness row is a
    leave-one-out row; short texts give the same top-k at several bins).
    """

    def __init__(self, view: ModelView, ids: np.ndarray):
        self._view, self.ids = view, ids
        self._seen: dict[bytes, np.ndarray] = {}
        self.rows_run = 0

    def __call__(self, text: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """(M,) text positions and (M, T) keep-masks -> (M, C) float64 probabilities."""
        key = np.concatenate([text.astype("<i8")[:, None].view(np.uint8), np.packbits(keep, axis=1)], axis=1)
        uniq, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        keys = [u.tobytes() for u in uniq]
        todo = [j for j, kb in enumerate(keys) if kb not in self._seen]
        if todo:
            sel = first[todo]
            p = np.asarray(self._view.probs(self.ids[text[sel]], keep[sel]), dtype=np.float64)
            if p.ndim != 2 or len(p) != len(sel):
                raise ValueError(f"view.probs must return ({len(sel)}, n_classes) probabilities. Received: shape={p.shape}")
            self._seen.update(zip((keys[j] for j in todo), p))
            self.rows_run += len(todo)
        return np.stack([self._seen[kb] for kb in keys])[inverse.ravel()]


def leave_one_out(probs: _ProbCache, real: np.ndarray, full: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(N, T) drop in p(ŷ) when each real token alone is masked out; 0 at padding."""
    text, pos = np.nonzero(real)
    keep = real[text].copy()
    keep[np.arange(len(text)), pos] = False
    p = probs(text, keep)[np.arange(len(text)), pred[text]]
    out = np.zeros(real.shape)
    out[text, pos] = full[text, pred[text]] - p
    return out


def removal_probs(probs: _ProbCache, importance: Mapping[str, np.ndarray], real: np.ndarray,
                  k: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """p(·|x without top-k) and p(·|top-k only), each (B, N, C) per method, in one view call."""
    n_bins, n = k.shape
    tops = {m: ranks(s, real)[None, :, :] < k[:, :, None] for m, s in importance.items()}  # (B, N, T)
    keep = np.concatenate([np.concatenate([real[None] & ~top, top]) for top in tops.values()])
    text = np.tile(np.arange(n), len(keep))
    p = probs(text, keep.reshape(-1, real.shape[1])).reshape(len(tops), 2, n_bins, n, -1)
    return ({m: p[i, 0] for i, m in enumerate(tops)}, {m: p[i, 1] for i, m in enumerate(tops)})


# --------------------------------------------------------------------------- result


@dataclass
class FaithfulnessResult:
    """Everything :func:`evaluate` measured on N texts (arrays over the texts evaluated).

    Attributes:
        indices: (N,) positions of the texts in the ``ids`` given to :func:`evaluate`.
        ids: (N, T) token ids, 0 = padding. ``probs``: (N, C) p(·|x); ``pred``: (N,) ŷ.
        bins: the fractions; ``k``: (B, N) tokens removed/kept per bin and text.
        importance: method -> (N, T) scores (0 at padding).
        comp_probs / suff_probs: method -> (B, N, C) p(·|x without top-k) / p(·|top-k only).
        rationale: (N, T) bool or None.
    """

    indices: np.ndarray
    ids: np.ndarray
    probs: np.ndarray
    pred: np.ndarray
    bins: tuple[float, ...]
    k: np.ndarray
    importance: dict[str, np.ndarray]
    comp_probs: dict[str, np.ndarray]
    suff_probs: dict[str, np.ndarray]
    rationale: np.ndarray | None = None
    seed: int = 0
    n_requested: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def real(self) -> np.ndarray:
        return self.ids != PAD_ID

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.importance)

    def deltas(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        """(B, N) comprehensiveness and sufficiency of ``method`` per bin and text."""
        rows = np.arange(len(self.pred))
        base = self.probs[rows, self.pred]
        return (base - self.comp_probs[method][:, rows, self.pred], base - self.suff_probs[method][:, rows, self.pred])

    def _agreement(self, method: str) -> tuple[dict[str, float | None], dict[str, Any]]:
        values: dict[str, float | None] = {}
        counts: dict[str, Any] = {}
        for measure, ref in REFERENCES.items():
            if ref == method or ref not in self.importance:
                continue
            tau, c = kendall_tau(self.importance[method], self.importance[ref], self.real)
            values[measure] = float(np.nanmean(tau)) if np.isfinite(tau).any() else None
            counts[measure] = {"n_scored": int(np.isfinite(tau).sum()), **c}
        if self.rationale is not None:
            ap, scored = rationale_ap(self.importance[method], self.rationale, self.real)
            values["ap_rationale"] = float(np.nanmean(ap)) if scored else None
            counts["ap_rationale"] = {"n_scored": scored}
        return values, counts

    @cached_property
    def summary(self) -> dict[str, dict[str, Any]]:
        """method -> measures (None where undefined), per-bin curves and counts."""
        out = {}
        for m in self.methods:
            comp, suff = self.deltas(m)
            values, counts = self._agreement(m)
            out[m] = {"comprehensiveness": float(comp.mean()), "sufficiency": float(suff.mean()), **values,
                      "curves": {"comprehensiveness": comp.mean(axis=1).tolist(),
                                 "sufficiency": suff.mean(axis=1).tolist()},
                      "counts": counts}
        return out

    def metrics(self) -> dict[str, float]:
        """Flat ``faith/<method>/<measure>`` -> finite float (undefined measures left out)."""
        return {f"{PREFIX}/{m}/{name}": float(v) for m, s in self.summary.items() for name, v in s.items()
                if isinstance(v, float) and math.isfinite(v)}

    def to_json(self) -> dict[str, Any]:
        """The ``faithfulness.json`` body: JSON-able measures, curves, sizes, seed and protocol."""
        return {
            "n": int(len(self.pred)), "n_requested": self.n_requested, "seed": int(self.seed),
            "bins": list(self.bins), "mean_k": self.k.mean(axis=1).tolist(),
            "mean_real_tokens": float(self.real.sum(axis=1).mean()) if len(self.pred) else 0.0,
            "counts": dict(self.counts), "methods": self.summary, "metrics": self.metrics(),
            "indices": self.indices.tolist(), "protocol": PROTOCOL,
        }


# --------------------------------------------------------------------------- evaluate


def _given_scores(given: Mapping[str, Any], ids: np.ndarray, sel: np.ndarray) -> dict[str, np.ndarray]:
    """Given methods on the selected rows: an (N, T) array is indexed, a callable is called
    on the selected ids (so e.g. attention maps are computed for the sample only)."""
    clash = set(given) & set(COMPUTED)
    if clash:
        raise ValueError(f"extra methods must not reuse a computed method's name. Received: {sorted(clash)}")
    out = {}
    for m, s in given.items():
        if callable(s):
            out[m] = _check_scores(m, s(ids[sel]), (len(sel), ids.shape[1]))
        else:
            out[m] = _check_scores(m, s, ids.shape)[sel]
    return out


def _computed_importance(view: ModelView, probs: _ProbCache, real: np.ndarray, full: np.ndarray,
                         pred: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The ``gradient``, ``loo`` and ``random`` scores (N, T), 0 at padding."""
    grad = _check_scores("gradient (from the view)", view.grad_input(probs.ids, pred), real.shape)
    return {"gradient": grad * real, "loo": leave_one_out(probs, real, full, pred),
            "random": random_scores(real.shape, seed) * real}


def evaluate(
    view: ModelView,
    ids: Any,
    attention: Any,
    *,
    rationale: Any = None,
    n: int | None = None,
    seed: int = 0,
    bins: Sequence[float] = BINS,
    extra: Mapping[str, Any] | None = None,
) -> FaithfulnessResult:
    """Faithfulness of ``attention``, ``gradient``, ``loo`` and ``random`` importances.

    Args:
        view: the model (:class:`ModelView`).
        ids: (N, T) token ids, 0 = padding, as the model's vectorizer gives them.
        attention: (N, T) attention importance per token (e.g. ``token_importance``), or a
            callable mapping the sampled (n, T) ids to it (e.g. ``KerasView.attention``).
        rationale: optional (N, T) 0/1 array or N per-token 0/1 sequences (whitespace token
            positions; cut or zero-padded to T) for ``ap_rationale``.
        n: evaluate a seeded sample of ``n`` texts (:func:`subset_indices`); None = all.
        seed: seeds the sample and the ``random`` method.
        bins: fractions of real tokens removed/kept (AOPC over them).
        extra: more methods, name -> (N, T) scores or callable like ``attention``.

    Returns:
        A :class:`FaithfulnessResult`. Texts without a real token are dropped (counted).
    """
    ids, bins, seed = _check_ids(ids), check_bins(bins), checks.non_negative_int("seed", seed)
    rat = rationale_mask(rationale, ids.shape) if rationale is not None else None
    n_total = len(ids)
    drawn = subset_indices(n_total, n, seed)
    sel = drawn[(ids[drawn] != PAD_ID).any(axis=1)]  # a text with no real token has nothing to rank
    given = _given_scores({"attention": attention, **dict(extra or {})}, ids, sel)
    ids, rat, real = ids[sel], (rat[sel] if rat is not None else None), ids[sel] != PAD_ID
    probs = _ProbCache(view, ids)
    full = probs(np.arange(len(ids)), real)
    pred = full.argmax(axis=1)
    importance = {**{m: s * real for m, s in given.items()}, **_computed_importance(view, probs, real, full, pred, seed)}
    k = bin_sizes(real.sum(axis=1), bins)
    comp, suff = removal_probs(probs, importance, real, k)
    counts = {"n_available": n_total, "n_empty_dropped": len(drawn) - len(sel), "model_rows": probs.rows_run}
    return FaithfulnessResult(indices=sel, ids=ids, probs=full, pred=pred, bins=bins, k=k,
                              importance=importance, comp_probs=comp, suff_probs=suff, rationale=rat,
                              seed=seed, n_requested=n, counts=counts)


# --------------------------------------------------------------------------- ERASER export


def _spans(positions: np.ndarray) -> list[dict[str, int]]:
    """Sorted token positions -> ERASER spans ``{"start_token", "end_token"}`` (end exclusive)."""
    spans: list[dict[str, int]] = []
    for p in np.sort(positions).tolist():
        if spans and spans[-1]["end_token"] == p:
            spans[-1]["end_token"] = p + 1
        else:
            spans.append({"start_token": p, "end_token": p + 1})
    return spans


def _scores_dict(probs: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    return {str(c): float(p) for c, p in zip(classes, probs)}


def eraser_records(result: FaithfulnessResult, method: str, classes: Sequence[str], *,
                   threshold: float = 0.1, split: str = "val") -> list[dict[str, Any]]:
    """ERASER results records (``rationale_benchmark/metrics.py --results``) for one method.

    Documents are the texts' real tokens (doc token j = j-th real token), one document per
    text, ``docid`` = annotation id = ``f"{split}_{index}"`` (index into the texts given to
    :func:`evaluate`). Soft predictions are the method's scores; hard predictions, and the
    top-level comprehensiveness/sufficiency scores, use the top-k at ``threshold`` (one of
    the bins); ``thresholded_scores`` hold every bin.
    """
    if method not in result.importance:
        raise ValueError(f"method must be one of {list(result.methods)}. Received: method={method!r}")
    if threshold not in result.bins:
        raise ValueError(f"threshold must be one of the bins {list(result.bins)}. Received: threshold={threshold!r}")
    if len(classes) != result.probs.shape[1]:
        raise ValueError(f"classes must name the {result.probs.shape[1]} classes. Received: classes={list(classes)}")
    b = result.bins.index(threshold)
    top = ranks(result.importance[method], result.real) < result.k[:, :, None]  # (B, N, T)
    comp, suff = result.comp_probs[method], result.suff_probs[method]
    records = []
    for i, index in enumerate(result.indices.tolist()):
        doc_id, real = f"{split}_{index}", result.real[i]
        hard = np.flatnonzero(top[b, i][real])  # positions among the real tokens
        records.append({
            "annotation_id": doc_id,
            "rationales": [{"docid": doc_id, "hard_rationale_predictions": _spans(hard),
                            "soft_rationale_predictions": result.importance[method][i][real].tolist()}],
            "classification": str(classes[result.pred[i]]),
            "classification_scores": _scores_dict(result.probs[i], classes),
            "comprehensiveness_classification_scores": _scores_dict(comp[b, i], classes),
            "sufficiency_classification_scores": _scores_dict(suff[b, i], classes),
            "thresholded_scores": [{"threshold": f, "comprehensiveness_classification_scores": _scores_dict(comp[j, i], classes),
                                    "sufficiency_classification_scores": _scores_dict(suff[j, i], classes)}
                                   for j, f in enumerate(result.bins)],
        })
    return records


def eraser_annotations(result: FaithfulnessResult, tokens: Sequence[Sequence[str]], labels: Sequence[int],
                       classes: Sequence[str], *, split: str = "val") -> tuple[dict[str, str], list[dict[str, Any]]]:
    """ERASER's data side for the evaluated texts: documents (docid -> one line of tokens) and
    annotation records (true class; the rationale, if any, as evidence spans).

    ``tokens`` and ``labels`` are per text given to :func:`evaluate` (indexed by
    ``result.indices``); ``tokens[i]`` must list the text's real tokens (e.g.
    :func:`attnlab.analysis.tokens_for`).
    """
    docs, annotations = {}, []
    for i, index in enumerate(result.indices.tolist()):
        doc_id, toks, real = f"{split}_{index}", [str(t) for t in tokens[index]], result.real[i]
        if len(toks) != int(real.sum()) or any(not t or any(c.isspace() for c in t) for t in toks):
            raise ValueError(f"tokens[{index}] must be the text's {int(real.sum())} real tokens, each non-empty "
                             f"without whitespace. Received: {toks!r}")
        docs[doc_id] = " ".join(toks)
        spans = _spans(np.flatnonzero(result.rationale[i][real])) if result.rationale is not None else []
        evidences = [[{"text": " ".join(toks[s["start_token"]:s["end_token"]]), "docid": doc_id, **s,
                       "start_sentence": 0, "end_sentence": 1} for s in spans]] if spans else []
        annotations.append({"annotation_id": doc_id, "query": "", "evidences": evidences,
                            "classification": str(classes[int(labels[index])]), "docids": [doc_id],
                            "query_type": None})
    return docs, annotations


def _write_jsonl(path: Any, records: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")


def write_eraser(result: FaithfulnessResult, directory: Any, tokens: Sequence[Sequence[str]],
                 labels: Sequence[int], classes: Sequence[str], *, methods: Sequence[str] | None = None,
                 threshold: float = 0.1, split: str = "val", force: bool = False) -> dict[str, Any]:
    """Write the files ERASER's ``rationale_benchmark/metrics.py`` reads:
    ``data/docs/<docid>``, ``data/<split>.jsonl`` (annotations) and ``results/<method>.jsonl``;
    then ``python rationale_benchmark/metrics.py --data_dir <dir>/data --split <split>
    --results <dir>/results/<method>.jsonl --aopc_thresholds <bins>`` scores one method.

    Returns:
        name -> path (``data``, ``annotations`` and one entry per method).
    """
    root = Path(directory)
    if root.exists() and any(root.iterdir()) and not force:
        raise FileExistsError(f"{root} is not empty; pass force=True to overwrite. Received: directory={str(root)!r}")
    docs, annotations = eraser_annotations(result, tokens, labels, classes, split=split)
    (root / "data" / "docs").mkdir(parents=True, exist_ok=True)
    (root / "results").mkdir(exist_ok=True)
    for doc_id, line in docs.items():
        (root / "data" / "docs" / doc_id).write_text(line + "\n", encoding="utf-8")
    paths: dict[str, Any] = {"data": root / "data", "annotations": root / "data" / f"{split}.jsonl"}
    _write_jsonl(paths["annotations"], annotations)
    for m in methods or result.methods:
        paths[m] = root / "results" / f"{m}.jsonl"
        _write_jsonl(paths[m], eraser_records(result, m, classes, threshold=threshold, split=split))
    return paths
