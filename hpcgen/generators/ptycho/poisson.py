"""Exact Poisson counts for a batch of diffraction patterns, fast at every dose.

The pixels of a pattern are independent Poisson variables with means lambda_i (photons). Three
exact ways to draw one, chosen per pixel by its lambda (``auto``, the default):

- lambda >= TABLE_MAX (64): PTRS, Hörmann's transformed rejection with squeeze (W. Hörmann, "The
  transformed rejection method for generating Poisson random variables", Insurance: Mathematics
  and Economics 12, 1993; numpy's algorithm for lambda >= 10, valid there). An attempt takes two
  uniforms; 65-90 % pass a cheap test, the rest take the exact test with log-factorials.
- TABLE_MIN (1) <= lambda < TABLE_MAX: Poisson(lambda) = Poisson(m) + Poisson(lambda - m)
  (independent, m = floor(lambda)). Poisson(m) by inversion of a precomputed CDF table (one
  uniform, a guide-table lookup, a step or two); the remainder (mean < 1) joins the split pixels.
- lambda < TABLE_MIN, and remainders: splitting. Independent Poisson pixels form one Poisson
  process: lay their lambdas end to end on [0, Lambda) and draw the arrivals of a unit-rate
  Poisson process (cumulative sums of Exp(1) spacings); the number of arrivals inside pixel i's
  interval is exactly Poisson(lambda_i), independent of the other pixels. One exponential per
  *photon*, none per empty pixel.

``split`` splits every pixel (reference for the tables and PTRS). ``direct`` is numpy's own
per-pixel sampler, exactly ``rng.poisson(lambda)``: the reference (its speed against ``auto``:
docs/benchmarks.md, "ptycho").

Random numbers come from the caller's numpy Generator, drawn inside the numba kernel (numba calls
the same bit generator, so the stream is the one numpy would produce), in a fixed order, pattern
by pattern: one uniform per table pixel, two per PTRS pixel, the uniforms of the PTRS attempts
that needed more, then the exponential spacings. Same rng state and method, same result; drawing
a batch in pieces with one rng equals drawing it at once.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from hpcgen.kernel_cache import njit

#: lambda (photons) at or above which ``auto`` draws a pixel by table inversion: the pixel is
#: Poisson(m) + Poisson(lambda - m), m = floor(lambda), the first by inversion of a precomputed
#: CDF table, the second (mean < 1) by splitting
TABLE_MIN = 1.0
#: integer means m < TABLE_MAX have a table; lambda >= TABLE_MAX is drawn by PTRS (valid >= 10)
TABLE_MAX = 64

#: log(k!) for k < LOGFACT_SIZE, a lookup in PTRS's exact test (math.lgamma beyond)
LOGFACT_SIZE = 1024
_LOGFACT = np.array([math.lgamma(k + 1.0) for k in range(LOGFACT_SIZE)])

METHODS = ("auto", "direct", "split")


def thresholds_for(method: str) -> tuple[float, float]:
    """(table_min, ptrs_min): the lambdas (photons) at or above which ``method`` draws a pixel by
    table inversion and by PTRS in the kernel; pixels below table_min are split."""
    if method == "auto":
        return TABLE_MIN, float(TABLE_MAX)
    if method == "split":
        return math.inf, math.inf
    if method == "direct":
        return 0.0, 0.0  # numpy's rng.poisson for every pixel (not the kernel)
    raise ValueError(f"unknown Poisson sampler {method!r} (known: {', '.join(METHODS)})")


@functools.cache
def inversion_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CDF tables of Poisson(m) for the integer means m in [1, TABLE_MAX), built once a process
    (~8,900 entries, ~0.1 MB).

    Returns (start, cdf, guide): table m is cdf[start[m]:start[m + 1]] = P(X <= k) for k = 0 ..
    L - 1, L = m + 13 sqrt(m) + 40 (the mass above is < 1e-30, far below the 2^-53 resolution of
    a uniform double, and the last entry is set to 1); guide[start[m] + g] = the smallest k with
    cdf > g / L, where the search for u in [g / L, (g + 1) / L) starts.
    """
    from scipy.special import pdtr  # Poisson CDF (regularised incomplete gamma)

    sizes = [0] + [int(m + 13 * math.sqrt(m) + 40) for m in range(1, TABLE_MAX)]
    start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cdf = np.empty(start[-1], np.float64)
    guide = np.empty(start[-1], np.int32)
    for m in range(1, TABLE_MAX):
        k = np.arange(sizes[m])
        table = pdtr(k, float(m))
        table[-1] = 1.0
        cdf[start[m] : start[m + 1]] = table
        guide[start[m] : start[m + 1]] = np.searchsorted(table, k / sizes[m], side="right")
    return start, cdf, guide


