"""Parameters of the tracks generator. Units: mm, tesla, GeV for momenta, 1/MeV for q/p."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hpcgen.generators.base import require

#: LHCb dipole, Gaussian fit to the real map's on-axis By(z) (seed document): B0 in T, z in mm
GAUSS_B0 = -1.0182
GAUSS_ZC = 5007.0
GAUSS_W = 1744.0


@dataclass(frozen=True)
class TracksParams:
    """What the tracks generator draws and how it propagates.

    Ranges are (low, high) with low <= high; positions in mm, slopes dimensionless, momenta in GeV.
    """

    #: magnetic field model: "gaussian" (LHCb dipole fit) or "uniform" (``b_uniform``)
    field: Literal["gaussian", "uniform"] = "gaussian"
    b0: float = GAUSS_B0  # T, peak By of the Gaussian model
    z_center: float = GAUSS_ZC  # mm
    z_width: float = GAUSS_W  # mm, > 0
    b_uniform: tuple[float, float, float] = (0.0, -1.0, 0.0)  # T, (Bx, By, Bz)
    #: integrator: classic fixed-step Runge-Kutta 4 with a final partial step
    integrator: Literal["rk4"] = "rk4"
    step: float = 5.0  # mm, > 0
    x_range: tuple[float, float] = (-3000.0, 3000.0)
    y_range: tuple[float, float] = (-2500.0, 2500.0)
    tx_range: tuple[float, float] = (-0.3, 0.3)
    ty_range: tuple[float, float] = (-0.25, 0.25)
    p_min: float = 2.0  # GeV, > 0; p is log-uniform in [p_min, p_max]
    p_max: float = 100.0  # GeV
    #: charges drawn with equal probability
    charges: tuple[int, ...] = (-1, 1)
    z_start: float = 3000.0  # mm
    z_end: float = 9000.0  # mm, used when dz_range is empty
    #: if given, dz = z_end - z_start is drawn uniformly in this range (mm, may be negative)
    dz_range: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("x_range", "y_range", "tx_range", "ty_range"):
            lo, hi = getattr(self, name)
            require(lo <= hi, f"params.{name}: low {lo} > high {hi}")
        require(self.z_width > 0, f"params.z_width must be > 0 mm, got {self.z_width}")
        require(self.step > 0, f"params.step must be > 0 mm, got {self.step}")
        require(self.p_min > 0, f"params.p_min must be > 0 GeV, got {self.p_min}")
        require(self.p_min <= self.p_max, f"params.p_min {self.p_min} > p_max {self.p_max}")
        require(
            len(self.charges) > 0 and all(q in (-1, 1) for q in self.charges),
            f"params.charges must be a non-empty list of -1/+1, got {list(self.charges)}",
        )
        if self.dz_range:
            require(len(self.dz_range) == 2, "params.dz_range must be [low, high] (mm) or empty")
            lo, hi = self.dz_range
            require(lo <= hi, f"params.dz_range: low {lo} > high {hi}")
        else:
            require(self.z_end != self.z_start, "params.z_end must differ from z_start")
        require(
            max(
                abs(self.tx_range[0]),
                abs(self.tx_range[1]),
                abs(self.ty_range[0]),
                abs(self.ty_range[1]),
            )
            < 10,
            "params.tx_range/ty_range: |slope| must stay below 10",
        )
