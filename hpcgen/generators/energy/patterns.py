"""Base energy patterns (frame 0 of every trajectory), each divided by its mean.

All four are non-negative and have mean exactly 1 before the cast to float32. The maps are
treated as periodic everywhere else (wrap-around rotation, blur and translation), so the turbulent
pattern is upsampled with periodic ("grid-wrap") splines and the laminar one is sampled without its
endpoint.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hpcgen.generators.energy.maps import periodic_zoom

#: the scales of the turbulent cascade (pixels per noise cell)
TURBULENT_SCALES = (4, 8, 16, 32, 64)


def turbulent(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """|sum over s in {4, 8, 16, 32, 64} of bicubic-zoomed N(0, 1) noise of size shape/s, / s|."""
    h, w = shape
    total = np.zeros(shape)
    for s in TURBULENT_SCALES:
        small = rng.standard_normal((max(1, h // s), max(1, w // s)))
        # scipy.ndimage.zoom(small, order=3, mode="grid-wrap", grid_mode=True) to exactly (h, w)
        total += periodic_zoom(small, shape) / s
    return _unit_mean(np.abs(total))


def laminar(shape: tuple[int, int], rng: np.random.Generator | None = None) -> np.ndarray:
    """sin X cos Y + 2 on the periodic square [0, 2 pi)^2 (X along axis 1, Y along axis 0)."""
    h, w = shape
    y = np.linspace(0.0, 2 * np.pi, h, endpoint=False)[:, None]
    x = np.linspace(0.0, 2 * np.pi, w, endpoint=False)[None, :]
    return _unit_mean(np.sin(x) * np.cos(y) + 2.0)


def vortex(shape: tuple[int, int], rng: np.random.Generator | None = None) -> np.ndarray:
    """exp(-R^2) (1 + sin 5 theta) on [-1, 1]^2, centred on the rotation centre of the map."""
    h, w = shape
    y = np.linspace(-1.0, 1.0, h)[:, None]
    x = np.linspace(-1.0, 1.0, w)[None, :]
    r2 = x**2 + y**2
    theta = np.arctan2(y, x)
    return _unit_mean(np.exp(-r2) * (1.0 + np.sin(5.0 * theta)))


def random(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Independent Exponential(1) energy per pixel."""
    return _unit_mean(rng.exponential(1.0, shape))


PATTERN_FUNCS: dict[str, Callable[..., np.ndarray]] = {
    "turbulent": turbulent,
    "laminar": laminar,
    "vortex": vortex,
    "random": random,
}


def base_pattern(name: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Frame 0 of a trajectory: pattern ``name`` as float32 with mean 1 (total H * W)."""
    return PATTERN_FUNCS[name](shape, rng).astype(np.float32)


def _unit_mean(e: np.ndarray) -> np.ndarray:
    return e / e.mean()