# --- PTRS (lambda >= TABLE_MAX) -------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _ptrs_shape(lam):  # pragma: no cover - numba
    # (a, b, vr) of Hörmann's PTRS for mean lam
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    vr = 0.9277 - 3.6224 / (b - 2.0)
    return a, b, vr


@njit(cache=True, nogil=True)
def _ptrs_exact_accept(lam, a, b, u, v, k):  # pragma: no cover - numba
    # the exact acceptance test of an attempt (u in [-0.5, 0.5), v in [0, 1), candidate k) that
    # failed the quick one
    us = 0.5 - abs(u)
    if k < 0.0 or (us < 0.013 and v > us):
        return False
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    lhs = math.log(v * inv_alpha / (a / (us * us) + b)) if v > 0.0 else -math.inf
    logfact = _LOGFACT[int(k)] if k < LOGFACT_SIZE else math.lgamma(k + 1.0)
    return lhs <= -lam + k * math.log(lam) - logfact


@njit(cache=True, nogil=True)
def _ptrs_finish(rng, lam, u, v):  # pragma: no cover - numba
    # PTRS count for mean lam whose first attempt (u - 0.5, v) failed the quick test: finish that
    # attempt with the exact test, then draw new attempts from rng until one is accepted
    a, b, vr = _ptrs_shape(lam)
    while True:
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43) if us > 0.0 else -1.0
        if (us >= 0.07 and v <= vr) or _ptrs_exact_accept(lam, a, b, u, v, k):
            return k
        u = rng.random() - 0.5
        v = rng.random()


# --- the kernel -----------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _sample(
    intensity, scale2, table_min, ptrs_min, tab_start, tab_cdf, tab_guide, rng, amplitude, photons
):  # pragma: no cover - numba
    # intensity (B, P) float32/64; amplitude (B, P) float32 out; photons (B,) int64 out
    npix = intensity.shape[1]
    inv_scale = 1.0 / math.sqrt(scale2)
    ends = np.empty(npix + 1, np.float64)  # split interval of pixel i: [ends[i - 1], ends[i])
    ends[npix] = math.inf  # sentinel: no arrival lies beyond it
    counts = np.empty(npix, np.float64)  # photons per pixel
    tab_i = np.empty(npix, np.int64)  # table pixels: index, integer mean
    tab_m = np.empty(npix, np.int64)
    idx = np.empty(npix, np.int64)  # PTRS pixels: index, lambda, 2 uniforms, first candidate
    lam_b = np.empty(npix, np.float64)
    uv = np.empty(2 * npix, np.float64)
    kf = np.empty(npix, np.float64)
    quick = np.empty(npix, np.bool_)
    for p in range(intensity.shape[0]):
        row = intensity[p]
        out = amplitude[p]
        # classify; the split part of each pixel's lambda laid end to end
        nt = 0
        nb = 0
        c = 0.0
        for i in range(npix):
            lam = float(row[i]) * scale2
            if lam >= ptrs_min:
                idx[nb] = i
                lam_b[nb] = lam
                nb += 1
            elif lam >= table_min:
                m = int(lam)
                tab_i[nt] = i
                tab_m[nt] = m
                nt += 1
                c += lam - m
            else:
                c += lam
            ends[i] = c
            counts[i] = 0.0
            out[i] = 0.0
        total = 0
        # table pixels: Poisson(m) by inversion, k = min{k: cdf_m(k) > u}, searched from the guide
        for j in range(nt):
            u = rng.random()
            s0 = tab_start[tab_m[j]]
            size = tab_start[tab_m[j] + 1] - s0
            k = tab_guide[s0 + int(u * size)]
            while tab_cdf[s0 + k] <= u:
                k += 1
            counts[tab_i[j]] = k
            out[tab_i[j]] = np.float32(math.sqrt(k) * inv_scale)
            total += k
        # PTRS pixels: one attempt each from two uniforms (a branch-free loop), then the few
        # that failed the quick test are finished one by one
        for j in range(2 * nb):
            uv[j] = rng.random()
        for j in range(nb):
            a, b, vr = _ptrs_shape(lam_b[j])
            u = uv[2 * j] - 0.5
            us = 0.5 - abs(u)
            kf[j] = math.floor((2.0 * a / us + b) * u + lam_b[j] + 0.43)
            quick[j] = (us >= 0.07) & (uv[2 * j + 1] <= vr)
        for j in range(nb):
            if not quick[j]:
                kf[j] = _ptrs_finish(rng, lam_b[j], uv[2 * j] - 0.5, uv[2 * j + 1])
            counts[idx[j]] = kf[j]
            out[idx[j]] = np.float32(math.sqrt(kf[j]) * inv_scale)
            total += int(kf[j])
        # split parts: arrivals t of a unit-rate Poisson process on [0, c); each lands in the
        # pixel whose interval holds it
        t = rng.standard_exponential()
        i = 0
        while t < c:
            while ends[i] <= t:
                i += 1
            counts[i] += 1.0
            out[i] = np.float32(math.sqrt(counts[i]) * inv_scale)
            total += 1
            t += rng.standard_exponential()
        photons[p] = total


