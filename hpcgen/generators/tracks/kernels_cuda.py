"""GPU kernel (CUDA C through cupy.RawModule): one thread per track, the numba kernel's algorithm
line for line (stepper.py is the definition). Compiled with ``--fmad=false`` so that no fused
multiply-add changes the arithmetic against the CPU kernels.

The source is plain C++ apart from ``__global__``/``__device__`` and the thread index, so the
tests also compile it with a host C++ compiler behind a three-line shim and run it on the CPU
against the numba kernel: the GPU code path is tested without a GPU; only the launch is not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcgen.generators.tracks import fields, stepper
from hpcgen.generators.tracks.constants import C_LIGHT


def defines() -> str:
    """The #defines the CUDA source reads, from the Python definitions (status bits, field
    kinds, the imap header, the settings slots, the stepper's constants): written once, in Python.
    Floats as repr, the shortest decimal that reads back as the same double."""
    names = {
        **{k: getattr(fields, k) for k in ("LEFT_VOLUME", "MASKED_CELL", "STEP_LIMIT", "SLOPE")},
        **{k: getattr(fields, k) for k in ("ABORTED", "KIND_UNIFORM", "KIND_GAUSSIAN", "KIND_MAP")},
        **{k: getattr(fields, k) for k in dir(fields) if k.startswith("IM_")},
        "CELL_MARGIN": fields.CELL_MARGIN,
        "C_LIGHT": C_LIGHT,
        **{k: getattr(stepper, k) for k in ("EPS_Z", "EPS_XY", "EPS_CELL", "CELL")},
        **{k: getattr(stepper, k) for k in ("LOG2E", "LN2_HI", "LN2_LO", "SQRT2")},
        **{k: getattr(stepper, k) for k in dir(stepper) if k.startswith("SP_")},
    }
    return "".join(f"#define {k} {v!r}\n" for k, v in names.items())


CUDA_SOURCE = (
    defines()
    + r"""
#ifndef INFINITY
#define INFINITY __longlong_as_double(0x7ff0000000000000LL)
#endif
#ifndef NAN
#define NAN __longlong_as_double(0x7ff8000000000000LL)
#endif

// imap header (fields.py IM_*): n[3], off_B, off_ax[3], off_inv[3], off_tab[3], ntab[3]

struct FieldArgs {
    int kind;
    const double* fpar;
    const double* fmap;
    const int* imap;
    const unsigned char* mask;
    const float* bmap;  // node values (nx, ny, nz, 3), float32 (fields.FieldMap)
};

// first i in [0, n) with a[off + i] > v (numpy searchsorted side="right")
__device__ int upper_bound(const double* a, int off, int n, double v) {
    int lo = 0, hi = n;
    while (lo < hi) { int m = (lo + hi) / 2; if (a[off + m] > v) hi = m; else lo = m + 1; }
    return lo;
}
// first i in [0, n) with a[off + i] >= v (side="left")
__device__ int lower_bound(const double* a, int off, int n, double v) {
    int lo = 0, hi = n;
    while (lo < hi) { int m = (lo + hi) / 2; if (a[off + m] >= v) hi = m; else lo = m + 1; }
    return lo;
}

__device__ int axis_cell(const FieldArgs& f, int a, double v, double* t) {
    const double* fm = f.fmap;
    const int* im = f.imap;
    int n = im[IM_N + a], off = im[IM_OFF_AX + a], ntab = im[IM_NTAB + a];
    int j = (int)((v - fm[2 * a]) * fm[2 * a + 1]);
    if (j < 0) j = 0;
    if (j >= ntab) j = ntab - 1;
    int i = im[im[IM_OFF_TAB + a] + j];
    while (i < n - 2 && v >= fm[off + i + 1]) i++;
    while (i > 0 && v < fm[off + i]) i--;
    *t = (v - fm[off + i]) * fm[im[IM_OFF_INV + a] + i];
    return i;
}

