"""Exact Poisson counts for a batch of diffraction patterns, fast at every dose.

Pixels of a pattern are independent Poisson variables with means lambda_i. Two exact ways to
draw them:

- direct: numpy's Poisson sampler per pixel (PTRS for lambda >= 10, multiplication below): a
  roughly constant cost per pixel, whatever the dose.
- splitting: a set S of independent Poisson pixels is one Poisson process: draw the set's total
  K ~ Poisson(sum_S lambda), then place the K photons independently with probability
  lambda_i / sum_S lambda (multinomial). That is the same joint law, and it costs per *photon*,
  not per pixel. Photons are placed in one pass: K sorted uniforms from K + 1 exponential
  spacings (order statistics of uniforms), walked against the running sum of lambda.

``auto`` splits each pattern's pixels at lambda = AUTO_THRESHOLD: bright pixels by the direct
sampler (one draw each), the dim remainder by splitting (one draw per photon). Every pixel is
still exactly Poisson and independent of the others; the rule depends only on lambda, so the
result is deterministic. ``direct`` is threshold 0 (no splitting), ``split`` is threshold inf.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: lambda at or above which ``auto`` draws a pixel directly. Near the cost ratio of one numpy
#: Poisson draw to one photon of splitting (bench/bench_ptycho.py measures both).
AUTO_THRESHOLD = 8.0

METHODS = ("auto", "direct", "split")


def threshold_for(method: str) -> float:
    """The lambda threshold implementing a sampler name."""
    if method == "auto":
        return AUTO_THRESHOLD
    if method == "direct":
        return 0.0
    if method == "split":
        return math.inf
    raise ValueError(f"unknown Poisson sampler {method!r} (known: {', '.join(METHODS)})")


@numba.njit(cache=True, nogil=True)
def _dim_totals(lam, threshold, out):  # pragma: no cover - numba
    for b in range(lam.shape[0]):
        s = 0.0
        for i in range(lam.shape[1]):
            v = lam[b, i]
            if v < threshold and v > 0.0:
                s += v
        out[b] = s


@numba.njit(cache=True, nogil=True)
def _place_photons(lam, threshold, totals, k, spacings, counts):  # pragma: no cover - numba
    npix = lam.shape[1]
    off = 0
    for b in range(lam.shape[0]):
        kb = k[b]
        if kb == 0:
            continue
        norm = 0.0
        for q in range(kb + 1):
            norm += spacings[off + q]
        step = totals[b] / norm
        t = 0.0
        c = 0.0  # running sum of dim lambda through pixel `cur`, accumulated as in _dim_totals
        i = 0
        cur = -1
        for q in range(kb):
            t += spacings[off + q]
            target = t * step  # the q-th smallest of kb uniforms on [0, totals[b])
            while c <= target and i < npix:
                v = lam[b, i]
                if v < threshold and v > 0.0:
                    c += v
                    cur = i
                i += 1
            # a target rounding up to the total lands on the last dim pixel: probability ~1e-16
            counts[b, cur] += 1
        off += kb + 1


def poisson_counts(
    lam: np.ndarray, rng: np.random.Generator, method: str = "auto"
) -> np.ndarray:
    """Independent Poisson counts with means ``lam`` (B, P) float64 >= 0 -> (B, P) int64.

    Draws, in this order: direct pixels, per-pattern totals of the split pixels, exponential
    spacings. Deterministic for a given rng state and method."""
    lam = np.ascontiguousarray(lam, dtype=np.float64)
    threshold = threshold_for(method)
    counts = np.zeros(lam.shape, np.int64)
    if threshold <= 0.0:
        return rng.poisson(lam).astype(np.int64, copy=False)
    if math.isfinite(threshold):
        bright = lam >= threshold
        if bright.any():
            counts[bright] = rng.poisson(lam[bright])
    totals = np.empty(lam.shape[0], np.float64)
    _dim_totals(lam, threshold, totals)
    k = rng.poisson(totals).astype(np.int64)
    n_spacings = int(k.sum() + np.count_nonzero(k))
    if n_spacings:
        spacings = rng.standard_exponential(n_spacings)
        _place_photons(lam, threshold, totals, k, spacings, counts)
    return counts
