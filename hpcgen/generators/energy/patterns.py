"""Base energy patterns (frame 0 of every trajectory), each divided by its mean.

All four are non-negative and have mean exactly 1 before the cast to float32. The maps are
treated as periodic everywhere else (wrap-around rotation, blur and translation), so the turbulent
pattern is upsampled with periodic ("grid-wrap") splines and the laminar one is sampled without its
endpoint.

Axes follow the file's convention: a map is (H, W); "x" runs along axis 0 of the map (axis 2 of
``t0_fields/energy``, the rows) and "y" along axis 1 (axis 3, the columns).

turbulent and random draw their pixels from the trajectory's generator, so every trajectory starts
differently. vortex and laminar are analytic: the source workflow drew each with fixed constants,
so every trajectory of a domain started from the same frame. Here they take shape parameters
(:data:`PATTERN_PARAMETERS`), drawn per trajectory within :data:`PARAMETER_RANGES` by
:func:`draw_parameters`; :data:`SOURCE_PARAMETERS` are the source's constants, which give its
exact pattern.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from hpcgen.generators.energy.maps import periodic_zoom

#: the scales of the turbulent cascade (pixels per noise cell)
TURBULENT_SCALES = (4, 8, 16, 32, 64)

#: shape parameters of the analytic patterns: name -> (units, description)
PATTERN_PARAMETERS: dict[str, dict[str, tuple[str, str]]] = {
    "vortex": {
        "vortex_centre_x": ("1", "vortex centre along x (axis 2), map spans [-1, 1]"),
        "vortex_centre_y": ("1", "vortex centre along y (axis 3), map spans [-1, 1]"),
        "vortex_width": ("1", "Gaussian width w of exp(-R^2 / w^2), map half-widths"),
        "vortex_mode": ("1", "number m of arms in 1 + sin(m theta + phase) (an integer)"),
        "vortex_phase": ("rad", "angular phase of the arms"),
    },
    "laminar": {
        "laminar_kx": ("1", "periods of the cosine factor along x (axis 2) (an integer)"),
        "laminar_ky": ("1", "periods of the sine factor along y (axis 3) (an integer)"),
        "laminar_phase_x": ("rad", "phase of the cosine factor"),
        "laminar_phase_y": ("rad", "phase of the sine factor"),
    },
}

#: the source workflow's constants: with these the patterns are exactly its patterns
SOURCE_PARAMETERS: dict[str, dict[str, float]] = {
    "vortex": {
        "vortex_centre_x": 0.0,
        "vortex_centre_y": 0.0,
        "vortex_width": 1.0,
        "vortex_mode": 5.0,
        "vortex_phase": 0.0,
    },
    "laminar": {
        "laminar_kx": 1.0,
        "laminar_ky": 1.0,
        "laminar_phase_x": 0.0,
        "laminar_phase_y": 0.0,
    },
}

#: per-trajectory draws: (low, high) uniform, both ends included for the integer ones
PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    "vortex_centre_x": (-0.5, 0.5),
    "vortex_centre_y": (-0.5, 0.5),
    "vortex_width": (0.5, 1.5),
    "vortex_mode": (2, 8),
    "vortex_phase": (0.0, 2 * math.pi),
    "laminar_kx": (1, 4),
    "laminar_ky": (1, 4),
    "laminar_phase_x": (0.0, 2 * math.pi),
    "laminar_phase_y": (0.0, 2 * math.pi),
}
#: parameters drawn as integers (wave numbers keep the laminar map periodic; arm counts whole)
INTEGER_PARAMETERS = frozenset({"vortex_mode", "laminar_kx", "laminar_ky"})


def draw_parameters(pattern: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shape parameters of ``n`` trajectories of ``pattern`` (empty for turbulent and random),
    drawn in :data:`PARAMETER_RANGES` in the fixed order of :data:`PATTERN_PARAMETERS`, stored
    as float32 (the base pattern is computed from the stored values)."""
    out: dict[str, np.ndarray] = {}
    for name in PATTERN_PARAMETERS.get(pattern, {}):
        lo, hi = PARAMETER_RANGES[name]
        if name in INTEGER_PARAMETERS:
            v = rng.integers(int(lo), int(hi) + 1, n).astype(np.float64)
        else:
            v = rng.uniform(lo, hi, n)
        out[name] = v.astype(np.float32)
    return out


