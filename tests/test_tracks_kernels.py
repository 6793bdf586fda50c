"""The compiled kernels against the numpy reference (the definition), the CUDA source run on the
CPU through a host C++ build, grid-aware stepping through the synthetic map, and the GPU (skips
cleanly without one)."""

from __future__ import annotations

import ctypes
import functools
import itertools
import shutil
import subprocess

import numpy as np
import pytest

from hpcgen.generators.tracks import fieldmap as fm
from hpcgen.generators.tracks import synthmap as sm
from hpcgen.generators.tracks.fields import (
    SLOPE,
    STEP_LIMIT,
    FieldMap,
    GaussianDipole,
    UniformField,
)
from hpcgen.generators.tracks.kernels_cuda import (
    CUDA_SOURCE,
    HOST_DRIVER,
    HOST_SHIM,
    kernel_arguments,
)
from hpcgen.generators.tracks.propagate import Propagator
from hpcgen.generators.tracks.stepper import StepperSettings

SCHEMES = ["rk4", "cashkarp", "dopri5", "bs32"]
#: the step controls with and without a relative slope tolerance (StepperSettings' fields)
CONTROLS = [
    {"step_control": "global", "rel_tolerance": 0.0},
    {"step_control": "global", "rel_tolerance": 5e-5},
    {"step_control": "lhcb", "rel_tolerance": 5e-5},
]


@pytest.fixture(scope="session")
def synth_field(synth_path) -> FieldMap:
    grid = fm.load_map(synth_path)
    return FieldMap(grid, mask=grid.masked_cells())


def standard_tracks(n: int, seed: int = 1) -> np.ndarray:
    """The standard sample: x, y, slopes from the seed ranges, p 2-100 GeV log-uniform."""
    rng = np.random.default_rng(seed)
    p = np.exp(rng.uniform(np.log(2000), np.log(100_000), n))
    return np.column_stack(
        [
            rng.uniform(-3000, 3000, n),
            rng.uniform(-2500, 2500, n),
            rng.uniform(-0.3, 0.3, n),
            rng.uniform(-0.25, 0.25, n),
            rng.choice([-1.0, 1.0], n) / p,
        ]
    )


def _compare(field, settings, n=150, seed=1, dz=(3000.0, 9000.0)):
    state = standard_tracks(n, seed)
    state[7, 0] = np.nan  # a NaN coordinate: outside a map (B = 0), NaN plane distances
    z0 = np.full(n, dz[0])
    z1 = z0 + np.linspace(dz[1] - dz[0], -(dz[1] - dz[0]) / 2, n)  # forward and backward
    ref = Propagator(field, settings, "numpy")(state, z0, z1)
    got = Propagator(field, settings, "numba")(state, z0, z1)
    return state, ref, got


@pytest.mark.parametrize(
    "scheme, grid_steps",
    [("rk4", "off"), ("cashkarp", "off"), ("cashkarp", "z"), ("cashkarp", "xy"),
     ("cashkarp", "xyz"), ("cashkarp", "cell"), ("dopri5", "off"), ("bs32", "off")],
)  # fmt: skip
@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: "-".join(map(str, c.values())))
def test_numba_equals_the_reference_through_the_map(synth_field, scheme, grid_steps, control):
    st = StepperSettings(scheme=scheme, grid_steps=grid_steps, step=25.0, **control)
    _, (y_ref, s_ref, n_ref), (y, s, n) = _compare(synth_field, st, n=100)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(n, n_ref)
    np.testing.assert_array_equal(y, y_ref)  # no exp through a map: the same bits
    assert (s == 0).any() and (s != 0).any()  # flagged tracks are compared too


@pytest.mark.parametrize(
    "field", [GaussianDipole(-1.0182, 5007.0, 1744.0), UniformField(0.1, -1.0, 0.2)]
)
@pytest.mark.parametrize("scheme", ["rk4", "cashkarp"])
@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: "-".join(map(str, c.values())))
def test_numba_equals_the_reference_in_analytic_fields(field, scheme, control):
    st = StepperSettings(scheme=scheme, **control)
    _, (y_ref, s_ref, n_ref), (y, s, n) = _compare(field, st)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(n, n_ref)
    assert np.nanmax(np.abs(y - y_ref)) < 1e-9