__device__ int field(const FieldArgs& f, double x, double y, double z, double* b) {
    if (f.kind == KIND_GAUSSIAN) {
        double u = (z - f.fpar[1]) / f.fpar[2];
        b[0] = 0.0; b[1] = f.fpar[0] * exp(-0.5 * u * u); b[2] = 0.0;
        return 0;
    }
    if (f.kind == KIND_UNIFORM) { b[0] = f.fpar[0]; b[1] = f.fpar[1]; b[2] = f.fpar[2]; return 0; }
    const double* fm = f.fmap;
    const int* im = f.imap;
    int nx = im[IM_N], ny = im[IM_N + 1], nz = im[IM_N + 2];
    int ox = im[IM_OFF_AX], oy = im[IM_OFF_AX + 1], oz = im[IM_OFF_AX + 2];
    // inside as the reference's ordered comparisons: a NaN coordinate is outside (B = 0)
    if (!(x >= fm[ox] && x <= fm[ox + nx - 1] && y >= fm[oy] && y <= fm[oy + ny - 1] &&
          z >= fm[oz] && z <= fm[oz + nz - 1])) {
        b[0] = 0.0; b[1] = 0.0; b[2] = 0.0;
        return LEFT_VOLUME;
    }
    double tx, ty, tz;
    int i = axis_cell(f, 0, x, &tx);
    int j = axis_cell(f, 1, y, &ty);
    int k = axis_cell(f, 2, z, &tz);
    int flag = 0;
    if (f.fpar[0] != 0.0 && f.mask[((long)i * (ny - 1) + j) * (nz - 1) + k] != 0)
        flag = MASKED_CELL;
    long sy = (long)nz * 3, sx = (long)ny * sy;
    long p000 = im[IM_OFF_B] + i * sx + j * sy + (long)k * 3;
    const float* bm = f.bmap;
    for (int c = 0; c < 3; ++c) {
        long p = p000 + c;
        double c00 = (double)bm[p] * (1.0 - tz) + (double)bm[p + 3] * tz;
        double c01 = (double)bm[p + sy] * (1.0 - tz) + (double)bm[p + sy + 3] * tz;
        double c10 = (double)bm[p + sx] * (1.0 - tz) + (double)bm[p + sx + 3] * tz;
        double c11 = (double)bm[p + sx + sy] * (1.0 - tz) + (double)bm[p + sx + sy + 3] * tz;
        double c0 = c00 * (1.0 - ty) + c01 * ty;
        double c1 = c10 * (1.0 - ty) + c11 * ty;
        b[c] = c0 * (1.0 - tx) + c1 * tx;
    }
    return flag;
}

// grid_steps "cell": the trilinear polynomial of one cell for a whole step (fields.CellPolynomial,
// FieldMap.cell_polynomial: the same operations in the same order)
struct CellPoly {
    double org[3];
    double top[3];   // the cell's widths + CELL_MARGIN
    double c[3][8];  // per component: c0, cz, cy, cyz, cx, cxz, cxy, cxyz
    bool inside;
    bool strayed;    // a point looked up lay more than CELL_MARGIN outside the cell
    int flags;
};

// the cell of v on axis a as numpy's searchsorted (side "right") - 1, clamped to [0, n - 2]
__device__ int clamped_cell(const FieldArgs& f, int a, double v) {
    int n = f.imap[IM_N + a], off = f.imap[IM_OFF_AX + a];
    if (!(v >= f.fmap[off])) return v < f.fmap[off] ? 0 : n - 2;  // below: 0; NaN: the last
    if (!(v < f.fmap[off + n - 1])) return n - 2;
    double t;
    return axis_cell(f, a, v, &t);
}

