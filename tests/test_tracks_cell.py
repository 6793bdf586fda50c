"""grid_steps "cell": one grid cell's trilinear polynomial per integration step.

The polynomial against the map's interpolant, the compiled kernel against the numpy reference
(bit for bit, through masked cells, the map's edges, NaN inputs, rejected and strayed steps),
the accuracy against verify's independent DOP853 through the same trilinear map, and the vector
plane search against stepper.plane_distance.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hpcgen.generators.tracks import fieldmap as fm
from hpcgen.generators.tracks import fields, generator, independent
from hpcgen.generators.tracks import synthmap as sm
from hpcgen.generators.tracks.fields import (
    LEFT_VOLUME,
    MASKED_CELL,
    SLOPE,
    STEP_LIMIT,
    FieldMap,
)
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.generators.tracks.propagate import Propagator
from hpcgen.generators.tracks.stepper import EPS_CELL, EPS_Z, StepperSettings, plane_distance


@pytest.fixture(scope="module")
def grid(synth_path):
    return fm.load_map(synth_path)


@pytest.fixture(scope="module")
def masked_field(grid) -> FieldMap:
    return FieldMap(grid, mask=grid.masked_cells())


def tracks(n: int, seed: int, p_gev: tuple[float, float] = (2.0, 100.0)) -> np.ndarray:
    """The standard sample (x, y, slopes from the seed ranges, p log-uniform, both charges)."""
    rng = np.random.default_rng(seed)
    p = np.exp(rng.uniform(np.log(p_gev[0] * 1000), np.log(p_gev[1] * 1000), n))
    return np.column_stack(
        [
            rng.uniform(-3000, 3000, n),
            rng.uniform(-2500, 2500, n),
            rng.uniform(-0.3, 0.3, n),
            rng.uniform(-0.25, 0.25, n),
            rng.choice([-1.0, 1.0], n) / p,
        ]
    )


def test_cell_is_the_maps_default_and_verify_holds_it_to_the_integrators_accuracy():
    """A map file made with the defaults steps cell by cell, and verify allows it what it allows
    "xyz": the integrator's own accuracy (verify once had no limit for "cell": a KeyError)."""
    p = TracksParams(field="map")
    assert p.grid_steps == "cell"
    assert p.step_control == "global"
    assert generator.field_accuracy(p) == generator.integrator_accuracy(p) == 4 * p.tolerance
    lhcb = replace(p, step_control="lhcb")
    assert generator.field_accuracy(lhcb) == generator.integrator_accuracy(lhcb) == 10 * p.tolerance
    assert generator.field_accuracy(replace(p, grid_steps="z")) == 0.05


def test_the_cell_polynomial_is_the_maps_interpolant_in_its_cell(grid, masked_field):
    """Inside its cell the polynomial in offsets gives the trilinear lookup to rounding; a
    point beyond the margin is marked; a step outside the grid has B = 0 and LEFT_VOLUME; a
    masked cell gives MASKED_CELL."""
    rng = np.random.default_rng(4)
    n = 4000
    xs, ys, zs = grid.xs, grid.ys, grid.zs
    i = rng.integers(0, len(xs) - 1, n)
    j = rng.integers(0, len(ys) - 1, n)
    k = rng.integers(0, len(zs) - 1, n)
    mid = [a[c] + 0.5 * (a[c + 1] - a[c]) for a, c in ((xs, i), (ys, j), (zs, k))]
    poly = masked_field.cell_polynomial(*mid)
    # points anywhere in the cells (corners and faces included)
    t = rng.uniform(0.0, 1.0, (3, n))
    t[:, :300] = rng.integers(0, 2, (3, 300))
    pts = [a[c] + tt * (a[c + 1] - a[c]) for (a, c), tt in zip(((xs, i), (ys, j), (zs, k)), t)]
    bx, by, bz, flags = poly.lookup(*pts)
    rx, ry, rz, rflags = masked_field.lookup(*pts)
    for got, ref in ((bx, rx), (by, ry), (bz, rz)):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)  # T; |B| up to 4 T here
    inner = (t > 0).all(axis=0) & (t < 1).all(axis=0)  # a face point may be the next cell's
    np.testing.assert_array_equal(flags[inner], rflags[inner])
    assert (flags == MASKED_CELL).any() and (flags == 0).any()
    assert not poly.strayed.any()
    # 0.2 mm outside a face is the polynomial's continuation; 0.3 mm is a stray
    near = poly.lookup(pts[0], pts[1], zs[k] - 0.2)
    assert not poly.strayed.any() and np.isfinite(near[1]).all()
    poly.lookup(pts[0], pts[1], zs[k + 1] + 0.3)
    assert poly.strayed.all()
    # a step outside the grid: no field, left the volume
    out = masked_field.cell_polynomial(np.full(3, xs[-1] + 50.0), np.zeros(3), np.full(3, 5000.0))
    b = out.lookup(np.full(3, xs[-1] - 10.0), np.zeros(3), np.full(3, 5000.0))
    assert all((c == 0).all() for c in b[:3]) and (b[3] == LEFT_VOLUME).all()


