"""Magnetic fields: each answers one question, "B at these points" (tesla, positions in mm).

Written against an array module ``xp`` (numpy or cupy) so one definition serves CPU and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class Field(Protocol):
    def __call__(self, x: Any, y: Any, z: Any, xp: Any) -> tuple[Any, Any, Any]:
        """(Bx, By, Bz) in T at points (x, y, z) in mm; arrays broadcast together."""


@dataclass(frozen=True)
class UniformField:
    bx: float
    by: float
    bz: float

    def __call__(self, x: Any, y: Any, z: Any, xp: Any) -> tuple[Any, Any, Any]:
        zero = xp.zeros_like(z)
        return zero + self.bx, zero + self.by, zero + self.bz


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
