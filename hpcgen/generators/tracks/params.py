"""Parameters of the tracks generator. Units: mm, tesla, GeV for momenta, 1/MeV for q/p."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

from hpcgen.generators.base import require
from hpcgen.generators.tracks.fieldmap import MAX_FIELD_T
from hpcgen.generators.tracks.sampling import check_z_sampling

#: LHCb dipole, Gaussian fit to the real map's on-axis By(z) (seed document): B0 in T, z in mm
GAUSS_B0 = -1.0182
GAUSS_ZC = 5007.0
GAUSS_W = 1744.0
#: where the demo and the tests keep the synthetic map (``hpcgen fieldmap synth``)
DEFAULT_MAP = "fieldmaps/synth.txt"
#: LHCb's tracking stations (SciFi, z ~ 7.7-9.4 m) cover about 6 m x 5 m: |x| < 3000 mm,
#: |y| < 2500 mm (the seed's input ranges too); slopes |tx|, |ty| < 1, the seed's own bound on
#: tx_f (ty gets the same). ``acceptance`` for ML exports: [x, y, tx, ty]
LHCB_T_ACCEPTANCE = (3000.0, 2500.0, 1.0, 1.0)
#: mm: no position, length or z of a track generator's setting reaches 1 km (the LHCb detector is
#: 21 m long); beyond it a range's width overflows the random draws
MAX_LENGTH_MM = 1e6
#: the parameters in mm that MAX_LENGTH_MM bounds
LENGTHS = (
    "x_range",
    "y_range",
    "z_start",
    "z_end",
    "dz_range",
    "z_range",
    "z_planes",
    "z_center",
    "z_width",
)


@dataclass(frozen=True)
class TracksParams:
    """What the tracks generator draws and how it propagates.

    Ranges are (low, high) with low <= high; positions in mm, slopes dimensionless, momenta in GeV.
    """

    #: magnetic field: "gaussian" (LHCb dipole fit), "uniform" (``b_uniform``) or "map" (a field
    #: map in the LHCb text format, ``field_map``, trilinear, zero outside the grid)
    field: Literal["gaussian", "uniform", "map"] = "gaussian"
    b0: float = GAUSS_B0  # T, peak By of the Gaussian model
    z_center: float = GAUSS_ZC  # mm
    z_width: float = GAUSS_W  # mm, > 0
    b_uniform: tuple[float, float, float] = (0.0, -1.0, 0.0)  # T, (Bx, By, Bz)
    #: field-map text file (path relative to the working directory); cached as binary beside it
    #: or in $HPCGEN_CACHE_DIR, keyed by its SHA-256 (recorded in the file's provenance)
    field_map: str = DEFAULT_MAP
    #: +1: the field as given; -1: flipped (LHCb MagUp vs MagDown); applies to every field model
    polarity: int = 1
    #: map grid points with |B| above this (T) are artefacts (the real map's edges reach > 2 T)
    artefact_b: float = 2.0
    #: "mask": tracks through a cell with an artefact corner get the MASKED_CELL status flag;
    #: "keep": use the map as it is, no flag; "fail": refuse a map that has any artefact
    artefact_policy: Literal["mask", "keep", "fail"] = "mask"
    #: "rk4": classic fixed step ``step`` with a final partial step; adaptive embedded schemes
    #: (LHCb's TrackRungeKuttaExtrapolator): "cashkarp" (LHCb's default), "dopri5"
    #: (Dormand-Prince 5(4)), "bs32" (Bogacki-Shampine 3(2))
    integrator: Literal["rk4", "cashkarp", "dopri5", "bs32"] = "cashkarp"
    #: "auto": numba on the CPU, CUDA (cupy) on a GPU; "numpy": the vectorised reference (slow,
    #: the definition); "numba": the compiled CPU kernel even where a GPU is present
    kernel: Literal["auto", "numpy", "numba"] = "auto"
    #: mm, > 0: the rk4 step; through a map in grid_steps "cell" the longest one (steps also end
    #: on the cell faces: above the cells' sizes, e.g. 200 for the synthetic map, one per cell)
    step: float = 5.0
    #: adaptive schemes, how a step's error estimate is judged. "global" (default): the step's
    #: error as it arrives at z_end, |e_x| + l |e_tx| (y alike) with the lever arm
    #: l = max(|h|, |z_end - z after the step|), within ``tolerance`` (+ rel_tolerance x l x the
    #: step's change of tx): each step's share of the error at z_end. "lhcb": LHCb's
    #: TrackRungeKuttaExtrapolator, |e_x| within tolerance and |e_tx| within tolerance/|dz| +
    #: rel_tolerance x the change of tx, a per-step bound the lever arm ahead magnifies
    step_control: Literal["global", "lhcb"] = "global"
    #: mm, > 0: adaptive schemes, the error allowed per step (step_control). A per-step bound,
    #: not a global one: the errors of ~10 steps add up. "global" at 0.6 um keeps Y within 1 um
    #: of the exact path at z_end for 2-100 GeV through the Gaussian dipole, default planes and
    #: the specs' per-track z (docs/tracks.md, "What the tolerance means"); LHCb's 1 um per step
    #: ("lhcb", rel_tolerance 5e-5) erred by up to 4 um there
    tolerance: float = 0.0006
    #: adaptive: adds rel_tolerance x |the step's change of tx| to the slope tolerance (LHCb:
    #: 5e-5; "global": times the lever arm). 0: it loosens exactly the strongly bending
    #: low-momentum steps whose slope errors the lever arm magnifies most (with 5e-5 no tolerance
    #: brings 2 GeV tracks under 1 um)
    rel_tolerance: float = 0.0
    min_step: float = 10.0  # mm: adaptive steps this short are always accepted
    max_step: float = 1000.0  # mm
    #: mm: the first step (or |dz|). 700, not LHCb's 1000: a 1 m first step from the dipole's
    #: middle can err by 2 um while its embedded estimate says 0.3 um (the estimate's leading
    #: term, from the field's odd derivatives, vanishes at the Gaussian's centre)
    initial_step: float = 700.0
    #: adaptive: attempts per track before the STEP_LIMIT flag (fixed steps have no limit; in
    #: "cell" a NaN or infinite z_end stops them with that flag)
    max_steps: int = 1000
    max_slope: float = 10.0  # |tx| or |ty| beyond this stops a track (SLOPE flag): curling
    #: field maps only: end adaptive steps on the grid planes they would cross ("z", "xy" or
    #: both, "xyz"), because the embedded error estimate cannot see the trilinear interpolant's
    #: kinks there; "cell" ends them as "xyz" and takes each step's field from the one grid cell
    #: it lies in (a smooth polynomial, so the estimate sees all of the step's error: the most
    #: accurate mode, and the fastest that ends steps on planes). "off" trades accuracy for speed.
    #: "rk4" in "cell": each fixed step also ends on the cell faces ahead and takes its cell's
    #: field (the other modes leave fixed steps as they are). Measured errors and speeds:
    #: docs/tracks.md, "Grid-aware steps"
    grid_steps: Literal["off", "z", "xy", "xyz", "cell"] = "cell"
    x_range: tuple[float, float] = (-3000.0, 3000.0)
    y_range: tuple[float, float] = (-2500.0, 2500.0)
    tx_range: tuple[float, float] = (-0.3, 0.3)
    ty_range: tuple[float, float] = (-0.25, 0.25)
    p_min: float = 2.0  # GeV, > 0; p is log-uniform in [p_min, p_max]
    p_max: float = 100.0  # GeV
    #: charges drawn with equal probability
    charges: tuple[int, ...] = (-1, 1)
    #: mm: every track's z_start, unless z_range or z_planes draws it per track
    z_start: float = 3000.0
    z_end: float = 9000.0  # mm, used when dz_range is empty; z_end < z_start propagates backward
    #: if given, dz = z_end - z_start is drawn uniformly in this range (mm, may be negative)
    dz_range: tuple[float, ...] = ()
    #: negate each track's dz (fixed or drawn) with probability 1/2: forward and backward
    #: propagations alike; dz_range then holds magnitudes (0 < low <= high)
    both_directions: bool = False
    #: [low, high] mm: draw z_start per track, uniformly over the positions that keep both ends
    #: (z_start and z_end = z_start + dz) inside [low, high]; must lie in the field's z extent
    z_range: tuple[float, ...] = ()
    #: z planes (mm): draw z_start per track from these, with equal probability among the planes
    #: that keep z_end inside z_range (or inside the field's z extent when z_range is empty)
    z_planes: tuple[float, ...] = ()
    #: [x, y, tx, ty]: the acceptance box at z_end, |x_f| < x mm, |y_f| < y mm, |tx_f| < tx,
    #: |ty_f| < ty; tracks outside it keep their Y and get the OUT_OF_ACCEPTANCE status bit (16).
    #: Empty: no cut. LHCB_T_ACCEPTANCE is the documented choice for ML exports
    acceptance: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):  # inf and nan are TOML numbers: no parameter may be one
            v = getattr(self, f.name)
            values = v if isinstance(v, tuple) else (v,)
            numbers = [x for x in values if isinstance(x, float)]
            require(
                all(math.isfinite(x) for x in numbers),
                f"params.{f.name} must be finite, got {list(v) if isinstance(v, tuple) else v}",
            )
            if f.name in LENGTHS:
                require(
                    all(abs(x) <= MAX_LENGTH_MM for x in numbers),
                    f"params.{f.name} must stay within +-{MAX_LENGTH_MM:g} mm (1 km), got "
                    f"{list(v) if isinstance(v, tuple) else v}",
                )
        for name, b in (("b0", (self.b0,)), ("b_uniform", self.b_uniform)):
            require(
                math.hypot(*b) <= MAX_FIELD_T,
                f"params.{name}: |B| = {math.hypot(*b):g} T is not a magnetic field (limit "
                f"{MAX_FIELD_T:g} T; a unit slip, gauss for tesla?)",
            )
        for name in ("x_range", "y_range", "tx_range", "ty_range"):
            lo, hi = getattr(self, name)
            require(lo <= hi, f"params.{name}: low {lo} > high {hi}")
        require(self.z_width > 0, f"params.z_width must be > 0 mm, got {self.z_width}")
        require(self.step > 0, f"params.step must be > 0 mm, got {self.step}")
        require(self.polarity in (-1, 1), f"params.polarity must be +1 or -1, got {self.polarity}")
        require(self.artefact_b > 0, f"params.artefact_b must be > 0 T, got {self.artefact_b}")
        require(self.tolerance > 0, f"params.tolerance must be > 0 mm, got {self.tolerance}")
        require(
            self.rel_tolerance >= 0, f"params.rel_tolerance must be >= 0, got {self.rel_tolerance}"
        )
        require(self.min_step > 0, f"params.min_step must be > 0 mm, got {self.min_step}")
        require(
            self.min_step <= self.max_step,
            f"params.min_step {self.min_step} > max_step {self.max_step}",
        )
        require(
            self.min_step <= self.initial_step <= self.max_step,
            f"params.initial_step must be in [min_step, max_step], got {self.initial_step}",
        )
        require(self.max_steps >= 1, f"params.max_steps must be >= 1, got {self.max_steps}")
        require(self.max_slope > 0, f"params.max_slope must be > 0, got {self.max_slope}")
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
            require(
                lo > 0 or not self.both_directions,
                f"params.dz_range: with both_directions it holds magnitudes, low must be > 0 mm, "
                f"got {lo}",
            )
        else:
            require(self.z_end != self.z_start, "params.z_end must differ from z_start")
        if self.z_range:
            require(len(self.z_range) == 2, "params.z_range must be [low, high] (mm) or empty")
            lo, hi = self.z_range
            require(lo < hi, f"params.z_range: low {lo} must be < high {hi}")
        if self.acceptance:
            require(
                len(self.acceptance) == 4 and all(a > 0 for a in self.acceptance),
                "params.acceptance must be [x, y, tx, ty] with every bound > 0 (mm, mm, 1, 1), "
                f"or empty; got {list(self.acceptance)}",
            )
        require(
            max(
                abs(self.tx_range[0]),
                abs(self.tx_range[1]),
                abs(self.ty_range[0]),
                abs(self.ty_range[1]),
            )
            < self.max_slope,
            f"params.tx_range/ty_range: |slope| must stay below max_slope ({self.max_slope})",
        )
        # the planes and the window need no field to check; against the field's extent:
        # TracksGenerator.check_n_samples
        check_z_sampling(self, None)
