"""Exact Poisson counts for a batch of diffraction patterns, fast at every dose.

The pixels of a pattern are independent Poisson variables with means lambda_i. Two exact ways to
draw them:

- direct: one Poisson draw per pixel (numpy's rng.poisson: multiplication for lambda < 10, PTRS
  above), ~40-100 ns per pixel whatever the dose.
- splitting: a set S of independent Poisson pixels is one Poisson process. Lay the pixels'
  lambdas end to end on [0, Lambda_S) and draw the arrivals of a unit-rate Poisson process on
  that interval (cumulative sums of Exp(1) spacings): the number of arrivals inside pixel i's
  interval is exactly Poisson(lambda_i), independent of the other pixels. Equivalently: the
  total is Poisson(Lambda_S) and, given the total, each photon lands on pixel i with probability
  lambda_i / Lambda_S (multinomial). It costs one exponential per *photon* plus a compare per
  pixel, far below per-pixel draws where lambda is small.

``auto`` (the default) treats each pixel by its lambda, in one pass over the pattern: lambda >=
AUTO_THRESHOLD by a direct draw, the dim remainder by splitting. Every pixel is still exactly
Poisson and independent of the others; the rule depends only on lambda, so results are
deterministic.
``direct`` is threshold 0 (no splitting; it draws exactly ``rng.poisson(lam)``), ``split`` is
threshold inf (no direct draws).

One stream, consumed in a fixed order: a vectorised rng.poisson over the direct pixels, then the
exponential spacings of the split pixels (pattern by pattern, pixel by pixel), drawn in blocks.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: lambda at or above which ``auto`` draws a pixel directly: about the ratio of the cost of one
#: direct draw to the cost of one photon of splitting (bench/bench_ptycho.py measures both)
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
def _prepare(intensity, scale2, threshold, out):  # pragma: no cover - numba
    # lambdas of the direct pixels into `out` (pattern by pattern, pixel by pixel); returns their
    # number and the total lambda of the split pixels (it sizes the block of exponentials)
    k = 0
    dim = 0.0
    for b in range(intensity.shape[0]):
        for i in range(intensity.shape[1]):
            lam = float(intensity[b, i]) * scale2
            if lam >= threshold:
                out[k] = lam
                k += 1
            else:
                dim += lam
    return k, dim


@numba.njit(cache=True, nogil=True)
def _assemble(intensity, scale2, threshold, bright, spacings, b0, j0, amplitude, photons):
    # pragma: no cover - numba
    # Patterns from b0 on; direct counts from bright[j0:], exponential spacings from
    # spacings[0:]. If the spacings run out inside pattern b, returns (b, j, e) as they were
    # when b started (the caller extends the spacings from e and calls again: pattern b then
    # reads exactly the same spacings, plus more). Returns (n_patterns, j, e) when done.
    inv_scale = 1.0 / math.sqrt(scale2)
    n_sp = spacings.shape[0]
    npix = intensity.shape[1]
    j = j0
    e = 0
    for b in range(b0, intensity.shape[0]):
        jb, eb = j, e
        if e >= n_sp:
            return b, jb, eb
        # next arrival of the unit-rate Poisson process laid over the split pixels' lambdas
        t = spacings[e]
        e += 1
        c = 0.0
        total = 0
        row = intensity[b]
        out = amplitude[b]
        for i in range(npix):
            lam = float(row[i]) * scale2
            if lam >= threshold:
                k = bright[j]
                j += 1
                total += k
                out[i] = np.float32(math.sqrt(float(k)) * inv_scale)
            else:
                c += lam
                if t < c:
                    k = 0
                    while t < c:
                        k += 1
                        if e >= n_sp:
                            return b, jb, eb
                        t += spacings[e]
                        e += 1
                    total += k
                    out[i] = np.float32(math.sqrt(float(k)) * inv_scale)
                else:
                    out[i] = 0.0
        photons[b] = total
    return intensity.shape[0], j, e


def sample_amplitudes(
    intensity: np.ndarray,
    scale2: float,
    rng: np.random.Generator,
    method: str = "auto",
    _spare: float = 6.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts with means ``scale2 * intensity``, stored as PtychoPINN stores them.

    ``intensity``: (B, ...) >= 0, float32 or float64, one pattern per row. Returns
    (amplitude = sqrt(counts) / sqrt(scale2) as float32, same shape; photons per pattern, int64).

    Draw order, fixed: one vectorised ``rng.poisson`` over the direct pixels (pattern by pattern,
    pixel by pixel: ``direct`` is exactly ``rng.poisson(scale2 * intensity)``), then the
    exponential spacings of the split pixels, consumed in the same order. They are drawn as a
    block sized to the expected need plus ``_spare`` standard deviations and extended when a
    pattern runs short; a pattern that ran short is redone with the same spacings plus the new
    ones, so the result does not depend on the block size. Same rng state and method, same result.
    """
    if not (scale2 > 0 and math.isfinite(scale2)):
        raise ValueError(f"scale2 must be finite and > 0, got {scale2}")
    flat = np.ascontiguousarray(intensity).reshape(len(intensity), -1)
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    scale2 = float(scale2)
    threshold = threshold_for(method)
    n_pat = len(flat)
    lam = np.empty(flat.size, np.float64)  # pages are touched only as far as they are filled
    n_bright, dim = _prepare(flat, scale2, threshold, lam)
    bright = rng.poisson(lam[:n_bright]).astype(np.int64, copy=False)
    amp = np.empty(flat.shape, np.float32)
    photons = np.empty(n_pat, np.int64)
    need = dim + n_pat  # one spacing per photon plus the first arrival of every pattern
    spacings = rng.standard_exponential(max(int(need + _spare * math.sqrt(need)), 1))
    b, j = 0, 0
    while True:
        b, j, e = _assemble(flat, scale2, threshold, bright, spacings, b, j, amp, photons)
        if b == n_pat:
            return amp.reshape(intensity.shape), photons
        more = rng.standard_exponential(len(spacings) + 64)
        spacings = np.concatenate([spacings[e:], more])


def counts_from_amplitudes(amplitude: np.ndarray, scale: float) -> np.ndarray:
    """Undo the storage: counts = round((amplitude * scale)**2) as int64. Exact while a pixel
    holds fewer than ~1e6 photons (float32 keeps 24 bits of the amplitude)."""
    return np.rint((amplitude.astype(np.float64) * scale) ** 2).astype(np.int64)
