"""Forward model: object patch at a sub-pixel position, exit wave, far-field intensity.

- patch[i, j] = bilinear interpolation of the zero-padded object at (y + i - N/2, x + j - N/2)
  (x = column, y = row, in object pixels);
- exit wave = patch * probe;
- intensity = |fftshift(FFT2(exit wave))|^2 with the orthonormal FFT, so that by Parseval the
  total intensity of a pattern equals the exit-wave energy sum |exit|^2.

CPU: one fused numba loop for patch + exit wave + energy, scipy.fft for the batched FFT, one
numba loop for |F|^2 with the fftshift folded into the indexing. GPU: the same with cupy.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numba
import numpy as np
import scipy.fft

#: threads scipy.fft may use per process (the data do not depend on it). One by default: under MPI
#: every rank already owns a core.
FFT_WORKERS = int(os.environ.get("HPCGEN_PTYCHO_FFT_WORKERS", "1"))


def pad_object(obj: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Zero-pad the object by N/2 + 1 on every side: a probe centred anywhere inside the object
    (0 <= x, y <= M) reads only padded pixels, never out of bounds. Returns (padded, pad)."""
    pad = n // 2 + 1
    return np.pad(obj.astype(np.complex64), pad), pad


def position_bounds(m: int, n: int) -> tuple[float, float]:
    """Range [lo, hi] of probe-centre coordinates whose patch lies inside the object (border
    N/2, PtychoPINN's default): lo = N/2, hi = M - N/2."""
    return n / 2, m - n / 2


# --- CPU kernels -----------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _patches_cpu(objp, pad, xs, ys, probe, patches, exitw, energy):  # pragma: no cover - numba
    n = probe.shape[0]
    h = n // 2
    for b in range(xs.shape[0]):
        x0 = math.floor(xs[b])
        y0 = math.floor(ys[b])
        fx = np.float32(xs[b] - x0)
        fy = np.float32(ys[b] - y0)
        one = np.float32(1.0)
        w00 = (one - fy) * (one - fx)
        w01 = (one - fy) * fx
        w10 = fy * (one - fx)
        w11 = fy * fx
        r0 = int(y0) - h + pad
        c0 = int(x0) - h + pad
        e = 0.0
        for i in range(n):
            for j in range(n):
                v = (
                    w00 * objp[r0 + i, c0 + j]
                    + w01 * objp[r0 + i, c0 + j + 1]
                    + w10 * objp[r0 + i + 1, c0 + j]
                    + w11 * objp[r0 + i + 1, c0 + j + 1]
                )
                patches[b, i, j] = v
                ex = v * probe[i, j]
                exitw[b, i, j] = ex
                e += float(ex.real) ** 2 + float(ex.imag) ** 2
        energy[b] = e


@numba.njit(cache=True, nogil=True)
def _intensity_shifted(f, out):  # pragma: no cover - numba
    n = f.shape[1]
    h = n // 2
    for b in range(f.shape[0]):
        for i in range(n):
            si = (i + h) % n
            for j in range(n):
                z = f[b, si, (j + h) % n]
                out[b, i, j] = z.real * z.real + z.imag * z.imag


