"""Compiled CPU kernel (numba): eight tracks at a time in vector registers, no Python per step.

The same algorithm as stepper.propagate_reference, operation for operation (stepper.py is the
definition); the field lookups (uniform, Gaussian, trilinear map) are compiled into the stepping
loop. The tableau is data, as in LHCb: ``kernel_for(tableau)`` builds a kernel with the tableau's
coefficients as compile-time constants, so the stage loops unroll and the zero coefficients fold
away (read from arrays they would stay loads and multiplications). The field (kind + packed
arrays, see FieldMap.kernel_args) and the step-control settings are run-time data.
``cache=True``: each scheme's machine code is compiled once and kept in __pycache__ for later
processes.

Comments here say why a choice was made; what each one measured, and the commands, are in
docs/tracks.md ("Kernels", "Benchmarks").
"""

from __future__ import annotations

import hashlib
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.generators.tracks import constants, fields, simd, stepper
from hpcgen.generators.tracks.constants import C_LIGHT
from hpcgen.generators.tracks.fields import (
    ABORTED,
    CELL_MARGIN,
    IM_N,
    IM_NTAB,
    IM_OFF_AX,
    IM_OFF_B,
    IM_OFF_INV,
    IM_OFF_TAB,
    KIND_GAUSSIAN,
    KIND_MAP,
    KIND_UNIFORM,
    LEFT_VOLUME,
    MASKED_CELL,
    SLOPE,
    STEP_LIMIT,
)
from hpcgen.generators.tracks.simd import (
    LANES,
    gather,
    mand,
    many,
    mload,
    mnot,
    mor,
    select,
    splat,
    vabs,
    veq,
    vexp,
    vge,
    vgt,
    visnan,
    vle,
    vload,
    vlt,
    vmax,
    vmin,
    vminimum,
    vpow,
    vstore,
    vtrunc,
    zpair,
)
from hpcgen.generators.tracks.stepper import (
    CELL,
    EPS_CELL,
    EPS_XY,
    EPS_Z,
    SP_CONTROL,
    SP_GRID,
    SP_INITIAL_STEP,
    SP_MAX_SLOPE,
    SP_MAX_STEP,
    SP_MAX_STEPS,
    SP_MIN_STEP,
    SP_PGROW,
    SP_PSHRINK,
    SP_REL_TOL,
    SP_SAFETY,
    SP_SCALE_MAX,
    SP_SCALE_MIN,
    SP_STEP,
    SP_TOL,
)
from hpcgen.generators.tracks.tableaus import TABLEAUS, Tableau
from hpcgen.kernel_cache import njit

#: a digest of the modules the kernels inline or freeze constants from (simd, stepper, fields,
#: constants) in every kernel's closure: numba's on-disk cache keys on the kernel's own bytecode and
#: closure, not on what it takes from other modules, so without it an edit there would leave the
#: cached machine code of the old arithmetic or layout in use
_SOURCES = b"".join(Path(m.__file__).read_bytes() for m in (simd, stepper, fields, constants))
_SOURCE_KEY = int(hashlib.sha256(_SOURCES).hexdigest()[:15], 16)


#: the equations of motion are stepper's, compiled for vectors: the same operations by
#: construction
_slope_derivatives = njit(cache=True, _nrt=False, inline="always")(stepper.slope_derivatives)


@njit(cache=True, _nrt=False)
def _upper_bound(fmap, off, n, v):
    """First i in [0, n) with fmap[off + i] > v (numpy searchsorted side="right")."""
    lo, hi = 0, n
    while lo < hi:
        m = (lo + hi) // 2
        if fmap[off + m] > v:
            hi = m
        else:
            lo = m + 1
    return lo


@njit(cache=True, _nrt=False)
def _lower_bound(fmap, off, n, v):
    """First i in [0, n) with fmap[off + i] >= v (side="left")."""
    lo, hi = 0, n
    while lo < hi:
        m = (lo + hi) // 2
        if fmap[off + m] >= v:
            hi = m
        else:
            lo = m + 1
    return lo


@njit(cache=True, _nrt=False)
def _geometry(fmap, imap):
    """The map's sizes and offsets as tuples of scalars, read once per kernel call: the
    compiler cannot hoist loads from the arrays out of the track loop by itself."""
    gi = (
        np.int64(imap[IM_N]),
        np.int64(imap[IM_N + 1]),
        np.int64(imap[IM_N + 2]),
        np.int64(imap[IM_OFF_B]),
        np.int64(imap[IM_OFF_AX]),
        np.int64(imap[IM_OFF_AX + 1]),
        np.int64(imap[IM_OFF_AX + 2]),
        np.int64(imap[IM_OFF_INV]),
        np.int64(imap[IM_OFF_INV + 1]),
        np.int64(imap[IM_OFF_INV + 2]),
        np.int64(imap[IM_OFF_TAB]),
        np.int64(imap[IM_OFF_TAB + 1]),
        np.int64(imap[IM_OFF_TAB + 2]),
        np.int64(imap[IM_NTAB]),
        np.int64(imap[IM_NTAB + 1]),
        np.int64(imap[IM_NTAB + 2]),
    )
    gf = (fmap[0], fmap[1], fmap[2], fmap[3], fmap[4], fmap[5])
    return gi, gf


@njit(cache=True, _nrt=False, inline="always")
def _axis_cell_v(fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, v):
    """Cell i with ax[i] <= v < ax[i+1] (clamped to [0, n-2]) and the fraction in it, for all
    lanes (Vec v; indices as whole float64), as FieldMap.lookup: the fine index table gets within
    one cell, the two correction loops (run until no lane moves) make it exact (= searchsorted)."""
    j = vtrunc((v - a0) * fine)
    j = select(vge(j, 0.0), j, 0.0)  # defensive: NaN lanes are outside, replaced before
    j = select(vge(j, ntab), ntab - 1.0, j)
    i = gather(imap, off_tab + j)
    last = n - 2.0
    while True:
        up = mand(vlt(i, last), vge(v, gather(fmap, off + i + 1.0)))
        if not many(up):
            break
        i = select(up, i + 1.0, i)
    left = gather(fmap, off + i)  # the cell's left edge, kept for the fraction
    while True:
        down = mand(vgt(i, 0.0), vlt(v, left))
        if not many(down):
            break
        i = select(down, i - 1.0, i)
        left = gather(fmap, off + i)
    return i, (v - left) * gather(fmap, off_inv + i)


@njit(cache=True, _nrt=False, inline="always")
def _run_cell_v(v, m, a_s, h, r):
    """(u, a_s + u h, a_s + (u + 1) h): the cell u in [0, m] of an axis's uniform run (nodes
    a_s + u h, exactly the axis's values, _uniform_run) that holds v, for lanes inside the run.
    trunc((v - a_s) / h) is off by at most one (its relative error is a few ulps of a number
    below the run's length, far less than one cell), so one correction each way makes it exact,
    branch-free (a loop until no lane moves is a data-dependent branch per correction)."""
    u = vtrunc((v - a_s) * r)
    u = select(vge(u, 0.0), u, 0.0)
    u = select(vgt(u, m), m, u)
    u = select(mand(vlt(u, m), vge(v, a_s + (u + 1.0) * h)), u + 1.0, u)
    left = a_s + u * h
    down = mand(vgt(u, 0.0), vlt(v, left))
    u = select(down, u - 1.0, u)
    left = select(down, a_s + u * h, left)
    return u, left, a_s + (u + 1.0) * h


@njit(cache=True, _nrt=False, inline="always")
def _axis_cell_run_v(v, s, m, a_s, h, r, inv):
    """_axis_cell_v for all lanes inside an axis's uniform run (nodes a_s + u h, u = 0..m + 1,
    exactly the axis's values, one inverse spacing inv): the cell by one multiply, corrected
    against the computed edges (no table or edge loads); the same cell and fraction."""
    u, left, _ = _run_cell_v(v, m, a_s, h, r)
    return s + u, (v - left) * inv


@njit(cache=True, _nrt=False, inline="always")
def _axis_cell_any_v(fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, ru, b, v):
    """The cell and fraction of all lanes: by the uniform run (ru[b:b + 8]) when all lanes lie
    in it, else by the index table."""
    inrun = mand(vge(v, ru[b + 2]), mor(vlt(v, ru[b + 3]), mnot(vgt(v, ru[b + 4]))))
    if not many(mnot(inrun)):
        return _axis_cell_run_v(v, ru[b], ru[b + 1], ru[b + 2], ru[b + 5], ru[b + 6], ru[b + 7])
    return _axis_cell_v(fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, v)