__device__ void cell_polynomial(const FieldArgs& f, double x, double y, double z, CellPoly* cp) {
    const double* fm = f.fmap;
    const int* im = f.imap;
    int ny = im[IM_N + 1], nz = im[IM_N + 2];
    double v[3] = {x, y, z}, inv[3];
    int cell[3];
    cp->inside = true;
    for (int a = 0; a < 3; ++a) {
        int n = im[IM_N + a], off = im[IM_OFF_AX + a];
        cp->inside = cp->inside && v[a] >= fm[off] && v[a] <= fm[off + n - 1];
        cell[a] = clamped_cell(f, a, v[a]);
        cp->org[a] = fm[off + cell[a]];
        cp->top[a] = (fm[off + cell[a] + 1] - fm[off + cell[a]]) + CELL_MARGIN;
        inv[a] = fm[im[IM_OFF_INV + a] + cell[a]];
    }
    int i = cell[0], j = cell[1], k = cell[2];
    long sy = (long)nz * 3, sx = (long)ny * sy;
    long p00 = im[IM_OFF_B] + i * sx + j * sy + (long)k * 3;
    const float* bm = f.bmap;
    for (int m = 0; m < 3; ++m) {
        long p = p00 + m;
        double e00 = (double)bm[p], e01 = (double)bm[p + sy];
        double e10 = (double)bm[p + sx], e11 = (double)bm[p + sx + sy];
        double e00z = ((double)bm[p + 3] - e00) * inv[2];
        double e01z = ((double)bm[p + sy + 3] - e01) * inv[2];
        double e10z = ((double)bm[p + sx + 3] - e10) * inv[2];
        double e11z = ((double)bm[p + sx + sy + 3] - e11) * inv[2];
        double f0y = (e01 - e00) * inv[1];
        double f0yz = (e01z - e00z) * inv[1];
        double f1y = (e11 - e10) * inv[1];
        double f1yz = (e11z - e10z) * inv[1];
        double* c = cp->c[m];
        c[0] = e00; c[1] = e00z; c[2] = f0y; c[3] = f0yz;
        c[4] = (e10 - e00) * inv[0];
        c[5] = (e10z - e00z) * inv[0];
        c[6] = (f1y - f0y) * inv[0];
        c[7] = (f1yz - f0yz) * inv[0];
    }
    cp->strayed = false;
    cp->flags = cp->inside ? 0 : LEFT_VOLUME;
    if (cp->inside && f.fpar[0] != 0.0 && f.mask[((long)i * (ny - 1) + j) * (nz - 1) + k] != 0)
        cp->flags = MASKED_CELL;
}

__device__ int cell_field(CellPoly* cp, double x, double y, double z, double* b) {
    double u = x - cp->org[0], v = y - cp->org[1], w = z - cp->org[2];
    if (u < -CELL_MARGIN || u > cp->top[0] || v < -CELL_MARGIN || v > cp->top[1] ||
        w < -CELL_MARGIN || w > cp->top[2])
        cp->strayed = true;
    for (int m = 0; m < 3; ++m) {
        const double* c = cp->c[m];
        double val = ((c[0] + c[1] * w) + (c[2] + c[3] * w) * v) +
                     ((c[4] + c[5] * w) + (c[6] + c[7] * w) * v) * u;
        b[m] = cp->inside ? val : 0.0;
    }
    return cp->flags;
}

__device__ int rk_step(const FieldArgs& f, CellPoly* cp, const double* A, const double* bw,
                       const double* ew, const double* cw, int ns, double z, const double* s,
                       double kap, double h, double k[7][4], double* nw, double* err) {
    int flags = 0;
    for (int i = 0; i < ns; ++i) {
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        for (int j = 0; j < i; ++j) {
            a0 = a0 + A[i * 7 + j] * k[j][0];
            a1 = a1 + A[i * 7 + j] * k[j][1];
            a2 = a2 + A[i * 7 + j] * k[j][2];
            a3 = a3 + A[i * 7 + j] * k[j][3];
        }
        double x = s[0] + h * a0, y = s[1] + h * a1, tx = s[2] + h * a2, ty = s[3] + h * a3;
        double b[3];
        flags |= cp ? cell_field(cp, x, y, z + cw[i] * h, b) : field(f, x, y, z + cw[i] * h, b);
        double kn = kap * sqrt(1.0 + tx * tx + ty * ty);
        k[i][0] = tx;
        k[i][1] = ty;
        k[i][2] = kn * (tx * ty * b[0] - (1.0 + tx * tx) * b[1] + ty * b[2]);
        k[i][3] = kn * ((1.0 + ty * ty) * b[0] - tx * ty * b[1] - tx * b[2]);
    }
    for (int c = 0; c < 4; ++c) {
        double ab = 0.0, ae = 0.0;
        for (int j = 0; j < ns; ++j) { ab = ab + bw[j] * k[j][c]; ae = ae + ew[j] * k[j][c]; }
        nw[c] = s[c] + h * ab;
        err[c] = h * ae;
    }
    return flags;
}

