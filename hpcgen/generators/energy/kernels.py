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
filter and the rotation a 4 x 4-tap gather, both compiled with numba in float32; the blur is one
real FFT pair with the exact transfer function of scipy's wrapped, truncated kernel (cost
independent of sigma); translation, noise, clipping and the two sums are fused into one pass.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import scipy.fft as sfft
import scipy.ndimage as ndi

#: pole of the cubic B-spline prefilter (Unser 1993) and its gain per axis
_Z = math.sqrt(3.0) - 2.0
_GAIN = -6.0 * _Z
#: |z|^40 ~ 1e-23: terms of the periodic initial sums beyond this are below float64 rounding
_INIT_TERMS = 40
#: pixels of periodic padding on each side of the spline coefficients (4-tap support)
PAD = 2


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


@nb.njit(cache=True, nogil=True)
def spline_coefficients_wrap(e: np.ndarray, coef: np.ndarray) -> None:
    """Periodic cubic B-spline coefficients of ``e`` (H, W), written into ``coef``
    (H + 2 PAD, W + 2 PAD) with PAD pixels of periodic copies on each side.

    Exact periodic filtering: causal and anti-causal recursions with pole z = sqrt(3) - 2 whose
    initial values are the (rapidly converging) sums over the whole period.
    """
    h, w = e.shape
    z = _Z
    t = np.empty((h, w), np.float64)
    row = np.empty(w, np.float64)
    for i in range(h):  # along axis 1
        acc = 0.0
        zk = 1.0
        for k in range(_INIT_TERMS):
            acc += zk * e[i, (w - k % w) % w]
            zk *= z
        row[0] = acc
        for n in range(1, w):
            row[n] = e[i, n] + z * row[n - 1]
        acc = 0.0
        zk = 1.0
        for k in range(_INIT_TERMS):
            acc += zk * row[(w - 1 + k) % w]
            zk *= z
        t[i, w - 1] = acc
        for n in range(w - 2, -1, -1):
            t[i, n] = row[n] + z * t[i, n + 1]
    y = np.zeros((h, w), np.float64)  # along axis 0, vectorised over columns
    zk = 1.0
    for k in range(_INIT_TERMS):
        r = (h - k % h) % h
        for j in range(w):
            y[0, j] += zk * t[r, j]
        zk *= z
    for n in range(1, h):
        for j in range(w):
            y[n, j] = t[n, j] + z * y[n - 1, j]
    c = t  # reuse: t is no longer needed
    for j in range(w):
        c[h - 1, j] = 0.0
    zk = 1.0
    for k in range(_INIT_TERMS):
        r = (h - 1 + k) % h
        for j in range(w):
            c[h - 1, j] += zk * y[r, j]
        zk *= z
    for n in range(h - 2, -1, -1):
        for j in range(w):
            c[n, j] = y[n, j] + z * c[n + 1, j]
    gain = _GAIN * _GAIN
    for pi in range(h + 2 * PAD):
        i = (pi - PAD) % h
        for pj in range(w + 2 * PAD):
            coef[pi, pj] = gain * c[i, (pj - PAD) % w]