@njit(cache=True, _nrt=False, inline="always")
def _lerp_v(a, b, c, d, m, tx, ty, tz):
    """Component m of the trilinear interpolation (FieldMap.lookup's order: z, then y, then x) for
    all lanes, from the z node pairs of the corners (i, j), (i, j+1), (i+1, j), (i+1, j+1)
    (simd.zpair: component m at k is [m], at k + 1 is [m + 3])."""
    c00 = a[m] * (1.0 - tz) + a[m + 3] * tz
    c01 = b[m] * (1.0 - tz) + b[m + 3] * tz
    c10 = c[m] * (1.0 - tz) + c[m + 3] * tz
    c11 = d[m] * (1.0 - tz) + d[m + 3] * tz
    c0 = c00 * (1.0 - ty) + c01 * ty
    c1 = c10 * (1.0 - ty) + c11 * ty
    return c0 * (1.0 - tx) + c1 * tx


@njit(cache=True, _nrt=False, inline="always")
def _map_field_v(has_mask, fmap, imap, mask, bmap, gi, gf, ru, x, y, z):
    """Trilinear lookup (FieldMap.lookup, same arithmetic) for all lanes: (Bx, By, Bz, flags),
    each a Vec (flags as whole float64). Zero and LEFT_VOLUME outside the grid."""
    nx, ny, nz = gi[0], gi[1], gi[2]
    ox, oy, oz = gi[4], gi[5], gi[6]
    x0, x1 = fmap[ox], fmap[ox + nx - 1]
    y0, y1 = fmap[oy], fmap[oy + ny - 1]
    z0, z1 = fmap[oz], fmap[oz + nz - 1]
    # inside as the reference's ordered comparisons: a NaN coordinate is outside (B = 0)
    inside = mand(mand(vge(x, x0), vge(x1, x)), mand(vge(y, y0), vge(y1, y)))
    outside = mnot(mand(inside, mand(vge(z, z0), vge(z1, z))))
    # a lane outside takes the start of the uniform runs (a grid node) for the (discarded)
    # lookup: no long search, and the other lanes keep the fast path
    x = select(outside, ru[2], x)
    y = select(outside, ru[10], y)
    z = select(outside, ru[18], z)
    i, tx = _axis_cell_any_v(fmap, imap, nx, ox, gi[7], gi[10], gi[13], gf[0], gf[1], ru, 0, x)
    j, ty = _axis_cell_any_v(fmap, imap, ny, oy, gi[8], gi[11], gi[14], gf[2], gf[3], ru, 8, y)
    k, tz = _axis_cell_any_v(fmap, imap, nz, oz, gi[9], gi[12], gi[15], gf[4], gf[5], ru, 16, z)
    flag = select(outside, float(LEFT_VOLUME), 0.0)
    if has_mask:
        masked = vgt(gather(mask, (i * (ny - 1) + j) * (nz - 1) + k), 0.0)
        flag = select(mand(masked, mnot(outside)), float(MASKED_CELL), flag)
    sy = nz * 3.0
    sx = ny * sy
    p = gi[3] + i * sx + j * sy + k * 3.0
    a = zpair(bmap, p)
    b = zpair(bmap, p + sy)
    c = zpair(bmap, p + sx)
    d = zpair(bmap, p + sx + sy)
    bx = _lerp_v(a, b, c, d, 0, tx, ty, tz)
    by = _lerp_v(a, b, c, d, 1, tx, ty, tz)
    bz = _lerp_v(a, b, c, d, 2, tx, ty, tz)
    return select(outside, 0.0, bx), select(outside, 0.0, by), select(outside, 0.0, bz), flag


# --- grid_steps "cell": the cell of a step, the planes ahead ------------------------------------


@njit(cache=True, _nrt=False, inline="always")
def _axis_cell_lr_v(fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, ru, b, v):
    """(cell c, ax[c], ax[c + 1], 1 / (ax[c + 1] - ax[c])) of all lanes (the cell as
    _axis_cell_any_v: searchsorted, clamped to [0, n - 2]); in the uniform run the edges are
    computed (a_s + u h: the axis's values to the bit, _uniform_run), else read."""
    inrun = mand(vge(v, ru[b + 2]), mor(vlt(v, ru[b + 3]), mnot(vgt(v, ru[b + 4]))))
    if not many(mnot(inrun)):
        u, left, right = _run_cell_v(v, ru[b + 1], ru[b + 2], ru[b + 5], ru[b + 6])
        return ru[b] + u, left, right, splat(ru[b + 7])
    c, _ = _axis_cell_v(fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, v)
    return c, gather(fmap, off + c), gather(fmap, off + c + 1.0), gather(fmap, off_inv + c)


@njit(cache=True, _nrt=False, inline="always")
def _next_node_v(fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, ru, b, v, sv, eps):
    """stepper.plane_distance's node ahead on one axis, for all lanes: moving up (sv > 0) the
    first node > v + eps, moving down (sv < 0) the last node < v - eps (numpy's searchsorted,
    NaN sorted last). Returns (found, node); not found where sv is 0 or NaN or no node is
    ahead."""
    up = vgt(sv, 0.0)
    dn = vlt(sv, 0.0)
    w = select(up, v + eps, v - eps)
    first = fmap[off]
    lastv = fmap[off + n - 1]
    c, left, right, _ = _axis_cell_lr_v(
        fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, ru, b, w
    )
    up_node = select(vlt(w, first), first, right)
    on = mand(dn, veq(left, w))  # w on a node: the one below it (c >= 1 where w > first)
    if many(on):
        left = select(on, gather(fmap, off + vmax(c - 1.0, 0.0)), left)
    nan = visnan(w)
    dn_node = select(mor(vgt(w, lastv), nan), lastv, left)
    found = mor(mand(up, vlt(w, lastv)), mand(dn, mor(vgt(w, first), nan)))
    return found, select(up, up_node, dn_node)


@njit(cache=True, _nrt=False, inline="always")
def _cell_coef_v(a, b, c, d, m, xi, yi, zi):
    """fields.CellPolynomial's coefficients of component m for all lanes, from the z node
    pairs of the corners (i, j), (i, j+1), (i+1, j), (i+1, j+1) (simd.zpair) and the cell's
    inverse spacings; FieldMap.cell_polynomial's operations in its order."""
    e00z = (a[m + 3] - a[m]) * zi
    e01z = (b[m + 3] - b[m]) * zi
    e10z = (c[m + 3] - c[m]) * zi
    e11z = (d[m + 3] - d[m]) * zi
    f0y = (b[m] - a[m]) * yi
    f0yz = (e01z - e00z) * yi
    f1y = (d[m] - c[m]) * yi
    f1yz = (e11z - e10z) * yi
    cx = (c[m] - a[m]) * xi
    cxz = (e10z - e00z) * xi
    cxy = (f1y - f0y) * xi
    cxyz = (f1yz - f0yz) * xi
    return (a[m], e00z, f0y, f0yz, cx, cxz, cxy, cxyz)


@njit(cache=True, _nrt=False, inline="always")
def _cell_eval_v(cf, u, v, w):
    """fields.CellPolynomial.lookup's polynomial at offsets (u, v, w) from the cell's corner."""
    c0, cz, cy, cyz, cx, cxz, cxy, cxyz = cf
    return ((c0 + cz * w) + (cy + cyz * w) * v) + ((cx + cxz * w) + (cxy + cxyz * w) * v) * u


@njit(cache=True, _nrt=False, inline="always")
def _cell_field_v(cfx, cfy, cfz, u, v, w, outside, anyout):
    """The cell's polynomial field at offsets (u, v, w), zero in the lanes outside the grid
    (anyout False: none is, and no select is needed)."""
    bx = _cell_eval_v(cfx, u, v, w)
    by = _cell_eval_v(cfy, u, v, w)
    bz = _cell_eval_v(cfz, u, v, w)
    if anyout:
        bx = select(outside, 0.0, bx)
        by = select(outside, 0.0, by)
        bz = select(outside, 0.0, bz)
    return bx, by, bz


