"""Magnetic fields: each answers one question, "B at these points" (tesla, positions in mm).

Three fields, one interface (as ACTS's ConstantBField / InterpolatedBFieldMap): ``UniformField``,
``GaussianDipole`` (the LHCb dipole's on-axis fit) and ``FieldMap`` (a grid, trilinear like LHCb's
MagneticFieldGrid, zero outside). ``__call__`` is written against an array module ``xp`` (numpy or
cupy); ``lookup`` (numpy) also returns per-point status flags (outside the map, masked cell), the
definition the compiled kernels reproduce. ``kernel_args`` packs a field for those kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from hpcgen.generators.tracks.fieldmap import MapGrid

#: per-track status bits (the ``status`` dataset, uint8); 0 = ok
LEFT_VOLUME = 1  # a field lookup fell outside the map's grid (B = 0 there)
MASKED_CELL = 2  # a field lookup fell in a cell with an artefact corner (policy "mask")
#: the adaptive integrator hit max_steps before z_end, or (fixed steps in "cell") z_end is NaN or
#: infinite, never reached (Y is NaN)
STEP_LIMIT = 4
SLOPE = 8  # |tx| or |ty| exceeded max_slope: a curling track (Y is NaN)
#: the state at z_end is outside the acceptance box (params.acceptance); set by the generator
#: after propagation, never by a kernel (Y is a valid state)
OUT_OF_ACCEPTANCE = 16
STATUS_NAMES = {
    LEFT_VOLUME: "left field volume",
    MASKED_CELL: "masked cell",
    STEP_LIMIT: "step limit",
    SLOPE: "slope limit",
    OUT_OF_ACCEPTANCE: "out of acceptance",
}
#: flags after which the propagation stops and Y is not a state at z_end
ABORTED = STEP_LIMIT | SLOPE

#: kernel field kinds
KIND_UNIFORM, KIND_GAUSSIAN, KIND_MAP = 0, 1, 2


class Field(Protocol):
    """What the stepper, the kernels, the generator and verify ask of a field."""

    #: KIND_UNIFORM, KIND_GAUSSIAN or KIND_MAP: which field code the compiled kernels run
    kind: ClassVar[int]

    def __call__(self, x: Any, y: Any, z: Any, xp: Any) -> tuple[Any, Any, Any]:
        """(Bx, By, Bz) in T at points (x, y, z) in mm; arrays broadcast together."""

    def lookup(
        self, x: np.ndarray, y: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(Bx, By, Bz) in T and the per-point status flags (uint8: LEFT_VOLUME, MASKED_CELL) at
        points in mm, numpy: the definition the compiled kernels reproduce."""

    def kernel_args(self) -> tuple:
        """(kind, fpar, fmap, imap, mask, bmap): the field packed for the compiled kernels, the
        same dtypes and ranks for every field."""

    def z_extent(self) -> tuple[float, float] | None:
        """The z range (mm) where the field is defined or not negligible; None: everywhere."""

    def abs_integral(self, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
        """An upper bound of the integral of |B| dz (T mm) between z0 and z1 along any path:
        what limits how far a track can bend (used by verify)."""

    def axis_integral(self, z0: float, z1: float) -> float:
        """Integral of By(0, 0, z) dz from z0 to z1 (T mm; negative for z1 < z0)."""


@dataclass(frozen=True)
class UniformField:
    kind: ClassVar[int] = KIND_UNIFORM
    bx: float
    by: float
    bz: float

    def __call__(self, x: Any, y: Any, z: Any, xp: Any) -> tuple[Any, Any, Any]:
        zero = xp.zeros_like(z)
        return zero + self.bx, zero + self.by, zero + self.bz

    def lookup(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        bx, by, bz = self(x, y, z, np)
        return bx, by, bz, np.zeros(np.shape(z), np.uint8)

    def abs_integral(self, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
        return float(np.sqrt(self.bx**2 + self.by**2 + self.bz**2)) * np.abs(z1 - z0)

    def axis_integral(self, z0: float, z1: float) -> float:
        """Integral of By(0, 0, z) dz from z0 to z1 (T mm)."""
        return self.by * (z1 - z0)

    def z_extent(self) -> tuple[float, float] | None:
        return None  # everywhere

    def kernel_args(self) -> tuple:
        return (KIND_UNIFORM, np.array([self.bx, self.by, self.bz, 0.0]), *_no_map())


@dataclass(frozen=True)
class GaussianDipole:
    """By(z) = B0 exp(-((z - zc)/w)^2 / 2), Bx = Bz = 0: the LHCb dipole's on-axis fit."""

    kind: ClassVar[int] = KIND_GAUSSIAN
    b0: float
    zc: float
    w: float

    def __call__(self, x: Any, y: Any, z: Any, xp: Any) -> tuple[Any, Any, Any]:
        u = (z - self.zc) / self.w
        by = self.b0 * xp.exp(-0.5 * u * u)
        zero = xp.zeros_like(by)
        return zero, by, zero

    def lookup(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        bx, by, bz = self(x, y, z, np)
        return bx, by, bz, np.zeros(np.shape(z), np.uint8)

    def abs_integral(self, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
        from scipy.special import erf  # only verify asks: keep scipy out of every run's start-up

        lo, hi = np.minimum(z0, z1), np.maximum(z0, z1)
        c = abs(self.b0) * self.w * np.sqrt(np.pi / 2)
        return c * (
            erf((hi - self.zc) / (self.w * np.sqrt(2)))
            - erf((lo - self.zc) / (self.w * np.sqrt(2)))
        )

    def axis_integral(self, z0: float, z1: float) -> float:
        return float(np.sign(self.b0) * self.abs_integral(np.array(z0), np.array(z1))) * (
            1.0 if z1 >= z0 else -1.0
        )

    def z_extent(self) -> tuple[float, float]:
        return (self.zc - 8 * self.w, self.zc + 8 * self.w)  # exp(-32): nothing left

    def kernel_args(self) -> tuple:
        return (KIND_GAUSSIAN, np.array([self.b0, self.zc, self.w, 0.0]), *_no_map())


def _axis_table(a: np.ndarray) -> tuple[np.ndarray, float]:
    """Index table for a (possibly non-uniform) axis: cell index of the left edge of each of the
    fine bins of width (min spacing)/2, so a lookup is one multiply, one load and a one-step
    correction instead of a binary search."""
    fine = float(np.diff(a).min()) / 2.0
    n = int(np.ceil((a[-1] - a[0]) / fine)) + 2
    left = a[0] + fine * np.arange(n)
    idx = np.clip(np.searchsorted(a, left, side="right") - 1, 0, len(a) - 2)
    return idx.astype(np.int32), 1.0 / fine


#: mm: grid_steps "cell" rejects a step whose stage points lie further outside its cell
CELL_MARGIN = 0.25


@dataclass(frozen=True)
class CellPolynomial:
    """One grid cell's trilinear interpolant per track, as a polynomial in the offsets
    (u, v, w) = (x, y, z) - the cell's lower corner (mm):

        B = ((c0 + cz w) + (cy + cyz w) v) + ((cx + cxz w) + (cxy + cxyz w) v) u

    (each component; coefficients from the eight corners, FieldMap.cell_polynomial): the
    interpolant to rounding inside the cell, its smooth continuation just outside; ``width``
    the cell's edge lengths (mm). ``inside``:
    False where the step is outside the grid (B = 0, LEFT_VOLUME in ``flags``); ``flags`` also
    has MASKED_CELL for a masked cell. The compiled kernels evaluate it in this order."""

    origin: tuple
    width: tuple
    coef: list
    inside: np.ndarray
    flags: np.ndarray
    #: set where a point looked up was more than CELL_MARGIN outside the cell (lookup sets it)
    strayed: np.ndarray

    def lookup(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        """(Bx, By, Bz, flags) at points (mm), one per track."""
        u = x - self.origin[0]
        v = y - self.origin[1]
        w = z - self.origin[2]
        for o, wd in zip((u, v, w), self.width):
            self.strayed[(o < -CELL_MARGIN) | (o > wd + CELL_MARGIN)] = True
        out = []
        for c0, cz, cy, cyz, cx, cxz, cxy, cxyz in self.coef:
            b = ((c0 + cz * w) + (cy + cyz * w) * v) + ((cx + cxz * w) + (cxy + cxyz * w) * v) * u
            out.append(np.where(self.inside, b, 0.0))
        return out[0], out[1], out[2], self.flags


@dataclass(frozen=True, eq=False)
class FieldMap:
    """Trilinear interpolation on a grid (LHCb MagneticFieldGrid::fieldVectorLinearInterpolation):
    zero outside [x0, x1] x [y0, y1] x [z0, z1]; axes may have a variable step.

    ``polarity`` = -1 flips the field (LHCb MagUp vs MagDown). ``mask`` (uint8 per cell, or None):
    lookups in a masked cell set the MASKED_CELL flag.
    """

    kind: ClassVar[int] = KIND_MAP
    grid: MapGrid
    polarity: int = 1
    mask: np.ndarray | None = None
    _arrays: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        g = self.grid
        a = self._arrays
        # node values as float32: the text has 1 uT resolution, float32 resolves 0.06 uT at 1 T,
        # and the lookups are memory-bound: half the bytes
        a["B"] = np.ascontiguousarray(g.B * float(self.polarity), dtype=np.float32)
        for name, ax in zip("xyz", (g.xs, g.ys, g.zs)):
            a[name] = np.ascontiguousarray(ax, dtype=np.float64)
            a["inv" + name] = 1.0 / np.diff(ax)
            a["tab" + name], a["fine" + name] = _axis_table(ax)
        a["mask"] = (
            np.ascontiguousarray(self.mask, dtype=np.uint8)
            if self.mask is not None
            else np.zeros((1, 1, 1), np.uint8)
        )
        # |B| bound per z plane, for the verifier's bending bound (trilinear = convex weights)
        a["bmax_z"] = np.sqrt((g.B**2).sum(-1)).max(axis=(0, 1))

    @property
    def sha256(self) -> str:
        return self.grid.sha256

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The grid's x, y and z nodes (mm, float64, increasing): where its planes are."""
        a = self._arrays
        return a["x"], a["y"], a["z"]

    # --- the definition ------------------------------------------------------------------------
    def _cell(self, name: str, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cell index, fraction t in [0, 1], inside) for coordinates v along one axis."""
        ax = self._arrays[name]
        inside = (v >= ax[0]) & (v <= ax[-1])
        i = np.clip(np.searchsorted(ax, v, side="right") - 1, 0, len(ax) - 2)
        t = (v - ax[i]) * self._arrays["inv" + name][i]
        return i, t, inside

    def lookup(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        """(Bx, By, Bz, flags) at points (mm): flags has LEFT_VOLUME outside the grid (B = 0 there)
        and MASKED_CELL in masked cells. The compiled kernels reproduce this to the last bit."""
        x, y, z = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, z)))
        i, tx, inx = self._cell("x", x)
        j, ty, iny = self._cell("y", y)
        k, tz, inz = self._cell("z", z)
        inside = inx & iny & inz
        B = self._arrays["B"]  # float32 values; the arithmetic below is float64
        out = []
        for c in range(3):
            b = [
                B[ii, jj, kk, c].astype(np.float64)
                for ii, jj, kk in (
                    (i, j, k),
                    (i, j, k + 1),
                    (i, j + 1, k),
                    (i, j + 1, k + 1),
                    (i + 1, j, k),
                    (i + 1, j, k + 1),
                    (i + 1, j + 1, k),
                    (i + 1, j + 1, k + 1),
                )
            ]
            c00 = b[0] * (1.0 - tz) + b[1] * tz
            c01 = b[2] * (1.0 - tz) + b[3] * tz
            c10 = b[4] * (1.0 - tz) + b[5] * tz
            c11 = b[6] * (1.0 - tz) + b[7] * tz
            c0 = c00 * (1.0 - ty) + c01 * ty
            c1 = c10 * (1.0 - ty) + c11 * ty
            out.append(np.where(inside, c0 * (1.0 - tx) + c1 * tx, 0.0))
        flags = np.where(inside, 0, LEFT_VOLUME).astype(np.uint8)
        if self.mask is not None:
            masked = inside & (self._arrays["mask"][i, j, k] != 0)
            flags |= np.where(masked, MASKED_CELL, 0).astype(np.uint8)
        return out[0], out[1], out[2], flags

    # --- grid_steps "cell": one cell's polynomial per step -------------------------------------
    def cell_polynomial(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> CellPolynomial:
        """The field of one integration step per track (grid_steps "cell"): the trilinear
        polynomial of the cell that holds the step's straight-line midpoint (x, y, z) (mm; the
        cell as lookup finds it, clamped to the grid), or B = 0 where that point is outside the
        grid (a step the planes have already ended at the grid's faces)."""
        x, y, z = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, z)))
        a = self._arrays
        inside = np.ones(x.shape, bool)
        cell, origin, width, inv = [], [], [], []
        for name, v in zip("xyz", (x, y, z)):
            ax = a[name]
            inside &= (v >= ax[0]) & (v <= ax[-1])
            c = np.clip(np.searchsorted(ax, v, side="right") - 1, 0, len(ax) - 2)
            cell.append(c)
            origin.append(ax[c])
            width.append(ax[c + 1] - ax[c])
            inv.append(a["inv" + name][c])
        i, j, k = cell
        xi, yi, zi = inv
        B = a["B"]  # float32 values; the arithmetic below is float64
        coef = []
        for m in range(3):
            e00, e01, e10, e11 = (
                B[i + di, j + dj, k, m].astype(np.float64)
                for di, dj in ((0, 0), (0, 1), (1, 0), (1, 1))
            )
            e00z, e01z, e10z, e11z = (
                (B[i + di, j + dj, k + 1, m].astype(np.float64) - e) * zi
                for (di, dj), e in zip(((0, 0), (0, 1), (1, 0), (1, 1)), (e00, e01, e10, e11))
            )
            f0y = (e01 - e00) * yi
            f0yz = (e01z - e00z) * yi
            f1y = (e11 - e10) * yi
            f1yz = (e11z - e10z) * yi
            cx = (e10 - e00) * xi
            cxz = (e10z - e00z) * xi
            cxy = (f1y - f0y) * xi
            cxyz = (f1yz - f0yz) * xi
            coef.append((e00, e00z, f0y, f0yz, cx, cxz, cxy, cxyz))
        flags = np.where(inside, 0, LEFT_VOLUME).astype(np.uint8)
        if self.mask is not None:
            flags |= np.where(inside & (a["mask"][i, j, k] != 0), MASKED_CELL, 0).astype(np.uint8)
        strayed = np.zeros(x.shape, bool)
        return CellPolynomial(tuple(origin), tuple(width), coef, inside, flags, strayed)

    def __call__(self, x: Any, y: Any, z: Any, xp: Any) -> tuple[Any, Any, Any]:
        if xp is not np:
            raise TypeError("FieldMap.__call__ evaluates on numpy; the GPU uses the CUDA kernel")
        bx, by, bz, _ = self.lookup(x, y, z)
        return bx, by, bz

    # --- what verify needs -----------------------------------------------------------------------
    def abs_integral(self, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
        """Upper bound of the integral of |B| dz along any path: |B| at (x, y, z) between planes
        k and k+1 is at most the linear interpolation of the planes' max |B| (convex weights)."""
        zs = self._arrays["z"]
        m = self._arrays["bmax_z"]
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (m[1:] + m[:-1]) * np.diff(zs))])

        def F(z: np.ndarray) -> np.ndarray:  # integral of the bound from zs[0] to z
            z = np.clip(z, zs[0], zs[-1])
            k = np.clip(np.searchsorted(zs, z, side="right") - 1, 0, len(zs) - 2)
            t = (z - zs[k]) / (zs[k + 1] - zs[k])
            mz = m[k] + t * (m[k + 1] - m[k])
            return cum[k] + 0.5 * (m[k] + mz) * (z - zs[k])

        return np.abs(F(np.asarray(z1, dtype=np.float64)) - F(np.asarray(z0, dtype=np.float64)))

    def axis_integral(self, z0: float, z1: float) -> float:
        """Integral of By(0, 0, z) dz (T mm), exact for the interpolant (piecewise linear in z)."""
        zs = self._arrays["z"]
        lo, hi = sorted((z0, z1))
        pts = np.concatenate([[lo], zs[(zs > lo) & (zs < hi)], [hi]])
        _, by, _, _ = self.lookup(np.zeros_like(pts), np.zeros_like(pts), pts)
        val = float(np.trapezoid(by, pts))
        return val if z1 >= z0 else -val

    def z_extent(self) -> tuple[float, float]:
        return (float(self._arrays["z"][0]), float(self._arrays["z"][-1]))

    def kernel_args(self) -> tuple:
        """(kind, fpar, fmap, imap, mask, bmap): the map packed into one float64 vector (axis
        starts and inverse fine-bin widths, axes, inverse spacings), one int32 vector (sizes,
        offsets, axis index tables), the flat cell mask and the flat float32 node values
        (nx, ny, nz, 3). Few arguments keep the compiled hot loop cheap."""
        return self._packed

    @property
    def _packed(self) -> tuple:
        a = self._arrays
        if "packed" not in a:
            a["packed"] = pack_map(a, self.mask is not None)
        return a["packed"]


#: imap header layout (int32): sizes, offsets of arrays in fmap / imap
#: [nx, ny, nz, off_B, off_ax x/y/z, off_inv x/y/z, off_tab x/y/z (in imap), ntab x/y/z]
IM_N, IM_OFF_B, IM_OFF_AX, IM_OFF_INV, IM_OFF_TAB, IM_NTAB = 0, 3, 4, 7, 10, 13
IM_HEADER = 16


def pack_map(a: dict, has_mask: bool) -> tuple:
    """Pack FieldMap arrays for the kernels (see FieldMap.kernel_args); layout IM_* above; fmap
    starts with [x0, 1/finex, y0, 1/finey, z0, 1/finez]."""
    n = [len(a[c]) for c in "xyz"]
    head = [a["x"][0], a["finex"], a["y"][0], a["finey"], a["z"][0], a["finez"]]
    parts: list[np.ndarray] = [np.array(head, np.float64)]
    offs_b = 0  # B is its own float32 array
    pos = 6
    offs_ax, offs_inv = [], []
    for c in "xyz":
        offs_ax.append(pos)
        parts.append(a[c])
        pos += len(a[c])
    for c in "xyz":
        offs_inv.append(pos)
        parts.append(a["inv" + c])
        pos += len(a["inv" + c])
    fmap = np.ascontiguousarray(np.concatenate(parts))
    tabs = [a["tab" + c] for c in "xyz"]
    offs_tab, p = [], IM_HEADER
    for t in tabs:
        offs_tab.append(p)
        p += len(t)
    header = [*n, offs_b, *offs_ax, *offs_inv, *offs_tab, *(len(t) for t in tabs)]
    assert len(header) == IM_HEADER
    imap = np.concatenate([np.array(header, np.int32), *tabs]).astype(np.int32)
    mask = np.ascontiguousarray(a["mask"].ravel()) if has_mask else np.zeros(1, np.uint8)
    fpar = np.array([1.0 if has_mask else 0.0, 0.0, 0.0, 0.0])
    return (KIND_MAP, fpar, fmap, imap, mask, np.ascontiguousarray(a["B"].ravel()))


def _no_map() -> tuple:
    """Placeholder map arrays (same dtypes and ranks) so every field shares the kernel signature."""
    return (np.zeros(1), np.zeros(1, np.int32), np.zeros(1, np.uint8), np.zeros(1, np.float32))
