"""Operations on energy maps shared by the generator, the verifier and the training reader.

Every function takes maps as the last two axes of an array ((..., H, W)), so it works on one frame,
a trajectory or a block of trajectories alike. Sums are accumulated in float64.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

#: the pyramid levels of the source workflow's atlas loader (map heights in pixels)
SCALES = (64, 128, 256)
#: E ln E is taken as 0 at E = 0; clipping at this value keeps the log finite there
_TINY = np.float32(1e-30)


def total_energy(e: np.ndarray) -> np.ndarray:
    """Sum over the last two axes, float64."""
    return np.asarray(e).sum(axis=(-2, -1), dtype=np.float64)


def entropy(e: np.ndarray) -> np.ndarray:
    """Shannon entropy S = -sum p ln p with p = E / sum E, over the last two axes (nats).

    Written as ln(sum E) - sum(E ln E) / sum E so that no normalised copy is made. Uniform maps
    of N pixels give ln N; a single hot pixel gives 0. The logarithms are taken in the maps'
    dtype (float32: about 1e-7 nats of rounding), the sums in float64.
    """
    e = np.asarray(e)
    s = total_energy(e)
    elne = (e * np.log(np.maximum(e, _TINY if e.dtype == np.float32 else 1e-300))).sum(
        axis=(-2, -1), dtype=np.float64
    )
    return np.log(s) - elne / s


def renormalise(e: np.ndarray, target: float) -> np.ndarray:
    """Scale a map so that its total energy is ``target`` (same dtype)."""
    return (e * (target / e.sum(dtype=np.float64))).astype(e.dtype, copy=False)


def level_shape(shape: tuple[int, int], scale: int) -> tuple[int, int]:
    """Shape of pyramid level ``scale`` (its height); the width keeps the aspect ratio."""
    h, w = shape
    width = scale * w / h
    if width != int(width):
        raise ValueError(f"scale {scale} does not keep the aspect ratio of a {h} x {w} map")
    return (scale, int(width))


def _zoom_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (periodic) and cubic B-spline weights, (n_out, 4) each, of a zoom from
    n_in to n_out samples in scipy's grid mode: output pixel o covers input coordinate
    (o + 0.5) n_in / n_out - 0.5."""
    coord = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    base = np.floor(coord)
    t = coord - base
    u = 1.0 - t
    weights = np.stack(
        [u**3 / 6, 2 / 3 - t**2 + t**3 / 2, 1 / 6 + (t + t**2 - t**3) / 2, t**3 / 6], axis=1
    )
    idx = (base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :]) % n_in
    return idx, weights


def periodic_zoom(a: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Cubic-spline zoom of a periodic map (..., h, w) to (..., *out_shape), float64: what
    ``scipy.ndimage.zoom(order=3, mode="grid-wrap", grid_mode=True)`` computes, but separably
    (the zoom is axis-aligned), 4 + 4 taps per pixel instead of 16, and batched over leading
    axes without mixing maps."""
    c = np.asarray(a, np.float64)
    for axis in (-2, -1):  # periodic prefilter: the spline interpolates the samples
        c = ndi.spline_filter1d(c, 3, axis=axis, mode="grid-wrap")
    for axis, n_out in zip((-2, -1), out_shape):
        idx, wts = _zoom_taps(c.shape[axis], n_out)
        shape = [1] * c.ndim
        shape[axis] = n_out
        c = sum(np.take(c, idx[:, k], axis=axis) * wts[:, k].reshape(shape) for k in range(4))
    return c


def rescale(e: np.ndarray, scale: int) -> np.ndarray:
    """One pyramid level of a map (..., H, W): bicubic zoom to height ``scale`` (periodic
    boundaries), negative spline overshoots clipped at 0, then renormalised so that every level
    holds the same total energy as the input (per map). Returns float32."""
    e = np.asarray(e, dtype=np.float32)
    h, w = e.shape[-2:]
    out_shape = level_shape((h, w), scale)
    if out_shape == (h, w):
        return e.copy()
    z = periodic_zoom(e, out_shape)
    np.maximum(z, 0, out=z)
    z *= (total_energy(e) / total_energy(z))[..., None, None]
    return z.astype(np.float32)


def pyramid(e: np.ndarray, scales: tuple[int, ...] = SCALES) -> dict[int, np.ndarray]:
    """{scale: level} for the scales no larger than the map (source: 256 -> 128 -> 64)."""
    h = np.asarray(e).shape[-2]
    return {s: rescale(e, s) for s in scales if s <= h}


def gradients(e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Periodic central differences (dE/dx along axis -2, dE/dy along axis -1, per pixel) and
    the magnitude |grad E|. The maps are periodic, so the stencil wraps at the edges."""
    e = np.asarray(e)
    gx = 0.5 * (np.roll(e, -1, axis=-2) - np.roll(e, 1, axis=-2))
    gy = 0.5 * (np.roll(e, -1, axis=-1) - np.roll(e, 1, axis=-1))
    return gx, gy, np.hypot(gx, gy)