def test_vector_exp_and_step_power_are_the_definitions_to_the_bit():
    """numba's vector exp and pow (simd.py) against stepper.exp_series and step_power (numpy):
    the same bits everywhere, and within 3 ulp of libm where the step control uses them."""
    from numba import njit

    from hpcgen.generators.tracks.simd import LANES, vexp, vload, vpow, vstore
    from hpcgen.generators.tracks.stepper import exp_series, step_power

    @njit
    def run(x, out, p):
        for r in range(x.shape[0]):
            vstore(out, r, vexp(vload(x, r)) if p == 0.0 else vpow(vload(x, r), p))

    rng = np.random.default_rng(5)
    x = rng.uniform(-800.0, 800.0, (5000, LANES))
    x[0] = np.resize([-np.inf, np.inf, np.nan, 0.0], LANES)
    out = np.empty_like(x)
    run(x, out, 0.0)
    np.testing.assert_array_equal(out, exp_series(x))
    e = np.exp(rng.uniform(-750.0, 700.0, (5000, LANES)))
    e[0] = np.resize([0.0, np.inf, np.nan, 5e-324], LANES)
    ok = (e > 1e-6) & (e < 1e6)
    for p in (-1 / 2, -1 / 3, -1 / 4, -1 / 5):
        run(e, out, p)
        np.testing.assert_array_equal(out, step_power(e, p))
        assert np.max(np.abs(out[ok] / e[ok] ** p - 1.0)) < 3 * 2.3e-16


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 8, 11, 17])
def test_lanes_hand_tracks_over_in_every_case(scheme, n):
    """The numba kernel runs LANES tracks at a time and a lane whose track ends takes the next:
    zero-length tracks, slope stops, step-limit stops, backward tracks and batches smaller or
    not a multiple of the lane count all give the reference's result for every track."""
    field = GaussianDipole(-1.0182, 5007.0, 1744.0)
    # LHCb's looser tolerances: Cash-Karp's and Dormand-Prince's 0.5 GeV tracks reach the slope
    # limit within the six attempts
    st = StepperSettings(
        scheme=scheme, max_steps=6, max_slope=0.5, step=200.0, tolerance=0.001, rel_tolerance=5e-5
    )
    state = standard_tracks(n, seed=3)
    z0 = np.full(n, 3000.0)
    z1 = z0 + np.resize([6000.0, 0.0, -2500.0, 6000.0, 300.0], n)
    state[2::4, 4] = 1 / 500.0  # 0.5 GeV: bends past |tx| = 0.5 (slope stop)
    (y_ref, s_ref, n_ref) = Propagator(field, st, "numpy")(state, z0, z1)
    (y, s, n_got) = Propagator(field, st, "numba")(state, z0, z1)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(n_got, n_ref)
    # the Gaussian's exp: numba's vector version is within 2 ulp of libm's (the reference's)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-9)  # NaN where NaN
    if n >= 11:
        flags = set(s_ref.tolist())
        assert 0 in flags
        assert any(f & SLOPE for f in flags) or scheme == "bs32"  # bs32: step limit first
        assert scheme == "rk4" or any(f & STEP_LIMIT for f in flags)


