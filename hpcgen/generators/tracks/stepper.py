"""Integrator settings and the numpy reference propagation: the definition of what the compiled
kernels (numba on the CPU, CUDA on a GPU) compute, track for track and bit for bit in the
arithmetic (same operations in the same order; only the Gaussian field's exp may differ in the
last ulp: libm's here, a vector version in numba's kernel, CUDA's on a GPU).

State (x, y, tx, ty) at z (tx = dx/dz, ty = dy/dz), q/p constant; units mm, T, q/p in 1/MeV.
The equations of motion in the z-parametrisation (``slope_derivatives``, written once for numpy
here and numba's vectors in kernels_numba; kernels_cuda's rk_step is their C copy):

    dx/dz  = tx,   dy/dz = ty
    dtx/dz = kappa N (tx ty Bx - (1 + tx^2) By + ty Bz)
    dty/dz = kappa N ((1 + ty^2) Bx - tx ty By - tx Bz)
    N = sqrt(1 + tx^2 + ty^2),  kappa = C_LIGHT q/p  (constants.py)

Two schemes:

- fixed step (``rk4``): floor(|dz|/step) steps of ``step`` mm and a final partial step (through
  a map in "cell": _fixed_cell, steps of at most ``step`` cut at the cell faces, never retried);
- adaptive embedded Runge-Kutta (``cashkarp``, ``dopri5``, ``bs32``), step control after LHCb's
  TrackRungeKuttaExtrapolator: initial step min(|dz|, initial_step); error over tolerance
  (``step_control``) "lhcb" (LHCb's): eot = max(|ex|/tol, |ey|/tol, |etx|/(tol/|dz| + rel_tol
  |dtx|), |ety|/(...)) where dtx is the change of tx over the step; "global" (the default):
  eot = max((|ex| + l |etx|)/(tol + rel_tol l |dtx|), (|ey| + l |ety|)/(...)), the lever arm
  l = max(h, |z_end - (z + hs)|) (hs the signed step): the step's error carried straight to
  z_end; accept if eot <= 1 or the step is <= min_step; the next step is
  h * clamp(safety * eot^(-1/q) or eot^(-1/(q+1)), 0.125, 4), clamped to [min_step, max_step]
  (the power from step_power: the same bits in every kernel);
  at most ``max_steps`` attempts (accepted + rejected), then STEP_LIMIT; |tx| or |ty| > max_slope
  after a step: SLOPE. Both stop the track (Y = NaN). Unlike LHCb, a step forced at min_step may
  grow again (LHCb keeps min_step to the end), and the control is optionally grid-aware (below).

Grid-aware steps (``grid_steps``, field maps only): the embedded error estimate cannot see the
kinks of a trilinear interpolant at grid planes, so a step may end on the next plane it would
cross: "z" ends steps exactly on z planes; "xy" on x and y planes, predicted along the straight
line (x + tx h), ignoring planes less than 1 mm ahead; "xyz" on both. A step shortened by a plane
(or by z_end) does not shrink the controller's step size.

"cell" steps as "xyz" (ignoring x and y planes less than EPS_CELL = 0.1 mm ahead) and takes each
step's field from one grid cell: the cell of the step's straight-line midpoint (x + tx hs/2,
y + ty hs/2, z + hs/2, hs the signed step), whose trilinear polynomial every stage evaluates
(fields.CellPolynomial, in offsets from the cell's corner). A stage point more than
fields.CELL_MARGIN = 0.25 mm outside the cell (the path bends off the straight line the planes
were found along) rejects an adaptive step, retried at half its length (at most the controller's
new length), unless it is a min_step step; a fixed step is taken as it is. Where the stage points
stray less, the polynomial is the interpolant's smooth continuation over at most that margin. A
step whose midpoint is outside the grid has B = 0 (LEFT_VOLUME); MASKED_CELL is the step's cell's.
The compiled kernels read the cell's eight corners once per step and evaluate the stages as pure
arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import fields as dataclass_fields

import numpy as np

from hpcgen.generators.tracks.constants import C_LIGHT
from hpcgen.generators.tracks.fields import ABORTED, KIND_MAP, SLOPE, STEP_LIMIT
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.generators.tracks.tableaus import TABLEAUS, Tableau

#: Numerical Recipes' safety factor on the step scale (LHCb's default is 1.0, with a looser
#: acceptance sigma of 5.5; we accept at eot <= 1 and aim a little below it)
SAFETY = 0.9
#: bit 1: z planes, bit 2: x and y planes, bit 4: one cell's field per step ("cell")
GRID_MODES = {"off": 0, "z": 1, "xy": 2, "xyz": 3, "cell": 7}
#: the step controls (TracksParams.step_control): 1 = "global" (error carried to z_end)
STEP_CONTROLS = {"lhcb": 0, "global": 1}
CELL = 4
EPS_Z = 1e-6  # mm: a z plane closer than this is the one we are on
EPS_XY = 1.0  # mm: x/y planes closer than this are not worth a step of their own
EPS_CELL = 0.1  # mm: the same for "cell" (each step's field must stay one cell's)

#: slots of the settings vector (StepperSettings.packed) that the compiled kernels read; the
#: CUDA source gets them as #defines of the same names (kernels_cuda.defines)
(
    SP_ADAPTIVE,  # 1.0 for an embedded (adaptive) scheme, 0.0 for fixed steps
    SP_STAGES,  # the tableau's stages
    SP_STEP,  # mm, the fixed step
    SP_TOL,  # mm, tolerance
    SP_REL_TOL,  # rel_tolerance
    SP_MIN_STEP,  # mm
    SP_MAX_STEP,  # mm
    SP_INITIAL_STEP,  # mm
    SP_MAX_STEPS,  # attempts per track
    SP_MAX_SLOPE,  # |tx|, |ty| limit
    SP_GRID,  # GRID_MODES[grid_steps]
    SP_PSHRINK,  # the step scale's exponent where the error is over the tolerance: -1/q
    SP_PGROW,  # ... and where it is within: -1/(q + 1)
    SP_SCALE_MIN,  # the step scale's clamp
    SP_SCALE_MAX,
    SP_SAFETY,  # SAFETY
    SP_CONTROL,  # STEP_CONTROLS[step_control]
) = range(17)
SP_SIZE = 17

# step_power's constants (fdlibm's split of ln 2: k * LN2_HI is exact for |k| < 2**20)
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
SQRT2 = 1.4142135623730951


#: StepperSettings' fields that are TracksParams', by their names there (documented there)
FROM_PARAMS = {
    "scheme": "integrator",
    "step": "step",
    "tolerance": "tolerance",
    "rel_tolerance": "rel_tolerance",
    "step_control": "step_control",
    "min_step": "min_step",
    "max_step": "max_step",
    "initial_step": "initial_step",
    "max_steps": "max_steps",
    "max_slope": "max_slope",
    "grid_steps": "grid_steps",
}
_DEFAULT = {f.name: f.default for f in dataclass_fields(TracksParams)}


@dataclass(frozen=True)
class StepperSettings:
    """How tracks are integrated: TracksParams' integration parameters (FROM_PARAMS; their
    defaults too: one source), plus the step scale's clamp. Lengths in mm."""

    scheme: str = _DEFAULT["integrator"]
    step: float = _DEFAULT["step"]
    tolerance: float = _DEFAULT["tolerance"]
    rel_tolerance: float = _DEFAULT["rel_tolerance"]
    step_control: str = _DEFAULT["step_control"]
    min_step: float = _DEFAULT["min_step"]
    max_step: float = _DEFAULT["max_step"]
    initial_step: float = _DEFAULT["initial_step"]
    max_steps: int = _DEFAULT["max_steps"]
    max_slope: float = _DEFAULT["max_slope"]
    scale_min: float = 0.125  # Numerical Recipes' clamp of the step scale, as LHCb's
    scale_max: float = 4.0
    grid_steps: str = _DEFAULT["grid_steps"]

    @classmethod
    def from_params(cls, p: TracksParams) -> StepperSettings:
        """The settings of a generator's parameters."""
        return cls(**{k: getattr(p, v) for k, v in FROM_PARAMS.items()})

    @property
    def tableau(self) -> Tableau:
        return TABLEAUS[self.scheme]

    def packed(self) -> np.ndarray:
        """The float64 vector the compiled kernels read, slot by slot (SP_* above)."""
        t = self.tableau
        sp = np.empty(SP_SIZE)
        sp[SP_ADAPTIVE] = 1.0 if t.adaptive else 0.0
        sp[SP_STAGES] = float(t.stages)
        sp[SP_STEP] = self.step
        sp[SP_TOL] = self.tolerance
        sp[SP_REL_TOL] = self.rel_tolerance
        sp[SP_MIN_STEP] = self.min_step
        sp[SP_MAX_STEP] = self.max_step
        sp[SP_INITIAL_STEP] = self.initial_step
        sp[SP_MAX_STEPS] = float(self.max_steps)
        sp[SP_MAX_SLOPE] = self.max_slope
        sp[SP_GRID] = float(GRID_MODES[self.grid_steps])
        sp[SP_PSHRINK] = -1.0 / t.order
        sp[SP_PGROW] = -1.0 / (t.order + 1)
        sp[SP_SCALE_MIN] = self.scale_min
        sp[SP_SCALE_MAX] = self.scale_max
        sp[SP_SAFETY] = SAFETY
        sp[SP_CONTROL] = float(STEP_CONTROLS[self.step_control])
        return sp

    def tableau_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(a (7x7), b (7), e = b - bhat (7), c (7)), zero padded to 7 stages."""
        t = self.tableau
        s = t.stages
        a = np.zeros((7, 7))
        a[:s, :s] = t.a
        pad = np.zeros(7)
        b, e, c = pad.copy(), pad.copy(), pad.copy()
        b[:s], e[:s], c[:s] = t.b, t.e, t.c
        return a, b, e, c


# --- the step controller's power ----------------------------------------------------------------


def _where_max(a, b):
    """Python's max(a, b) (b if b > a else a), the kernels' operation."""
    return np.where(b > a, b, a)


def _where_min(a, b):
    """Python's min(a, b) (b if b < a else a)."""
    return np.where(b < a, b, a)