__device__ double plane_distance(const FieldArgs& f, int mode, double x, double y, double z,
                                 double tx, double ty, double dir, double eps_xy) {
    const double* fm = f.fmap;
    const int* im = f.imap;
    int nz = im[IM_N + 2], oz = im[IM_OFF_AX + 2];
    double d = INFINITY;
    if ((mode & 1) == 0) {
    } else if (dir > 0) {
        int kk = upper_bound(fm, oz, nz, z + EPS_Z);
        if (kk < nz) d = fm[oz + kk] - z;
    } else {
        int kk = lower_bound(fm, oz, nz, z - EPS_Z) - 1;
        if (kk >= 0) d = z - fm[oz + kk];
    }
    if (mode & 2) {
        for (int a = 0; a < 2; ++a) {
            int n = im[IM_N + a], off = im[IM_OFF_AX + a];
            double v = a == 0 ? x : y;
            double sv = (a == 0 ? tx : ty) * dir;
            double dd = INFINITY;
            if (sv > 0) {
                int kk = upper_bound(fm, off, n, v + eps_xy);
                if (kk < n) dd = (fm[off + kk] - v) / sv;
            } else if (sv < 0) {
                int kk = lower_bound(fm, off, n, v - eps_xy) - 1;
                if (kk >= 0) dd = (fm[off + kk] - v) / sv;
            }
            d = (d != d || d < dd) ? d : dd;  // numpy minimum: a NaN, once there, stays
        }
    }
    return d;
}

__device__ double maxd(double a, double b) { return a > b ? a : b; }
__device__ double mind(double a, double b) { return a < b ? a : b; }
// numpy's maximum(|tx|, |ty|) > max_slope (stepper._slope_stop): a NaN slope is not steep
__device__ bool steep(double tx, double ty, double m) {
    return tx == tx && ty == ty && (fabs(tx) > m || fabs(ty) > m);
}

// stepper.exp_series, log_series and step_power, operation for operation (not libm's exp and
// pow: the step sizes must be the same bits as numpy's and numba's)
__device__ double exp_series(double x) {
    double xc = -708.0 > x ? -708.0 : x;
    xc = 709.0 < xc ? 709.0 : xc;
    double k = rint(xc * LOG2E);
    double r = (xc - k * LN2_HI) - k * LN2_LO;
    double r2 = r * r;
    double r4 = r2 * r2;
    double e0 = 0.5 + r * (1.0 / 6.0);
    double e1 = 1.0 / 24.0 + r * (1.0 / 120.0);
    double e2 = 1.0 / 720.0 + r * (1.0 / 5040.0);
    double e3 = 1.0 / 40320.0 + r * (1.0 / 362880.0);
    double e4 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0);
    double e5 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);
    double p = (e0 + e1 * r2) + ((e2 + e3 * r2) + (e4 + e5 * r2) * r4) * r4;
    p = 1.0 + (r + r2 * p);
    double y = p * __longlong_as_double(((long long)k + 1023) << 52);
    return x < -708.3964185322641 ? 0.0 : (x > 709.782712893384 ? INFINITY : y);
}
__device__ double log_series(double x) {
    long long bits = __double_as_longlong(x);
    double e = (double)((bits >> 52) - 1023);
    double m = __longlong_as_double((bits & ((1LL << 52) - 1)) | (1023LL << 52));
    if (m > SQRT2) { m = m * 0.5; e = e + 1.0; }
    double s = (m - 1.0) / (m + 1.0);
    double s2 = s * s;
    double s4 = s2 * s2;
    double s8 = s4 * s4;
    double d0 = 1.0 / 3.0 + s2 * (1.0 / 5.0);
    double d1 = 1.0 / 7.0 + s2 * (1.0 / 9.0);
    double d2 = 1.0 / 11.0 + s2 * (1.0 / 13.0);
    double d3 = 1.0 / 15.0 + s2 * (1.0 / 17.0);
    double d4 = 1.0 / 19.0 + s2 * (1.0 / 21.0);
    double q = (d0 + d1 * s4) + ((d2 + d3 * s4) + (d4 + s4 * (1.0 / 23.0)) * s8) * s8;
    double logm = 2.0 * s + (2.0 * s) * (s2 * q);
    return e * LN2_HI + (logm + e * LN2_LO);
}
__device__ double step_power(double x, double p) {
    double xc = 1e-300 > x ? 1e-300 : x;
    xc = 1e300 < xc ? 1e300 : xc;
    return exp_series(p * log_series(xc));
}

