"""Exact Poisson counts for a batch of diffraction patterns, fast at every dose.

The pixels of a pattern are independent Poisson variables with means lambda_i. Two exact ways to
draw them:

- direct: a Poisson draw per pixel (numpy's algorithms: multiplication for lambda < 10, PTRS
  above): a roughly constant ~50-100 ns per pixel, whatever the dose.
- splitting: a set S of independent Poisson pixels is one Poisson process. Lay the pixels'
  lambdas end to end on [0, Lambda_S) and draw the arrival times of a unit-rate Poisson process
  on that interval (cumulative sums of Exp(1) spacings); the number of arrivals inside pixel i's
  interval is exactly Poisson(lambda_i), independent of the others. Equivalently: the total is
  Poisson(Lambda_S) and, given the total, photons land on pixel i with probability
  lambda_i / Lambda_S (multinomial). It costs one exponential per *photon* plus a compare per
  pixel, so it is far cheaper than per-pixel draws where lambda is small.

``auto`` (the default) treats each pixel by its lambda: lambda >= AUTO_THRESHOLD by a direct
draw, the dim remainder by splitting, in one pass over the pattern. Every pixel is still exactly
Poisson and independent; the rule depends only on lambda, so results are deterministic.
``direct`` is threshold 0 (no splitting), ``split`` threshold inf (no direct draws).

Random numbers come from the numpy Generator handed in (numba runs numpy's own algorithms on
its bit generator, so ``direct`` gives exactly ``rng.poisson(lam)``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: lambda at or above which ``auto`` draws a pixel directly: the ratio of the cost of one direct
#: draw to the cost of one photon of splitting (bench/bench_ptycho.py --sampler-costs measures it)
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


@numba.njit(cache=True)
def _sample(intensity, scale2, threshold, rng, amplitude, photons):  # pragma: no cover - numba
    inv_scale = 1.0 / math.sqrt(scale2)
    for b in range(intensity.shape[0]):
        # next arrival of the unit-rate Poisson process laid over the dim pixels' lambdas
        t = rng.standard_exponential() if threshold > 0.0 else math.inf
        c = 0.0
        total = 0
        for i in range(intensity.shape[1]):
            lam = float(intensity[b, i]) * scale2
            if lam >= threshold:
                k = rng.poisson(lam)
            else:
                c += lam
                k = 0
                while t < c:
                    k += 1
                    t += rng.standard_exponential()
            total += k
            amplitude[b, i] = np.float32(math.sqrt(float(k)) * inv_scale)
        photons[b] = total


def sample_amplitudes(
    intensity: np.ndarray, scale2: float, rng: np.random.Generator, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts with means ``scale2 * intensity``, stored as PtychoPINN stores them.

    ``intensity``: (B, ...) >= 0, float32 or float64, one pattern per row. Returns
    (amplitude = sqrt(counts) / sqrt(scale2) as float32, same shape; photons per pattern, int64).
    The draw order is fixed (pattern by pattern, pixel by pixel), so a given rng state and method
    always give the same result."""
    if not (scale2 > 0 and math.isfinite(scale2)):
        raise ValueError(f"scale2 must be finite and > 0, got {scale2}")
    flat = np.ascontiguousarray(intensity).reshape(len(intensity), -1)
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    amp = np.empty(flat.shape, np.float32)
    photons = np.empty(len(flat), np.int64)
    _sample(flat, float(scale2), threshold_for(method), rng, amp, photons)
    return amp.reshape(intensity.shape), photons


def counts_from_amplitudes(amplitude: np.ndarray, scale: float) -> np.ndarray:
    """Undo the storage: counts = round((amplitude * scale)**2) as int64. Exact while a pixel
    holds fewer than ~1e6 photons (float32 keeps 24 bits of the amplitude)."""
    return np.rint((amplitude.astype(np.float64) * scale) ** 2).astype(np.int64)