def exp_core(xc, k):
    """exp(r), r = xc - k ln2 (|r| <= ln2 / 2), from its Taylor series to r**13 (the next term is
    < 2e-18; summed in Estrin's order, in pairs: short dependency chains for the kernels'
    pipelines). + - * only, so the same function serves numpy arrays here and numba's vectors
    (simd.vexp): one sequence of operations."""
    r = (xc - k * LN2_HI) - k * LN2_LO
    r2 = r * r
    r4 = r2 * r2
    e0 = 0.5 + r * (1.0 / 6.0)
    e1 = 1.0 / 24.0 + r * (1.0 / 120.0)
    e2 = 1.0 / 720.0 + r * (1.0 / 5040.0)
    e3 = 1.0 / 40320.0 + r * (1.0 / 362880.0)
    e4 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0)
    e5 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0)
    p = (e0 + e1 * r2) + ((e2 + e3 * r2) + (e4 + e5 * r2) * r4) * r4
    return 1.0 + (r + r2 * p)


def exp_series(x):
    """exp(x) within 2 ulp from + - * only: x = k ln2 + r, exp(r) from exp_core, 2**k from the
    exponent bits; 0 below -708.39, inf above 709.78."""
    x = np.asarray(x, dtype=np.float64)
    xc = _where_min(_where_max(x, -708.0), 709.0)
    k = np.rint(xc * LOG2E)
    p = exp_core(xc, k)
    with np.errstate(invalid="ignore"):  # NaN x: any k, y is NaN
        y = p * ((k.astype(np.int64) + 1023) << 52).view(np.float64)
    return np.where(x < -708.3964185322641, 0.0, np.where(x > 709.782712893384, np.inf, y))