extern "C" __global__ void propagate_tracks(
    const double* state, const double* z0, const double* z1, double* out,
    unsigned char* status, int* nsteps, long n,
    int kind, const double* fpar, const double* fmap, const int* imap,
    const unsigned char* mask, const float* bmap,
    const double* A, const double* bw, const double* ew, const double* cw, const double* sp)
{
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    FieldArgs f;
    f.kind = kind; f.fpar = fpar; f.fmap = fmap; f.imap = imap; f.mask = mask; f.bmap = bmap;
    const bool adaptive = sp[SP_ADAPTIVE] != 0.0;
    const int ns = (int)sp[SP_STAGES];
    const double step = sp[SP_STEP], tol = sp[SP_TOL], rel = sp[SP_REL_TOL];
    const double hmin = sp[SP_MIN_STEP], hmax = sp[SP_MAX_STEP], h0 = sp[SP_INITIAL_STEP];
    const long max_steps = (long)sp[SP_MAX_STEPS];
    const double max_slope = sp[SP_MAX_SLOPE];
    const int grid = kind == KIND_MAP ? (int)sp[SP_GRID] : 0;
    const double pshrink = sp[SP_PSHRINK], pgrow = sp[SP_PGROW];
    const double fmin_ = sp[SP_SCALE_MIN], fmax_ = sp[SP_SCALE_MAX], safety = sp[SP_SAFETY];
    const bool glob = sp[SP_CONTROL] != 0.0;  // step_control "global": the error at z_end
    double k[7][4], s[4], nw[4], err[4];
    for (int c = 0; c < 4; ++c) s[c] = state[t * 5 + c];
    const double kap = C_LIGHT * state[t * 5 + 4];
    double z = z0[t];
    const double ze = z1[t];
    int st = 0, nst = 0;
    if (!adaptive && (grid & CELL)) {  // stepper._fixed_cell: fixed steps cut at cell faces
        double dir = ze - z >= 0 ? 1.0 : -1.0;
        while (true) {
            double rem = (ze - z) * dir;
            if (rem <= 0) { z = ze; break; }
            if (!(rem < INFINITY)) { st |= STEP_LIMIT; break; }  // NaN or infinite z: never there
            double h = mind(step, rem);
            bool last = step >= rem;
            double dp = plane_distance(f, grid, s[0], s[1], z, s[2], s[3], dir, EPS_CELL);
            if (dp < h) { h = dp; last = false; }
            CellPoly cp;
            double half = 0.5 * (dir * h);
            cell_polynomial(f, s[0] + half * s[2], s[1] + half * s[3], z + half, &cp);
            st |= rk_step(f, &cp, A, bw, ew, cw, ns, z, s, kap, dir * h, k, nw, err);
            for (int c = 0; c < 4; ++c) s[c] = nw[c];
            z = last ? ze : z + dir * h;
            nst++;
            if (steep(s[2], s[3], max_slope)) { st |= SLOPE; break; }
            if (last) break;
        }
    } else if (!adaptive) {
        double dz = ze - z;
        double sg = dz > 0 ? 1.0 : (dz < 0 ? -1.0 : 0.0);
        double h = sg * step;
        long n_full = (long)floor(fabs(dz) / step);
        bool alive = true;
        for (long i = 0; i < n_full; ++i) {
            st |= rk_step(f, nullptr, A, bw, ew, cw, ns, z, s, kap, h, k, nw, err);
            for (int c = 0; c < 4; ++c) s[c] = nw[c];
            z = z + h;
            nst++;
            if (steep(s[2], s[3], max_slope)) { st |= SLOPE; alive = false; break; }
        }
        if (alive && ze - z != 0) {
            st |= rk_step(f, nullptr, A, bw, ew, cw, ns, z, s, kap, ze - z, k, nw, err);
            for (int c = 0; c < 4; ++c) s[c] = nw[c];
            z = ze;
            nst++;
            if (steep(s[2], s[3], max_slope)) st |= SLOPE;
        }
    } else {
        double dz = ze - z;
        double dir = dz >= 0 ? 1.0 : -1.0;
        double tol_t = tol / fabs(dz != 0 ? dz : 1.0);
        double hc = mind(fabs(dz), h0);
        long attempts = 0;
        while (true) {
            double rem = (ze - z) * dir;
            if (rem <= 0) { z = ze; break; }
            if (attempts >= max_steps) { st |= STEP_LIMIT; break; }
            double h = mind(hc, rem);
            bool last = hc >= rem;
            if (grid != 0) {
                double dp = plane_distance(f, grid, s[0], s[1], z, s[2], s[3], dir,
                                           (grid & CELL) ? EPS_CELL : EPS_XY);
                if (dp < h) { h = dp; last = false; }
            }
            bool shortened = h < hc;
            CellPoly cp;
            if (grid & CELL) {  // "cell": the cell of the step's straight-line midpoint
                double half = 0.5 * (dir * h);
                cell_polynomial(f, s[0] + half * s[2], s[1] + half * s[3], z + half, &cp);
            }
            int fl = rk_step(f, (grid & CELL) ? &cp : nullptr, A, bw, ew, cw, ns, z, s, kap,
                             dir * h, k, nw, err);
            attempts++;
            double eot;
            if (glob) {  // stepper.error_over_tolerance: x, y with their slopes' lever arm
                double lev = maxd(h, fabs(ze - (z + dir * h)));
                double ex = (fabs(err[0]) + lev * fabs(err[2])) /
                            (tol + rel * (lev * fabs(nw[2] - s[2])));
                double ey = (fabs(err[1]) + lev * fabs(err[3])) /
                            (tol + rel * (lev * fabs(nw[3] - s[3])));
                eot = maxd(ex, ey);
            } else {
                double ex = fabs(err[0]) / tol;
                double ey = fabs(err[1]) / tol;
                double etx = fabs(err[2]) / (tol_t + rel * fabs(nw[2] - s[2]));
                double ety = fabs(err[3]) / (tol_t + rel * fabs(nw[3] - s[3]));
                eot = maxd(maxd(ex, ey), maxd(etx, ety));
            }
            // "cell": a step whose stage points strayed from its cell is retried at half its length
            bool stray = (grid & CELL) && cp.inside && cp.strayed;
            bool accept = (eot <= 1.0 && !stray) || h <= hmin;
            double factor;
            if (eot > 1.0) factor = maxd(fmin_, safety * step_power(eot, pshrink));
            else if (eot > 0) factor = mind(fmax_, safety * step_power(eot, pgrow));
            else factor = fmax_;
            double hnew = mind(maxd(h * factor, hmin), hmax);
            if (accept) {
                for (int c = 0; c < 4; ++c) s[c] = nw[c];
                z = last ? ze : z + dir * h;
                st |= fl;
                nst++;
                hc = shortened ? maxd(hc, hnew) : hnew;
                if (steep(s[2], s[3], max_slope)) { st |= SLOPE; break; }
                if (last) break;
            } else {
                hc = stray ? mind(hnew, 0.5 * h) : hnew;
            }
        }
    }
    for (int c = 0; c < 4; ++c) out[t * 4 + c] = (st & ABORTED) ? NAN : s[c];
    status[t] = (unsigned char)st;
    nsteps[t] = nst;
}
"""
)

#: what the host C++ build of CUDA_SOURCE puts in front (tests; see module docstring)
HOST_SHIM = r"""
#include <cmath>
#include <cstring>
static long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
static double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
#define __global__
#define __device__
struct Dim3 { long x; };
static Dim3 blockIdx, blockDim, threadIdx;
"""

#: host driver appended to the host build: runs the kernel body for every "thread"
HOST_DRIVER = r"""
extern "C" void run_all(const double* state, const double* z0, const double* z1, double* out,
    unsigned char* status, int* nsteps, long n,
    int kind, const double* fpar, const double* fmap, const int* imap,
    const unsigned char* mask, const float* bmap,
    const double* A, const double* bw, const double* ew, const double* cw, const double* sp) {
    blockDim.x = 1;
    threadIdx.x = 0;
    for (long t = 0; t < n; ++t) {
        blockIdx.x = t;
        propagate_tracks(state, z0, z1, out, status, nsteps, n, kind, fpar, fmap, imap, mask,
            bmap, A, bw, ew, cw, sp);
    }
}
"""


def kernel_arguments(field: Any, settings: Any, xp: Any) -> list:
    """The kernel's field and scheme arguments (after the per-track arrays and n), as arrays of
    module ``xp`` (cupy on the device; numpy for the host build) and C scalars. The tableau is
    passed zero-padded to 7 x 7."""
    kind, fpar, fmap, imap, mask, bmap = field.kernel_args()
    A, bw, ew, cw = settings.tableau_arrays()

    def arr(a: np.ndarray, dt: Any = np.float64) -> Any:
        return xp.ascontiguousarray(xp.asarray(a, dtype=dt))

    return [
        np.int32(kind),
        arr(fpar),
        arr(fmap),
        arr(imap, np.int32),
        arr(mask, np.uint8),
        arr(bmap, np.float32),
        arr(A),
        arr(bw),
        arr(ew),
        arr(cw),
        arr(settings.packed()),
    ]


_MODULES: dict[int, Any] = {}


def _function() -> Any:
    import cupy

    dev = cupy.cuda.Device().id
    if dev not in _MODULES:
        mod = cupy.RawModule(code=CUDA_SOURCE, options=("--fmad=false", "-std=c++14"))
        _MODULES[dev] = mod.get_function("propagate_tracks")
    return _MODULES[dev]


class CudaPropagator:
    """Holds the field and scheme on the device (uploaded once) and launches one thread per
    track."""

    def __init__(self, field: Any, settings: Any) -> None:
        import cupy

        self.cp = cupy
        self.args = kernel_arguments(field, settings, cupy)

    def __call__(self, state: Any, z0: Any, z1: Any, block: int = 128):
        cp = self.cp
        state = cp.ascontiguousarray(cp.asarray(state, dtype=cp.float64))
        z0 = cp.ascontiguousarray(cp.asarray(z0, dtype=cp.float64))
        z1 = cp.ascontiguousarray(cp.asarray(z1, dtype=cp.float64))
        n = state.shape[0]
        out = cp.empty((n, 4), cp.float64)
        status = cp.zeros(n, cp.uint8)
        nsteps = cp.zeros(n, cp.int32)
        if n:
            grid = ((n + block - 1) // block,)
            _function()(
                grid, (block,), (state, z0, z1, out, status, nsteps, np.int64(n), *self.args)
            )
        return out, status, nsteps