def test_kernel_refuses_work_arrays_of_another_scheme():
    """The kernel's vector loads and stores are unchecked, so it checks its work arrays' shapes:
    those of a scheme with fewer stages are refused, not written past their ends."""
    from hpcgen.generators.tracks import kernels_numba as kn
    from hpcgen.generators.tracks.tableaus import TABLEAUS

    field = GaussianDipole(-1.0182, 5007.0, 1744.0)
    st = StepperSettings(scheme="cashkarp")
    state = standard_tracks(3)
    z0, z1 = np.full(3, 3000.0), np.full(3, 9000.0)
    out, status, nsteps = np.empty((3, 4)), np.zeros(3, np.uint8), np.zeros(3, np.int32)
    args = (state, z0, z1, out, status, nsteps, *field.kernel_args(), np.zeros(24), st.packed())
    with pytest.raises(ValueError, match="work arrays do not fit this kernel"):
        kn.kernel_for("cashkarp")(*args, *kn.work_arrays(TABLEAUS["bs32"].stages))
    kn.kernel_for("cashkarp")(*args, *kn.work_arrays(TABLEAUS["cashkarp"].stages))
    assert (nsteps > 0).all() and (status == 0).all()


def test_map_tracks_run_column_by_column_in_a_serpentine():
    """run_order: a permutation of the tracks, by 400 mm x column of the half-way point, y up in
    even columns and down in odd ones; tracks far outside the grid join the edge columns."""
    from hpcgen.generators.tracks.kernels_numba import run_order

    rng = np.random.default_rng(5)
    n = 2000
    state = np.zeros((n, 5))
    state[:, 0] = rng.uniform(-4000, 4000, n)
    state[:, 1] = rng.uniform(-4000, 4000, n)
    state[:, 2] = rng.uniform(-0.3, 0.3, n)
    state[:, 3] = rng.uniform(-0.3, 0.3, n)
    state[:3, 0] = [1e9, -1e9, 3e4]
    z0 = np.full(n, 3000.0)
    z1 = rng.uniform(-3000, 9000, n)
    order = run_order(state, z0, z1)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    s, h = state[order], ((z1 - z0) * (0.5 / 400.0))[order]  # the half-way point, in columns
    cx = np.clip(np.floor(s[:, 0] * (1 / 400.0) + s[:, 2] * h), -64, 63)
    cy = np.clip(np.floor(s[:, 1] * (1 / 400.0) + s[:, 3] * h), -64, 63)
    assert (np.diff(cx) >= 0).all()
    for c in np.unique(cx):
        ys = cy[cx == c]
        assert (np.diff(ys) >= 0).all() if c % 2 == 0 else (np.diff(ys) <= 0).all()
    assert cx[-1] == 63 and cx[0] == -64  # the far tracks sit in the edge columns


def test_grid_aware_steps_reach_1_um_through_the_map(synth_field):
    """Through a trilinear map the embedded error estimate misses the kinks at grid planes: with
    1 m steps the error against a fine RK4 (0.5 mm) through the same interpolant reaches ~0.1 mm;
    ending steps on the planes crossed brings it under 1 um."""
    state = standard_tracks(40, seed=7)
    z0, z1 = np.full(40, 3000.0), np.full(40, 9000.0)
    ref, s_ref, _ = Propagator(synth_field, StepperSettings(scheme="rk4", step=0.5), "numba")(
        state, z0, z1
    )
    err = {}
    for mode in ("off", "xyz", "cell"):
        y, s, _ = Propagator(synth_field, StepperSettings(grid_steps=mode), "numba")(state, z0, z1)
        ok = (s == 0) & (s_ref == 0)
        assert ok.sum() > 25
        err[mode] = np.abs(y[ok, :2] - ref[ok, :2]).max()
    assert err["off"] > 0.01
    assert err["xyz"] < 1e-3
    assert err["cell"] < 1e-3


def test_the_synthetic_text_reads_back_to_the_grid_in_memory(synth_path):
    """What ``fieldmap synth`` writes (6 decimals, 1 uT) is what is read, exactly."""
    back = fm.load_map(synth_path)
    grid = sm.synth_map(artefacts=0.03)
    np.testing.assert_array_equal(back.zs, grid.zs)
    np.testing.assert_array_equal(back.B, grid.B)


