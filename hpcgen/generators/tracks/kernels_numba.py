"""Compiled CPU kernel (numba): one track per loop iteration, no Python per step.

The same algorithm as stepper.propagate_reference, operation for operation (stepper.py is the
definition); the field lookups (uniform, Gaussian, trilinear map) are compiled into the stepping
loop. The tableau is data, as in LHCb: ``kernel_for(tableau)`` builds a kernel with the tableau's
coefficients as compile-time constants, so the stage loops unroll and the zero coefficients fold
away (4x faster than reading them from arrays). The field (kind + packed arrays, see
FieldMap.kernel_args) and the step-control settings are run-time data. ``cache=True``: each
scheme's machine code is compiled once and kept in __pycache__ for later processes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from hpcgen.generators.tracks.fields import (
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
from hpcgen.generators.tracks.rk4 import C_LIGHT
from hpcgen.generators.tracks.stepper import EPS_XY, EPS_Z
from hpcgen.generators.tracks.tableaus import TABLEAUS, Tableau

ABORTED = STEP_LIMIT | SLOPE


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


@njit(cache=True)
def _geometry(fmap, imap):
    """The map's sizes and offsets as tuples of scalars, read once per kernel call: the
    compiler cannot hoist loads from the arrays out of the track loop by itself (5x slower)."""
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
def _axis_cell(fmap, imap, n, off, off_inv, off_tab, ntab, a0, fine, v):
    """Cell i with ax[i] <= v < ax[i+1] (clamped to [0, n-2]) and the fraction in it: the fine
    index table gets within one cell, two short loops make it exact (= searchsorted)."""
    j = int((v - a0) * fine)
    if j < 0:
        j = 0
    if j >= ntab:
        j = ntab - 1
    i = np.int64(imap[off_tab + j])
    while i < n - 2 and v >= fmap[off + i + 1]:
        i += 1
    while i > 0 and v < fmap[off + i]:
        i -= 1
    return i, (v - fmap[off + i]) * fmap[off_inv + i]


@njit(cache=True, _nrt=False, inline="always")
def _lerp3(bmap, p, sx, sy, tx, ty, tz):
    """One component, z innermost, as FieldMap.lookup."""
    c00 = np.float64(bmap[p]) * (1.0 - tz) + np.float64(bmap[p + 3]) * tz
    c01 = np.float64(bmap[p + sy]) * (1.0 - tz) + np.float64(bmap[p + sy + 3]) * tz
    c10 = np.float64(bmap[p + sx]) * (1.0 - tz) + np.float64(bmap[p + sx + 3]) * tz
    c11 = np.float64(bmap[p + sx + sy]) * (1.0 - tz) + np.float64(bmap[p + sx + sy + 3]) * tz
    c0 = c00 * (1.0 - ty) + c01 * ty
    c1 = c10 * (1.0 - ty) + c11 * ty
    return c0 * (1.0 - tx) + c1 * tx


@njit(cache=True, _nrt=False, inline="always")
def _map_field(has_mask, fmap, imap, mask, bmap, gi, gf, x, y, z):
    """Trilinear lookup (FieldMap.lookup, same arithmetic): (Bx, By, Bz, flags)."""
    nx, ny, nz = gi[0], gi[1], gi[2]
    ox, oy, oz = gi[4], gi[5], gi[6]
    if (
        x < fmap[ox]
        or x > fmap[ox + nx - 1]
        or y < fmap[oy]
        or y > fmap[oy + ny - 1]
        or z < fmap[oz]
        or z > fmap[oz + nz - 1]
    ):
        return 0.0, 0.0, 0.0, LEFT_VOLUME
    i, tx = _axis_cell(fmap, imap, nx, ox, gi[7], gi[10], gi[13], gf[0], gf[1], x)
    j, ty = _axis_cell(fmap, imap, ny, oy, gi[8], gi[11], gi[14], gf[2], gf[3], y)
    k, tz = _axis_cell(fmap, imap, nz, oz, gi[9], gi[12], gi[15], gf[4], gf[5], z)
    flag = 0
    if has_mask and mask[(i * (ny - 1) + j) * (nz - 1) + k] != 0:
        flag = MASKED_CELL
    sy = nz * 3
    sx = ny * sy
    p = gi[3] + i * sx + j * sy + k * 3
    return (
        _lerp3(bmap, p, sx, sy, tx, ty, tz),
        _lerp3(bmap, p + 1, sx, sy, tx, ty, tz),
        _lerp3(bmap, p + 2, sx, sy, tx, ty, tz),
        flag,
    )


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
            d = min(d, dd)
    return d


def _make_kernel(tab: Tableau) -> Any:
    """The kernel for one tableau: its coefficients become compile-time constants.

    One loop serves both schemes (fixed: floor(|dz|/step) steps then the remainder; adaptive:
    LHCb's step control), so the stage code - with the field lookup inlined - appears once. The
    closure holds only numbers and arrays: numba's on-disk cache keys on them (a dispatcher in the
    closure would make every process miss the cache and compile again)."""
    NS = tab.stages
    A = np.ascontiguousarray(tab.a)
    BW = np.ascontiguousarray(tab.b)
    EW = np.ascontiguousarray(tab.e)
    CW = np.ascontiguousarray(tab.c)
    ADAPTIVE = tab.adaptive

    @njit(cache=True)
    def kernel(state, z0, z1, out, status, nsteps, kind, fpar, fmap, imap, mask, bmap, sp):
        """Tracks state[t] = (x, y, tx, ty, q/p) from z0[t] to z1[t] into out[t] (x, y, tx, ty;
        NaN if stopped), status[t] (flags) and nsteps[t] (accepted steps)."""
        step = sp[2]
        tol = sp[3]
        rel = sp[4]
        hmin = sp[5]
        hmax = sp[6]
        h0 = sp[7]
        max_steps = int(sp[8])
        max_slope = sp[9]
        grid = int(sp[10]) if kind == KIND_MAP else 0
        pshrink = sp[11]
        pgrow = sp[12]
        fmin = sp[13]
        fmax = sp[14]
        safety = sp[15]
        has_mask = fpar[0] != 0.0
        if kind == KIND_MAP:
            gi, gf = _geometry(fmap, imap)
        else:
            gi = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            gf = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        k = np.empty((NS, 4))
        s = np.empty(4)
        new = np.empty(4)
        err = np.empty(4)
        for t in range(state.shape[0]):
            for c in range(4):
                s[c] = state[t, c]
            kap = C_LIGHT * state[t, 4]
            z = z0[t]
            ze = z1[t]
            st = 0
            nst = 0
            dz = ze - z
            if ADAPTIVE:
                direction = 1.0 if dz >= 0 else -1.0
                tol_t = tol / abs(dz if dz != 0 else 1.0)
                hc = min(abs(dz), h0)
            else:
                direction = np.sign(dz)
                tol_t = 0.0
                hc = step
            n_full = int(np.floor(abs(dz) / step))
            attempts = 0
            while True:
                # --- the next step: signed length hs, whether it ends at z_end ------------------
                shortened = False
                h = 0.0
                if ADAPTIVE:
                    rem = (ze - z) * direction
                    if rem <= 0:
                        z = ze
                        break
                    if attempts >= max_steps:
                        st |= STEP_LIMIT
                        break
                    h = min(hc, rem)
                    last = hc >= rem
                    if grid != 0:
                        dp = _plane_distance(fmap, gi, grid, s[0], s[1], z, s[2], s[3], direction)
                        if dp < h:
                            h = dp
                            last = False
                    shortened = h < hc
                    hs = direction * h
                elif attempts < n_full:
                    hs = direction * step
                    last = False
                else:
                    hs = ze - z
                    if attempts > n_full or hs == 0:
                        break
                    last = True
                # --- the Runge-Kutta stages (stepper.rk_step) ------------------------------------
                flags = 0
                for i in range(NS):
                    a0 = 0.0
                    a1 = 0.0
                    a2 = 0.0
                    a3 = 0.0
                    for j in range(i):
                        a0 = a0 + A[i, j] * k[j, 0]
                        a1 = a1 + A[i, j] * k[j, 1]
                        a2 = a2 + A[i, j] * k[j, 2]
                        a3 = a3 + A[i, j] * k[j, 3]
                    x = s[0] + hs * a0
                    y = s[1] + hs * a1
                    tx = s[2] + hs * a2
                    ty = s[3] + hs * a3
                    zi = z + CW[i] * hs
                    if kind == KIND_GAUSSIAN:
                        u = (zi - fpar[1]) / fpar[2]
                        bx = 0.0
                        by = fpar[0] * math.exp(-0.5 * u * u)
                        bz = 0.0
                        fl = 0
                    elif kind == KIND_UNIFORM:
                        bx = fpar[0]
                        by = fpar[1]
                        bz = fpar[2]
                        fl = 0
                    else:
                        bx, by, bz, fl = _map_field(
                            has_mask, fmap, imap, mask, bmap, gi, gf, x, y, zi
                        )
                    flags |= fl
                    kn = kap * math.sqrt(1.0 + tx * tx + ty * ty)
                    k[i, 0] = tx
                    k[i, 1] = ty
                    k[i, 2] = kn * (tx * ty * bx - (1.0 + tx * tx) * by + ty * bz)
                    k[i, 3] = kn * ((1.0 + ty * ty) * bx - tx * ty * by - tx * bz)
                for c in range(4):
                    ab = 0.0
                    ae = 0.0
                    for j in range(NS):
                        ab = ab + BW[j] * k[j, c]
                        ae = ae + EW[j] * k[j, c]
                    new[c] = s[c] + hs * ab
                    err[c] = hs * ae
                attempts += 1
                # --- accept or reject (fixed steps are always accepted) --------------------------
                accept = True
                if ADAPTIVE:
                    ex = abs(err[0]) / tol
                    ey = abs(err[1]) / tol
                    etx = abs(err[2]) / (tol_t + rel * abs(new[2] - s[2]))
                    ety = abs(err[3]) / (tol_t + rel * abs(new[3] - s[3]))
                    eot = max(max(ex, ey), max(etx, ety))
                    accept = eot <= 1.0 or h <= hmin
                    if eot > 1.0:
                        factor = max(fmin, safety * eot**pshrink)
                    elif eot > 0:
                        factor = min(fmax, safety * eot**pgrow)
                    else:
                        factor = fmax
                    hnew = min(max(h * factor, hmin), hmax)
                    if not accept:
                        hc = hnew
                    elif shortened:
                        hc = max(hc, hnew)
                    else:
                        hc = hnew
                if accept:
                    for c in range(4):
                        s[c] = new[c]
                    z = ze if last else z + hs
                    st |= flags
                    nst += 1
                    if max(abs(s[2]), abs(s[3])) > max_slope:
                        st |= SLOPE
                        break
                    if last:
                        break
            if st & ABORTED:
                for c in range(4):
                    out[t, c] = np.nan
            else:
                for c in range(4):
                    out[t, c] = s[c]
            status[t] = st
            nsteps[t] = nst

    return kernel


_KERNELS: dict[str, Any] = {}


def kernel_for(scheme: str) -> Any:
    """The compiled kernel of a scheme (built on first use; compiled on its first call)."""
    if scheme not in _KERNELS:
        _KERNELS[scheme] = _make_kernel(TABLEAUS[scheme])
    return _KERNELS[scheme]


def propagate_numba(state, z0, z1, field, settings):
    """numba kernel on host arrays: (Y (n, 4), status uint8, n_steps int32).

    Through a map, tracks are run in the order of the grid column they cross half-way, so that
    neighbours in the loop read the same cache lines of the 12 MB node array (1.5x faster; each
    track's result does not depend on the order)."""
    state = np.ascontiguousarray(state, dtype=np.float64)
    z0 = np.ascontiguousarray(z0, dtype=np.float64)
    z1 = np.ascontiguousarray(z1, dtype=np.float64)
    n = len(state)
    order = None
    if field.kind == KIND_MAP and n > 1:
        half = 0.5 * (z1 - z0)
        cx = np.floor((state[:, 0] + state[:, 2] * half) / 200.0)
        cy = np.floor((state[:, 1] + state[:, 3] * half) / 200.0)
        order = np.lexsort((cy, cx))
        state, z0, z1 = state[order], z0[order], z1[order]
    out = np.empty((n, 4))
    status = np.zeros(n, np.uint8)
    nsteps = np.zeros(n, np.int32)
    kind, fpar, fmap, imap, mask, bmap = field.kernel_args()
    kernel_for(settings.scheme)(
        state, z0, z1, out, status, nsteps, kind, fpar, fmap, imap, mask, bmap, settings.packed()
    )
    if order is not None:
        inv = np.empty(n, np.int64)
        inv[order] = np.arange(n)
        out, status, nsteps = out[inv], status[inv], nsteps[inv]
    return out, status, nsteps
