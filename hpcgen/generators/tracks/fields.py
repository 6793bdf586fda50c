"""Magnetic fields: each answers one question, "B at these points" (tesla, positions in mm).

Written against an array module ``xp`` (numpy or cupy) so one definition serves CPU and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.special import erf


class Field(Protocol):
    def __call__(self, x: Any, y: Any, z: Any, xp: Any) -> tuple[Any, Any, Any]:
        """(Bx, By, Bz) in T at points (x, y, z) in mm; arrays broadcast together."""

    def abs_integral(self, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
        """An upper bound of the integral of |B| dz (T mm) between z0 and z1 along any path:
        what limits how far a track can bend (used by verify)."""


@dataclass(frozen=True)
class UniformField:
    bx: float
    by: float
    bz: float

    def __call__(self, x: Any, y: Any, z: Any, xp: Any) -> tuple[Any, Any, Any]:
        zero = xp.zeros_like(z)
        return zero + self.bx, zero + self.by, zero + self.bz

    def abs_integral(self, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
        return float(np.sqrt(self.bx**2 + self.by**2 + self.bz**2)) * np.abs(z1 - z0)


@dataclass(frozen=True)
class GaussianDipole:
    """By(z) = B0 exp(-((z - zc)/w)^2 / 2), Bx = Bz = 0: the LHCb dipole's on-axis fit."""

    b0: float
    zc: float
    w: float

    def __call__(self, x: Any, y: Any, z: Any, xp: Any) -> tuple[Any, Any, Any]:
        u = (z - self.zc) / self.w
        by = self.b0 * xp.exp(-0.5 * u * u)
        zero = xp.zeros_like(by)
        return zero, by, zero

    def abs_integral(self, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
        lo, hi = np.minimum(z0, z1), np.maximum(z0, z1)
        c = abs(self.b0) * self.w * np.sqrt(np.pi / 2)
        return c * (
            erf((hi - self.zc) / (self.w * np.sqrt(2)))
            - erf((lo - self.zc) / (self.w * np.sqrt(2)))
        )