def source_parameters(pattern: str, n: int) -> dict[str, np.ndarray]:
    """The source's constants for ``n`` trajectories (empty for turbulent and random)."""
    return {
        name: np.full(n, value, np.float32)
        for name, value in SOURCE_PARAMETERS.get(pattern, {}).items()
    }


def turbulent(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """|sum over s in {4, 8, 16, 32, 64} of bicubic-zoomed N(0, 1) noise of size shape/s, / s|."""
    h, w = shape
    total = np.zeros(shape)
    for s in TURBULENT_SCALES:
        small = rng.standard_normal((max(1, h // s), max(1, w // s)))
        # scipy.ndimage.zoom(small, order=3, mode="grid-wrap", grid_mode=True) to exactly (h, w)
        total += periodic_zoom(small, shape) / s
    return _unit_mean(np.abs(total))


def laminar(
    shape: tuple[int, int],
    rng: np.random.Generator | None = None,
    laminar_kx: float = 1.0,
    laminar_ky: float = 1.0,
    laminar_phase_x: float = 0.0,
    laminar_phase_y: float = 0.0,
) -> np.ndarray:
    """sin(ky Y + phase_y) cos(kx X + phase_x) + 2 on the periodic square [0, 2 pi)^2, X along x
    (axis 0 of the map), Y along y (axis 1). Integer wave numbers keep it periodic; the defaults
    are the source's sin Y cos X + 2."""
    h, w = shape
    x = np.linspace(0.0, 2 * np.pi, h, endpoint=False)[:, None]
    y = np.linspace(0.0, 2 * np.pi, w, endpoint=False)[None, :]
    return _unit_mean(
        np.sin(laminar_ky * y + laminar_phase_y) * np.cos(laminar_kx * x + laminar_phase_x) + 2.0
    )


def vortex(
    shape: tuple[int, int],
    rng: np.random.Generator | None = None,
    vortex_centre_x: float = 0.0,
    vortex_centre_y: float = 0.0,
    vortex_width: float = 1.0,
    vortex_mode: float = 5.0,
    vortex_phase: float = 0.0,
) -> np.ndarray:
    """exp(-R^2 / w^2) (1 + sin(m theta + phase)) on [-1, 1]^2 (X along x, axis 0 of the map;
    Y along y, axis 1), R and theta = atan2(X - cx, Y - cy) about the centre (cx, cy). The
    defaults are the source's exp(-R^2) (1 + sin 5 theta), centred on the map's rotation centre."""
    h, w = shape
    x = np.linspace(-1.0, 1.0, h)[:, None] - vortex_centre_x
    y = np.linspace(-1.0, 1.0, w)[None, :] - vortex_centre_y
    r2 = x**2 + y**2
    theta = np.arctan2(x, y)
    arms = 1.0 + np.sin(vortex_mode * theta + vortex_phase)
    return _unit_mean(np.exp(-r2 / vortex_width**2) * arms)


def random(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Independent Exponential(1) energy per pixel."""
    return _unit_mean(rng.exponential(1.0, shape))


PATTERN_FUNCS: dict[str, Callable[..., np.ndarray]] = {
    "turbulent": turbulent,
    "laminar": laminar,
    "vortex": vortex,
    "random": random,
}


def base_pattern(
    name: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    parameters: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Frame 0 of a trajectory: pattern ``name`` as float32 with mean 1 (total H * W).
    ``parameters``: the shape parameters of vortex / laminar (default: the source's)."""
    kwargs = {k: float(v) for k, v in (parameters or {}).items()}
    return PATTERN_FUNCS[name](shape, rng, **kwargs).astype(np.float32)


def _unit_mean(e: np.ndarray) -> np.ndarray:
    return e / e.mean()
