"""Exact Poisson counts for a batch of diffraction patterns, fast at every dose.

The pixels of a pattern are independent Poisson variables with means lambda_i (photons). Two
exact ways to draw them:

- per pixel: PTRS, Hörmann's transformed rejection with squeeze (W. Hörmann, "The transformed
  rejection method for generating Poisson random variables", Insurance: Mathematics and
  Economics 12, 1993; the algorithm numpy uses for lambda >= 10, valid there). One attempt takes
  two uniforms; ~90 % are accepted by a cheap test, the rest take the exact test with
  log-factorials. Cost ~15-40 ns a pixel, nearly independent of lambda.
- splitting: a set S of independent Poisson pixels is one Poisson process. Lay the pixels'
  lambdas end to end on [0, Lambda_S) and draw the arrivals of a unit-rate Poisson process on
  that interval (cumulative sums of Exp(1) spacings): the number of arrivals inside pixel i's
  interval is exactly Poisson(lambda_i), independent of the other pixels. Equivalently: the
  total is Poisson(Lambda_S) and, given the total, each photon lands on pixel i with probability
  lambda_i / Lambda_S (multinomial). It costs one exponential per *photon*; blocks of pixels
  without an arrival are skipped with one comparison.

``auto`` (the default) treats each pixel by its lambda: lambda >= AUTO_THRESHOLD by PTRS, the dim
remainder by splitting. Every pixel is still exactly Poisson and independent of the others; the
rule depends only on lambda, so results are deterministic. ``split`` splits every pixel
(threshold inf). ``direct`` is numpy's own per-pixel sampler, ``rng.poisson(lambda)``: the
reference (slow, ~40-100 ns a pixel whatever the dose).

Random numbers come from the caller's numpy Generator, drawn inside the numba kernel (numba
reads the same bit generator, so the stream is the one numpy would produce), in a fixed order:
pattern by pattern, first two uniforms per PTRS pixel (pixel order), then the uniforms of the
PTRS attempts that needed more (pixel order), then the exponential spacings of the split pixels.
Same rng state and method, same result; the rng is advanced past the draws used.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: lambda at or above which ``auto`` draws a pixel by PTRS (its domain of validity starts at 10;
#: splitting a pixel of lambda 10 costs ~10 exponentials, about one PTRS draw)
AUTO_THRESHOLD = 10.0

#: log(k!) for k < LOGFACT_SIZE, a lookup in PTRS's exact test (math.lgamma beyond)
LOGFACT_SIZE = 1024
_LOGFACT = np.array([math.lgamma(k + 1.0) for k in range(LOGFACT_SIZE)])

METHODS = ("auto", "direct", "split")


def threshold_for(method: str) -> float:
    """The lambda threshold (photons) at or above which ``method`` uses PTRS in the kernel."""
    if method == "auto":
        return AUTO_THRESHOLD
    if method == "split":
        return math.inf
    if method == "direct":
        return 0.0  # numpy's rng.poisson for every pixel (not the kernel)
    raise ValueError(f"unknown Poisson sampler {method!r} (known: {', '.join(METHODS)})")


# --- PTRS (lambda >= 10) --------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _ptrs_shape(lam):  # pragma: no cover - numba
    # (a, b, vr) of Hörmann's PTRS for mean lam
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    vr = 0.9277 - 3.6224 / (b - 2.0)
    return a, b, vr


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _sample(intensity, scale2, threshold, rng, amplitude, photons):  # pragma: no cover - numba
    # intensity (B, P) float32/64; amplitude (B, P) float32 out; photons (B,) int64 out
    npix = intensity.shape[1]
    inv_scale = 1.0 / math.sqrt(scale2)
    ends = np.empty(npix + 1, np.float64)  # split pixel i covers [ends[i - 1], ends[i])
    ends[npix] = math.inf  # sentinel: no arrival lies beyond it
    counts = np.empty(npix, np.float64)  # arrivals per pixel
    idx = np.empty(npix, np.int64)  # PTRS pixels: index, lambda, 2 uniforms, first candidate
    lam_b = np.empty(npix, np.float64)
    uv = np.empty(2 * npix, np.float64)
    kf = np.empty(npix, np.float64)
    quick = np.empty(npix, np.bool_)
    for p in range(intensity.shape[0]):
        row = intensity[p]
        out = amplitude[p]
        # split pixels' lambdas laid end to end (a PTRS pixel adds an empty interval)
        nb = 0
        c = 0.0
        for i in range(npix):
            lam = float(row[i]) * scale2
            if lam >= threshold:
                idx[nb] = i
                lam_b[nb] = lam
                nb += 1
            else:
                c += lam
            ends[i] = c
            counts[i] = 0.0
            out[i] = 0.0
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
        # split pixels: arrivals t of a unit-rate Poisson process on [0, c); each lands in the
        # pixel whose interval holds it
        total = 0
        t = rng.standard_exponential()
        i = 0
        while t < c:
            while ends[i] <= t:
                i += 1
            counts[i] += 1.0
            out[i] = np.float32(math.sqrt(counts[i]) * inv_scale)
            total += 1
            t += rng.standard_exponential()
        for j in range(nb):
            out[idx[j]] = np.float32(math.sqrt(kf[j]) * inv_scale)
            total += int(kf[j])
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

    ``method``: "auto" (PTRS where lambda >= AUTO_THRESHOLD, splitting below), "split", or
    "direct" (exactly ``rng.poisson(scale2 * intensity)``). Patterns are drawn one after the
    other from ``rng``: same rng state and method, same result, and drawing a batch in pieces
    (in order, with the same rng) gives the same result as drawing it at once.
    """
    if not (scale2 > 0 and math.isfinite(scale2)):
        raise ValueError(f"scale2 must be finite and > 0, got {scale2}")
    threshold = threshold_for(method)
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
    _sample(flat, scale2, threshold, rng, out, photons)


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
