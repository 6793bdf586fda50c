"""An independent forward model for ``hpcgen verify``: plain numpy, float64, written from the
definitions and sharing no code with the generator (forward.py, poisson.py).

Where the generator fuses the bilinear shift with the exit wave in a numba loop of float32
weights, folds the fftshift into a checkerboard-signed probe, transforms with FFTW (or
scipy.fft) and takes |F|^2 in float32, this module

- cuts the (N + 1) x (N + 1) window of the zero-padded object under each probe centre and
  interpolates it along rows, then along columns, in float64;
- transforms the exit wave with ``numpy.fft.fft2(norm="ortho")`` and an explicit
  ``numpy.fft.fftshift``;
- computes the dose calibration (mean exit energy over uniform random positions) by 2-point
  Gauss-Legendre quadrature per unit cell, where the generator integrates the same quadratic form
  with a mass matrix.

Conventions (docs/ptycho.md): arrays are [row, column] = [y, x]; a probe centre (x, y) in object
pixels puts patch pixel [i, j] on the object at (y + i - N/2, x + j - N/2); the object reads zero
outside [0, M - 1]^2.
"""

from __future__ import annotations

import math

import numpy as np

#: rows of unit cells integrated at a time by :func:`uniform_mean_energy` (bounds its memory)
STRIP = 256

#: 2-point Gauss-Legendre nodes on [0, 1] (weights 1/2 each): exact for polynomials of degree 3
GAUSS_NODES = (0.5 - 0.5 / math.sqrt(3.0), 0.5 + 0.5 / math.sqrt(3.0))


def padding(n: int) -> int:
    """Zero border around the object so that any probe centre in [0, M]^2 has its whole
    (N + 1)^2 interpolation window inside the padded array."""
    return n // 2 + 2


def pad_object(obj: np.ndarray, n: int) -> np.ndarray:
    """The object (M, M) zero-padded by :func:`padding` (N) on every side, complex64 (the stored
    precision; windows are promoted to float64 one patch at a time)."""
    return np.pad(np.asarray(obj, np.complex64), padding(n))


def on_object(xs: np.ndarray, ys: np.ndarray, m: int) -> np.ndarray:
    """Mask of probe centres inside [0, M]^2, where a patch is defined (NaN compares False)."""
    return (xs >= 0) & (xs <= m) & (ys >= 0) & (ys <= m)


def object_patches(padded: np.ndarray, n: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear patches (B, N, N) complex128 of a :func:`pad_object` array at probe centres
    (xs, ys) (object pixels, each in [0, M]; see :func:`on_object`)."""
    pad, h = padding(n), n // 2
    out = np.empty((len(xs), n, n), np.complex128)
    for b, (x, y) in enumerate(zip(xs, ys, strict=True)):
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        r, c = y0 - h + pad, x0 - h + pad
        window = padded[r : r + n + 1, c : c + n + 1].astype(np.complex128)
        rows = (1.0 - fy) * window[:-1] + fy * window[1:]  # (N, N + 1): along y
        out[b] = (1.0 - fx) * rows[:, :-1] + fx * rows[:, 1:]  # (N, N): along x
    return out


def far_field(exit_waves: np.ndarray) -> np.ndarray:
    """|fftshift(FFT2(exit))|^2 with the orthonormal FFT (numpy.fft), float64 (B, N, N): zero
    frequency at [N/2, N/2], total = sum |exit|^2 (Parseval)."""
    f = np.fft.fftshift(np.fft.fft2(exit_waves, norm="ortho"), axes=(-2, -1))
    return f.real**2 + f.imag**2


def list_mean_energy(
    obj: np.ndarray, probe: np.ndarray, xs: np.ndarray, ys: np.ndarray, block: int = 256
) -> float:
    """Mean exit energy sum |patch * probe|^2 over an explicit list of probe centres."""
    n = probe.shape[0]
    padded = pad_object(obj, n)
    p = np.asarray(probe, np.complex128)
    total = 0.0
    for s in range(0, len(xs), block):
        e = object_patches(padded, n, xs[s : s + block], ys[s : s + block]) * p
        total += float((e.real**2 + e.imag**2).sum())
    return total / max(len(xs), 1)


def uniform_mean_energy(obj: np.ndarray, probe: np.ndarray) -> float:
    """E[sum |patch * probe|^2] for a probe centre uniform on [N/2, M - N/2]^2 (continuous).

    Patch pixel [i, j] then sees the bilinear object uniformly over [i, i + L] x [j, j + L],
    L = M - N, i.e. L^2 unit cells. On a cell, |bilinear|^2 is a polynomial of degree 2 in each
    coordinate, so 2 x 2 Gauss-Legendre points integrate it exactly. The cell integrals are summed
    over every window with running sums, in strips of :data:`STRIP` cell rows (memory O(N M)).
    """
    o = np.asarray(obj, np.complex128)
    m, n = o.shape[0], probe.shape[0]
    length = m - n
    first = np.arange(n)  # window of patch row i: cell rows [i, i + L)
    prefix_lo = np.zeros((n, m - 1))  # sum of cell rows < i, per column
    prefix_hi = np.zeros((n, m - 1))  # sum of cell rows < i + L
    above = np.zeros(m - 1)
    for a in range(0, m - 1, STRIP):
        b = min(a + STRIP, m - 1)
        o00, o01 = o[a:b, :-1], o[a:b, 1:]
        o10, o11 = o[a + 1 : b + 1, :-1], o[a + 1 : b + 1, 1:]
        cells = np.zeros((b - a, m - 1))
        for ty in GAUSS_NODES:
            for tx in GAUSS_NODES:
                v = (
                    (1 - ty) * (1 - tx) * o00
                    + (1 - ty) * tx * o01
                    + ty * (1 - tx) * o10
                    + ty * tx * o11
                )
                cells += 0.25 * (v.real**2 + v.imag**2)
        running = above + np.cumsum(cells, axis=0)  # running[k] = sum of cell rows <= a + k
        for rows, target in ((first, prefix_lo), (first + length, prefix_hi)):
            here = (rows > a) & (rows <= b)
            target[here] = running[rows[here] - a - 1]
        above = running[-1]
    by_row = prefix_hi - prefix_lo  # (N, M - 1): cell rows [i, i + L) summed, per column
    cols = np.concatenate([np.zeros((n, 1)), np.cumsum(by_row, axis=1)], axis=1)
    window = cols[:, first + length] - cols[:, first]  # (N, N)
    p2 = np.abs(np.asarray(probe, np.complex128)) ** 2
    return float((p2 * window).sum() / length**2)