@njit(cache=True, _nrt=False, inline="always")
def _fixed_stage(i, A, CW, hs, s0, s1, s2, s3, zz, kap, org, outside, anyout, cf, k0, k1, k2):
    """_cell_stage for a fixed step, its earlier stages' (tx, ty, dtx/dz, dty/dz) in k0, k1, k2
    (registers, not K; the same operations in the same order, zero coefficients included).
    Returns this stage's four."""
    xl, yl, zl = org
    a0 = splat(0.0)
    a1 = splat(0.0)
    a2 = splat(0.0)
    a3 = splat(0.0)
    if i > 0:
        a0, a1, a2, a3 = _stage_sum(A[i, 0], k0, a0, a1, a2, a3)
    if i > 1:
        a0, a1, a2, a3 = _stage_sum(A[i, 1], k1, a0, a1, a2, a3)
    if i > 2:
        a0, a1, a2, a3 = _stage_sum(A[i, 2], k2, a0, a1, a2, a3)
    u = (s0 + hs * a0) - xl
    v = (s1 + hs * a1) - yl
    w = (zz + CW[i] * hs) - zl
    tx = s2 + hs * a2
    ty = s3 + hs * a3
    bx, by, bz = _cell_field_v(cf[0], cf[1], cf[2], u, v, w, outside, anyout)
    dtx, dty = _slope_derivatives(tx, ty, bx, by, bz, kap)
    return tx, ty, dtx, dty


@njit(cache=True, _nrt=False, inline="always")
def _stage_sum(a, k, a0, a1, a2, a3):
    """(a0, a1, a2, a3) + a * k, component by component."""
    return a0 + a * k[0], a1 + a * k[1], a2 + a * k[2], a3 + a * k[3]


@njit(cache=True, _nrt=False, inline="always")
def _cell_stage(i, A, CW, K, hs, s0, s1, s2, s3, zz, kap, org, top, outside, anyout, cfx, cfy, cfz):
    """Stage i of a "cell" step for all lanes (stepper.rk_step with fields.CellPolynomial):
    its point from the earlier stages' derivatives in K, the cell's polynomial there (zero for
    a step outside the grid; anyout: whether any lane may be), its derivatives into K. Returns
    the lanes whose point lies more than CELL_MARGIN outside the cell (org: its corner; top: its
    widths + CELL_MARGIN)."""
    xl, yl, zl = org
    a0 = splat(0.0)
    a1 = splat(0.0)
    a2 = splat(0.0)
    a3 = splat(0.0)
    for j in range(i):
        a0 = a0 + A[i, j] * vload(K, 4 * j)
        a1 = a1 + A[i, j] * vload(K, 4 * j + 1)
        a2 = a2 + A[i, j] * vload(K, 4 * j + 2)
        a3 = a3 + A[i, j] * vload(K, 4 * j + 3)
    u = (s0 + hs * a0) - xl
    v = (s1 + hs * a1) - yl
    w = (zz + CW[i] * hs) - zl
    tx = s2 + hs * a2
    ty = s3 + hs * a3
    bx, by, bz = _cell_field_v(cfx, cfy, cfz, u, v, w, outside, anyout)
    dtx, dty = _slope_derivatives(tx, ty, bx, by, bz, kap)
    vstore(K, 4 * i, tx)
    vstore(K, 4 * i + 1, ty)
    vstore(K, 4 * i + 2, dtx)
    vstore(K, 4 * i + 3, dty)
    far = mor(vlt(u, -CELL_MARGIN), vgt(u, top[0]))
    far = mor(far, mor(vlt(v, -CELL_MARGIN), vgt(v, top[1])))
    return mor(far, mor(vlt(w, -CELL_MARGIN), vgt(w, top[2])))


@njit(cache=True, _nrt=False, inline="always")
def _ahead_cell_v(fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, ru, b, v, sv, eps, ends):
    """The cell of v moved by eps the way the track moves on this axis (sv > 0 up, sv < 0 down;
    v itself where sv is 0 or NaN), as (c, ax[c], ax[c + 1], inverse spacing, plain): plain
    marks the lanes whose node ahead in stepper.plane_distance is this cell's far edge (ax[c + 1]
    moving up, ax[c] moving down: all but the lanes off the axis's ends, on a node or NaN), and
    the lanes that seek none. ends: (ax[0], ax[n - 1]), read once before the loop."""
    up = vgt(sv, 0.0)
    dn = vlt(sv, 0.0)
    w = select(up, v + eps, select(dn, v - eps, v))
    c, left, right, inv = _axis_cell_lr_v(
        fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, ru, b, w
    )
    first, lastv = ends
    plain_up = mand(up, mand(vge(w, first), vlt(w, lastv)))
    plain_dn = mand(dn, mand(mand(vgt(w, first), vle(w, lastv)), vlt(left, w)))
    return c, left, right, inv, mor(mor(plain_up, plain_dn), mnot(mor(up, dn)))


@njit(cache=True, _nrt=False, inline="always")
def _ahead_run_v(ru, b, v, sv, eps):
    """_ahead_cell_v's cell for the lanes in the axis's uniform run (ru[b:b + 8]), by its
    multiply alone: (c, ax[c], ax[c + 1], ok). ok marks the lanes for which this is
    _ahead_cell_v's answer and the answer is plain: w = v moved by eps lies in the run's cells
    (left <= w < right: not beyond the run, not NaN) and, moving down, not on a node. Where a
    lane is not ok, _ahead_cell_v gives the answer."""
    up = vgt(sv, 0.0)
    dn = vlt(sv, 0.0)
    w = select(up, v + eps, select(dn, v - eps, v))
    u, left, right = _run_cell_v(w, ru[b + 1], ru[b + 2], ru[b + 5], ru[b + 6])
    ok = mand(mand(vle(left, w), vlt(w, right)), mor(mnot(dn), vlt(left, w)))
    return ru[b] + u, left, right, ok


@njit(cache=True, _nrt=False, inline="always")
def _plane_distance_v(fmap, imap, gi, gf, ru, mode, x, y, z, tx, ty, direction, eps_xy):
    """stepper.plane_distance for all lanes, to the bit (inf where no plane is ahead, NaN where
    a coordinate is NaN and a plane is sought below it, as numpy's minimum)."""
    d = splat(np.inf)
    if mode & 1:
        ok, node = _next_node_v(
            fmap, imap, gi[2], gi[6], gi[9], gi[12], gi[15], gf[4], gf[5], ru, 16, z, direction,
            EPS_Z,
        )  # fmt: skip
        d = select(ok, select(vgt(direction, 0.0), node - z, z - node), np.inf)
    if mode & 2:
        sv = tx * direction
        ok, node = _next_node_v(
            fmap, imap, gi[0], gi[4], gi[7], gi[10], gi[13], gf[0], gf[1], ru, 0, x, sv, eps_xy
        )  # fmt: skip
        d = vminimum(d, select(ok, (node - x) / sv, np.inf))
        sv = ty * direction
        ok, node = _next_node_v(
            fmap, imap, gi[1], gi[5], gi[8], gi[11], gi[14], gf[2], gf[3], ru, 8, y, sv, eps_xy
        )  # fmt: skip
        d = vminimum(d, select(ok, (node - y) / sv, np.inf))
    return d


@njit(cache=True, _nrt=False)
def _plane_distance(fmap, gi, mode, x, y, z, tx, ty, direction):
    """stepper.plane_distance for one track."""
    nz = gi[2]
    oz = gi[6]
    d = np.inf
    if (mode & 1) == 0:
        pass
    elif direction > 0:
        kk = _upper_bound(fmap, oz, nz, z + EPS_Z)
        if kk < nz:
            d = fmap[oz + kk] - z
    else:
        kk = _lower_bound(fmap, oz, nz, z - EPS_Z) - 1
        if kk >= 0:
            d = z - fmap[oz + kk]
    if mode & 2:
        for a in range(2):
            n = gi[0] if a == 0 else gi[1]
            off = gi[4] if a == 0 else gi[5]
            v = x if a == 0 else y
            sv = (tx if a == 0 else ty) * direction
            dd = np.inf
            if sv > 0:
                kk = _upper_bound(fmap, off, n, v + EPS_XY)
                if kk < n:
                    dd = (fmap[off + kk] - v) / sv
            elif sv < 0:
                kk = _lower_bound(fmap, off, n, v - EPS_XY) - 1
                if kk >= 0:
                    dd = (fmap[off + kk] - v) / sv
            if d == d and not d <= dd:  # np.minimum (the reference): a NaN, once there, stays
                d = dd
    return d


# rows of the per-lane float (LF) and integer (LI) work arrays
F_KAP, F_Z, F_ZE, F_DIR, F_TOLT, F_HC, F_H, F_HS, F_BY0, F_BY1, F_EOT, F_HNEW, F_FL = range(13)
I_IDX, I_ATT, I_NST, I_ST, I_LAST, I_SHORT, I_NFULL, I_DONE, I_K0, I_FL0, I_BY0 = range(11)