@nb.njit(cache=True, nogil=True)
def rotate_coefficients(coef: np.ndarray, cos_a: float, sin_a: float, out: np.ndarray) -> float:
    """Evaluate the periodic cubic spline ``coef`` (padded) on the rotated grid, as
    scipy.ndimage.rotate(reshape=False, mode="grid-wrap") maps output to input coordinates;
    clips negative values at 0 and returns the float64 total of ``out``."""
    h, w = out.shape
    cy = (h - 1) / 2.0
    cx = (w - 1) / 2.0
    total = 0.0
    for i in range(h):
        di = i - cy
        y0 = cos_a * di - sin_a * cx + cy
        x0 = -sin_a * di - cos_a * cx + cx
        for j in range(w):
            y = y0 + sin_a * j
            x = x0 + cos_a * j
            y -= h * math.floor(y / h)
            x -= w * math.floor(x / w)
            iy = int(y)
            ix = int(x)
            ty = y - iy
            tx = x - ix
            if iy >= h:  # y rounded up to exactly h
                iy -= h
            if ix >= w:
                ix -= w
            # cubic B-spline weights of the taps at floor - 1 .. floor + 2
            sy = 1.0 - ty
            wy0 = sy * sy * sy / 6.0
            wy3 = ty * ty * ty / 6.0
            wy1 = 2.0 / 3.0 - ty * ty + 0.5 * ty * ty * ty
            wy2 = 1.0 - wy0 - wy1 - wy3
            sx = 1.0 - tx
            wx0 = sx * sx * sx / 6.0
            wx3 = tx * tx * tx / 6.0
            wx1 = 2.0 / 3.0 - tx * tx + 0.5 * tx * tx * tx
            wx2 = 1.0 - wx0 - wx1 - wx3
            acc = 0.0
            for a in range(4):
                r = iy + PAD - 1 + a
                c0 = ix + PAD - 1
                v = (
                    wx0 * coef[r, c0]
                    + wx1 * coef[r, c0 + 1]
                    + wx2 * coef[r, c0 + 2]
                    + wx3 * coef[r, c0 + 3]
                )
                if a == 0:
                    acc += wy0 * v
                elif a == 1:
                    acc += wy1 * v
                elif a == 2:
                    acc += wy2 * v
                else:
                    acc += wy3 * v
            if acc < 0.0:
                acc = 0.0
            out[i, j] = acc
            total += out[i, j]
    return total


@nb.njit(cache=True, nogil=True)
def clipped_total(e: np.ndarray) -> float:
    """Sum of max(E, 0) in float64."""
    h, w = e.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            v = e[i, j]
            if v > 0.0:
                total += v
    return total


@nb.njit(cache=True, nogil=True)
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
    float64 total of ``out``. ``amp`` 0 skips the noise (``noise`` may then be any 2-D array)."""
    h, w = e.shape
    a32 = np.float32(alpha)
    m32 = np.float32(amp)
    total = 0.0
    for i in range(h):
        si = (i - sy) % h
        for j in range(w):
            v = e[si, (j - sx) % w]
            if v < 0.0:
                v = np.float32(0.0)
            v = a32 * v
            if amp != 0.0:
                v = v + m32 * noise[i, j]
                if v < 0.0:
                    v = np.float32(0.0)
            out[i, j] = v
            total += v
    return total


class FastStepper:
    """One step of the fast CPU path, with the work buffers and blur spectrum of one map shape.

    Produces what :func:`step_reference` produces, to float32 rounding (tests compare them).
    """

    def __init__(self, shape: tuple[int, int], blur_sigma: float) -> None:
        h, w = shape
        self.shape = shape
        self.coef = np.empty((h + 2 * PAD, w + 2 * PAD), np.float32)
        self.rotated = np.empty(shape, np.float32)
        self.transfer = gaussian_transfer(shape, blur_sigma) if blur_sigma > 0 else None
        self._no_noise = np.zeros((1, 1), np.float32)

    def step(
        self,
        e: np.ndarray,
        angle_deg: float | None,
        shift: tuple[int, int],
        noise: np.ndarray | None,
        amp: float,
        ref: float,
    ) -> np.ndarray:
        """The perturbations of :func:`step_reference` (blur sigma fixed at construction)."""
        x = e
        if angle_deg is not None:
            a = math.radians(angle_deg)
            spline_coefficients_wrap(x, self.coef)
            rotate_coefficients(self.coef, math.cos(a), math.sin(a), self.rotated)
            x = self.rotated
        if self.transfer is not None:
            x = blur_fft(x, self.transfer)
        # renormalising after rotation and after blur: both are linear, so one factor at the end
        # of the blur gives the same map; the blur's own rounding negatives are clipped here
        alpha = ref / clipped_total(x)
        out = np.empty(self.shape, np.float32)
        if noise is None:
            total = translate_noise(x, alpha, shift[0], shift[1], self._no_noise, 0.0, out)
        else:
            total = translate_noise(x, alpha, shift[0], shift[1], noise, amp, out)
        out *= np.float32(ref / total)
        return out