def sample_into(
    intensity: np.ndarray,
    scale2: float,
    rng: np.random.Generator,
    method: str,
    amplitude: np.ndarray,
    photons: np.ndarray,
) -> None:
    """Poisson counts with means ``scale2 * intensity``, written as PtychoPINN stores them.

    ``intensity``: (B, ...) >= 0, float32 or float64, one pattern per row (normalised
    intensity); ``scale2``: photons per unit of intensity. Writes ``amplitude`` (float32, same
    shape as ``intensity``) = sqrt(counts) / sqrt(scale2) and ``photons`` (int64, (B,)) = counts
    per pattern.

    ``method``: "auto" (splitting, table inversion or PTRS by lambda), "split", or "direct"
    (exactly ``rng.poisson(scale2 * intensity)``). Patterns are drawn one after the other from
    ``rng``: same rng state and method, same result, and drawing a batch in pieces (in order,
    with the same rng) gives the same result as drawing it at once.
    """
    if not (scale2 > 0 and math.isfinite(scale2)):
        raise ValueError(f"scale2 must be finite and > 0, got {scale2}")
    table_min, ptrs_min = thresholds_for(method)
    n_pat = len(intensity)
    flat = np.ascontiguousarray(intensity).reshape(n_pat, -1)
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    if not (
        amplitude.dtype == np.float32
        and amplitude.flags.c_contiguous
        and amplitude.shape == np.shape(intensity)
    ):
        raise ValueError("amplitude must be a C-contiguous float32 array shaped like intensity")
    out = amplitude.reshape(n_pat, -1)  # a view
    if photons.shape != (n_pat,) or photons.dtype != np.int64:
        raise ValueError("photons must be an int64 array of one entry per pattern")
    scale2 = float(scale2)
    if method == "direct":
        counts = rng.poisson(flat.astype(np.float64) * scale2)
        out[:] = np.sqrt(counts) * (1.0 / math.sqrt(scale2))
        photons[:] = counts.sum(axis=1)
        return
    start, cdf, guide = inversion_tables()
    _sample(flat, scale2, table_min, ptrs_min, start, cdf, guide, rng, out, photons)


def sample_amplitudes(
    intensity: np.ndarray,
    scale2: float,
    rng: np.random.Generator,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_into` with new output arrays: (amplitude float32 shaped like
    ``intensity``, photons per pattern int64)."""
    amplitude = np.empty(np.shape(intensity), np.float32)
    photons = np.empty(len(intensity), np.int64)
    sample_into(intensity, scale2, rng, method, amplitude, photons)
    return amplitude, photons


def counts_from_amplitudes(amplitude: np.ndarray, scale: float) -> np.ndarray:
    """Undo the storage: counts = round((amplitude * scale)**2) as int64. Exact while a pixel
    holds fewer than ~1e6 photons (float32 keeps 24 bits of the amplitude)."""
    return np.rint((amplitude.astype(np.float64) * scale) ** 2).astype(np.int64)