@njit(cache=True, _nrt=False, inline="always")
def _start_track(ln, t, state, z0, z1, S, LF, LI, adaptive, tol, h0, step):
    """Load track t into lane ln (its state S[:, ln], bookkeeping LF[:, ln] and LI[:, ln])."""
    for c in range(4):
        S[c, ln] = state[t, c]
    dz = z1[t] - z0[t]
    LF[F_KAP, ln] = C_LIGHT * state[t, 4]
    LF[F_Z, ln] = z0[t]
    LF[F_ZE, ln] = z1[t]
    if adaptive:
        LF[F_DIR, ln] = 1.0 if dz >= 0 else -1.0
        LF[F_TOLT, ln] = tol / abs(dz if dz != 0 else 1.0)
        LF[F_HC, ln] = min(abs(dz), h0)
    else:
        LF[F_DIR, ln] = np.sign(dz)
        LF[F_TOLT, ln] = 0.0
        LF[F_HC, ln] = step
    LI[I_IDX, ln] = t
    LI[I_NFULL, ln] = int(np.floor(abs(dz) / step))
    LI[I_ATT, ln] = 0
    LI[I_NST, ln] = 0
    LI[I_ST, ln] = 0
    LI[I_DONE, ln] = 0
    LI[I_K0, ln] = 0
    LI[I_BY0, ln] = 0


@njit(cache=True, _nrt=False, inline="always")
def _finish_track(ln, S, LI, out, status, nsteps):
    """Write lane ln's track to the outputs (NaN state if it was stopped)."""
    t = LI[I_IDX, ln]
    st = LI[I_ST, ln]
    for c in range(4):
        out[t, c] = np.nan if st & ABORTED else S[c, ln]
    status[t] = st
    nsteps[t] = LI[I_NST, ln]


# rows of LF in the "cell" loop (the kernel's other loop uses F_*; the bookkeeping is vector here)
C_KAP, C_Z, C_ZE, C_DIR, C_TOLT, C_HC, C_IDX, C_ATT, C_NST, C_OUT, C_MSK, C_SLP, C_DONE = range(13)


@njit(cache=True, _nrt=False, inline="always")
def _cell_start(ln, t, state, z0, z1, S, LF, tol, h0, adaptive, step):
    """Load track t into lane ln of the "cell" loop (stepper._adaptive's start values; fixed
    steps: stepper._fixed_cell's, every step at most ``step``)."""
    for c in range(4):
        S[c, ln] = state[t, c]
    dz = z1[t] - z0[t]
    LF[C_KAP, ln] = C_LIGHT * state[t, 4]
    LF[C_Z, ln] = z0[t]
    LF[C_ZE, ln] = z1[t]
    LF[C_DIR, ln] = 1.0 if dz >= 0 else -1.0
    LF[C_TOLT, ln] = tol / abs(dz if dz != 0 else 1.0)
    LF[C_HC, ln] = min(abs(dz), h0) if adaptive else step
    LF[C_IDX, ln] = t
    for r in (C_ATT, C_NST, C_OUT, C_MSK, C_SLP, C_DONE):
        LF[r, ln] = 0.0


@njit(cache=True, _nrt=False, inline="always")
def _cell_finish(ln, S, LF, limit, out, status, nsteps):
    """Write lane ln's track of the "cell" loop to the outputs (NaN state if it was stopped)."""
    t = int(LF[C_IDX, ln])
    st = 0
    if LF[C_OUT, ln] != 0.0:
        st |= LEFT_VOLUME
    if LF[C_MSK, ln] != 0.0:
        st |= MASKED_CELL
    if LF[C_SLP, ln] != 0.0:
        st |= SLOPE
    if limit:
        st |= STEP_LIMIT
    for c in range(4):
        out[t, c] = np.nan if st & ABORTED else S[c, ln]
    status[t] = st
    nsteps[t] = int(LF[C_NST, ln])


