"""Scan positions (probe centres, object pixels; x = column, y = row)."""

from __future__ import annotations

import math

import numpy as np

from hpcgen.generators.ptycho.forward import position_bounds


def random_positions(
    rng: np.random.Generator, count: int, m: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` probe centres uniform on [N/2, M - N/2]^2 (PtychoPINN's border of N/2)."""
    lo, hi = position_bounds(m, n)
    u = rng.random((count, 2))
    return lo + (hi - lo) * u[:, 0], lo + (hi - lo) * u[:, 1]


def raster_shape(m: int, n: int, overlap: float) -> tuple[int, int, float, float]:
    """(points per axis k, total k*k, spacing (1 - f) N, first coordinate) of the square raster
    that fits in [N/2, M - N/2], centred in that range."""
    lo, hi = position_bounds(m, n)
    spacing = (1.0 - overlap) * n
    k = math.floor((hi - lo) / spacing + 1e-9) + 1
    start = lo + ((hi - lo) - (k - 1) * spacing) / 2
    return k, k * k, spacing, start


def raster_positions(m: int, n: int, overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """All raster points, row by row (y outer, x inner): sample i is point i."""
    k, _, spacing, start = raster_shape(m, n, overlap)
    axis = start + spacing * np.arange(k)
    ys, xs = np.meshgrid(axis, axis, indexing="ij")
    return xs.ravel(), ys.ravel()
