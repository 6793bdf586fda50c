"""Forward model: object patch at a sub-pixel position, exit wave, far-field intensity.

- patch[i, j] = bilinear interpolation of the zero-padded object at (y + i - N/2, x + j - N/2)
  (x = column, y = row, in object pixels);
- exit wave = patch * probe;
- intensity = |fftshift(FFT2(exit wave))|^2 with the orthonormal FFT, so that by Parseval the
  total intensity of a pattern equals the exit-wave energy sum |exit|^2.

CPU: one fused numba loop for patch + exit wave + energy, a batched in-place FFT of blocks that stay
in cache (FFTW through pyfftw by default, the faster of the two on 64 x 64 complex64, measured in
docs/ptycho.md, "Benchmarks"; or scipy.fft), one numba loop for |F|^2 that also applies the
orthonormal 1/N^2 (a power of two at N = 64, so exact). The fftshift is folded into the probe:
for even N, FFT2(x * (-1)^(i + j)) = fftshift(FFT2(x)) exactly (the shift by N/2 is the phase
e^(i pi k) = (-1)^k), so the kernel multiplies by the checkerboard-signed probe and the FFT comes
out centred.
GPU: the same with cupy (an explicit fftshift).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.fft

from hpcgen.kernel_cache import njit

#: threads the FFT may use per process (the data do not depend on it). One by default: under MPI
#: every rank already owns a core.
FFT_WORKERS = int(os.environ.get("HPCGEN_PTYCHO_FFT_WORKERS", "1"))


#: patterns per FFT block: patch, FFT and |F|^2 of a block stay in cache (~1 MB at N = 64)
BLOCK = 32

#: CPU FFT libraries: "fftw" (pyfftw) or "scipy" (scipy.fft, pocketfft)
FFT_BACKENDS = ("fftw", "scipy")


def position_bounds(m: int, n: int) -> tuple[float, float]:
    """Range [lo, hi] of probe-centre coordinates whose patch lies inside the object (border
    N/2, PtychoPINN's default): lo = N/2, hi = M - N/2."""
    return n / 2, m - n / 2


class Forward:
    """The forward model for one object and probe, on the CPU (``run``) or with cupy
    (``run_gpu``).

    The object is zero-padded by N/2 + 1 on every side and kept as float32 real and imaginary
    planes (the fused numba loop vectorises over them). A probe centre anywhere in [0, M]^2 is
    valid; the patch then reads zeros outside the object.
    """

    def __init__(self, obj: np.ndarray, probe: np.ndarray, fft: str = "fftw") -> None:
        if fft not in FFT_BACKENDS:
            raise ValueError(f"FFT backend must be one of {FFT_BACKENDS}, got {fft!r}")
        self.fft = fft
        self.m = obj.shape[0]
        self.n = probe.shape[0]
        if self.n % 2:
            raise ValueError(f"the probe size must be even, got {self.n}")
        self.pad = self.n // 2 + 1
        padded = np.pad(obj.astype(np.complex64), self.pad)
        self.obj = obj.astype(np.complex64)
        self.probe = probe.astype(np.complex64)
        self._ore = np.ascontiguousarray(padded.real)
        self._oim = np.ascontiguousarray(padded.imag)
        # probe * (-1)^(i + j): its exit waves transform to the centred (fftshifted) spectrum
        sign = 1 - 2 * ((np.arange(self.n)[:, None] + np.arange(self.n)[None, :]) % 2)
        shifted = self.probe * sign.astype(np.float32)
        self._pre = np.ascontiguousarray(shifted.real)
        self._pim = np.ascontiguousarray(shifted.imag)
        self._gpu: tuple[Any, Any] | None = None

    def check_positions(self, xs: np.ndarray, ys: np.ndarray) -> None:
        """Probe centres must lie in [0, M] (finite); raises ValueError otherwise."""
        for name, v in (("x", xs), ("y", ys)):
            if len(v) and not (np.all(np.isfinite(v)) and v.min() >= 0 and v.max() <= self.m):
                raise ValueError(f"scan {name} coordinates must lie in [0, {self.m}]")

    def patches(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(patches Y (B, N, N) complex64, exit-wave energies (B,) float64, normalised
        intensity = sum |Y * probe|^2)."""
        b, n = len(xs), self.n
        patches = np.empty((b, n, 2 * n), np.float32)
        exitw = np.empty((b, n, 2 * n), np.float32)
        energy = np.empty(b, np.float64)
        _patches_cpu(
            self._ore,
            self._oim,
            self.pad,
            np.ascontiguousarray(xs, np.float64),
            np.ascontiguousarray(ys, np.float64),
            self._pre,
            self._pim,
            patches,
            exitw,
            energy,
        )
        return patches.view(np.complex64), energy

    def run_blocks(
        self, xs: np.ndarray, ys: np.ndarray, patches: np.ndarray, energy: np.ndarray
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Forward model on the CPU in blocks of BLOCK patterns, for consumers that use each
        block's intensity while it is in cache.

        Fills ``patches`` (B, N, N) complex64 with Y and ``energy`` (B,) float64 with the
        exit-wave energies, and yields (start, stop, intensity) per block: intensity is
        (stop - start, N, N) float32, centred, normalised (photons / scale^2), in a scratch array
        that the next block overwrites."""
        b, n = len(xs), self.n
        xs = np.ascontiguousarray(xs, np.float64)
        ys = np.ascontiguousarray(ys, np.float64)
        planes = patches.view(np.float32)  # (b, n, 2n): interleaved real/imag
        intensity = np.empty((min(BLOCK, b), n, n), np.float32)
        inv_n2 = np.float32(1.0 / (n * n))  # orthonormal scale of |F|^2
        transforms: dict[int, tuple[np.ndarray, Callable[[], np.ndarray]]] = {}
        for s in range(0, b, BLOCK):
            e = min(s + BLOCK, b)
            if e - s not in transforms:  # the full block, and a shorter last one
                transforms[e - s] = self._block_fft(e - s)
            buf, fft2 = transforms[e - s]
            exitw = buf.view(np.float32)
            _patches_cpu(
                self._ore,
                self._oim,
                self.pad,
                xs[s:e],
                ys[s:e],
                self._pre,
                self._pim,
                planes[s:e],
                exitw,
                energy[s:e],
            )
            _abs2(fft2(), inv_n2, intensity[: e - s])
            yield s, e, intensity[: e - s]

    def _block_fft(self, size: int) -> tuple[np.ndarray, Callable[[], np.ndarray]]:
        """A (size, N, N) complex64 buffer and a function that returns its unnormalised 2-D FFT
        over the last two axes (in place with FFTW).

        FFTW plans with FFTW_ESTIMATE: a deterministic plan (FFTW_MEASURE picks by timing, so two
        processes could round differently), on a SIMD-aligned buffer (alignment also selects the
        code path); an estimated plan is cheap next to the block's FFTs, so one plan per call."""
        n = self.n
        if self.fft == "fftw":
            import pyfftw

            buf = pyfftw.empty_aligned((size, n, n), np.complex64)
            plan = pyfftw.FFTW(buf, buf, axes=(1, 2), flags=("FFTW_ESTIMATE",), threads=FFT_WORKERS)
            buf[...] = 0
            return buf, plan
        buf = np.zeros((size, n, n), np.complex64)
        return buf, lambda: scipy.fft.fft2(buf, workers=FFT_WORKERS, overwrite_x=True)

    def run(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(patches Y complex64, intensity float32 (B, N, N), exit energy float64 (B,)), CPU."""
        b, n = len(xs), self.n
        patches = np.empty((b, n, n), np.complex64)
        energy = np.empty(b, np.float64)
        intensity = np.empty((b, n, n), np.float32)
        for s, e, block in self.run_blocks(xs, ys, patches, energy):
            intensity[s:e] = block
        return patches, intensity, energy

    def run_gpu(
        self, xp: Any, xs: np.ndarray, ys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Same as :meth:`run` with cupy; returns host arrays."""
        if self._gpu is None:
            self._gpu = (xp.asarray(np.pad(self.obj, self.pad)), xp.asarray(self.probe))
        return forward_gpu(xp, self._gpu[0], self.pad, xs, ys, self._gpu[1])

    def mean_energy(self, xs: np.ndarray, ys: np.ndarray, block: int = 4096) -> float:
        """Mean exit-wave energy over an explicit list of positions (raster or file scans)."""
        total = 0.0
        for s in range(0, len(xs), block):
            total += self.patches(xs[s : s + block], ys[s : s + block])[1].sum()
        return total / len(xs)


# --- CPU kernels ----------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _patches_cpu(ore, oim, pad, xs, ys, pre, pim, patches, exitw, energy):  # pragma: no cover
    # patches/exitw: float32 (B, n, 2n) views of complex64; split planes let LLVM vectorise j
    n = pre.shape[0]
    h = n // 2
    one = np.float32(1.0)
    for b in range(xs.shape[0]):
        x0 = math.floor(xs[b])
        y0 = math.floor(ys[b])
        fx = np.float32(xs[b] - x0)
        fy = np.float32(ys[b] - y0)
        w00 = (one - fy) * (one - fx)
        w01 = (one - fy) * fx
        w10 = fy * (one - fx)
        w11 = fy * fx
        r0 = int(y0) - h + pad
        c0 = int(x0) - h + pad
        e = 0.0
        for i in range(n):
            ar = ore[r0 + i, c0 : c0 + n + 1]
            ai = oim[r0 + i, c0 : c0 + n + 1]
            br = ore[r0 + i + 1, c0 : c0 + n + 1]
            bi = oim[r0 + i + 1, c0 : c0 + n + 1]
            pr = pre[i]
            pi = pim[i]
            for j in range(n):
                vr = w00 * ar[j] + w01 * ar[j + 1] + w10 * br[j] + w11 * br[j + 1]
                vi = w00 * ai[j] + w01 * ai[j + 1] + w10 * bi[j] + w11 * bi[j + 1]
                patches[b, i, 2 * j] = vr
                patches[b, i, 2 * j + 1] = vi
                exitw[b, i, 2 * j] = vr * pr[j] - vi * pi[j]
                exitw[b, i, 2 * j + 1] = vr * pi[j] + vi * pr[j]
            # row energy: four float32 partial sums in a fixed order (fast, deterministic)
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for j in range(0, 2 * n, 4):
                s0 += exitw[b, i, j] * exitw[b, i, j]
                s1 += exitw[b, i, j + 1] * exitw[b, i, j + 1]
                s2 += exitw[b, i, j + 2] * exitw[b, i, j + 2]
                s3 += exitw[b, i, j + 3] * exitw[b, i, j + 3]
            e += float(s0) + float(s1) + float(s2) + float(s3)
        energy[b] = e


@njit(cache=True, nogil=True)
def _abs2(f, scale, out):  # pragma: no cover - numba
    # out = scale * |f|^2 (f complex64, out float32, both (B, n, n))
    for b in range(out.shape[0]):
        for i in range(f.shape[1]):
            for j in range(f.shape[2]):
                z = f[b, i, j]
                out[b, i, j] = scale * (z.real * z.real + z.imag * z.imag)


# --- GPU (cupy) -----------------------------------------------------------------------------------


def forward_gpu(
    xp: Any, obj_padded: Any, pad: int, xs: np.ndarray, ys: np.ndarray, probe: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same as :meth:`Forward.run` with cupy (``obj_padded``, ``probe`` already on the device).

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


# --- dose calibration -----------------------------------------------------------------------------


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