def _make_kernel(tab: Tableau) -> Any:
    """The kernel for one tableau: its coefficients become compile-time constants.

    Each track runs the scalar algorithm of stepper.py (fixed: floor(|dz|/step) steps then the
    remainder, or stepper._fixed_cell's steps in "cell"; adaptive: LHCb's step control), operation
    for operation. simd.LANES = 8 tracks
    are in flight at once, one in each lane of a vector (simd.Vec: two AVX2 registers): the
    stages, the field (Gaussian: simd.vexp; map: _map_field_v, all points at once), the error
    estimate and the next step size (simd.vpow = stepper.step_power) are computed for all lanes
    at once, in vector instructions that give each lane the bits of the scalar ones. The
    bookkeeping (the next step's length, accept or reject) is scalar, lane by lane. A lane whose
    track ends takes the next one. The closure holds only numbers and arrays: numba's on-disk
    cache keys on them (a dispatcher in the closure would make every process compile again)."""
    NS = tab.stages
    A = np.ascontiguousarray(tab.a)
    BW = np.ascontiguousarray(tab.b)
    EW = np.ascontiguousarray(tab.e)
    CW = np.ascontiguousarray(tab.c)
    ADAPTIVE = tab.adaptive
    # first-same-as-last (Dormand-Prince, Bogacki-Shampine): the last stage of an accepted step
    # is evaluated at the new state and z, so it is the next step's first stage
    FSAL = bool(
        ADAPTIVE
        and np.array_equal(tab.a[-1, :-1], tab.b[:-1])
        and tab.b[-1] == 0.0
        and CW[-1] == 1.0
    )
    # a field that depends on z alone (Gaussian) at a stage with node 1 (Cash-Karp's fifth) is
    # the field at the next step's first stage: z + 1.0 * h is the next z to the bit
    IC1 = int(np.flatnonzero(CW == 1.0)[0]) if ADAPTIVE and not FSAL and (CW == 1.0).any() else -1
    if not ADAPTIVE and NS > 4:  # the "cell" loop keeps a fixed step's stages in registers
        raise ValueError(f"{tab.name}: fixed tableaus of more than 4 stages are not compiled")
    L = LANES
    SOURCE_KEY = _SOURCE_KEY

    # nogil: with `run --overlap` the next chunk is computed in a worker thread while the loop's
    # thread writes (h5py holds the GIL while it writes)
    @njit(cache=True, _nrt=False, nogil=True)
    def kernel(
        state, z0, z1, out, status, nsteps, kind, fpar, fmap, imap, mask, bmap, ru, sp,
        S, K, NEW, ERR, LF, FL, FLAGS, LI,
    ):  # fmt: skip
        """Tracks state[t] = (x, y, tx, ty, q/p) from z0[t] to z1[t] into out[t] (x, y, tx, ty;
        NaN if stopped), status[t] (flags) and nsteps[t] (accepted steps). S ... LI are zeroed
        work arrays (work_arrays): the kernel runs without numba's reference counting (NRT), so
        it allocates nothing, and the map arrays its inlined lookups take are not reference
        counted at every lookup (with NRT: ~28 atomic increments and decrements per vector
        lookup)."""
        if SOURCE_KEY < 0:  # never (the digest is >= 0): puts it in the closure, the cache key
            return
        # the vector loads and stores are unchecked: work arrays of another scheme or width
        # would write past their ends
        rows = (S.shape[0], K.shape[0], NEW.shape[0], ERR.shape[0], LF.shape[0], LI.shape[0])
        cols = (S.shape[1], K.shape[1], NEW.shape[1], ERR.shape[1], LF.shape[1], LI.shape[1])
        bad = rows != (4, 4 * NS, 4, 4, 13, 11) or cols != (L, L, L, L, L, L)
        if bad or FL.size != L or FLAGS.size != L:
            raise ValueError("work arrays do not fit this kernel: use work_arrays(stages)")
        step = sp[SP_STEP]
        tol = sp[SP_TOL]
        rel = sp[SP_REL_TOL]
        hmin = sp[SP_MIN_STEP]
        hmax = sp[SP_MAX_STEP]
        h0 = sp[SP_INITIAL_STEP]
        max_steps = int(sp[SP_MAX_STEPS])
        max_slope = sp[SP_MAX_SLOPE]
        grid = int(sp[SP_GRID]) if kind == KIND_MAP else 0
        pshrink = sp[SP_PSHRINK]
        pgrow = sp[SP_PGROW]
        fmin = sp[SP_SCALE_MIN]
        fmax = sp[SP_SCALE_MAX]
        safety = sp[SP_SAFETY]
        glob = sp[SP_CONTROL] != 0.0  # step_control "global": the error carried to z_end
        has_mask = fpar[0] != 0.0
        if kind == KIND_MAP:
            gi, gf = _geometry(fmap, imap)
        else:
            gi = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            gf = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        n = state.shape[0]
        if kind == KIND_MAP and (grid & CELL) != 0:
            # --- grid_steps "cell": one cell's field per step, all bookkeeping in vectors ------
            # (stepper._adaptive with CellPolynomial, fixed steps stepper._fixed_cell; lanes
            # hand over tracks as the loop below)
            nx, ny, nz = gi[0], gi[1], gi[2]
            x_lo, x_hi = fmap[gi[4]], fmap[gi[4] + nx - 1]
            y_lo, y_hi = fmap[gi[5]], fmap[gi[5] + ny - 1]
            z_lo, z_hi = fmap[gi[6]], fmap[gi[6] + nz - 1]
            sy = nz * 3.0
            sx = ny * sy
            # below this error over the tolerance, safety * eot**pgrow exceeds fmax by > 0.02 %
            # (step_power is within 3 ulp of the exact power): the factor is fmax, to the bit
            eot_grow_max = -1.0
            if pgrow < 0.0 and safety > 0.0 and fmax > 0.0:
                eot_grow_max = min(0.999 * (fmax / safety) ** (1.0 / pgrow), 1.0)
            eot_small = 0.5 * eot_grow_max
            LF[C_IDX] = -1.0
            nxt = 0
            running = 0
            for ln in range(L):
                if nxt < n:
                    _cell_start(ln, nxt, state, z0, z1, S, LF, tol, h0, ADAPTIVE, step)
                    nxt += 1
                    running += 1
            while running > 0:
                # lanes whose track is over write it out and take the next (scalar, rare)
                act = vge(vload(LF, C_IDX), 0.0)
                rem = (vload(LF, C_ZE) - vload(LF, C_Z)) * vload(LF, C_DIR)
                over = mor(vgt(vload(LF, C_DONE), 0.0), vle(rem, 0.0))
                if ADAPTIVE:
                    over = mor(over, vge(vload(LF, C_ATT), float(max_steps)))
                else:  # a NaN or infinite z_end, never reached: stopped (stepper._fixed_cell)
                    over = mor(over, mnot(vlt(rem, np.inf)))
                over = mand(act, over)
                if many(over):
                    for ln in range(L):
                        while LF[C_IDX, ln] >= 0:
                            limit = False
                            if LF[C_DONE, ln] == 0.0:
                                r = (LF[C_ZE, ln] - LF[C_Z, ln]) * LF[C_DIR, ln]
                                if r <= 0:
                                    LF[C_Z, ln] = LF[C_ZE, ln]
                                elif ADAPTIVE and LF[C_ATT, ln] >= max_steps:
                                    limit = True
                                elif not ADAPTIVE and not r < np.inf:
                                    limit = True
                                else:
                                    break
                            _cell_finish(ln, S, LF, limit, out, status, nsteps)
                            if nxt < n:
                                _cell_start(ln, nxt, state, z0, z1, S, LF, tol, h0, ADAPTIVE, step)
                                nxt += 1
                            else:
                                LF[C_IDX, ln] = -1.0
                                running -= 1
                    if running == 0:
                        break
                    act = vge(vload(LF, C_IDX), 0.0)
                    rem = (vload(LF, C_ZE) - vload(LF, C_Z)) * vload(LF, C_DIR)
                # the step: to z_end, the controller's length or the first plane ahead
                zz = vload(LF, C_Z)
                dirv = vload(LF, C_DIR)
                hc = vload(LF, C_HC)
                s0 = vload(S, 0)
                s1 = vload(S, 1)
                s2 = vload(S, 2)
                s3 = vload(S, 3)
                h = vmin(hc, rem)
                last = vge(hc, rem)
                # the planes ahead (plane_distance) are the far faces of the cells the track
                # is about to enter (its position moved by EPS_CELL, EPS_Z), which also give the
                # midpoint's cell nearly always. Nearly always every lane's cells lie in the
                # axes' uniform runs: a multiply each (_ahead_run_v). Where not, or where a lane
                # is not plain there, three searches, and the full plane search where needed;
                # "general" also asks for the outside-the-grid test below. Adaptive steps always
                # take the searches: the shortcut did not make Cash-Karp faster (same-process
                # A/B, docs/benchmarks.md)
                svx = s2 * dirv
                svy = s3 * dirv
                qi, qxl, qxr, okx = _ahead_run_v(ru, 0, s0, svx, EPS_CELL)
                qj, qyl, qyr, oky = _ahead_run_v(ru, 8, s1, svy, EPS_CELL)
                qk, qzl, qzr, okz = _ahead_run_v(ru, 16, zz, dirv, EPS_Z)
                qxi = splat(ru[7])
                qyi = splat(ru[15])
                qzi = splat(ru[23])
                general = ADAPTIVE or many(mnot(mand(mand(okx, oky), okz)))
                plain = True
                if general:
                    qi, qxl, qxr, qxi, px_ = _ahead_cell_v(
                        fmap, imap, nx, gi[4], gi[7], gi[10], gi[13], gf[0], gf[1], ru, 0, s0,
                        svx, EPS_CELL, (x_lo, x_hi),
                    )  # fmt: skip
                    qj, qyl, qyr, qyi, py_ = _ahead_cell_v(
                        fmap, imap, ny, gi[5], gi[8], gi[11], gi[14], gf[2], gf[3], ru, 8, s1,
                        svy, EPS_CELL, (y_lo, y_hi),
                    )  # fmt: skip
                    qk, qzl, qzr, qzi, pz_ = _ahead_cell_v(
                        fmap, imap, nz, gi[6], gi[9], gi[12], gi[15], gf[4], gf[5], ru, 16, zz,
                        dirv, EPS_Z, (z_lo, z_hi),
                    )  # fmt: skip
                    plain = not many(mnot(mand(mand(px_, py_), pz_)))
                if plain:
                    dp = select(vgt(dirv, 0.0), qzr - zz, zz - qzl)
                    # the face ahead, then one division (the quotient of the one selected)
                    ddx = (select(vgt(svx, 0.0), qxr, qxl) - s0) / svx
                    dp = vminimum(dp, select(mor(vgt(svx, 0.0), vlt(svx, 0.0)), ddx, np.inf))
                    ddy = (select(vgt(svy, 0.0), qyr, qyl) - s1) / svy
                    dp = vminimum(dp, select(mor(vgt(svy, 0.0), vlt(svy, 0.0)), ddy, np.inf))
                else:
                    dp = _plane_distance_v(
                        fmap, imap, gi, gf, ru, grid, s0, s1, zz, s2, s3, dirv, EPS_CELL
                    )  # fmt: skip
                cut = vlt(dp, h)
                h = select(cut, dp, h)
                last = mand(last, mnot(cut))
                short = vlt(h, hc)
                hs = dirv * h
                # the cell of the straight-line midpoint: its corners, read once for all stages
                half = 0.5 * hs
                mx = s0 + half * s2
                my = s1 + half * s3
                mz = zz + half
                ci, xl, xr, xi = qi, qxl, qxr, qxi
                cj, yl, yr, yi = qj, qyl, qyr, qyi
                ck, zl, zr, zi = qk, qzl, qzr, qzi
                offx = mnot(mand(vge(mx, qxl), vlt(mx, qxr)))
                offy = mnot(mand(vge(my, qyl), vlt(my, qyr)))
                offz = mnot(mand(vge(mz, qzl), vlt(mz, qzr)))
                if many(mor(mor(offx, offy), offz)):  # one branch for the common case
                    general = True
                    if many(offx):
                        ci, xl, xr, xi = _axis_cell_lr_v(
                            fmap, imap, nx, gi[4], gi[7], gi[10], gi[13], gf[0], gf[1], ru, 0, mx
                        )  # fmt: skip
                    if many(offy):
                        cj, yl, yr, yi = _axis_cell_lr_v(
                            fmap, imap, ny, gi[5], gi[8], gi[11], gi[14], gf[2], gf[3], ru, 8, my
                        )  # fmt: skip
                    if many(offz):
                        ck, zl, zr, zi = _axis_cell_lr_v(
                            fmap, imap, nz, gi[6], gi[9], gi[12], gi[15], gf[4], gf[5], ru, 16, mz
                        )  # fmt: skip
                p = gi[3] + ci * sx + cj * sy + ck * 3.0
                ca = zpair(bmap, p)
                cb = zpair(bmap, p + sy)
                cc = zpair(bmap, p + sx)
                cd = zpair(bmap, p + sx + sy)
                # fields.CellPolynomial: B = 0 for a step whose midpoint is outside the grid. Not
                # general: every midpoint lies in its cell ahead, in the uniform runs, inside
                if general:
                    inside = mand(
                        mand(vge(mx, x_lo), vge(x_hi, mx)), mand(vge(my, y_lo), vge(y_hi, my))
                    )
                    outside = mnot(mand(inside, mand(vge(mz, z_lo), vge(z_hi, mz))))
                else:
                    outside = vgt(splat(0.0), 0.0)
                if has_mask:
                    masked = vgt(gather(mask, (ci * (ny - 1.0) + cj) * (nz - 1.0) + ck), 0.0)
                    masked = mand(masked, mnot(outside))
                else:
                    masked = vgt(splat(0.0), 0.0)
                cfx = _cell_coef_v(ca, cb, cc, cd, 0, xi, yi, zi)
                cfy = _cell_coef_v(ca, cb, cc, cd, 1, xi, yi, zi)
                cfz = _cell_coef_v(ca, cb, cc, cd, 2, xi, yi, zi)
                kap = vload(LF, C_KAP)
                org = (xl, yl, zl)
                top = ((xr - xl) + CELL_MARGIN, (yr - yl) + CELL_MARGIN, (zr - zl) + CELL_MARGIN)
                far = vgt(splat(0.0), 0.0)
                if not ADAPTIVE:
                    # fixed steps: the stages in registers (_fixed_stage), the new state at once
                    cf = (cfx, cfy, cfz)
                    zk = (splat(0.0), splat(0.0), splat(0.0), splat(0.0))
                    k0, k1, k2, k3 = zk, zk, zk, zk
                    if NS > 0:
                        k0 = _fixed_stage(0, A, CW, hs, s0, s1, s2, s3, zz, kap, org, outside,
                                          general, cf, k0, k1, k2)  # fmt: skip
                    if NS > 1:
                        k1 = _fixed_stage(1, A, CW, hs, s0, s1, s2, s3, zz, kap, org, outside,
                                          general, cf, k0, k1, k2)  # fmt: skip
                    if NS > 2:
                        k2 = _fixed_stage(2, A, CW, hs, s0, s1, s2, s3, zz, kap, org, outside,
                                          general, cf, k0, k1, k2)  # fmt: skip
                    if NS > 3:
                        k3 = _fixed_stage(3, A, CW, hs, s0, s1, s2, s3, zz, kap, org, outside,
                                          general, cf, k0, k1, k2)  # fmt: skip
                    b0, b1, b2, b3 = zk
                    if NS > 0:
                        b0, b1, b2, b3 = _stage_sum(BW[0], k0, b0, b1, b2, b3)
                    if NS > 1:
                        b0, b1, b2, b3 = _stage_sum(BW[1], k1, b0, b1, b2, b3)
                    if NS > 2:
                        b0, b1, b2, b3 = _stage_sum(BW[2], k2, b0, b1, b2, b3)
                    if NS > 3:
                        b0, b1, b2, b3 = _stage_sum(BW[3], k3, b0, b1, b2, b3)
                    n2 = s2 + hs * b2
                    n3 = s3 + hs * b3
                    acc = act  # every fixed step is taken, at its length
                    vstore(S, 0, select(acc, s0 + hs * b0, s0))
                    vstore(S, 1, select(acc, s1 + hs * b1, s1))
                    vstore(S, 2, select(acc, n2, s2))
                    vstore(S, 3, select(acc, n3, s3))
                else:
                    # the stages one by one (a loop over them is not unrolled: its coefficients
                    # would be loads, not constants, and the zero ones not folded away)
                    if NS > 0:
                        far = mor(far, _cell_stage(
                            0, A, CW, K, hs, s0, s1, s2, s3, zz, kap, org, top, outside, general,
                            cfx, cfy, cfz,
                        ))  # fmt: skip
                    if NS > 1:
                        far = mor(far, _cell_stage(
                            1, A, CW, K, hs, s0, s1, s2, s3, zz, kap, org, top, outside, general,
                            cfx, cfy, cfz,
                        ))  # fmt: skip
                    if NS > 2:
                        far = mor(far, _cell_stage(
                            2, A, CW, K, hs, s0, s1, s2, s3, zz, kap, org, top, outside, general,
                            cfx, cfy, cfz,
                        ))  # fmt: skip
                    if NS > 3:
                        far = mor(far, _cell_stage(
                            3, A, CW, K, hs, s0, s1, s2, s3, zz, kap, org, top, outside, general,
                            cfx, cfy, cfz,
                        ))  # fmt: skip
                    if NS > 4:
                        far = mor(far, _cell_stage(
                            4, A, CW, K, hs, s0, s1, s2, s3, zz, kap, org, top, outside, general,
                            cfx, cfy, cfz,
                        ))  # fmt: skip
                    if NS > 5:
                        far = mor(far, _cell_stage(
                            5, A, CW, K, hs, s0, s1, s2, s3, zz, kap, org, top, outside, general,
                            cfx, cfy, cfz,
                        ))  # fmt: skip
                    if NS > 6:
                        far = mor(far, _cell_stage(
                            6, A, CW, K, hs, s0, s1, s2, s3, zz, kap, org, top, outside, general,
                            cfx, cfy, cfz,
                        ))  # fmt: skip
                    for c in range(4):
                        ab = splat(0.0)
                        ae = splat(0.0)
                        for j in range(NS):
                            kc = vload(K, 4 * j + c)
                            ab = ab + BW[j] * kc
                            ae = ae + EW[j] * kc
                        vstore(NEW, c, vload(S, c) + hs * ab)
                        vstore(ERR, c, hs * ae)
                    n2 = vload(NEW, 2)
                    n3 = vload(NEW, 3)
                    # the error over the tolerance, the next step size (as the loop below).
                    # Nearly always every lane's error is far below the tolerance: when each part
                    # is below eot_small of its tolerance, with room for the rounding of the
                    # products, eot (its quotients) is below eot_grow_max and 1, so the step is
                    # accepted and grows by the most, and no quotient or power is needed for those
                    # bits
                    tolt = vload(LF, C_TOLT)
                    e0 = vabs(vload(ERR, 0))
                    e1 = vabs(vload(ERR, 1))
                    e2 = vabs(vload(ERR, 2))
                    e3 = vabs(vload(ERR, 3))
                    if glob:  # stepper.error_over_tolerance: x, y with their slopes' lever arm
                        lev = vmax(h, vabs(vload(LF, C_ZE) - (zz + hs)))
                        e0 = e0 + lev * e2
                        e1 = e1 + lev * e3
                        dtx = tol + rel * (lev * vabs(n2 - s2))
                        dty = tol + rel * (lev * vabs(n3 - s3))
                        small = mand(vle(e0, eot_small * dtx), vle(e1, eot_small * dty))
                    else:
                        dtx = tolt + rel * vabs(n2 - s2)
                        dty = tolt + rel * vabs(n3 - s3)
                        small = mand(vle(e0, eot_small * tol), vle(e1, eot_small * tol))
                        small = mand(
                            small, mand(vle(e2, eot_small * dtx), vle(e3, eot_small * dty))
                        )
                    # a step whose stage points strayed from its (inside) cell: retried shorter
                    stray = mand(far, mnot(outside))
                    if not many(mnot(mor(small, mnot(act)))):
                        factor = splat(fmax)
                        acc = mand(act, mor(mnot(stray), vle(h, hmin)))
                    else:
                        if glob:
                            eot = vmax(e0 / dtx, e1 / dty)
                        else:
                            eot = vmax(vmax(e0 / tol, e1 / tol), vmax(e2 / dtx, e3 / dty))
                        if many(vgt(eot, eot_grow_max)):
                            big = vgt(eot, 1.0)
                            scale = safety * vpow(eot, select(big, pshrink, pgrow))
                            factor = select(big, vmax(fmin, scale), vmin(fmax, scale))
                            factor = select(mor(big, vgt(eot, 0.0)), factor, fmax)
                        else:  # every lane grows by the most: no power needed
                            factor = splat(fmax)
                        acc = mand(act, mor(mand(vle(eot, 1.0), mnot(stray)), vle(h, hmin)))
                    hnew = vmin(vmax(h * factor, hmin), hmax)
                    # accept or reject, all lanes at once
                    vstore(LF, C_ATT, vload(LF, C_ATT) + select(act, 1.0, 0.0))
                    hc_acc = select(short, vmax(hc, hnew), hnew)
                    hc_rej = select(stray, vmin(hnew, 0.5 * h), hnew)
                    vstore(LF, C_HC, select(act, select(acc, hc_acc, hc_rej), hc))
                    for c in range(4):
                        vstore(S, c, select(acc, vload(NEW, c), vload(S, c)))
                vstore(LF, C_Z, select(acc, select(last, vload(LF, C_ZE), zz + hs), zz))
                vstore(LF, C_NST, vload(LF, C_NST) + select(acc, 1.0, 0.0))
                # the flags (a lane left the grid, a masked cell, the slope limit); the slope limit
                # is numpy's maximum(|tx|, |ty|) > max_slope (NaN: not steep). A last step needs no
                # flag: it puts z at z_end, which ends the track. Fixed steps write them only when
                # a lane has one (rare); adaptive ones every step (measured: the branch made
                # Cash-Karp slower, docs/benchmarks.md)
                a2 = vabs(n2)
                a3 = vabs(n3)
                steep = mand(
                    mor(vgt(a2, max_slope), vgt(a3, max_slope)), mand(vge(a2, 0.0), vge(a3, 0.0))
                )
                steep = mand(acc, steep)
                if ADAPTIVE or many(mor(steep, mand(acc, mor(outside, masked)))):
                    vstore(LF, C_OUT, select(mand(acc, outside), 1.0, vload(LF, C_OUT)))
                    vstore(LF, C_MSK, select(mand(acc, masked), 1.0, vload(LF, C_MSK)))
                    vstore(LF, C_SLP, select(steep, 1.0, vload(LF, C_SLP)))
                    vstore(LF, C_DONE, select(steep, 1.0, vload(LF, C_DONE)))
            return
        LF[F_DIR] = 1.0
        LF[F_TOLT] = 1.0
        LI[I_IDX] = -1
        nxt = 0
        running = 0
        for ln in range(L):
            if nxt < n:
                _start_track(ln, nxt, state, z0, z1, S, LF, LI, ADAPTIVE, tol, h0, step)
                nxt += 1
                running += 1
        while running > 0:
            # --- each lane's next step: signed length hs, whether it ends at z_end; a lane whose
            # track is over writes it out and takes the next track -------------------------------
            for ln in range(L):
                while LI[I_IDX, ln] >= 0:
                    z = LF[F_Z, ln]
                    ze = LF[F_ZE, ln]
                    direction = LF[F_DIR, ln]
                    attempts = LI[I_ATT, ln]
                    over = LI[I_DONE, ln] != 0
                    if not over and ADAPTIVE:
                        rem = (ze - z) * direction
                        if rem <= 0:
                            LF[F_Z, ln] = ze
                            over = True
                        elif attempts >= max_steps:
                            LI[I_ST, ln] |= STEP_LIMIT
                            over = True
                        else:
                            hc = LF[F_HC, ln]
                            h = min(hc, rem)
                            last = hc >= rem
                            if grid != 0:
                                dp = _plane_distance(
                                    fmap,
                                    gi,
                                    grid,
                                    S[0, ln],
                                    S[1, ln],
                                    z,
                                    S[2, ln],
                                    S[3, ln],
                                    direction,
                                )
                                if dp < h:
                                    h = dp
                                    last = False
                            LF[F_H, ln] = h
                            LF[F_HS, ln] = direction * h
                            LI[I_LAST, ln] = last
                            LI[I_SHORT, ln] = h < hc
                    elif not over:
                        if attempts < LI[I_NFULL, ln]:
                            LF[F_HS, ln] = direction * step
                            LI[I_LAST, ln] = False
                        else:
                            hs = ze - z
                            if attempts > LI[I_NFULL, ln] or hs == 0:
                                over = True
                            LF[F_HS, ln] = hs
                            LI[I_LAST, ln] = True
                    if not over:
                        break
                    _finish_track(ln, S, LI, out, status, nsteps)
                    if nxt < n:
                        _start_track(ln, nxt, state, z0, z1, S, LF, LI, ADAPTIVE, tol, h0, step)
                        nxt += 1
                    else:
                        LI[I_IDX, ln] = -1
                        running -= 1
            if running == 0:
                break
            # --- the Runge-Kutta stages (stepper.rk_step): the lanes as one vector ----------------
            # (idle lanes compute on their last values: harmless, and no branch in the lanes)
            hs = vload(LF, F_HS)
            zz = vload(LF, F_Z)
            kap = vload(LF, F_KAP)
            s0 = vload(S, 0)
            s1 = vload(S, 1)
            s2 = vload(S, 2)
            s3 = vload(S, 3)
            keep0 = mload(LI, I_K0)  # a retried step: its first stage is kept
            for i in range(NS):
                a0 = splat(0.0)
                a1 = splat(0.0)
                a2 = splat(0.0)
                a3 = splat(0.0)
                for j in range(i):
                    a0 = a0 + A[i, j] * vload(K, 4 * j)
                    a1 = a1 + A[i, j] * vload(K, 4 * j + 1)
                    a2 = a2 + A[i, j] * vload(K, 4 * j + 2)
                    a3 = a3 + A[i, j] * vload(K, 4 * j + 3)
                tx = s2 + hs * a2
                ty = s3 + hs * a3
                if kind == KIND_GAUSSIAN:
                    u = (zz + CW[i] * hs - fpar[1]) / fpar[2]
                    by = fpar[0] * vexp(-0.5 * u * u)
                    if i == 0:
                        by = select(mload(LI, I_BY0), vload(LF, F_BY0), by)  # last step's end
                    if i == IC1:
                        vstore(LF, F_BY1, by)
                    bx = splat(0.0)
                    bz = splat(0.0)
                elif kind == KIND_UNIFORM:
                    bx = splat(fpar[0])
                    by = splat(fpar[1])
                    bz = splat(fpar[2])
                else:
                    bx, by, bz, flv = _map_field_v(
                        has_mask, fmap, imap, mask, bmap, gi, gf, ru, s0 + hs * a0, s1 + hs * a1,
                        zz + CW[i] * hs,
                    )  # fmt: skip
                    vstore(LF, F_FL, flv)
                    for ln in range(L):
                        if i == 0 and LI[I_K0, ln] != 0:
                            FLAGS[ln] = LI[I_FL0, ln]  # stage 0 kept: same point as before
                            continue
                        fl = int(LF[F_FL, ln])
                        FL[ln] = fl
                        if i == 0:
                            LI[I_FL0, ln] = fl
                            FLAGS[ln] = fl
                        else:
                            FLAGS[ln] |= fl
                k2, k3 = _slope_derivatives(tx, ty, bx, by, bz, kap)
                if i == 0:
                    tx = select(keep0, vload(K, 0), tx)
                    ty = select(keep0, vload(K, 1), ty)
                    k2 = select(keep0, vload(K, 2), k2)
                    k3 = select(keep0, vload(K, 3), k3)
                vstore(K, 4 * i, tx)
                vstore(K, 4 * i + 1, ty)
                vstore(K, 4 * i + 2, k2)
                vstore(K, 4 * i + 3, k3)
            for c in range(4):
                ab = splat(0.0)
                ae = splat(0.0)
                for j in range(NS):
                    kc = vload(K, 4 * j + c)
                    ab = ab + BW[j] * kc
                    ae = ae + EW[j] * kc
                vstore(NEW, c, vload(S, c) + hs * ab)
                vstore(ERR, c, hs * ae)
            if ADAPTIVE:
                # the error over the tolerance and the next step size (stepper._adaptive)
                h = vload(LF, F_H)
                if glob:  # stepper.error_over_tolerance: x and y with their slopes' lever arm
                    lev = vmax(h, vabs(vload(LF, F_ZE) - (zz + hs)))
                    ex = (vabs(vload(ERR, 0)) + lev * vabs(vload(ERR, 2))) / (
                        tol + rel * (lev * vabs(vload(NEW, 2) - s2))
                    )
                    ey = (vabs(vload(ERR, 1)) + lev * vabs(vload(ERR, 3))) / (
                        tol + rel * (lev * vabs(vload(NEW, 3) - s3))
                    )
                    eot = vmax(ex, ey)
                else:
                    ex = vabs(vload(ERR, 0)) / tol
                    ey = vabs(vload(ERR, 1)) / tol
                    tolt = vload(LF, F_TOLT)
                    etx = vabs(vload(ERR, 2)) / (tolt + rel * vabs(vload(NEW, 2) - s2))
                    ety = vabs(vload(ERR, 3)) / (tolt + rel * vabs(vload(NEW, 3) - s3))
                    eot = vmax(vmax(ex, ey), vmax(etx, ety))
                big = vgt(eot, 1.0)
                scale = safety * vpow(eot, select(big, pshrink, pgrow))  # stepper.step_power
                factor = select(big, vmax(fmin, scale), vmin(fmax, scale))
                factor = select(mor(big, vgt(eot, 0.0)), factor, fmax)
                hnew = vmin(vmax(h * factor, hmin), hmax)
                vstore(LF, F_EOT, eot)
                vstore(LF, F_HNEW, hnew)
            # --- accept or reject (fixed steps are always accepted) ------------------------------
            for ln in range(L):
                if LI[I_IDX, ln] < 0:
                    continue
                LI[I_ATT, ln] += 1
                accept = True
                if ADAPTIVE:
                    hnew = LF[F_HNEW, ln]
                    accept = LF[F_EOT, ln] <= 1.0 or LF[F_H, ln] <= hmin
                    if not accept:
                        LF[F_HC, ln] = hnew
                    elif LI[I_SHORT, ln] != 0:
                        LF[F_HC, ln] = max(LF[F_HC, ln], hnew)
                    else:
                        LF[F_HC, ln] = hnew
                # a rejected step is retried from the same point: its first stage is known
                LI[I_K0, ln] = not accept
                if accept:
                    for c in range(4):
                        S[c, ln] = NEW[c, ln]
                    last = LI[I_LAST, ln] != 0
                    LF[F_Z, ln] = LF[F_ZE, ln] if last else LF[F_Z, ln] + LF[F_HS, ln]
                    LI[I_ST, ln] |= FLAGS[ln]
                    LI[I_NST, ln] += 1
                    sx2, sx3 = S[2, ln], S[3, ln]  # numpy maximum: a NaN slope is not steep
                    if sx2 == sx2 and sx3 == sx3 and max(abs(sx2), abs(sx3)) > max_slope:
                        LI[I_ST, ln] |= SLOPE
                        LI[I_DONE, ln] = 1
                    elif last:
                        LI[I_DONE, ln] = 1
                    elif FSAL:
                        for c in range(4):
                            K[c, ln] = K[4 * (NS - 1) + c, ln]
                        LI[I_FL0, ln] = FL[ln]
                        LI[I_K0, ln] = 1
                    elif IC1 >= 0:
                        LF[F_BY0, ln] = LF[F_BY1, ln]
                        LI[I_BY0, ln] = 1

    return kernel