def test_the_map_sees_masked_cells_and_leaving_tracks(synth_field):
    """Tracks aimed at the artefact band at the edge are flagged; tracks near the axis are not."""
    n = 200
    rng = np.random.default_rng(2)
    inner = np.column_stack(
        [rng.uniform(-500, 500, n), rng.uniform(-500, 500, n), np.zeros(n), np.zeros(n)]
    )
    edge = inner.copy()
    edge[:, 0] = 3700.0  # in the band |x| > 3500 mm that holds the artefacts
    qop = np.full((n, 1), 1 / 50_000)
    prop = Propagator(synth_field, StepperSettings(), "numba")
    z0, z1 = np.full(n, 3000.0), np.full(n, 9000.0)
    _, s_in, _ = prop(np.hstack([inner, qop]), z0, z1)
    _, s_edge, _ = prop(np.hstack([edge, qop]), z0, z1)
    assert np.all(s_in == 0)
    assert np.mean(s_edge != 0) > 0.2


# --- the CUDA kernel, compiled for the host -------------------------------------------------------


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler to build the CUDA source on the CPU")
    d = tmp_path_factory.mktemp("cuda_host")
    src = d / "kernel.cpp"
    src.write_text(HOST_SHIM + CUDA_SOURCE + HOST_DRIVER)
    lib = d / "kernel.so"
    subprocess.run(
        [cxx, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(lib), str(src)],
        check=True,
        capture_output=True,
    )
    return ctypes.CDLL(str(lib)).run_all


def run_host(fn, field, settings, state, z0, z1):
    n = len(state)
    state = np.ascontiguousarray(state, dtype=np.float64)
    z0 = np.ascontiguousarray(z0, dtype=np.float64)
    z1 = np.ascontiguousarray(z1, dtype=np.float64)
    out = np.empty((n, 4))
    status = np.zeros(n, np.uint8)
    nsteps = np.zeros(n, np.int32)
    keep = [state, z0, z1, out, status, nsteps]
    args = [a.ctypes.data_as(ctypes.c_void_p) for a in keep] + [ctypes.c_long(n)]
    for a in kernel_arguments(field, settings, np):
        if isinstance(a, np.ndarray):
            keep.append(a)
            args.append(a.ctypes.data_as(ctypes.c_void_p))
        else:
            args.append(ctypes.c_int(int(a)))
    fn(*args)
    return out, status, nsteps


@pytest.mark.parametrize("scheme", SCHEMES)
def test_cuda_source_run_on_the_host_equals_numba(host_kernel, synth_field, scheme):
    fields = [synth_field, GaussianDipole(-1.0182, 5007.0, 1744.0), UniformField(0.1, -1.0, 0.2)]
    for field, control in itertools.product(fields, CONTROLS):
        for grid_steps in ("off", "z", "xy", "xyz", "cell") if field is synth_field else ("off",):
            st = StepperSettings(scheme=scheme, grid_steps=grid_steps, step=25.0, **control)
            state = standard_tracks(200, seed=3)
            state[7, 0] = np.nan  # a NaN coordinate: outside the map in both (B = 0)
            z0 = np.full(200, 3000.0)
            z1 = z0 + np.linspace(6000.0, -3000.0, 200)
            y_n, s_n, n_n = Propagator(field, st, "numba")(state, z0, z1)
            y_c, s_c, n_c = run_host(host_kernel, field, st, state, z0, z1)
            np.testing.assert_array_equal(s_c, s_n)
            np.testing.assert_array_equal(n_c, n_n)
            assert np.nanmax(np.abs(y_c - y_n)) < 1e-9
            assert np.array_equal(np.isnan(y_c), np.isnan(y_n))