def hard_sample(n: int = 1200, seed: int = 2):
    """Standard tracks plus the cases a vector kernel gets wrong: the map's edges and masked
    band, tracks that leave it, zero slopes, points on nodes and 0.1 mm off them (the plane
    search's margin), z on planes, slope stops, zero-length tracks, NaN coordinates and slopes,
    both directions and z ranges over the whole map."""
    rng = np.random.default_rng(seed)
    state = tracks(n, seed)
    state[:250, 0] = rng.uniform(-4300, 4300, 250)
    state[:250, 1] = rng.uniform(-4300, 4300, 250)
    state[250:330, 2] = 0.0
    state[330:370, 3] = 0.0
    state[370:410, 0] = np.round(state[370:410, 0], -2) + 0.1
    state[410:430, 0] = np.round(state[410:430, 0], -2)
    state[430:470, 4] *= 8.0  # down to 0.25 GeV: strong bending, strays, slope stops
    state[7, 0] = np.nan
    state[8, 1] = np.nan
    state[9, 2] = np.nan
    state[10, 0], state[10, 2], state[10, 3] = np.nan, -0.2, 0.3  # NaN x moving down in x
    dz = rng.uniform(-9000, 9000, n)
    z0 = rng.uniform(-500, 14000, n)
    z0[470:510] = np.round(z0[470:510], -1)
    z1 = np.clip(z0 + dz, -700, 14200)
    z1[510:520] = z0[510:520]
    return state, z0, z1


@pytest.mark.parametrize("tolerance", [2.5e-4, 1e-8])
def test_numba_equals_the_reference_in_cell_mode(masked_field, tolerance):
    """The compiled kernel computes what stepper.py defines, to the bit: same status flags,
    step counts and states, through masked cells, edges, NaN inputs, step and slope limits;
    a tight tolerance makes the controller reject and shrink steps (the kernel's shortcut for
    far-below-tolerance errors must not change a bit)."""
    state, z0, z1 = hard_sample()
    st = StepperSettings(grid_steps="cell", tolerance=tolerance, rel_tolerance=0.0, max_steps=150)
    y_ref, s_ref, n_ref = Propagator(masked_field, st, "numpy")(state, z0, z1)
    y, s, n = Propagator(masked_field, st, "numba")(state, z0, z1)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(n, n_ref)
    np.testing.assert_array_equal(y, y_ref)  # NaN where NaN
    seen = set(s_ref.tolist())
    assert {0, LEFT_VOLUME, MASKED_CELL} <= seen
    assert any(f & SLOPE for f in seen) and any(f & STEP_LIMIT for f in seen)