def _uniform_run(ax: np.ndarray, inv: np.ndarray) -> list[float]:
    """The longest run of nodes s..e of an axis that are exactly a_s + u h (u = 0..e - s, float64
    arithmetic as the kernel's) with one inverse spacing, as (s, e - s - 1, a_s, a_e, a_top, h,
    1/h, inv): a_top = a_e where the run ends the axis (its last cell is closed), else -inf.
    None found: a run no lane is in (a_s = +inf)."""
    n = len(ax)
    best = None
    s = 0
    while s < n - 1:
        e = s + 1
        d = ax[s + 1] - ax[s]
        while e < n - 1 and ax[e + 1] - ax[e] == d:
            e += 1
        u = np.arange(e - s + 1, dtype=np.float64)
        exact = np.array_equal(ax[s : e + 1], ax[s] + u * d) and bool(np.all(inv[s:e] == inv[s]))
        if exact and (best is None or e - s > best[1] - best[0]):
            best = (s, e)
        s = e
    if best is None:
        return [0.0, 0.0, np.inf, -np.inf, -np.inf, 1.0, 1.0, 0.0]
    s, e = best
    h = float(ax[s + 1] - ax[s])
    top = float(ax[e]) if e == n - 1 else -np.inf
    return [float(s), float(e - s - 1), float(ax[s]), float(ax[e]), top, h, 1.0 / h, float(inv[s])]