def log_core(m, e):
    """log(m 2**e) for m in [sqrt(1/2), sqrt(2)): log m = 2 atanh(s), s = (m - 1) / (m + 1),
    |s| < 0.172, from its series to s**23 (Estrin's order). + - * / only: numpy arrays here,
    numba's vectors in simd.vlog."""
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    s4 = s2 * s2
    s8 = s4 * s4
    d0 = 1.0 / 3.0 + s2 * (1.0 / 5.0)
    d1 = 1.0 / 7.0 + s2 * (1.0 / 9.0)
    d2 = 1.0 / 11.0 + s2 * (1.0 / 13.0)
    d3 = 1.0 / 15.0 + s2 * (1.0 / 17.0)
    d4 = 1.0 / 19.0 + s2 * (1.0 / 21.0)
    q = (d0 + d1 * s4) + ((d2 + d3 * s4) + (d4 + s4 * (1.0 / 23.0)) * s8) * s8
    logm = 2.0 * s + (2.0 * s) * (s2 * q)
    return e * LN2_HI + (logm + e * LN2_LO)


def log_series(x):
    """log(x) for positive normal x: x = m 2**e with m in [sqrt(1/2), sqrt(2)) from the bits,
    then log_core."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.int64)
    e = ((bits >> 52) - 1023).astype(np.float64)
    m = ((bits & ((1 << 52) - 1)) | (1023 << 52)).view(np.float64)
    big = m > SQRT2
    return log_core(np.where(big, m * 0.5, m), np.where(big, e + 1.0, e))


def step_power(x, p):
    """x**p for the step-size control, x clamped to [1e-300, 1e300]: exp(p log x) from the two
    series above, within 3 ulp of libm's pow. Defined here, not left to libm, because the
    kernels must agree to the bit: numba's (simd.LANES lanes in one vector, where libm's pow
    is not available) and CUDA's compute this same sequence of IEEE operations, and a last-bit
    change in a step size can move a track near a map artefact by microns."""
    x = np.asarray(x, dtype=np.float64)
    return exp_series(p * log_series(_where_min(_where_max(x, 1e-300), 1e300)))


# --- the reference ------------------------------------------------------------------------------


def slope_derivatives(tx, ty, bx, by, bz, kap):
    """(dtx/dz, dty/dz) at slopes (tx, ty) in the field (bx, by, bz) (T), kap = C_LIGHT q/p
    (1/(T mm)): the equations of motion (module doc). + - * and np.sqrt only, so the same
    function serves numpy arrays here and numba's vectors in kernels_numba (simd gives np.sqrt a
    vector version): one sequence of operations."""
    kn = kap * np.sqrt(1.0 + tx * tx + ty * ty)
    dtx = kn * (tx * ty * bx - (1.0 + tx * tx) * by + ty * bz)
    dty = kn * ((1.0 + ty * ty) * bx - tx * ty * by - tx * bz)
    return dtx, dty


def _derivs(field, z, x, y, tx, ty, kap):
    """(dx, dy, dtx, dty)/dz and the lookup flags."""
    bx, by, bz, fl = field.lookup(x, y, z)
    dtx, dty = slope_derivatives(tx, ty, bx, by, bz, kap)
    return (tx, ty, dtx, dty), fl


def rk_step(field, tab: Tableau, z, s, kap, h):
    """One Runge-Kutta step of signed length h (arrays over tracks).

    Returns (new state, error estimate h*sum(e k), OR of the stages' lookup flags)."""
    a, b, e, c = tab.a, tab.b, tab.e, tab.c
    ks = []
    flags = np.zeros(np.shape(z), np.uint8)
    for i in range(tab.stages):
        si = []
        for comp in range(4):
            acc = np.zeros_like(s[comp])
            for j in range(i):
                acc = acc + a[i, j] * ks[j][comp]
            si.append(s[comp] + h * acc)
        k, fl = _derivs(field, z + c[i] * h, *si, kap)
        flags |= fl
        ks.append(k)
    new, err = [], []
    for comp in range(4):
        acc_b = np.zeros_like(s[comp])
        acc_e = np.zeros_like(s[comp])
        for j in range(tab.stages):
            acc_b = acc_b + b[j] * ks[j][comp]
            acc_e = acc_e + e[j] * ks[j][comp]
        new.append(s[comp] + h * acc_b)
        err.append(h * acc_e)
    return new, err, flags


def plane_distance(field, mode: int, x, y, z, tx, ty, direction, eps_xy: float = EPS_XY):
    """Distance along z (> 0, mm) to the first grid plane ahead; inf if none (see module doc).
    x and y planes less than eps_xy (mm) ahead are ignored."""
    xs, ys, zs = field.axes
    up = direction > 0
    k_up = np.searchsorted(zs, z + EPS_Z, side="right")
    k_dn = np.searchsorted(zs, z - EPS_Z, side="left") - 1
    d = np.full(np.shape(z), np.inf)
    if mode & 1:
        ok = up & (k_up < len(zs))
        d[ok] = zs[k_up[ok]] - z[ok]
        ok = ~up & (k_dn >= 0)
        d[ok] = z[ok] - zs[k_dn[ok]]
    if mode & 2:
        for ax, v, t in ((xs, x, tx), (ys, y, ty)):
            sv = t * direction  # change of the coordinate per mm of |z|
            k_up = np.searchsorted(ax, v + eps_xy, side="right")
            k_dn = np.searchsorted(ax, v - eps_xy, side="left") - 1
            ok = (sv > 0) & (k_up < len(ax))
            dd = np.full(np.shape(z), np.inf)
            dd[ok] = (ax[k_up[ok]] - v[ok]) / sv[ok]
            ok = (sv < 0) & (k_dn >= 0)
            dd[ok] = (ax[k_dn[ok]] - v[ok]) / sv[ok]
            d = np.minimum(d, dd)
    return d


def propagate_reference(state, z0, z1, field, st: StepperSettings):
    """Propagate tracks (n, 5) [x, y, tx, ty, q/p] from z0 to z1 (per track, either direction).

    Returns (Y (n, 4) at z1, NaN for stopped tracks; status uint8 (n,); n_steps int32 (n,),
    accepted steps). Vectorised over the tracks still running, numpy only: the definition."""
    state = np.asarray(state, dtype=np.float64)
    z0 = np.asarray(z0, dtype=np.float64)
    z1 = np.asarray(z1, dtype=np.float64)
    n = len(state)
    s = [state[:, c].copy() for c in range(4)]
    kap = C_LIGHT * state[:, 4]
    z = z0.copy()
    status = np.zeros(n, np.uint8)
    nsteps = np.zeros(n, np.int32)
    tab = st.tableau
    if not tab.adaptive and field.kind == KIND_MAP and GRID_MODES[st.grid_steps] & CELL:
        _fixed_cell(field, tab, st, s, z, z1, kap, status, nsteps)
    elif not tab.adaptive:
        _fixed(field, tab, st, s, z, z1, kap, status, nsteps)
    else:
        _adaptive(field, tab, st, s, z, z0, z1, kap, status, nsteps)
    out = np.stack(s, axis=1)
    out[(status & ABORTED) != 0] = np.nan
    return out, status, nsteps


def _take(s, idx):
    return [v[idx] for v in s]


def _put(s, idx, vals):
    for v, w in zip(s, vals):
        v[idx] = w


def _fixed(field, tab, st, s, z, z1, kap, status, nsteps):
    dz = z1 - z
    direction = np.sign(dz)
    n_full = np.floor(np.abs(dz) / st.step).astype(np.int64)
    alive = np.ones(len(z), bool)
    for i in range(int(n_full.max()) if len(z) else 0):
        idx = np.flatnonzero((n_full > i) & alive)
        h = direction[idx] * st.step
        new, _, fl = rk_step(field, tab, z[idx], _take(s, idx), kap[idx], h)
        _put(s, idx, new)
        z[idx] = z[idx] + h
        status[idx] |= fl
        nsteps[idx] += 1
        _slope_stop(st, s, idx, status, alive)
    idx = np.flatnonzero(alive & (z1 - z != 0))
    h = z1[idx] - z[idx]
    new, _, fl = rk_step(field, tab, z[idx], _take(s, idx), kap[idx], h)
    _put(s, idx, new)
    z[idx] = z1[idx]
    status[idx] |= fl
    nsteps[idx] += 1
    _slope_stop(st, s, idx, status, alive)


def _arrivals(z, z1, direction, active):
    """The running tracks (indices), what is left of their |dz|, and which of them arrived: those
    are put at z1 exactly and stop running."""
    idx = np.flatnonzero(active)
    rem = (z1[idx] - z[idx]) * direction[idx]
    done = rem <= 0
    z[idx[done]] = z1[idx[done]]
    active[idx[done]] = False
    return idx, rem, done


def _limit_stop(idx, rem, done, stop, status, active):
    """Stop the running tracks marked ``stop`` with STEP_LIMIT; (indices, remaining |dz|) of
    those that go on (neither arrived nor stopped)."""
    status[idx[stop]] |= STEP_LIMIT
    active[idx[stop]] = False
    keep = ~done & ~stop
    return idx[keep], rem[keep]


def _fixed_cell(field, tab, st, s, z, z1, kap, status, nsteps):
    """Fixed steps through a map in grid_steps "cell": each step is ``step`` long or ends at z1
    or at the first cell face ahead (plane_distance, as an adaptive "cell" step), with the
    polynomial of the cell that holds its straight-line midpoint. Every step is taken: stage
    points the path bends beyond the cell read its polynomial's continuation there (no retry,
    as no fixed step is retried). A track whose z_end is never reached (NaN or infinite z) stops
    at once with STEP_LIMIT."""
    direction = np.where(z1 - z >= 0, 1.0, -1.0)
    active = np.ones(len(z), bool)
    while active.any():
        idx, rem, done = _arrivals(z, z1, direction, active)
        idx, rem = _limit_stop(idx, rem, done, ~done & ~(rem < np.inf), status, active)
        if not len(idx):
            continue
        d = direction[idx]
        h = np.minimum(st.step, rem)
        last = st.step >= rem
        s0 = _take(s, idx)
        dp = plane_distance(field, GRID_MODES["cell"], s0[0], s0[1], z[idx], s0[2], s0[3], d,
                            EPS_CELL)  # fmt: skip
        cut = dp < h
        h = np.where(cut, dp, h)
        last &= ~cut
        half = 0.5 * (d * h)
        f = field.cell_polynomial(s0[0] + half * s0[2], s0[1] + half * s0[3], z[idx] + half)
        new, _, fl = rk_step(f, tab, z[idx], s0, kap[idx], d * h)
        _put(s, idx, new)
        z[idx] = np.where(last, z1[idx], z[idx] + d * h)
        status[idx] |= fl
        nsteps[idx] += 1
        alive = np.ones(len(z), bool)
        _slope_stop(st, s, idx, status, alive)
        active &= alive
        active[idx[last]] = False


def _slope_stop(st, s, idx, status, alive):
    steep = np.maximum(np.abs(s[2][idx]), np.abs(s[3][idx])) > st.max_slope
    status[idx[steep]] |= SLOPE
    alive[idx[steep]] = False


def error_over_tolerance(st: StepperSettings, err, new, s0, tol_t, h, z_new, z_end):
    """The step's error over its tolerance (``step_control``; module doc): err the embedded
    estimate (x, y, tx, ty), new and s0 the states after and before the step, tol_t =
    tolerance/|dz| ("lhcb"), h the step's length (> 0, mm), z_new the z it ends at, z_end the
    track's."""
    if STEP_CONTROLS[st.step_control]:
        # "global": what the step's error becomes at z_end along a straight line, its slope error
        # over the lever arm still ahead (at least the step's own length: the slopes at z_end)
        lev = _where_max(h, np.abs(z_end - z_new))
        ex = (np.abs(err[0]) + lev * np.abs(err[2])) / (
            st.tolerance + st.rel_tolerance * (lev * np.abs(new[2] - s0[2]))
        )
        ey = (np.abs(err[1]) + lev * np.abs(err[3])) / (
            st.tolerance + st.rel_tolerance * (lev * np.abs(new[3] - s0[3]))
        )
        return np.maximum(ex, ey)
    ex = np.abs(err[0]) / st.tolerance
    ey = np.abs(err[1]) / st.tolerance
    etx = np.abs(err[2]) / (tol_t + st.rel_tolerance * np.abs(new[2] - s0[2]))
    ety = np.abs(err[3]) / (tol_t + st.rel_tolerance * np.abs(new[3] - s0[3]))
    return np.maximum(np.maximum(ex, ey), np.maximum(etx, ety))


def _adaptive(field, tab, st, s, z, z0, z1, kap, status, nsteps):
    dz = z1 - z0
    direction = np.where(dz >= 0, 1.0, -1.0)
    tol_t = st.tolerance / np.abs(np.where(dz == 0, 1.0, dz))
    hc = np.minimum(np.abs(dz), st.initial_step)
    attempts = np.zeros(len(z), np.int64)
    active = dz != 0
    grid = GRID_MODES[st.grid_steps] if field.kind == KIND_MAP else 0
    pshrink, pgrow = -1.0 / tab.order, -1.0 / (tab.order + 1)
    while active.any():
        idx, rem, done = _arrivals(z, z1, direction, active)
        limit = ~done & (attempts[idx] >= st.max_steps)
        idx, rem = _limit_stop(idx, rem, done, limit, status, active)
        if not len(idx):
            continue
        d = direction[idx]
        h = np.minimum(hc[idx], rem)
        last = hc[idx] >= rem
        if grid:
            si = _take(s, idx)
            eps = EPS_CELL if grid & CELL else EPS_XY
            dp = plane_distance(field, grid, si[0], si[1], z[idx], si[2], si[3], d, eps)
            cut = dp < h
            h = np.where(cut, dp, h)
            last &= ~cut
        shortened = h < hc[idx]
        s0 = _take(s, idx)
        f = field
        if grid & CELL:  # one cell's field: the cell of the step's straight-line midpoint
            half = 0.5 * (d * h)
            f = field.cell_polynomial(s0[0] + half * s0[2], s0[1] + half * s0[3], z[idx] + half)
        new, err, fl = rk_step(f, tab, z[idx], s0, kap[idx], d * h)
        attempts[idx] += 1
        eot = error_over_tolerance(st, err, new, s0, tol_t[idx], h, z[idx] + d * h, z1[idx])
        # "cell": a step whose stage points strayed from its cell is retried at half its length
        stray = (f.inside & f.strayed) if grid & CELL else np.zeros(len(idx), bool)
        accept = ((eot <= 1.0) & ~stray) | (h <= st.min_step)
        shrink = np.maximum(st.scale_min, SAFETY * step_power(eot, pshrink))
        grow = np.minimum(st.scale_max, SAFETY * step_power(eot, pgrow))
        grow = np.where(eot > 0, grow, st.scale_max)
        factor = np.where(eot > 1.0, shrink, grow)
        hnew = np.minimum(np.maximum(h * factor, st.min_step), st.max_step)
        a_idx = idx[accept]
        _put(s, a_idx, [v[accept] for v in new])
        za = z[a_idx] + d[accept] * h[accept]
        z[a_idx] = np.where(last[accept], z1[a_idx], za)
        status[a_idx] |= fl[accept]
        nsteps[a_idx] += 1
        hc[a_idx] = np.where(shortened[accept], np.maximum(hc[a_idx], hnew[accept]), hnew[accept])
        hc[idx[~accept]] = np.where(stray, np.minimum(hnew, 0.5 * h), hnew)[~accept]
        alive = np.ones(len(z), bool)
        _slope_stop(st, s, a_idx, status, alive)
        active &= alive
        fin = a_idx[last[accept]]
        active[fin] = False