@pytest.mark.parametrize("scheme", ["dopri5", "bs32"])
def test_numba_equals_the_reference_in_cell_mode_for_other_schemes(masked_field, scheme):
    state, z0, z1 = hard_sample(300, seed=5)
    st = StepperSettings(scheme=scheme, grid_steps="cell", max_steps=300)
    y_ref, s_ref, n_ref = Propagator(masked_field, st, "numpy")(state, z0, z1)
    y, s, n = Propagator(masked_field, st, "numba")(state, z0, z1)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(n, n_ref)
    np.testing.assert_array_equal(y, y_ref)


@pytest.mark.parametrize("step", [1000.0, 37.0])
def test_numba_equals_the_reference_for_fixed_steps_in_cell_mode(masked_field, step):
    """Fixed RK4 steps cut at the cell faces (stepper._fixed_cell): the kernel's "cell" loop
    without a step control computes the reference's bits, through masked cells, the grid's
    edges, NaN inputs, backward tracks and slope stops; steps of 1 m are set by the cells."""
    state, z0, z1 = hard_sample(seed=7)
    st = StepperSettings(scheme="rk4", step=step, grid_steps="cell")
    y_ref, s_ref, n_ref = Propagator(masked_field, st, "numpy")(state, z0, z1)
    y, s, n = Propagator(masked_field, st, "numba")(state, z0, z1)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(n, n_ref)
    np.testing.assert_array_equal(y, y_ref)
    seen = set(s_ref.tolist())
    assert {0, LEFT_VOLUME, MASKED_CELL} <= seen and any(f & SLOPE for f in seen)
    assert not any(f & STEP_LIMIT for f in seen)  # fixed steps have no attempt limit
    # the faces cut the steps: more than the uncut floor(|dz|/step) + 1, and at 1 m about one
    # per cell (80-160 mm in z)
    full = (s_ref == 0) & (np.abs(z1 - z0) > 3000)
    dz = np.abs(z1 - z0)[full]
    assert (n_ref[full] > np.floor(dz / step) + 1).all()
    if step == 1000.0:
        assert (n_ref[full] > dz / 160.0).all() and (n_ref[full] < dz / 40.0).all()


