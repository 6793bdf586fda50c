"""The per-step perturbations, twice: plain scipy.ndimage (the reference and benchmark baseline)
and a fast CPU path (numba + FFT) that computes the same maps to float32 rounding.

Semantics (both paths, one step, each perturbation followed by renormalising the total energy to
the step's input total ``ref``):

1. rotation by ``angle`` degrees about the map centre, cubic B-spline, periodic (scipy's
   ``rotate(order=3, mode="grid-wrap", reshape=False)``); spline overshoots below 0 are clipped;
2. thermal blur: Gaussian of ``sigma`` pixels, periodic (scipy's ``gaussian_filter(mode="wrap")``
   with its default truncation at 4 sigma);
3. translation: ``np.roll`` by integer pixels (a permutation: the total is unchanged exactly);
4. noise: ``+ amp * n`` with n ~ N(0, 1) drawn by the caller, clipped at 0.

Why the fast path is fast (256 x 256, one core): the spline prefilter is an exact periodic IIR
filter and the rotation a 4 x 4-tap gather (coordinates and weights vectorised a row at a time,
then the taps), both compiled with numba in float32 into reused buffers; the blur is scipy's
wrapped, truncated kernel applied separably with vectorised numba loops (or, for kernels wider
than 49 taps, one real FFT pair with that kernel's exact transfer function); translation, noise,
clipping and the sum are fused into one pass over contiguous row runs.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import scipy.fft as sfft
import scipy.ndimage as ndi

from hpcgen.kernel_cache import njit

#: pole of the cubic B-spline prefilter (Unser 1993) and its gain per axis
_Z = math.sqrt(3.0) - 2.0
_GAIN = -6.0 * _Z
#: |z|^40 ~ 1e-23: terms of the periodic initial sums beyond this are below float64 rounding
_INIT_TERMS = 40


# --- reference: plain scipy.ndimage, one frame ------------------------------------------------
def rotate_reference(e: np.ndarray, angle_deg: float) -> np.ndarray:
    """Cubic, periodic rotation; negative overshoots clipped at 0 (not renormalised)."""
    r = ndi.rotate(e, angle_deg, reshape=False, order=3, mode="grid-wrap", output=np.float32)
    return np.maximum(r, 0, out=r)


def blur_reference(e: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian blur (not renormalised)."""
    return ndi.gaussian_filter(e, sigma, mode="wrap", output=np.float32)


