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


def rescale(e: np.ndarray, scale: int) -> np.ndarray:
    """One pyramid level of a map (..., H, W): bicubic zoom to height ``scale`` (periodic
    boundaries), negative spline overshoots clipped at 0, then renormalised so that every level
    holds the same total energy as the input (per map). Returns float32."""
    e = np.asarray(e, dtype=np.float32)
    h, w = e.shape[-2:]
    out_shape = level_shape((h, w), scale)
    if out_shape == (h, w):
        return e.copy()
    flat = e.reshape(-1, h, w)
    out = np.empty((flat.shape[0], *out_shape), dtype=np.float32)
    zoom = (out_shape[0] / h, out_shape[1] / w)
    for k, frame in enumerate(flat):  # frame by frame: a zoom over the batch axis would mix maps
        z = ndi.zoom(frame, zoom, order=3, mode="grid-wrap", grid_mode=True, output=np.float32)
        np.maximum(z, 0, out=z)
        out[k] = z * np.float32(frame.sum(dtype=np.float64) / z.sum(dtype=np.float64))
    return out.reshape(*e.shape[:-2], *out_shape)


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
