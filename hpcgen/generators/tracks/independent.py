"""What ``hpcgen verify`` judges a tracks file with: nothing the generator computes with.

A check that imports the generator's constant, equations or kernel passes whatever mistake they
share. Here, written afresh for verify alone:

- the bending constant from scipy.constants (c), not from constants.py;
- the equations of motion from the Lorentz force on the unit direction u, du/ds = kappa u x B
  (kappa = C q/p), turned into d(x, y, tx, ty)/dz here (stepper.py writes the component form);
- the field from the parameters (Gaussian and uniform models) or, for a map, a trilinear
  interpolation of the parsed grid (``MapGrid``, the text's float64 values) written here; the
  parse of the map text (fieldmap.load_map) is the one thing shared with the generator;
- scipy's DOP853 as the integrator (the generator uses its own embedded Runge-Kutta kernels).

Units: mm, T, q/p in 1/MeV, slopes tx = dx/dz and ty = dy/dz.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy import constants

from hpcgen.generators.tracks.fieldmap import MapGrid
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.kernel_cache import njit

#: curvature (1/mm) per tesla per unit of q/p (1/MeV), from the speed of light alone: for a unit
#: charge p = e B R (SI), and p [MeV/c] = p_SI c / (1e6 e), so 1/R [1/m] = c B / (1e6 p [MeV]),
#: and 1/R [1/mm] = c / 1e9 * B * q/p = 0.299792458 B q/p
BENDING_CONSTANT = constants.c / (constants.mega * constants.kilo)

#: the reference integration: scipy's DOP853 at these tolerances (rtol, and atol in mm on x, y;
#: slopes get atol / SLOPE_LEVER_MM). Measured on the demo map: within 6e-4 mm of the generator
#: (whose own error is ~2e-4 mm), a twentieth of the tightest limit verify applies (0.01 mm);
#: rtol 1e-10 moves that by < 3e-4 mm at four times the cost
RTOL = 1e-9
ATOL_MM = 1e-8
#: the same for rows whose flags alone are judged (with a margin of millimetres)
FLAG_RTOL = 1e-6
FLAG_ATOL_MM = 1e-4
#: mm: a slope error times this lever arm is compared with a position error (limits and atol)
SLOPE_LEVER_MM = 1000.0
#: the reference freezes a track whose |tx| or |ty| exceeds max_slope times this: the
#: z-parametrisation ends where a track turns perpendicular to z, and the generator stops such
#: tracks at max_slope anyway (SLOPE flag)
SLOPE_CAP = 1.5
#: Gauss-Legendre panels x nodes for the turn predicted along a cubic path (maps)
BORN_PANELS, BORN_NODES = 2, 4


# --- the field --------------------------------------------------------------------------------


@njit(cache=True, group="tracks verify", inline="always")
def _b_at(xs, ys, zs, B, xv, yv, zv):  # pragma: no cover - compiled
    """(Bx, By, Bz) in T at one point (mm): trilinear in the cell holding it, zero outside the
    grid (the map's box, its faces included)."""
    nx, ny, nz = xs.size, ys.size, zs.size
    if not (xs[0] <= xv <= xs[nx - 1] and ys[0] <= yv <= ys[ny - 1] and zs[0] <= zv <= zs[nz - 1]):
        return 0.0, 0.0, 0.0
    i = min(max(np.searchsorted(xs, xv, side="right") - 1, 0), nx - 2)
    j = min(max(np.searchsorted(ys, yv, side="right") - 1, 0), ny - 2)
    k = min(max(np.searchsorted(zs, zv, side="right") - 1, 0), nz - 2)
    fx = (xv - xs[i]) / (xs[i + 1] - xs[i])
    fy = (yv - ys[j]) / (ys[j + 1] - ys[j])
    fz = (zv - zs[k]) / (zs[k + 1] - zs[k])
    b = [0.0, 0.0, 0.0]
    for c in range(3):
        low = (B[i, j, k, c] * (1.0 - fy) + B[i, j + 1, k, c] * fy) * (1.0 - fx) + (
            B[i + 1, j, k, c] * (1.0 - fy) + B[i + 1, j + 1, k, c] * fy
        ) * fx
        high = (B[i, j, k + 1, c] * (1.0 - fy) + B[i, j + 1, k + 1, c] * fy) * (1.0 - fx) + (
            B[i + 1, j, k + 1, c] * (1.0 - fy) + B[i + 1, j + 1, k + 1, c] * fy
        ) * fx
        b[c] = low * (1.0 - fz) + high * fz
    return b[0], b[1], b[2]


@njit(cache=True, group="tracks verify")
def _trilinear(xs, ys, zs, B, x, y, z, out):  # pragma: no cover - compiled
    """B (T) at points (mm) into out (n, 3)."""
    for n in range(x.size):
        out[n, 0], out[n, 1], out[n, 2] = _b_at(xs, ys, zs, B, x[n], y[n], z[n])


@njit(cache=True, group="tracks verify")
def _turn_along_cubic(xs, ys, zs, B, X, Y, Z, s, w, kappa_per_qop, out):  # pragma: no cover
    """Predicted change of (u_x, u_y) of each row, integrated along the cubic (Hermite) path
    through its stored ends: du_x = kappa int (ty Bz - By) dz, du_y = kappa int (Bx - tx Bz) dz
    (exact along the true path; the cubic stands in for it). s, w: nodes and weights on [0, 1]."""
    for r in range(X.shape[0]):
        h = Z[r, 1] - Z[r, 0]
        x0, y0, tx0, ty0 = X[r, 0], X[r, 1], X[r, 2], X[r, 3]
        x1, y1, tx1, ty1 = Y[r, 0], Y[r, 1], Y[r, 2], Y[r, 3]
        ix = 0.0
        iy = 0.0
        for q in range(s.size):
            t = s[q]
            h00 = (2.0 * t - 3.0) * t * t + 1.0
            h10 = ((t - 2.0) * t + 1.0) * t
            h01 = (3.0 - 2.0 * t) * t * t
            h11 = (t - 1.0) * t * t
            d00 = 6.0 * t * (t - 1.0)
            d10 = (3.0 * t - 4.0) * t + 1.0
            d11 = (3.0 * t - 2.0) * t
            px = h00 * x0 + h10 * h * tx0 + h01 * x1 + h11 * h * tx1
            py = h00 * y0 + h10 * h * ty0 + h01 * y1 + h11 * h * ty1
            tx = d00 * (x0 - x1) / h + d10 * tx0 + d11 * tx1
            ty = d00 * (y0 - y1) / h + d10 * ty0 + d11 * ty1
            bx, by, bz = _b_at(xs, ys, zs, B, px, py, Z[r, 0] + t * h)
            ix += w[q] * (ty * bz - by)
            iy += w[q] * (bx - tx * bz)
        k = kappa_per_qop * X[r, 4] * h
        out[r, 0] = k * ix
        out[r, 1] = k * iy


@dataclass(frozen=True, eq=False)
class ReferenceField:
    """The file's field, written from its parameters: "uniform" (b: Bx, By, Bz), "gaussian"
    (b: B0, zc, w; By = B0 exp(-((z - zc)/w)^2 / 2)) or "map" (grid: trilinear, zero outside its
    box). Polarity applied. T and mm."""

    kind: str
    b: tuple[float, float, float] = (0.0, 0.0, 0.0)
    grid: MapGrid | None = None

    @classmethod
    def from_params(cls, p: TracksParams, grid: MapGrid | None = None) -> ReferenceField:
        pol = float(p.polarity)
        if p.field == "uniform":
            return cls("uniform", tuple(pol * v for v in p.b_uniform))
        if p.field == "gaussian":
            return cls("gaussian", (pol * p.b0, p.z_center, p.z_width))
        if grid is None:
            raise ValueError("a map field needs its parsed grid")
        B = np.ascontiguousarray(grid.B * pol, dtype=np.float64)
        g = MapGrid(*(np.ascontiguousarray(a, np.float64) for a in (grid.xs, grid.ys, grid.zs)), B)
        return cls("map", grid=g)

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(n, 3) B in T at points (mm)."""
        x, y, z = (np.ascontiguousarray(v, dtype=np.float64).ravel() for v in (x, y, z))
        if self.kind == "uniform":
            return np.broadcast_to(np.array(self.b), (x.size, 3))
        if self.kind == "gaussian":
            b0, zc, w = self.b
            out = np.zeros((x.size, 3))
            out[:, 1] = b0 * np.exp(-0.5 * ((z - zc) / w) ** 2)
            return out
        g = self.grid
        out = np.empty((x.size, 3))
        _trilinear(g.xs, g.ys, g.zs, g.B, x, y, z, out)
        return out

    def planes(self) -> np.ndarray:
        """z (mm) where the field is not smooth (a map's grid planes); the reference integration
        restarts there instead of stepping across a kink."""
        return self.grid.zs if self.grid is not None else np.empty(0)

    def outside_xy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """How far (mm) points lie outside the map's x-y box (<= 0 inside); -inf without a map."""
        if self.grid is None:
            return np.full(np.shape(x), -np.inf)
        g = self.grid
        return np.maximum.reduce([g.xs[0] - x, x - g.xs[-1], g.ys[0] - y, y - g.ys[-1]])

    def z_outside(self, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
        """How far (mm) a track's z range reaches outside the map's z extent (<= 0 inside)."""
        if self.grid is None:
            return np.full(np.shape(z0), -np.inf)
        lo, hi = np.minimum(z0, z1), np.maximum(z0, z1)
        return np.maximum(self.grid.zs[0] - lo, hi - self.grid.zs[-1])

    def predicted_turn(self, X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """(n, 2) change of the unit direction's (u_x, u_y) from z_start to z_end that q/p and
        the field imply, from the stored ends. du/ds = kappa u x B with ds = N dz gives
        du_x = kappa int (ty Bz - By) dz and du_y = kappa int (Bx - tx Bz) dz along the path.
        Exact for the uniform field (kappa (Bz dy - By dz), kappa (Bx dz - Bz dx)) and the
        Gaussian model (Bx = Bz = 0: -kappa int By dz in closed form, and 0); a map integrates
        along the cubic through the stored ends (``exact_turn`` says which)."""
        kappa = BENDING_CONSTANT * X[:, 4]
        dz = Z[:, 1] - Z[:, 0]
        out = np.zeros((len(X), 2))
        if self.kind == "uniform":
            bx, by, bz = self.b
            out[:, 0] = kappa * (bz * (Y[:, 1] - X[:, 1]) - by * dz)
            out[:, 1] = kappa * (bx * dz - bz * (Y[:, 0] - X[:, 0]))
        elif self.kind == "gaussian":
            from scipy.special import erf

            b0, zc, w = self.b
            a = w * np.sqrt(2.0)
            integral = (
                b0 * w * np.sqrt(np.pi / 2) * (erf((Z[:, 1] - zc) / a) - erf((Z[:, 0] - zc) / a))
            )
            out[:, 0] = -kappa * integral
        else:
            g = self.grid
            s, w = cubic_nodes()
            _turn_along_cubic(
                g.xs,
                g.ys,
                g.zs,
                g.B,
                *(np.ascontiguousarray(a, dtype=np.float64) for a in (X, Y, Z)),
                s,
                w,
                BENDING_CONSTANT,
                out,
            )
        return out

    @property
    def exact_turn(self) -> bool:
        return self.kind != "map"


def cubic_nodes() -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights on [0, 1] (BORN_PANELS x BORN_NODES)."""
    gx, gw = np.polynomial.legendre.leggauss(BORN_NODES)
    s = (np.arange(BORN_PANELS)[:, None] + (gx[None, :] + 1.0) / 2.0) / BORN_PANELS
    return s.ravel(), np.tile(gw / (2.0 * BORN_PANELS), BORN_PANELS)


def unit_x_y(t: np.ndarray) -> np.ndarray:
    """(n, 2) u_x, u_y of the unit direction from slopes (n, >=2) tx, ty."""
    n = np.sqrt(1.0 + t[:, 0] ** 2 + t[:, 1] ** 2)
    return t[:, :2] / n[:, None]


# --- the equations of motion and the reference propagation --------------------------------------


def motion(tx: np.ndarray, ty: np.ndarray, qop: np.ndarray, b: np.ndarray) -> tuple:
    """d(x, y, tx, ty)/dz from the Lorentz force on the unit direction u = (tx, ty, 1)/N:
    du/ds = kappa u x B (kappa = C q/p, s the path length, ds = N dz), and
    d(tx)/dz = d(u_x/u_z)/ds * N = N^2 (a_x - tx a_z) with a = du/ds (likewise ty)."""
    n = np.sqrt(1.0 + tx * tx + ty * ty)
    ux, uy, uz = tx / n, ty / n, 1.0 / n
    k = BENDING_CONSTANT * qop
    bx, by, bz = b[:, 0], b[:, 1], b[:, 2]
    ax = k * (uy * bz - uz * by)
    ay = k * (uz * bx - ux * bz)
    az = k * (ux * by - uy * bx)
    n2 = n * n
    return tx, ty, n2 * (ax - tx * az), n2 * (ay - ty * az)


@dataclass
class Reference:
    """The reference propagation of n tracks."""

    Y: np.ndarray  # (n, 4) x, y, tx, ty at z_end (NaN where the track was frozen)
    frozen: np.ndarray  # (n,) bool: |tx| or |ty| reached SLOPE_CAP x max_slope
    max_slope: np.ndarray  # (n,) largest |tx|, |ty| at z_start, z_end and the restart planes
    max_out: np.ndarray  # (n,) largest distance outside the map's x-y box there (mm)
    end_out: np.ndarray  # (n,) the same at z_end
    out_length: np.ndarray  # (n,) mm of z between restart planes spent beyond ``margin`` outside
    failed: str = ""  # DOP853's message where it gave up


def propagate(
    field: ReferenceField,
    state: np.ndarray,
    z0: np.ndarray,
    z1: np.ndarray,
    max_slope: float,
    margin: float = 0.0,
    rtol: float = RTOL,
    atol_mm: float = ATOL_MM,
) -> Reference:
    """Propagate tracks (n, >=5: x, y, tx, ty, q/p) from z0 to z1 (per track, either direction)
    with DOP853. Forward and backward tracks go separately; within each, all tracks integrate as
    one system, restarting on the field's kink planes: between two planes each track runs over
    its own part of the slab in a parameter t in [0, 1] (z = za + t (zb - za)), so no step
    crosses a kink and tracks of different z ranges share the calls. ``margin``: the excursion
    depth (mm) that ``out_length`` counts."""
    state = np.asarray(state, dtype=np.float64)
    z0 = np.asarray(z0, dtype=np.float64)
    z1 = np.asarray(z1, dtype=np.float64)
    n = len(state)
    s = state[:, :4].copy()
    qop = state[:, 4].copy()
    cap = SLOPE_CAP * max_slope
    ref = Reference(
        Y=s,
        frozen=np.zeros(n, bool),
        max_slope=np.abs(s[:, 2:4]).max(axis=1, initial=0.0),
        max_out=field.outside_xy(s[:, 0], s[:, 1]),
        end_out=np.zeros(n),
        out_length=np.zeros(n),
    )
    planes = field.planes()
    for sign in (1.0, -1.0):
        grp = np.flatnonzero(np.sign(z1 - z0) == sign)
        if not len(grp):
            continue
        lo = min(z0[grp].min(), z1[grp].min())
        hi = max(z0[grp].max(), z1[grp].max())
        edges = np.concatenate([[lo], planes[(planes > lo) & (planes < hi)], [hi]])
        slabs = list(pairwise(edges))
        prev_out = ref.max_out.copy()
        for a, b in slabs if sign > 0 else slabs[::-1]:
            # each track's part of the slab, in its direction
            if sign > 0:
                za, zb = np.maximum(z0[grp], a), np.minimum(z1[grp], b)
            else:
                za, zb = np.minimum(z0[grp], b), np.maximum(z1[grp], a)
            act = (sign * (zb - za) > 0) & ~ref.frozen[grp]
            idx = grp[act]
            if not len(idx):
                continue
            za, zb = za[act], zb[act]
            end, frozen, msg = _solve_slab(field, s[idx], qop[idx], za, zb, cap, rtol, atol_mm)
            if msg:
                ref.failed = msg
                ref.Y = np.full((n, 4), np.nan)
                return ref
            s[idx] = end
            ref.frozen[idx] |= frozen
            ref.max_slope[idx] = np.maximum(ref.max_slope[idx], np.abs(end[:, 2:4]).max(axis=1))
            out = field.outside_xy(end[:, 0], end[:, 1])
            ref.max_out[idx] = np.maximum(ref.max_out[idx], out)
            both = (out > margin) & (prev_out[idx] > margin)
            ref.out_length[idx] += np.where(both, np.abs(zb - za), 0.0)
            prev_out[idx] = out
    ref.end_out = field.outside_xy(s[:, 0], s[:, 1])
    ref.Y = np.where(ref.frozen[:, None], np.nan, s)
    return ref


def _solve_slab(
    field: ReferenceField,
    s: np.ndarray,
    qop: np.ndarray,
    za: np.ndarray,
    zb: np.ndarray,
    cap: float,
    rtol: float,
    atol_mm: float,
) -> tuple[np.ndarray, np.ndarray, str]:
    """One DOP853 call: every track from za to zb (its own part of one slab)."""
    from scipy.integrate import solve_ivp

    m = len(s)
    h = zb - za

    def rhs(t: float, flat: np.ndarray) -> np.ndarray:
        x, y, tx, ty = flat.reshape(4, m)
        d = np.stack(motion(tx, ty, qop, field(x, y, za + t * h)))
        # a track past the slope cap stops moving (frozen): the z-parametrisation would break
        d[:, np.maximum(np.abs(tx), np.abs(ty)) >= cap] = 0.0
        return (d * h).ravel()

    atol = np.concatenate([np.full(2 * m, atol_mm), np.full(2 * m, atol_mm / SLOPE_LEVER_MM)])
    sol = solve_ivp(rhs, (0.0, 1.0), s.T.ravel(), method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        return s, np.zeros(m, bool), str(sol.message)
    end = sol.y[:, -1].reshape(4, m).T.copy()
    return end, np.abs(end[:, 2:4]).max(axis=1) >= cap, ""


# --- a deterministic sample spread over the whole file -------------------------------------------


def row_keys(index: np.ndarray, seed: int) -> np.ndarray:
    """uint64 pseudo-random key of each global row index (splitmix64 of index + seed): the rows
    with the k smallest keys are a uniform sample of the file, the same whatever the chunking."""
    with np.errstate(over="ignore"):
        z = np.asarray(index, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class Sample:
    """The k rows with the smallest keys among those offered (bounded memory, any chunking)."""

    def __init__(self, k: int, seed: int) -> None:
        self.k = k
        self.seed = seed
        self.keys = np.empty(0, np.uint64)
        self.rows: dict[str, np.ndarray] = {}

    def offer(self, index: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        """Rows at global ``index`` (every array's first axis matches ``index``)."""
        if not self.k:
            return
        new = row_keys(index, self.seed)
        if len(self.keys) == self.k:  # full: only rows that beat the largest kept key matter
            beat = new < self.keys[-1]
            new, index, rows = (
                new[beat],
                np.asarray(index)[beat],
                {n: a[beat] for n, a in rows.items()},
            )
        if not len(index):
            return
        keys = np.concatenate([self.keys, new])
        merged = {
            name: np.concatenate([self.rows[name], a]) if name in self.rows else np.asarray(a)
            for name, a in {"index": np.asarray(index, np.int64), **rows}.items()
        }
        keep = np.argsort(keys, kind="stable")[: self.k]
        self.keys = keys[keep]
        self.rows = {name: a[keep] for name, a in merged.items()}

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, name: str) -> np.ndarray:
        return self.rows[name]


def warm() -> None:
    """Compile verify's numba helpers (the trilinear lookup and the turn along the cubic) into
    the cache on a 2 x 2 x 2 grid, so that a first ``hpcgen verify`` of a map file need not."""
    axis = np.array([0.0, 1.0])
    B = np.zeros((2, 2, 2, 3))
    ref = ReferenceField("map", grid=MapGrid(axis, axis.copy(), axis.copy(), B))
    ref(np.zeros(1), np.zeros(1), np.zeros(1))
    row = np.array([[0.0, 0.0, 0.0, 0.0, 1e-3, 1.0]])
    ref.predicted_turn(row, row[:, :4], np.array([[0.0, 1.0]]))