def translate(e: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """Periodic translation by whole pixels: an exact permutation of the map."""
    return np.roll(e, shift, axis=(-2, -1))


def add_noise(e: np.ndarray, noise: np.ndarray, amp: float) -> np.ndarray:
    """E + amp * noise, clipped at 0 (not renormalised)."""
    return np.maximum(e + np.float32(amp) * noise, 0).astype(np.float32, copy=False)


def renormalise(e: np.ndarray, target: float) -> np.ndarray:
    return (e * np.float32(target / e.sum(dtype=np.float64))).astype(np.float32, copy=False)


def step_reference(
    e: np.ndarray,
    angle_deg: float | None,
    blur_sigma: float,
    shift: tuple[int, int],
    noise: np.ndarray | None,
    amp: float,
    ref: float,
) -> np.ndarray:
    """One step with plain scipy.ndimage, renormalising to ``ref`` after each perturbation.
    ``angle_deg`` None: no rotation; ``blur_sigma`` 0: no blur; ``noise`` None: no noise."""
    x = e
    if angle_deg is not None:
        x = renormalise(rotate_reference(x, angle_deg), ref)
    if blur_sigma > 0:
        x = renormalise(blur_reference(x, blur_sigma), ref)
    x = translate(x, shift)  # exact permutation: renormalising would be the identity
    if noise is not None:
        x = renormalise(add_noise(x, noise, amp), ref)
    return x


# --- fast path ----------------------------------------------------------------------------------
def gaussian_kernel_1d(n: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's sampled, truncated, normalised Gaussian, wrapped onto a period of n."""
    radius = int(truncate * float(sigma) + 0.5)
    xs = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 / sigma**2 * xs.astype(np.float64) ** 2)
    k /= k.sum()
    periodic = np.zeros(n)
    np.add.at(periodic, xs % n, k)
    return periodic


def gaussian_transfer(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """rfft2-domain transfer function (H, W//2 + 1) of the periodic Gaussian blur. The wrapped
    kernel is symmetric, so its spectrum is real; its value at frequency 0 is 1 (conserving)."""
    h, w = shape
    ty = np.fft.fft(gaussian_kernel_1d(h, sigma)).real
    tx = np.fft.rfft(gaussian_kernel_1d(w, sigma)).real
    return (ty[:, None] * tx[None, :]).astype(np.float32)


def blur_fft(e: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """Periodic Gaussian blur by one real FFT pair (float32, one thread)."""
    spec = sfft.rfft2(e, workers=1)
    spec *= transfer
    return sfft.irfft2(spec, s=e.shape[-2:], workers=1)


def rotation_padding(shape: tuple[int, int]) -> tuple[int, int]:
    """Periodic padding (rows, columns) of the spline coefficients such that every rotated grid
    point's 4 x 4 taps fall inside: the grid's corners reach hypot(cy, cx) from the centre."""
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    r = math.hypot(cy, cx)
    return math.ceil(r - cy) + 3, math.ceil(r - cx) + 3


def coefficient_buffer(shape: tuple[int, int]) -> np.ndarray:
    """An (uninitialised) padded coefficient array for maps of ``shape``."""
    py, px = rotation_padding(shape)
    return np.empty((shape[0] + 2 * py, shape[1] + 2 * px), np.float32)


#: above this kernel radius (pixels) the FFT blur is cheaper than the direct one: the direct
#: blur's cost grows with the kernel's width, the FFT pair's does not (the crossover measured:
#: docs/benchmarks.md, "Direct blur against the FFT pair")
DIRECT_BLUR_MAX_RADIUS = 24


def gaussian_taps(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian weights (radius int(truncate sigma + 0.5)), float32."""
    radius = int(truncate * float(sigma) + 0.5)
    xs = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 / sigma**2 * xs**2)
    return (k / k.sum()).astype(np.float32)


@njit(cache=True, nogil=True)
def blur_direct(
    e: np.ndarray, ky: np.ndarray, kx: np.ndarray, tmp: np.ndarray, out: np.ndarray
) -> None:
    """Periodic separable correlation (scipy's gaussian_filter with mode "wrap") of ``e`` with
    taps ``ky`` along axis 0 and ``kx`` along axis 1 into ``out``; ``tmp`` (H, W) is scratch.
    Both passes run their inner loop along contiguous rows (they vectorise)."""
    h, w = e.shape
    ny = ky.shape[0]
    nx = kx.shape[0]
    ry = (ny - 1) // 2
    rx = (nx - 1) // 2
    for i in range(h):
        for j in range(w):
            tmp[i, j] = 0.0
        for k in range(ny):
            src = (i + k - ry) % h
            c = ky[k]
            for j in range(w):
                tmp[i, j] += c * e[src, j]
    row = np.empty(w + 2 * rx, np.float32)
    cols = np.empty(w + 2 * rx, np.int64)
    for j in range(w + 2 * rx):
        cols[j] = (j - rx) % w
    for i in range(h):
        for j in range(w + 2 * rx):
            row[j] = tmp[i, cols[j]]
        for j in range(w):
            out[i, j] = 0.0
        for k in range(nx):
            c = kx[k]
            for j in range(w):
                out[i, j] += c * row[j + k]


@njit(cache=True, nogil=True)
def _prefilter_axis0(x: np.ndarray, out: np.ndarray, work: np.ndarray) -> None:
    """Periodic cubic B-spline prefilter along axis 0 of ``x`` (n, m) into ``out`` (gain not
    applied): causal then anti-causal recursion with pole z, each started from the exact periodic
    sum. The inner loops run along axis 1 (contiguous, independent): they vectorise."""
    n, m = x.shape
    z = _Z
    for j in range(m):
        work[0, j] = 0.0
    zk = 1.0
    for k in range(_INIT_TERMS):
        r = (n - k % n) % n
        for j in range(m):
            work[0, j] += zk * x[r, j]
        zk *= z
    for i in range(1, n):
        for j in range(m):
            work[i, j] = x[i, j] + z * work[i - 1, j]
    for j in range(m):
        out[n - 1, j] = 0.0
    zk = 1.0
    for k in range(_INIT_TERMS):
        r = (n - 1 + k) % n
        for j in range(m):
            out[n - 1, j] += zk * work[r, j]
        zk *= z
    for i in range(n - 2, -1, -1):
        for j in range(m):
            out[i, j] = work[i, j] + z * out[i + 1, j]


@njit(cache=True, nogil=True)
def _transpose(src: np.ndarray, dst: np.ndarray) -> None:
    """dst = src.T, in 32 x 32 tiles (both arrays stay in cache)."""
    n, m = src.shape
    for i0 in range(0, n, 32):
        for j0 in range(0, m, 32):
            for i in range(i0, min(i0 + 32, n)):
                for j in range(j0, min(j0 + 32, m)):
                    dst[j, i] = src[i, j]


@njit(cache=True, nogil=True)
def _spline_coefficients(
    e: np.ndarray,
    coef: np.ndarray,
    a: np.ndarray,
    at: np.ndarray,
    bt: np.ndarray,
    work: np.ndarray,
) -> None:
    h, w = e.shape
    py = (coef.shape[0] - h) // 2
    px = (coef.shape[1] - w) // 2
    _prefilter_axis0(e, a, work)
    _transpose(a, at)
    _prefilter_axis0(at, bt, work)
    _transpose(bt, a)
    gain = np.float32(_GAIN * _GAIN)
    cols = np.empty(w + 2 * px, np.int64)  # periodic source column of each padded column
    for pj in range(w + 2 * px):
        cols[pj] = (pj - px) % w
    for pi in range(h + 2 * py):
        row = a[(pi - py) % h]
        out = coef[pi]
        for pj in range(w + 2 * px):
            out[pj] = gain * row[cols[pj]]


def prefilter_buffers(shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Work arrays of :func:`spline_coefficients_wrap` (reused: fresh 256 kB arrays per frame
    cost page faults that outweigh the filter itself)."""
    h, w = shape
    n = max(h, w)
    return (
        np.empty((h, w), np.float32),
        np.empty((w, h), np.float32),
        np.empty((w, h), np.float32),
        np.empty((n, n), np.float32),
    )


def spline_coefficients_wrap(
    e: np.ndarray, coef: np.ndarray, buffers: tuple[np.ndarray, ...] | None = None
) -> None:
    """Periodic cubic B-spline coefficients of ``e`` (H, W) float32, written into ``coef``
    (H + 2 py, W + 2 px, see :func:`coefficient_buffer`) with py / px rows / columns of periodic
    copies on each side, so that rotation needs no wrap-around arithmetic per tap.

    Exact periodic filtering (scipy's spline_filter with mode "grid-wrap"), separably: along axis
    0, transpose, along the former axis 1, transpose back; float32 storage.
    """
    if buffers is None:
        buffers = prefilter_buffers(e.shape)
    _spline_coefficients(e, coef, *buffers)


def rotation_scratch(width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row buffers of :func:`rotate_coefficients` for maps ``width`` pixels wide: the 4 + 4 tap
    weights (8, width) float32 and the flat offset of the first tap (width,) int32 per pixel."""
    return np.empty((8, width), np.float32), np.empty(width, np.int32)


@nb.njit(inline="always")
def _four_taps(flat: np.ndarray, a: np.uint64, w0: float, w1: float, w2: float, w3: float) -> float:
    """w0 flat[a] + ... + w3 flat[a + 3]; unsigned offsets: no negative-index wrap-around code."""
    return (
        w0 * flat[a]
        + w1 * flat[a + np.uint64(1)]
        + w2 * flat[a + np.uint64(2)]
        + w3 * flat[a + np.uint64(3)]
    )


@nb.njit(inline="always")
def _cubic_weights(t: np.float32) -> tuple[np.float32, np.float32, np.float32, np.float32]:
    """Cubic B-spline weights of the taps at floor - 1 .. floor + 2 for the fraction t in [0, 1)
    (float32; the third is 1 minus the others, so they sum to 1)."""
    one = np.float32(1.0)
    u = one - t
    w0 = u * u * u * np.float32(1.0 / 6.0)
    w1 = np.float32(2.0 / 3.0) - t * t + np.float32(0.5) * t * t * t
    w3 = t * t * t * np.float32(1.0 / 6.0)
    return w0, w1, one - w0 - w1 - w3, w3


def rotate_coefficients(
    coef: np.ndarray,
    cos_a: float,
    sin_a: float,
    out: np.ndarray,
    scratch: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Evaluate the periodic cubic spline ``coef`` (padded by :func:`spline_coefficients_wrap`)
    on the rotated grid, as scipy.ndimage.rotate(reshape=False, mode="grid-wrap") maps output to
    input coordinates, and clip negative values at 0. ``scratch``: :func:`rotation_scratch` of
    the map width (allocated when None)."""
    if scratch is None:
        scratch = rotation_scratch(out.shape[1])
    _rotate_rows(coef, cos_a, sin_a, out, *scratch)


@njit(cache=True, nogil=True, fastmath=True)
def _rotate_rows(
    coef: np.ndarray,
    cos_a: float,
    sin_a: float,
    out: np.ndarray,
    wts: np.ndarray,
    offsets: np.ndarray,
) -> None:
    """The rotation, one output row at a time in two passes.

    Pass 1 computes each pixel's input coordinates (float64, exact to ~1e-13 px), the flat offset
    of its first tap and its 4 + 4 cubic B-spline weights (float32) into row buffers: independent
    per pixel, so it vectorises -- with int32 conversions, as AVX2 has no packed float64 -> int64
    one. Pass 2 sums the 16 taps; its loads are unsigned offsets into the flattened coefficients,
    so no negative-index wrap-around code is generated. (One fused scalar loop spent about twice
    the time.) No reductions across pixels, so fastmath only contracts multiply-adds."""
    h, w = out.shape
    py = (coef.shape[0] - h) // 2
    px = (coef.shape[1] - w) // 2
    stride = np.int32(coef.shape[1])
    flat = coef.ravel()
    cy = (h - 1) / 2.0
    cx = (w - 1) / 2.0
    zero = np.float32(0.0)
    row1 = np.uint64(stride)  # offsets of the 2nd .. 4th tap rows, unsigned as the offsets
    row2 = np.uint64(2 * stride)
    row3 = np.uint64(3 * stride)
    wy0s, wy1s, wy2s, wy3s = wts[0], wts[1], wts[2], wts[3]
    wx0s, wx1s, wx2s, wx3s = wts[4], wts[5], wts[6], wts[7]
    for i in range(h):
        di = i - cy
        # input coordinates shifted into the padded array (always >= 1: truncation is floor)
        y0 = cos_a * di - sin_a * cx + cy + py
        x0 = -sin_a * di - cos_a * cx + cx + px
        for j in range(w):
            y = y0 + sin_a * j
            x = x0 + cos_a * j
            iy = np.int32(y)
            ix = np.int32(x)
            ty = np.float32(y - iy)
            tx = np.float32(x - ix)
            wy0s[j], wy1s[j], wy2s[j], wy3s[j] = _cubic_weights(ty)
            wx0s[j], wx1s[j], wx2s[j], wx3s[j] = _cubic_weights(tx)
            offsets[j] = (iy - np.int32(1)) * stride + ix - np.int32(1)
        for j in range(w):
            wx0 = wx0s[j]
            wx1 = wx1s[j]
            wx2 = wx2s[j]
            wx3 = wx3s[j]
            a = np.uint64(offsets[j])
            acc = wy0s[j] * _four_taps(flat, a, wx0, wx1, wx2, wx3)
            acc += wy1s[j] * _four_taps(flat, a + row1, wx0, wx1, wx2, wx3)
            acc += wy2s[j] * _four_taps(flat, a + row2, wx0, wx1, wx2, wx3)
            acc += wy3s[j] * _four_taps(flat, a + row3, wx0, wx1, wx2, wx3)
            out[i, j] = acc if acc > zero else zero


@njit(cache=True, nogil=True, fastmath=True)
def clipped_total(e: np.ndarray) -> float:
    """Sum of max(E, 0) in float64. fastmath lets the sum vectorise (reassociated float64
    partial sums: differences ~1e-16 relative)."""
    h, w = e.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            v = e[i, j]
            total += v if v > 0.0 else 0.0
    return total


@nb.njit(inline="always")
def _shifted_run(
    src: np.ndarray,
    s0: int,
    noise: np.ndarray,
    out: np.ndarray,
    o0: int,
    n: int,
    a32: np.float32,
    m32: np.float32,
    use_noise: bool,
) -> float:
    """out[o0 + k] = max(a32 max(src[s0 + k], 0) (+ m32 noise[o0 + k]), 0) for k < n; returns
    the float64 sum of what it wrote. Contiguous runs, so the loop vectorises."""
    zero = np.float32(0.0)
    total = 0.0
    if use_noise:
        for k in range(n):
            v = src[s0 + k]
            v = a32 * (v if v > zero else zero) + m32 * noise[o0 + k]
            v = v if v > zero else zero
            out[o0 + k] = v
            total += v
    else:
        for k in range(n):
            v = src[s0 + k]
            v = a32 * (v if v > zero else zero)
            out[o0 + k] = v
            total += v
    return total


@njit(cache=True, nogil=True, fastmath=True)
def translate_noise(
    e: np.ndarray,
    alpha: float,
    sy: int,
    sx: int,
    noise: np.ndarray,
    amp: float,
    out: np.ndarray,
) -> float:
    """out = max(roll(alpha * max(E, 0), (sy, sx)) + amp * noise, 0) in one pass; returns the
    float64 total of ``out``. ``amp`` 0 skips the noise (``noise`` may then be any 2-D array).

    Each output row is its source row rotated by sx: two contiguous runs, which vectorise
    (fastmath: the multiply-add may be fused and the float64 total reassociated, both at
    rounding level)."""
    h, w = e.shape
    a32 = np.float32(alpha)
    m32 = np.float32(amp)
    use_noise = amp != 0.0
    k = sx % w  # output column k takes source column 0
    total = 0.0
    for i in range(h):
        src = e[(i - sy) % h]
        nrow = noise[i] if use_noise else noise[0]
        orow = out[i]
        total += _shifted_run(src, w - k, nrow, orow, 0, k, a32, m32, use_noise)
        total += _shifted_run(src, 0, nrow, orow, k, w - k, a32, m32, use_noise)
    return total


#: Cephes' single-precision ln(1 + x) polynomial on x in [sqrt(1/2) - 1, sqrt(2) - 1), highest
#: degree first (Moshier; relative error ~1e-7, float32 rounding level)
_LOG_POLY = (
    7.0376836292e-2,
    -1.1514610310e-1,
    1.1676998740e-1,
    -1.2420140846e-1,
    1.4249322787e-1,
    -1.6668057665e-1,
    2.0000714765e-1,
    -2.4999993993e-1,
    3.3333331174e-1,
)
_P0, _P1, _P2, _P3, _P4, _P5, _P6, _P7, _P8 = (np.float32(c) for c in _LOG_POLY)


@nb.njit(inline="always")
def _ln_bits(bits: np.int32) -> np.float32:
    """ln v of a positive normal float32 v given its bit pattern (int32), in float32 arithmetic
    that vectorises (no libm call: numba's math.log is scalar without SVML).

    v = 2^k m with m in [sqrt(1/2), sqrt(2)); ln v = k ln 2 + ln m with ln 2 split as
    0.693359375 - 2.12194440e-4: the large part has 9 significant bits, so k times it (|k| <= 128)
    is exact and k ln 2 adds no rounding beyond the small correction's."""
    k = (bits >> np.int32(23)) - np.int32(127)
    m = np.float32(1.0) + np.float32(bits & np.int32(0x7FFFFF)) * np.float32(2.0**-23)
    high = m > np.float32(1.4142135623730951)
    m = m * np.float32(0.5) if high else m
    fk = np.float32(k + np.int32(1)) if high else np.float32(k)
    x = m - np.float32(1.0)
    z = x * x
    p = (
        ((((((_P0 * x + _P1) * x + _P2) * x + _P3) * x + _P4) * x + _P5) * x + _P6) * x + _P7
    ) * x + _P8
    y = p * x * z + np.float32(-2.12194440e-4) * fk - np.float32(0.5) * z
    return (x + y) + np.float32(0.693359375) * fk


@njit(cache=True, nogil=True, fastmath=True)
def _total_and_elne(e: np.ndarray, bits: np.ndarray) -> tuple[float, float]:
    """(sum E, sum E ln E) over a float32 map (E <= 0 contributes 0 to the second); ``bits`` is
    ``e`` viewed as int32. Each row is summed in float32 (8 SIMD lanes of 32 terms: ~1e-7
    relative rounding), the rows in float64 -- float64 per pixel would halve the lanes."""
    h, w = e.shape
    zero = np.float32(0.0)
    total = 0.0
    elne = 0.0
    for i in range(h):
        row_total = zero
        row_elne = zero
        for j in range(w):
            v = e[i, j]
            row_total += v
            row_elne += v * _ln_bits(bits[i, j]) if v > zero else zero
        total += row_total
        elne += row_elne
    return total, elne


def total_and_entropy(e: np.ndarray) -> tuple[float, float]:
    """(total energy, entropy in nats) of one C-contiguous float32 map E >= 0 in one pass: what
    ``float(e.sum(dtype=np.float64))`` and :func:`maps.entropy` give, to ~1e-7 relative.

    S = ln(sum E) - sum(E ln E) / sum E; entropy is invariant to scaling the whole map."""
    total, elne = _total_and_elne(e, e.view(np.int32))
    return total, math.log(total) - elne / total


class FastStepper:
    """One step of the fast CPU path, with the work buffers and blur spectrum of one map shape.

    Produces what :func:`step_reference` produces, to float32 rounding (tests compare them).
    """

    def __init__(self, shape: tuple[int, int], blur_sigma: float) -> None:
        self.shape = shape
        self.coef = coefficient_buffer(shape)
        self.buffers = prefilter_buffers(shape)
        self.rotated = np.empty(shape, np.float32)
        self.rotation_rows = rotation_scratch(shape[1])
        self.blurred = np.empty(shape, np.float32)
        self.blur_sigma = blur_sigma
        self.taps = gaussian_taps(blur_sigma) if blur_sigma > 0 else None
        # small kernels: direct separable blur; wide ones: one FFT pair (cost independent of sigma)
        self.transfer = None
        if self.taps is not None and len(self.taps) > 2 * DIRECT_BLUR_MAX_RADIUS + 1:
            self.transfer = gaussian_transfer(shape, blur_sigma)
        self._no_noise = np.zeros((1, 1), np.float32)

    def step(
        self,
        e: np.ndarray,
        angle_deg: float | None,
        shift: tuple[int, int],
        noise: np.ndarray | None,
        amp: float,
        ref: float,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The perturbations of :func:`step_reference` (blur sigma fixed at construction),
        written into ``out`` (a new array if None; must not be ``e``)."""
        x = e
        if angle_deg is not None:
            a = math.radians(angle_deg)
            spline_coefficients_wrap(x, self.coef, self.buffers)
            rotate_coefficients(
                self.coef, math.cos(a), math.sin(a), self.rotated, self.rotation_rows
            )
            x = self.rotated
        if self.transfer is not None:
            x = blur_fft(x, self.transfer)
        elif self.taps is not None:
            blur_direct(x, self.taps, self.taps, self.buffers[0], self.blurred)
            x = self.blurred
        # renormalising after rotation and after blur: both are linear, so one factor at the end
        # of the blur gives the same map; the blur's own rounding negatives are clipped here
        alpha = ref / clipped_total(x)
        if out is None:
            out = np.empty(self.shape, np.float32)
        if noise is None:
            total = translate_noise(x, alpha, shift[0], shift[1], self._no_noise, 0.0, out)
        else:
            total = translate_noise(x, alpha, shift[0], shift[1], noise, amp, out)
        out *= np.float32(ref / total)
        return out