def test_fixed_cell_steps_one_margin_above_a_node_moving_down_equal_the_reference(masked_field):
    """Where every lane lies in the axes' uniform runs the kernel takes the cells ahead from the
    runs alone; a lane moving down one margin above a node (its position moved by the margin is
    the node itself, a plane stepper.plane_distance does not take) must still get the
    reference's plane. Tracks inside the runs only (x, y within 2.5 m, z in the 80 mm run), all
    starting so in x and y, forward from a z node and backward from one margin above one."""
    xs, ys, zs = sm.synth_axes()
    rng = np.random.default_rng(11)
    n = 320
    state = tracks(n, 11)
    back = np.arange(n) % 2 == 1
    direction = np.where(back, -1.0, 1.0)
    state[:, 0] = rng.choice(xs[np.abs(xs) < 2500], n) + EPS_CELL
    state[:, 1] = rng.choice(ys[np.abs(ys) < 2500], n) + EPS_CELL
    state[:, 2] = -direction * rng.uniform(0.01, 0.3, n)  # x and y decrease along the track
    state[:, 3] = -direction * rng.uniform(0.01, 0.3, n)
    z0 = rng.choice(zs[(zs > 3600) & (zs < 8400)], n) + np.where(back, EPS_Z, 0.0)
    z1 = z0 + direction * 1500.0
    assert ((state[:, 0] - EPS_CELL) % 100.0 == 0).all()  # the margin lands on the node
    st = StepperSettings(scheme="rk4", step=200.0, grid_steps="cell")
    y_ref, s_ref, n_ref = Propagator(masked_field, st, "numpy")(state, z0, z1)
    y, s, n_st = Propagator(masked_field, st, "numba")(state, z0, z1)
    assert (s_ref == 0).all()
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(n_st, n_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_fixed_steps_in_cell_mode_stop_a_track_whose_end_is_never_reached(masked_field):
    """A NaN or infinite z_start or z_end: no fixed step count bounds the loop (no plane lies
    beyond the grid, so steps of `step` would go on for ever); the track stops at once with
    STEP_LIMIT, in the reference and the kernel alike, and the others are unaffected."""
    state = tracks(6, seed=3)
    z0 = np.array([3000.0, 3000.0, np.nan, 3000.0, -np.inf, 3000.0])
    z1 = np.array([9000.0, np.nan, 9000.0, np.inf, 9000.0, -np.inf])
    st = StepperSettings(scheme="rk4", step=200.0, grid_steps="cell")
    for kernel in ("numpy", "numba"):
        y, s, n = Propagator(masked_field, st, kernel)(state, z0, z1)
        assert s[0] == 0 and np.isfinite(y[0]).all() and n[0] > 70
        assert (s[1:] == STEP_LIMIT).all() and np.isnan(y[1:]).all() and (n[1:] == 0).all()


def test_a_step_that_strays_from_its_cell_is_retried_shorter(masked_field, monkeypatch):
    """Strongly bending tracks leave the straight line the planes are found along: their stage
    points stray over the cell's faces, and the polynomial's continuation there is not the
    neighbour's. Rejecting those steps costs a few steps and keeps the error small; without
    the margin (CELL_MARGIN = inf) the same tracks err several times more."""
    state = tracks(150, seed=14, p_gev=(0.7, 3.0))
    z0, z1 = np.full(150, 3000.0), np.full(150, 9000.0)
    fine, s_fine, _ = Propagator(masked_field, StepperSettings("rk4", step=0.25), "numba")(
        state, z0, z1
    )
    st = StepperSettings(grid_steps="cell", tolerance=2.5e-4, rel_tolerance=0.0)
    y, s, n = Propagator(masked_field, st, "numpy")(state, z0, z1)
    monkeypatch.setattr(fields, "CELL_MARGIN", np.inf)
    y_inf, s_inf, n_inf = Propagator(masked_field, st, "numpy")(state, z0, z1)
    ok = (s == 0) & (s_inf == 0) & (s_fine == 0)
    assert ok.sum() > 60
    err = np.abs(y[ok, :2] - fine[ok, :2]).max()
    err_inf = np.abs(y_inf[ok, :2] - fine[ok, :2]).max()
    assert n[ok].sum() > n_inf[ok].sum()  # steps were retried
    assert err < 1e-3 and err_inf > 3 * err


def test_cell_mode_is_within_a_micron_of_an_independent_integration(grid, synth_path):
    """The default settings through the synthetic map, against verify's DOP853 with its own
    trilinear code (rtol 1e-11, restarted on every z plane): the standard sample (2-100 GeV)
    and softer tracks (1-50 GeV) within 1 um at z_end, and no worse than "xyz" on either."""
    field = FieldMap(grid)
    p = TracksParams(field="map", field_map=str(synth_path))
    ref_field = independent.ReferenceField.from_params(p, grid)
    for seed, p_gev in ((11, (2.0, 100.0)), (13, (1.0, 50.0))):
        state = tracks(80, seed, p_gev)
        z0, z1 = np.full(80, 3000.0), np.full(80, 9000.0)
        ref = independent.propagate(ref_field, state, z0, z1, 10.0, rtol=1e-11, atol_mm=1e-10)
        assert not ref.failed
        err = {}
        for mode in ("xyz", "cell", "rk4 cell", "rk4 off"):
            st = replace(StepperSettings.from_params(p), grid_steps=mode.split()[-1])
            if mode.startswith("rk4"):  # fixed steps of 1 m, cut at the cells' faces or not
                st = replace(st, scheme="rk4", step=1000.0)
            y, s, _ = Propagator(field, st, "numba")(state, z0, z1)
            ok = (s == 0) & np.isfinite(ref.Y[:, 0])
            assert ok.sum() > 60
            err[mode] = np.abs(y[ok, :2] - ref.Y[ok, :2]).max()
        assert err["cell"] < 1e-3 and err["rk4 cell"] < 1e-3
        assert err["cell"] <= err["xyz"]
        assert err["rk4 off"] > 100 * err["rk4 cell"]


def test_the_vector_plane_search_is_stepper_plane_distance():
    """The kernel's vector search for the planes ahead (its fallback where the cells it is
    about to enter do not tell) against stepper.plane_distance, bit for bit: on nodes, a margin
    off them, outside the axes, NaN coordinates and slopes, zero slopes, both directions."""
    from numba import njit

    from hpcgen.generators.tracks import kernels_numba as kn
    from hpcgen.generators.tracks.simd import LANES, vload, vstore

    @njit(cache=False)
    def run(fmap, imap, ru, P, eps, out):
        gi, gf = kn._geometry(fmap, imap)
        for r in range(P.shape[0] // 6):
            d = kn._plane_distance_v(
                fmap, imap, gi, gf, ru, 3, vload(P, 6 * r), vload(P, 6 * r + 1),
                vload(P, 6 * r + 2), vload(P, 6 * r + 3), vload(P, 6 * r + 4),
                vload(P, 6 * r + 5), eps,
            )  # fmt: skip
            vstore(out, r, d)

    xs, ys, zs = sm.synth_axes()
    rng = np.random.default_rng(8)
    B = rng.uniform(-1.0, 1.0, (len(xs[::8]), len(ys[::8]), len(zs[::4]), 3))
    field = FieldMap(fm.MapGrid(xs[::8], ys[::8], zs[::4], B))
    _, _, fmap, imap, _, _ = field.kernel_args()
    ru = kn._uniform_runs(fmap, imap)
    n = LANES * 400

    def probe(ax: np.ndarray, eps: float) -> np.ndarray:
        base = rng.choice(ax, n)
        off = rng.choice([0.0, eps, -eps, 1e-6, -1e-6, 0.5, -0.5], n)
        v = np.where(rng.random(n) < 0.5, base + off, rng.uniform(ax[0] - 300, ax[-1] + 300, n))
        v[rng.random(n) < 0.02] = np.nan
        return v

    for eps in (1.0, 0.1):
        x, y = probe(field.axes[0], eps), probe(field.axes[1], eps)
        z = probe(field.axes[2], 0.0)
        tx = rng.choice([0.0, 0.2, -0.2, np.nan], n) * rng.uniform(0.1, 1.0, n)
        ty = rng.choice([0.0, 0.2, -0.2], n) * rng.uniform(0.1, 1.0, n)
        d = rng.choice([1.0, -1.0], n)
        z = np.where(np.isnan(z), 5000.0, z)  # z is never NaN in a kernel
        ref = plane_distance(field, 3, x, y, z, tx, ty, d, eps)
        P = np.stack([a.reshape(-1, LANES) for a in (x, y, z, tx, ty, d)], 1).reshape(-1, LANES)
        out = np.empty((n // LANES, LANES))
        run(fmap, imap, ru, P, eps, out)
        np.testing.assert_array_equal(out.ravel(), ref)
        assert np.isnan(ref).any() and np.isinf(ref).any()


def test_a_nan_coordinate_is_propagated_as_the_reference_in_every_grid_mode(masked_field):
    """stepper.plane_distance takes numpy's minimum: a NaN distance (a NaN x moving down in x)
    stays NaN and cuts no step. The compiled kernels once let a later finite y plane replace
    it, so such a track took other steps than the reference."""
    state = np.array([[np.nan, 10.0, -0.2, 0.3, 1e-4], [np.nan, 10.0, 0.2, 0.3, 1e-4]])
    z0, z1 = np.full(2, 3000.0), np.full(2, 9000.0)
    for mode in ("xyz", "cell"):
        st = StepperSettings(grid_steps=mode)
        _, s_ref, n_ref = Propagator(masked_field, st, "numpy")(state, z0, z1)
        _, s, n = Propagator(masked_field, st, "numba")(state, z0, z1)
        np.testing.assert_array_equal(n, n_ref)
        np.testing.assert_array_equal(s, s_ref)
