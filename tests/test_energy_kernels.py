"""Energy generator, physics and kernels (no files, no MPI): conservation, exact transformations,
entropy, the fast path against plain scipy.ndimage, the drift rule, parameters."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats

from hpcgen.errors import SpecError
from hpcgen.generators.base import Chunk, Device, build_params
from hpcgen.generators.energy import kernels, maps, normal, patterns
from hpcgen.generators.energy.generator import EnergyGenerator
from hpcgen.generators.energy.params import PRESETS, EnergyParams, Preset
from hpcgen.generators.energy.sequence import evolve, evolve_batch


def smooth_map(shape=(64, 64), seed=0) -> np.ndarray:
    return patterns.base_pattern("turbulent", shape, np.random.default_rng(seed))


def peaked_map(n=64) -> np.ndarray:
    e = np.full((n, n), 1e-3, np.float32)
    e[n // 3, n // 2] = 1000.0
    return e


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# --- entropy --------------------------------------------------------------------------------
def test_entropy_of_known_maps():
    n = 32
    assert maps.entropy(np.ones((n, n), np.float32)) == pytest.approx(math.log(n * n), abs=1e-9)
    one = np.zeros((n, n), np.float32)
    one[3, 4] = 7.0
    assert maps.entropy(one) == pytest.approx(0.0, abs=1e-6)  # float32 logarithms
    two = np.zeros((n, n), np.float32)
    two[0, 0] = two[5, 9] = 2.5
    assert maps.entropy(two) == pytest.approx(math.log(2), abs=1e-7)
    # scale invariant, and batched over leading axes
    e = smooth_map()
    np.testing.assert_allclose(maps.entropy(np.stack([e, 3 * e])), maps.entropy(e), rtol=1e-6)


# --- each perturbation conserves energy -------------------------------------------------------
def test_translation_is_exact():
    e = smooth_map((48, 72))
    t = kernels.translate(e, (5, -3))
    assert t[5, 0] == e[0, 3] and t[0, 70] == e[43, 1]
    assert np.array_equal(kernels.translate(t, (-5, 3)), e)
    assert np.array_equal(np.sort(t, axis=None), np.sort(e, axis=None))  # a permutation


def test_blur_conserves_energy_without_renormalising():
    e = smooth_map()
    for blurred in (
        kernels.blur_reference(e, 3.0),
        kernels.blur_fft(e, kernels.gaussian_transfer(e.shape, 3.0)),
    ):
        assert maps.total_energy(blurred) == pytest.approx(maps.total_energy(e), rel=1e-6)
        assert blurred.min() >= -1e-6 * blurred.max()


def test_rotation_conserves_energy_and_90_degrees_is_exact():
    e = smooth_map()
    stepper_out = np.empty_like(e)
    coef = kernels.coefficient_buffer(e.shape)
    kernels.spline_coefficients_wrap(e, coef)
    kernels.rotate_coefficients(coef, 0.0, 1.0, stepper_out)  # 90 degrees
    np.testing.assert_allclose(stepper_out, np.rot90(e, 1), rtol=0, atol=1e-5 * e.max())
    np.testing.assert_allclose(kernels.rotate_reference(e, 90.0), np.rot90(e, 1), atol=1e-5)
    # a generic angle: cubic interpolation of a smooth map moves < 0.5 % of the energy
    r = kernels.rotate_reference(e, 33.0)
    assert maps.total_energy(r) == pytest.approx(maps.total_energy(e), rel=5e-3)


def test_noise_is_zero_mean_and_clipped():
    rng = np.random.default_rng(1)
    e = np.ones((128, 128), np.float32)
    noise = rng.standard_normal(e.shape, dtype=np.float32)
    noisy = kernels.add_noise(e, noise, 0.1)
    assert noisy.min() >= 0
    assert np.std(noisy - e) == pytest.approx(0.1, rel=0.02)
    assert kernels.add_noise(e, noise, 5.0).min() == 0.0  # strong noise: clipped, not negative


@pytest.mark.parametrize("method", ["reference", "fast"])
def test_every_step_conserves_energy(method):
    e = smooth_map()
    ref = maps.total_energy(e)
    rng = np.random.default_rng(2)
    noise = rng.standard_normal(e.shape, dtype=np.float32)
    stepper = kernels.FastStepper(e.shape, 2.0)
    cases = [(33.0, 0.0, None), (None, 2.0, None), (None, 0.0, noise), (71.0, 2.0, noise)]
    for angle, sigma, nz in cases:
        if method == "reference":
            out = kernels.step_reference(e, angle, sigma, (2, -4), nz, 0.3, ref)
        else:
            st = stepper if sigma else kernels.FastStepper(e.shape, 0.0)
            out = st.step(e, angle, (2, -4), nz, 0.3, ref)
        assert maps.total_energy(out) == pytest.approx(ref, rel=1e-6), (angle, sigma)
        assert out.min() >= 0 and out.dtype == np.float32


@pytest.mark.parametrize("shift", [(0, 0), (2, -4), (-7, 70), (130, -129), (64, 96)])
def test_fused_translation_and_noise_is_roll_then_noise(shift):
    e = smooth_map((64, 96), seed=12)
    e[5, :7] = -1e-3  # blur rounding negatives: clipped before the shift
    noise = np.random.default_rng(3).standard_normal(e.shape, dtype=np.float32)
    out = np.empty_like(e)
    alpha, amp = 1.3, 0.4
    total = kernels.translate_noise(e, alpha, *shift, noise, amp, out)
    x = np.roll(np.float32(alpha) * np.maximum(e, 0), shift, axis=(0, 1))
    expected = np.maximum(x + np.float32(amp) * noise, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    assert total == pytest.approx(float(expected.sum(dtype=np.float64)), rel=1e-6)
    # no noise: an exact permutation of the scaled, clipped map
    total = kernels.translate_noise(e, alpha, *shift, np.zeros((1, 1), np.float32), 0.0, out)
    np.testing.assert_array_equal(out, x)
    assert total == pytest.approx(float(x.sum(dtype=np.float64)), rel=1e-6)


@numba.njit
def _ln_all(v: np.ndarray, out: np.ndarray) -> None:
    bits = v.view(np.int32)
    for k in range(v.size):
        out[k] = kernels._ln_bits(bits[k])


def test_compiled_logarithm_is_float32_accurate():
    rng = np.random.default_rng(13)
    v = np.concatenate(
        [
            np.exp(rng.uniform(-85.0, 88.0, 200_000)),  # every binade of normal float32
            1.0 + rng.uniform(-0.3, 0.5, 200_000),  # near 1, where ln v is small
            [1.0, 2.0, 0.5, math.sqrt(2.0), 1.1754944e-38, 3.4e38],
        ]
    ).astype(np.float32)
    got = np.empty_like(v)
    _ln_all(v, got)
    exact = np.log(v.astype(np.float64))
    # within a few float32 roundings of the value (absolute near ln v = 0)
    assert np.all(np.abs(got - exact) <= 2.5e-7 * np.maximum(np.abs(exact), 0.1))


@pytest.mark.parametrize("kind", ["smooth", "peaked", "uniform", "zeros", "tiny"])
def test_one_pass_total_and_entropy_match_numpy(kind):
    e = {
        "smooth": smooth_map((128, 192), seed=14),
        "peaked": peaked_map(),
        "uniform": np.full((64, 64), 3.0, np.float32),
        "zeros": np.where(smooth_map(seed=15) > 1.0, smooth_map(seed=15), 0).astype(np.float32),
        "tiny": smooth_map(seed=16) * np.float32(1e-20),
    }[kind]
    total, s = kernels.total_and_entropy(e)
    assert total == pytest.approx(float(e.sum(dtype=np.float64)), rel=1e-6)
    assert s == pytest.approx(float(maps.entropy(e.astype(np.float64))), abs=1e-6)


# --- entropy under blur -----------------------------------------------------------------------
def test_blur_raises_entropy_on_a_peaked_map():
    e = peaked_map()
    blurred = kernels.blur_fft(e, kernels.gaussian_transfer(e.shape, 3.0))
    assert maps.entropy(blurred) > maps.entropy(e) + 1.0
    # a lone hot pixel blurred by sigma becomes a discrete Gaussian: S ~ ln(2 pi e sigma^2)
    delta = np.zeros((64, 64), np.float32)
    delta[10, 20] = 1.0
    s = maps.entropy(kernels.blur_fft(delta, kernels.gaussian_transfer(delta.shape, 3.0)))
    assert s == pytest.approx(math.log(2 * math.pi * math.e * 9.0), rel=1e-3)


# --- the fast path is the reference, faster ---------------------------------------------------
@pytest.mark.parametrize("shape", [(64, 64), (48, 72)])
def test_fast_rotation_matches_scipy(shape):
    e = smooth_map(shape, seed=3)
    coef = kernels.coefficient_buffer(shape)
    kernels.spline_coefficients_wrap(e, coef)
    out = np.empty_like(e)
    for angle in (12.5, -147.0, 301.0):
        a = math.radians(angle)
        kernels.rotate_coefficients(coef, math.cos(a), math.sin(a), out)
        assert rel(out, kernels.rotate_reference(e, angle)) < 2e-5, angle


def test_spline_coefficients_match_scipy():
    e = smooth_map((40, 60), seed=4)
    coef = kernels.coefficient_buffer(e.shape)
    kernels.spline_coefficients_wrap(e, coef)
    expected = ndi.spline_filter(e.astype(np.float64), 3, mode="grid-wrap")
    py, px = kernels.rotation_padding(e.shape)
    assert rel(coef[py : py + 40, px : px + 60], expected) < 1e-6
    np.testing.assert_array_equal(
        coef, np.pad(coef[py : py + 40, px : px + 60], ((py, py), (px, px)), "wrap")
    )


@pytest.mark.parametrize("sigma", [1.5, 4.0, 20.0])
def test_direct_and_fft_blurs_match_scipy_wrap(sigma):
    e = smooth_map((64, 96), seed=5)
    expected = kernels.blur_reference(e, sigma)
    fft = kernels.blur_fft(e, kernels.gaussian_transfer(e.shape, sigma))
    assert rel(fft, expected) < 1e-5
    taps = kernels.gaussian_taps(sigma)
    direct, tmp = np.empty_like(e), np.empty_like(e)
    kernels.blur_direct(e, taps, taps, tmp, direct)
    assert rel(direct, expected) < 1e-5


def test_wide_blur_takes_the_fft_path_and_matches_the_reference():
    e = smooth_map((64, 64), seed=8)
    stepper = kernels.FastStepper(e.shape, 7.0)  # radius 28 > DIRECT_BLUR_MAX_RADIUS
    assert stepper.transfer is not None
    ref = maps.total_energy(e)
    out = stepper.step(e, 40.0, (1, 2), None, 0.0, ref)
    assert rel(out, kernels.step_reference(e, 40.0, 7.0, (1, 2), None, 0.0, ref)) < 1e-5


@pytest.mark.parametrize("domain", ["plasma_physics", "fluid_dynamics", "astrophysics"])
def test_fast_trajectory_matches_reference(domain):
    p = EnergyParams(domain=domain, n_steps=6, height=64, width=64)
    draws = _draws(p, seed=7)
    fast = evolve(*draws(), p.preset, p.drift_tolerance, method="fast")
    slow = evolve(*draws(), p.preset, p.drift_tolerance, method="reference")
    assert rel(fast.frames, slow.frames) < 1e-4
    np.testing.assert_allclose(fast.entropy, slow.entropy, atol=1e-5)


def test_batch_path_on_numpy_matches_cpu_path():
    """evolve_batch is the GPU code path; run with numpy + scipy.ndimage it must agree."""
    p = EnergyParams(domain="plasma_physics", n_steps=5, height=48, width=72, scaling_max=0.2)
    bases, angles, shifts, scales, rngs = [], [], [], [], []
    for k in range(3):
        b, a, s, f, g = _draws(p, seed=10 + k)()
        bases.append(b), angles.append(a), shifts.append(s), scales.append(f), rngs.append(g)
    frames, ent, rescaled = evolve_batch(
        np.stack(bases),
        np.stack(angles),
        np.stack(shifts),
        np.stack(scales),
        rngs,
        p.preset,
        p.drift_tolerance,
        np,
        ndi,
    )
    for k in range(3):
        tr = evolve(*_draws(p, seed=10 + k)(), p.preset, p.drift_tolerance, method="reference")
        assert rel(frames[k], tr.frames) < 1e-4
        np.testing.assert_allclose(ent[k], tr.entropy, atol=1e-5)
        assert np.array_equal(rescaled[k], tr.rescaled)


def _draws(p: EnergyParams, seed: int):
    """A closure giving fresh (base, angles, shifts, scales, rng) for one trajectory."""
    gen = EnergyGenerator(p)

    def make():
        inputs = gen.sample(Chunk(index=0, start=0, count=1, seed=seed))
        rng = np.random.Generator(np.random.PCG64(int(inputs["trajectory_seed"][0])))
        base = patterns.base_pattern(p.preset.pattern, p.shape, rng)
        shifts = np.stack([inputs["scalars/shift_x"][0], inputs["scalars/shift_y"][0]], -1)
        return (
            base,
            inputs["scalars/rotation_deg"][0].astype(np.float64),
            shifts.astype(int),
            inputs["scalars/scale_factor"][0].astype(np.float64),
            rng,
        )

    return make


# --- pixel noise: numpy's normal draws, compiled ------------------------------------------------
def _pcg(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _state(g: np.random.Generator) -> dict:
    s = g.bit_generator.state
    if not s["has_uint32"]:
        s["uinteger"] = 0  # a stale value numpy keeps when nothing is buffered: not state
    return s


@pytest.mark.parametrize("buffered", [False, True])
def test_fast_normal_draws_are_numpys_bit_for_bit(buffered):
    for seed in range(6):
        g_np, g_fast = _pcg(seed), _pcg(seed)
        if buffered:  # one 32-bit draw leaves the high half of a 64-bit output buffered
            g_np.integers(0, 10, dtype=np.uint32)
            g_fast.integers(0, 10, dtype=np.uint32)
        for shape in [(256, 256), (7,), (3, 5), (65537,), (1,)]:
            expected = g_np.standard_normal(shape, dtype=np.float32)
            got = normal.standard_normal_f32(g_fast, np.empty(shape, np.float32))
            assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (seed, shape)
            assert _state(g_fast) == _state(g_np), (seed, shape)
        assert g_fast.random() == g_np.random()


def test_fast_normal_continues_when_its_words_run_short(monkeypatch):
    monkeypatch.setattr(normal, "SPARE_FRACTION", 0.0)
    monkeypatch.setattr(normal, "SPARE_OUTPUTS", 0)  # every wedge or tail test runs short
    g_np, g_fast = _pcg(3), _pcg(3)
    for shape in [(4096,), (1,), (333,)]:
        expected = g_np.standard_normal(shape, dtype=np.float32)
        got = normal.standard_normal_f32(g_fast, np.empty(shape, np.float32))
        assert np.array_equal(got, expected) and _state(g_fast) == _state(g_np)


def test_fast_normal_falls_back_to_numpy_for_other_bit_generators():
    a = np.random.Generator(np.random.Philox(4)).standard_normal((9, 9), dtype=np.float32)
    b = normal.standard_normal_f32(np.random.Generator(np.random.Philox(4)), np.empty((9, 9), "f4"))
    assert np.array_equal(a, b)


def test_ziggurat_layers_have_equal_areas():
    ki, wi, fi = normal.ziggurat_tables()
    x = wi.astype(np.float64) * 2.0**23  # layer edges x_i (layer 0: the base's width)
    # layer i >= 1: the rectangle of width x_i between f(x_i) and f(x_{i-1}) has area V (i = 1:
    # up to f(0) = 1, so the recursion closes at the top)
    np.testing.assert_allclose(x[1:] * (fi[:-1] - fi[1:].astype(np.float64)), normal.V, rtol=2e-5)
    # base: width V / f(R), its core reaches R; the top layer has no core
    assert x[0] * fi[255] == pytest.approx(normal.V, rel=1e-6)
    assert ki[0] / 2.0**23 == pytest.approx(normal.R / x[0], rel=1e-6) and ki[1] == 0
    np.testing.assert_allclose(ki[2:] / 2.0**23, x[1:-1] / x[2:], rtol=1e-6)


def test_fast_normal_is_standard_normal():
    g = _pcg(11)
    x = np.concatenate(
        [normal.standard_normal_f32(g, np.empty((256, 256), np.float32)).ravel() for _ in range(32)]
    ).astype(np.float64)
    n = x.size  # 2 097 152
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert x.var() == pytest.approx(1.0, abs=5 * math.sqrt(2 / n))
    assert abs(scipy.stats.skew(x)) < 5 * math.sqrt(6 / n)
    assert abs(scipy.stats.kurtosis(x)) < 5 * math.sqrt(24 / n)
    assert scipy.stats.kstest(x, "norm").pvalue > 1e-3
    # the tail beyond the base layer (drawn by the tail method) has the normal's weight
    tail = int((np.abs(x) > normal.R).sum())
    expected = n * 2 * scipy.stats.norm.sf(normal.R)  # ~541
    assert abs(tail - expected) < 5 * math.sqrt(expected)
    assert np.abs(x).max() < 7.0


# --- drift rule -------------------------------------------------------------------------------
def test_drift_beyond_tolerance_is_rescaled_and_counted():
    base = smooth_map((32, 32))
    calm = Preset("turbulent", 0.0, 0.0, 0.0, 0)  # only scaling acts
    scales = np.array([1.0, 1.03, 1.03, 0.9, 1.0])
    tr = evolve(
        base, np.zeros(5), np.zeros((5, 2), int), scales, np.random.default_rng(0), calm, 0.05
    )
    totals = maps.total_energy(tr.frames) / maps.total_energy(base)
    # 1.03 is within 5 %; 1.03^2 = 1.0609 is not -> back to 1; 0.9 -> back to 1
    np.testing.assert_allclose(totals, [1.0, 1.03, 1.0, 1.0, 1.0], rtol=1e-6)
    assert tr.rescaled.tolist() == [False, False, True, True, False]


# --- base patterns and pyramid ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["turbulent", "laminar", "vortex", "random"])
def test_base_patterns_have_unit_mean(name):
    e = patterns.base_pattern(name, (64, 96), np.random.default_rng(0))
    assert e.shape == (64, 96) and e.dtype == np.float32
    assert e.min() >= 0
    assert e.mean(dtype=np.float64) == pytest.approx(1.0, rel=1e-6)


def test_laminar_is_the_analytic_pattern():
    e = patterns.base_pattern("laminar", (64, 64), np.random.default_rng(0))
    # sin X cos Y + 2 has mean 2 on the full periodic grid: E = (sin X cos Y + 2) / 2
    assert e[0, 16] == pytest.approx(1.5, rel=1e-6)  # X = pi/2, Y = 0
    assert e[32, 16] == pytest.approx(0.5, rel=1e-6)  # Y = pi


@pytest.mark.parametrize(("shape", "out"), [((4, 6), (64, 96)), ((64, 64), (16, 16))])
def test_separable_zoom_is_scipy_zoom_and_keeps_maps_apart(shape, out):
    a = np.random.default_rng(9).standard_normal((3, *shape))
    z = maps.periodic_zoom(a, out)
    for k in range(3):
        expected = ndi.zoom(
            a[k],
            (out[0] / shape[0], out[1] / shape[1]),
            order=3,
            mode="grid-wrap",
            grid_mode=True,
        )
        np.testing.assert_allclose(z[k], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(256, 256), (128, 192)])
def test_pyramid_levels_conserve_energy(shape):
    e = smooth_map(shape, seed=6)
    levels = maps.pyramid(e)
    assert sorted(levels) == [s for s in maps.SCALES if s <= shape[0]]
    for s, level in levels.items():
        assert level.shape == (s, s * shape[1] // shape[0])
        assert level.min() >= 0
        assert maps.total_energy(level) == pytest.approx(maps.total_energy(e), rel=1e-6)


def test_periodic_gradients_are_exact_for_a_sine():
    n = 64
    i = np.arange(n)
    e = np.repeat(np.sin(2 * np.pi * i / n)[:, None], 8, axis=1)
    gx, gy, mag = maps.gradients(e)
    np.testing.assert_allclose(
        gx[:, 0], np.sin(2 * np.pi / n) * np.cos(2 * np.pi * i / n), atol=1e-12
    )
    assert np.abs(gy).max() == 0 and np.array_equal(mag, np.abs(gx))


# --- parameters ---------------------------------------------------------------------------------
def test_presets_resolve_and_overrides_win():
    p = EnergyParams(domain="astrophysics")
    assert p.preset == PRESETS["astrophysics"]
    assert p.preset.translation_max_px == 0
    q = EnergyParams(domain="astrophysics", blur_sigma=1.0, pattern="laminar")
    assert (q.preset.blur_sigma, q.preset.pattern, q.preset.noise_sigma) == (1.0, "laminar", 0.2)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"n_steps": 1}, "n_steps must be in 2..10000"),
        ({"height": 100, "width": 120}, "square or 2:3"),
        ({"domain": "oceanography"}, "domain must be one of"),
        ({"height": 32, "width": 32, "blur_sigma": 9.0}, "blur_sigma must be in 0..8"),
        ({"rotation_max_deg": 400.0}, "rotation_max_deg must be in 0..360"),
        ({"scaling_max": -0.1}, "scaling_max must be in 0..0.5"),
        ({"drift_tolerance": 0.0}, "drift_tolerance must be in (0, 1)"),
        ({"colour": "red"}, "unknown parameter params.colour"),
    ],
)
def test_bad_parameters_are_refused(values, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_params(EnergyParams, values)


def test_two_by_three_maps_are_allowed_both_ways():
    assert EnergyParams(height=128, width=192).shape == (128, 192)
    assert EnergyParams(height=192, width=128).shape == (192, 128)


# --- generator contract ---------------------------------------------------------------------------
def test_compute_fills_every_field_with_declared_shapes():
    p = EnergyParams(domain="active_matter", n_steps=4, height=32, width=48)
    gen = EnergyGenerator(p)
    chunk = Chunk(index=3, start=6, count=2, seed=11)
    inputs = gen.sample(chunk)
    out = {**inputs, **gen.compute(inputs, chunk, Device("cpu", np))}
    for f in gen.fields():
        assert out[f.name].shape == (2, *f.shape), f.name
        assert out[f.name].dtype == f.resolved_dtype("float64"), f.name
    assert np.all(out["scalars/rotation_deg"][:, 0] == 0)
    assert np.abs(out["scalars/rotation_deg"]).max() <= 360
    assert np.abs(out["scalars/shift_x"]).max() <= 5


def test_chunks_are_deterministic_and_independent():
    gen = EnergyGenerator(EnergyParams(n_steps=3, height=32, width=32))

    def run(index):
        chunk = Chunk(index=index, start=2 * index, count=2, seed=5)
        return gen.compute(gen.sample(chunk), chunk, Device("cpu", np))["t0_fields/energy"]

    a, b = run(1), run(1)
    assert a.tobytes() == b.tobytes()
    assert not np.allclose(run(2), a)
    assert not np.allclose(a[0], a[1])  # trajectories in a chunk differ


def test_domains_sharing_a_pattern_and_seed_get_different_trajectories():
    chunk = Chunk(index=0, start=0, count=2, seed=42)
    seeds = [
        EnergyGenerator(EnergyParams(domain=d, n_steps=2, height=16, width=16)).sample(chunk)[
            "trajectory_seed"
        ]
        for d in ("plasma_physics", "astrophysics")  # both turbulent
    ]
    assert not np.array_equal(*seeds)


@pytest.mark.gpu
def test_gpu_path_matches_cpu():
    cupy = pytest.importorskip("cupy")
    if not cupy.is_available():
        pytest.skip("no CUDA device")
    p = EnergyParams(n_steps=4, height=64, width=64)
    gen = EnergyGenerator(p)
    assert gen.supports_device("gpu")
    chunk = Chunk(index=0, start=0, count=3, seed=1)
    inputs = gen.sample(chunk)
    cpu = gen.compute(inputs, chunk, Device("cpu", np))
    gpu = gen.compute(inputs, chunk, Device("gpu", cupy))
    assert rel(gpu["t0_fields/energy"], cpu["t0_fields/energy"]) < 1e-4
    np.testing.assert_allclose(gpu["scalars/entropy"], cpu["scalars/entropy"], atol=1e-4)