def _uniform_runs(fmap: np.ndarray, imap: np.ndarray) -> np.ndarray:
    """_uniform_run of the map's three axes, 8 values each."""
    out = []
    for a in range(3):
        n = int(imap[IM_N + a])
        ax = fmap[int(imap[IM_OFF_AX + a]) :][:n]
        inv = fmap[int(imap[IM_OFF_INV + a]) :][: n - 1]
        out += _uniform_run(ax, inv)
    return np.array(out)


#: _uniform_runs of the maps in use, computed once per map (FieldMap hashes by identity)
_RUNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _map_runs(field: Any) -> np.ndarray:
    """_uniform_runs of a FieldMap, computed on its first propagation."""
    if field not in _RUNS:
        _, _, fmap, imap, _, _ = field.kernel_args()
        _RUNS[field] = _uniform_runs(fmap, imap)
    return _RUNS[field]


def _zeros_aligned(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Zeros whose first element sits on a 64-byte boundary (a cache line): the kernel's vector
    rows (LANES x 8 bytes) then never straddle two lines (numpy aligns to 16 bytes only)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.zeros(nbytes + 64, np.uint8)
    off = -buf.ctypes.data % 64
    return buf[off : off + nbytes].view(dtype).reshape(shape)


def work_arrays(stages: int) -> tuple[np.ndarray, ...]:
    """The kernel's zeroed work arrays, one column per lane: state S (4 rows), stage derivatives
    K (4 per stage: row 4 i + c is stage i, component c), the step's new state NEW and error ERR
    (4 each), float bookkeeping LF (F_* rows), the lanes' lookup flags FL and the OR of an
    attempt's flags FLAGS, integer bookkeeping LI (I_* rows)."""
    f64 = [_zeros_aligned((rows, LANES), np.float64) for rows in (4, 4 * stages, 4, 4, 13)]
    i64 = [_zeros_aligned(shape, np.int64) for shape in ((LANES,), (LANES,), (11, LANES))]
    return (*f64, *i64)


_KERNELS: dict[str, Any] = {}


def kernel_for(scheme: str) -> Any:
    """The compiled kernel of a scheme (built on first use; compiled on its first call)."""
    if scheme not in _KERNELS:
        _KERNELS[scheme] = _make_kernel(TABLEAUS[scheme])
    return _KERNELS[scheme]


def run_order(state: np.ndarray, z0: np.ndarray, z1: np.ndarray) -> np.ndarray:
    """The order to run map tracks in: by the 400 x 400 mm column a track crosses half-way, x
    columns with y alternately up and down, so that neighbours in the loop read the same cache
    lines of the 12 MB node array. Columns beyond +-25.6 m (far outside any map; NaN: the first)
    share the edge ones: the key fits 14 bits, which numpy sorts by radix (a lexsort of the float
    columns and fancy indexing cost a noticeable part of the kernel's time)."""
    h = (z1 - z0) * (0.5 / 400.0)

    def column(a: int) -> np.ndarray:
        v = state[:, a] * (1.0 / 400.0) + state[:, a + 2] * h
        np.floor(v, out=v)
        np.fmax(v, -64.0, out=v)  # fmax/fmin: NaN -> -64 (no invalid cast)
        np.fmin(v, 63.0, out=v)
        return v.astype(np.int16) + np.int16(64)  # 0 .. 127

    cx, cy = column(0), column(1)
    return np.argsort((cx << 7) | np.where(cx & 1, 127 - cy, cy), kind="stable")


def propagate_numba(state, z0, z1, field, settings):
    """numba kernel on host arrays: (Y (n, 4), status uint8, n_steps int32).

    Through a map the tracks are run in run_order (gathered into that order and the results
    put back: each track's result does not depend on the order; reading them in place from the
    kernel instead costs cache and TLB misses)."""
    state = np.ascontiguousarray(state, dtype=np.float64)
    z0 = np.ascontiguousarray(z0, dtype=np.float64)
    z1 = np.ascontiguousarray(z1, dtype=np.float64)
    n = len(state)
    kind, fpar, fmap, imap, mask, bmap = field.kernel_args()
    order = None
    if kind == KIND_MAP and n > 1:
        order = run_order(state, z0, z1)
        state, z0, z1 = np.take(state, order, axis=0), np.take(z0, order), np.take(z1, order)
    out = np.empty((n, 4))
    status = np.zeros(n, np.uint8)
    nsteps = np.zeros(n, np.int32)
    ru = _map_runs(field) if kind == KIND_MAP else np.zeros(24)
    kernel_for(settings.scheme)(
        state, z0, z1, out, status, nsteps, kind, fpar, fmap, imap, mask, bmap, ru,
        settings.packed(), *work_arrays(TABLEAUS[settings.scheme].stages),
    )  # fmt: skip
    if order is not None:
        inv = np.empty(n, np.int64)
        inv[order] = np.arange(n)
        out, status, nsteps = np.take(out, inv, axis=0), np.take(status, inv), np.take(nsteps, inv)
    return out, status, nsteps