def test_cuda_source_stops_a_fixed_cell_track_whose_end_is_never_reached(host_kernel, synth_field):
    """A NaN or infinite z in fixed "cell" steps: STEP_LIMIT at once in the CUDA source as in
    numba (stepping for ever before), the finite track unaffected."""
    st = StepperSettings(scheme="rk4", step=200.0, grid_steps="cell")
    state = standard_tracks(4, seed=3)
    z0 = np.array([3000.0, np.nan, 3000.0, 3000.0])
    z1 = np.array([9000.0, 9000.0, np.inf, np.nan])
    y_c, s_c, n_c = run_host(host_kernel, synth_field, st, state, z0, z1)
    y_n, s_n, n_n = Propagator(synth_field, st, "numba")(state, z0, z1)
    np.testing.assert_array_equal(s_c, s_n)
    np.testing.assert_array_equal(n_c, n_n)
    assert np.abs(y_c[0] - y_n[0]).max() < 1e-9 and np.isnan(y_c[1:]).all()
    assert s_c[0] == 0 and n_c[0] > 70 and (s_c[1:] == STEP_LIMIT).all() and (n_c[1:] == 0).all()


def test_cuda_source_compiles_for_the_device(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("no nvcc")
    src = tmp_path / "k.cu"
    src.write_text(CUDA_SOURCE)
    proc = subprocess.run(
        [nvcc, "--ptx", "--fmad=false", "-o", str(tmp_path / "k.ptx"), str(src)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 and "cannot find" in proc.stderr.lower():
        pytest.skip(f"nvcc unusable here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    assert ".entry propagate_tracks" in (tmp_path / "k.ptx").read_text()


def _gpu() -> bool:
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu(), reason="no CUDA device (cupy missing or not available)")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_gpu_kernel_equals_numba(synth_field, scheme):
    for field in (synth_field, GaussianDipole(-1.0182, 5007.0, 1744.0)):
        st = StepperSettings(scheme=scheme)
        state = standard_tracks(5000, seed=4)
        z0, z1 = np.full(5000, 3000.0), np.full(5000, 9000.0)
        y_n, s_n, n_n = Propagator(field, st, "numba")(state, z0, z1)
        y_g, s_g, n_g = Propagator(field, st, "cuda")(state, z0, z1)
        np.testing.assert_array_equal(s_g, s_n)
        np.testing.assert_array_equal(n_g, n_n)
        assert np.nanmax(np.abs(y_g - y_n)) < 1e-9


class _HostArray(np.ndarray):
    """A numpy array with cupy's ``.get()``: stands in for device memory."""

    def get(self) -> np.ndarray:
        return np.asarray(self)


def _fake_cupy():
    def wrap(a):
        return np.asarray(a).view(_HostArray)

    import types

    return types.SimpleNamespace(
        float64=np.float64,
        uint8=np.uint8,
        int32=np.int32,
        asarray=lambda a, dtype=None: wrap(np.asarray(a, dtype=dtype)),
        ascontiguousarray=lambda a: wrap(np.ascontiguousarray(a)),
        empty=lambda shape, dtype: wrap(np.empty(shape, dtype)),
        zeros=lambda shape, dtype: wrap(np.zeros(shape, dtype)),
    )


def test_gpu_path_runs_on_the_cpu_with_the_host_built_kernel(host_kernel, synth_field, monkeypatch):
    """Everything of the GPU route but the device: the generator's dispatch on a "gpu" device,
    CudaPropagator's uploads, argument list and launch geometry, driving the CUDA source built
    for the host through a stand-in cupy."""
    import sys

    from hpcgen.generators.base import Chunk, Device
    from hpcgen.generators.tracks import kernels_cuda
    from hpcgen.generators.tracks.generator import TracksGenerator
    from hpcgen.generators.tracks.params import TracksParams

    launches = []

    def launch(grid, block, args):
        n = int(args[6])
        assert grid[0] * block[0] >= n > (grid[0] - 1) * block[0]  # one thread per track
        launches.append(n)
        ptrs = [a.ctypes.data_as(ctypes.c_void_p) if isinstance(a, np.ndarray) else a for a in args]
        ints = [ctypes.c_long(n) if i == 6 else p for i, p in enumerate(ptrs)]
        ints = [ctypes.c_int(int(v)) if isinstance(v, np.int32) else v for v in ints]
        host_kernel(*ints)

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    monkeypatch.setattr(kernels_cuda, "_function", lambda: launch)
    gen = TracksGenerator(TracksParams())
    assert gen.supports_device("gpu")
    assert not TracksGenerator(TracksParams(kernel="numba")).supports_device("gpu")
    chunk = Chunk(0, 0, 700, seed=3)
    inputs = gen.sample(chunk)
    on_gpu = gen.compute(inputs, chunk, Device("gpu", sys.modules["cupy"]))
    on_cpu = gen.compute(inputs, chunk, Device("cpu", np))
    assert launches == [700]
    for k in on_cpu:  # the Gaussian's exp: libm's on the host build, numba's vector one
        np.testing.assert_allclose(np.asarray(on_gpu[k]), on_cpu[k], rtol=0, atol=1e-9)
    # and through the map, directly
    state = standard_tracks(300, seed=6)
    z0, z1 = np.full(300, 3000.0), np.full(300, 9000.0)
    st = StepperSettings(grid_steps="xyz")
    y_g, s_g, n_g = Propagator(synth_field, st, "cuda")(state, z0, z1)
    y_n, s_n, n_n = Propagator(synth_field, st, "numba")(state, z0, z1)
    np.testing.assert_array_equal(s_g, s_n)
    np.testing.assert_array_equal(n_g, n_n)
    assert np.nanmax(np.abs(y_g - y_n)) < 1e-9


def _lookup_points(ax: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coordinates along an axis that probe the cell search: the nodes, one ulp either side,
    the ends and just outside, NaN (outside: B = 0), random points."""
    pts = np.concatenate(
        [ax, np.nextafter(ax, -np.inf), np.nextafter(ax, np.inf), rng.uniform(ax[0], ax[-1], 400)]
    )
    pts = np.concatenate([pts, [ax[0] - 1.0, ax[-1] + 1.0, np.nan]])
    return rng.permutation(pts)


@functools.cache
def _vector_lookups():
    """A compiled loop of the kernel's vector lookup over rows of points (built once per process:
    its compile is most of the test's time)."""
    from numba import njit

    from hpcgen.generators.tracks import kernels_numba as kn
    from hpcgen.generators.tracks.simd import vload, vstore

    @njit(cache=False)
    def run(has_mask, fmap, imap, mask, bmap, ru, P, out):
        gi, gf = kn._geometry(fmap, imap)
        for r in range(P.shape[0] // 3):
            res = kn._map_field_v(
                has_mask, fmap, imap, mask, bmap, gi, gf, ru,
                vload(P, 3 * r), vload(P, 3 * r + 1), vload(P, 3 * r + 2),
            )  # fmt: skip
            for c in range(4):
                vstore(out, 4 * r + c, res[c])

    return run


@pytest.mark.parametrize("axes", ["synth", "uneven"])
def test_numba_map_lookup_is_the_reference_to_the_bit(axes):
    """The kernel's vector lookup (uniform-run fast path or index table, lanes mixed) against
    FieldMap.lookup, bit for bit, at nodes, one ulp off them, at and outside the ends."""
    from hpcgen.generators.tracks import kernels_numba as kn
    from hpcgen.generators.tracks.simd import LANES

    run = _vector_lookups()
    rng = np.random.default_rng(3)
    if axes == "synth":
        xs, ys, zs = sm.synth_axes()
        xs, ys, zs = xs[::4], ys[::5], zs
    else:  # a run of 0.1 steps (not exact as a_s + u h), uneven nodes, a short uniform run
        xs = np.concatenate([np.arange(-3.0, 0.0, 0.1), [0.0, 0.7, 1.1, 5.0, 9.0, 13.0, 17.0]])
        ys = np.cumsum(rng.uniform(0.5, 3.0, 15))
        zs = np.concatenate([[-7.3, -2.0], np.arange(0.0, 40.0, 2.5), [41.0, 45.5]])
    B = rng.uniform(-2.0, 2.0, (len(xs), len(ys), len(zs), 3)).round(6)
    grid = fm.MapGrid(xs, ys, zs, B)
    mask = rng.random((len(xs) - 1, len(ys) - 1, len(zs) - 1)) < 0.1
    field = FieldMap(grid, mask=mask.astype(np.uint8))
    n = LANES * 300
    x, y, z = (np.resize(_lookup_points(a, rng), n) for a in (xs, ys, zs))
    # some rows with all lanes inside the grid, so each axis's fast path runs
    inner = lambda a, m: rng.uniform(a[0], a[-1], m)  # noqa: E731
    x[:400], y[:400], z[:400] = inner(xs, 400), inner(ys, 400), inner(zs, 400)
    ref = field.lookup(x, y, z)
    _, fpar, fmap, imap, mask_a, bmap = field.kernel_args()
    rows = [a.reshape(-1, LANES) for a in (x, y, z)]
    P = np.stack(rows, 1).reshape(-1, LANES)
    out = np.zeros((4 * (n // LANES), LANES))
    run(fpar[0] != 0.0, fmap, imap, mask_a, bmap, kn._uniform_runs(fmap, imap), P, out)
    got = out.reshape(-1, 4, LANES).transpose(1, 0, 2).reshape(4, -1)
    for c in range(3):
        np.testing.assert_array_equal(got[c].view(np.int64), ref[c].view(np.int64))
    np.testing.assert_array_equal(got[3], ref[3].astype(np.float64))


def test_the_settings_slots_and_the_cuda_constants_are_written_once():
    """packed() fills every slot of the settings vector, each named once (stepper.SP_*); the
    kernels read the slots by name, never by number; every #define of the CUDA source but the
    two IEEE fallbacks comes from the Python constants (kernels_cuda.defines), none by hand."""
    import inspect
    import re

    from hpcgen.generators.tracks import kernels_cuda, kernels_numba, stepper
    from hpcgen.generators.tracks.constants import C_LIGHT

    names = [k for k in dir(stepper) if k.startswith("SP_") and k != "SP_SIZE"]
    assert sorted(getattr(stepper, k) for k in names) == list(range(stepper.SP_SIZE))
    assert StepperSettings().packed().shape == (stepper.SP_SIZE,)
    for src in (kernels_cuda.CUDA_SOURCE, inspect.getsource(kernels_numba)):
        assert not re.search(r"\bsp\[\d", src)
    defined = re.findall(r"^#define (\w+) (.+)$", kernels_cuda.CUDA_SOURCE, re.M)
    generated = set(re.findall(r"^#define (\w+) ", kernels_cuda.defines(), re.M))
    assert {k for k, _ in defined} - generated == {"INFINITY", "NAN"}
    assert ("SP_GRID", str(stepper.SP_GRID)) in defined
    assert ("C_LIGHT", repr(C_LIGHT)) in defined and float(repr(C_LIGHT)) == C_LIGHT


def test_the_equations_of_motion_are_written_once_for_numpy_and_numba():
    """The numba kernel compiles stepper.slope_derivatives (the reference's equations) for its
    vectors and has no copy of its own; np.sqrt of a vector is the vector square root."""
    import inspect

    from numba import njit

    from hpcgen.generators.tracks import kernels_numba, stepper
    from hpcgen.generators.tracks.simd import LANES, vload, vstore

    assert kernels_numba._slope_derivatives.py_func is stepper.slope_derivatives
    assert "(1.0 + tx * tx) * by" not in inspect.getsource(kernels_numba)

    @njit(cache=False)
    def run(P, out):
        d = kernels_numba._slope_derivatives(
            vload(P, 0), vload(P, 1), vload(P, 2), vload(P, 3), vload(P, 4), vload(P, 5)
        )
        vstore(out, 0, d[0])
        vstore(out, 1, d[1])

    rng = np.random.default_rng(3)
    P = rng.uniform(-1.0, 1.0, (6, LANES))
    out = np.empty((2, LANES))
    run(P, out)
    np.testing.assert_array_equal(out, np.array(stepper.slope_derivatives(*P)))