def patches_cpu(
    obj_padded: np.ndarray, pad: int, xs: np.ndarray, ys: np.ndarray, probe: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patches Y (B, N, N) complex64, exit waves (B, N, N) complex64, exit energies (B,) float64.

    Positions must satisfy 0 <= x, y <= M (checked by the caller)."""
    b, n = len(xs), probe.shape[0]
    patches = np.empty((b, n, n), np.complex64)
    exitw = np.empty((b, n, n), np.complex64)
    energy = np.empty(b, np.float64)
    _patches_cpu(
        obj_padded, pad, np.ascontiguousarray(xs, np.float64),
        np.ascontiguousarray(ys, np.float64), probe.astype(np.complex64), patches, exitw, energy,
    )
    return patches, exitw, energy


def intensity_cpu(exitw: np.ndarray, workers: int | None = None) -> np.ndarray:
    """|fftshift(FFT2(exit))|^2, orthonormal, (B, N, N) float32. ``exitw`` is overwritten."""
    f = scipy.fft.fft2(exitw, norm="ortho", workers=workers or FFT_WORKERS, overwrite_x=True)
    out = np.empty(exitw.shape, np.float32)
    _intensity_shifted(f, out)
    return out


def forward_cpu(
    obj_padded: np.ndarray, pad: int, xs: np.ndarray, ys: np.ndarray, probe: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patches Y complex64, intensity float32, exit energy float64) on the CPU."""
    patches, exitw, energy = patches_cpu(obj_padded, pad, xs, ys, probe)
    return patches, intensity_cpu(exitw), energy


# --- GPU (cupy) ------------------------------------------------------------------------------------


def forward_gpu(
    xp: Any, obj_padded: Any, pad: int, xs: np.ndarray, ys: np.ndarray, probe: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same as :func:`forward_cpu` with cupy (``obj_padded``, ``probe`` already on the device).

    Float rounding differs from the CPU path (cuFFT vs pocketfft), so GPU files match CPU files
    to float precision, not byte for byte. Returns host arrays."""
    n = probe.shape[0]
    h = n // 2
    x = xp.asarray(xs, dtype=xp.float64)
    y = xp.asarray(ys, dtype=xp.float64)
    x0, y0 = xp.floor(x), xp.floor(y)
    fx = (x - x0).astype(xp.float32)[:, None, None]
    fy = (y - y0).astype(xp.float32)[:, None, None]
    ar = xp.arange(n)
    rows = (y0.astype(xp.int64) - h + pad)[:, None, None] + ar[None, :, None]
    cols = (x0.astype(xp.int64) - h + pad)[:, None, None] + ar[None, None, :]
    patches = (
        (1 - fy) * (1 - fx) * obj_padded[rows, cols]
        + (1 - fy) * fx * obj_padded[rows, cols + 1]
        + fy * (1 - fx) * obj_padded[rows + 1, cols]
        + fy * fx * obj_padded[rows + 1, cols + 1]
    ).astype(xp.complex64)
    exitw = patches * probe[None]
    energy = (xp.abs(exitw.astype(xp.complex128)) ** 2).sum(axis=(1, 2))
    f = xp.fft.fftshift(xp.fft.fft2(exitw, norm="ortho"), axes=(1, 2))
    intensity = (f.real**2 + f.imag**2).astype(xp.float32)
    return patches.get(), intensity.get(), energy.get()


# --- dose calibration ------------------------------------------------------------------------------


def expected_energy_uniform(obj: np.ndarray, probe: np.ndarray) -> float:
    """Exact mean exit-wave energy E[sum |patch * probe|^2] for a probe centre uniform on
    [N/2, M - N/2]^2 (continuous), with bilinear interpolation.

    Patch pixel (i, j) then samples the object uniformly over [i, i + L] x [j, j + L], L = M - N:
    L^2 whole cells. Over one cell, |bilinear|^2 integrates to a quadratic form of the cell's four
    corners with the 1-D mass matrix [[1/3, 1/6], [1/6, 1/3]] in each direction, so
    E = sum_ij |P_ij|^2 * (sum of cell integrals in the window at (i, j)) / L^2, a summed-area
    table away. No Monte Carlo error, independent of the run seed and the rank count.
    """
    o = obj.astype(np.complex128)
    m, n = o.shape[0], probe.shape[0]
    length = m - n
    mass = ((1 / 3, 1 / 6), (1 / 6, 1 / 3))
    corners = {(a, b): o[a : m - 1 + a, b : m - 1 + b] for a in (0, 1) for b in (0, 1)}
    cell = np.zeros((m - 1, m - 1))
    for (a, b), za in corners.items():
        for (c, d), zc in corners.items():
            cell += mass[a][c] * mass[b][d] * (za * zc.conj()).real
    sat = np.zeros((m, m))
    sat[1:, 1:] = cell.cumsum(0).cumsum(1)
    i = np.arange(n)
    lo, hi = i[:, None], i[:, None] + length
    lo_c, hi_c = i[None, :], i[None, :] + length
    window = sat[hi, hi_c] - sat[lo, hi_c] - sat[hi, lo_c] + sat[lo, lo_c]
    return float((np.abs(probe.astype(np.complex128)) ** 2 * window).sum() / length**2)


def mean_energy_at(
    obj_padded: np.ndarray, pad: int, xs: np.ndarray, ys: np.ndarray, probe: np.ndarray,
    block: int = 2048,
) -> float:
    """Mean exit-wave energy over an explicit list of positions (raster or file scans)."""
    total = 0.0
    for s in range(0, len(xs), block):
        total += patches_cpu(obj_padded, pad, xs[s : s + block], ys[s : s + block], probe)[2].sum()
    return total / len(xs)
