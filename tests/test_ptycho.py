"""Ptycho generator: forward model, dose calibration, Poisson sampler, scans, base NPZ, ePIE."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from hpcgen.errors import SpecError, UserError
from hpcgen.generators.base import Chunk, Device, build_params
from hpcgen.generators.ptycho import scan
from hpcgen.generators.ptycho.base_data import default_object, default_probe, load_base_npz
from hpcgen.generators.ptycho.forward import Forward, expected_energy_uniform, position_bounds
from hpcgen.generators.ptycho.generator import PtychoGenerator
from hpcgen.generators.ptycho.params import PtychoParams, dose_tag
from hpcgen.generators.ptycho.poisson import (
    TABLE_MAX,
    TABLE_MIN,
    counts_from_amplitudes,
    sample_amplitudes,
    sample_into,
)

CPU = Device("cpu", np)


def random_object(m: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.3, 1.0, (m, m))
    return (amp * np.exp(1j * rng.uniform(-2, 2, (m, m)))).astype(np.complex64)


def small_generator(tmp_path: Path, **kw: object) -> PtychoGenerator:
    """A generator on a 96 px random object with the built-in 32 px probe (via a base NPZ)."""
    npz = tmp_path / "base.npz"
    if not npz.exists():
        np.savez(npz, objectGuess=random_object(96), probeGuess=default_probe(32))
    params = {"N": 32, "base_npz": str(npz), "doses": [1e3, 1e5], **kw}
    return PtychoGenerator(build_params(PtychoParams, params))


# --- forward model --------------------------------------------------------------------------------


def test_parseval_photon_total_equals_exit_wave_energy() -> None:
    fw = Forward(random_object(80, 1), default_probe(32))
    rng = np.random.default_rng(2)
    xs, ys = rng.uniform(16, 64, 50), rng.uniform(16, 64, 50)
    patches, intensity, energy = fw.run(xs, ys)
    exit_energy = (np.abs(patches.astype(np.complex128) * fw.probe) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(energy, exit_energy, rtol=1e-6)
    np.testing.assert_allclose(intensity.sum(axis=(1, 2), dtype=np.float64), energy, rtol=1e-5)


@pytest.mark.parametrize("fft", ["fftw", "scipy"])
def test_intensity_is_centred_orthonormal_fft_of_exit_wave(fft: str) -> None:
    fw = Forward(random_object(80, 3), default_probe(32), fft=fft)
    # 35 positions: a full block of 32 and a shorter last block, each with its own FFT plan
    rng = np.random.default_rng(5)
    xs = np.r_[20.25, 47.5, 60.0, rng.uniform(16, 64, 32)]
    ys = np.r_[33.75, 16.0, 59.9, rng.uniform(16, 64, 32)]
    patches, intensity, _ = fw.run(xs, ys)
    f = np.fft.fft2(patches.astype(np.complex128) * fw.probe, norm="ortho")
    expected = np.abs(np.fft.fftshift(f, axes=(1, 2))) ** 2
    np.testing.assert_allclose(intensity, expected, rtol=2e-4, atol=1e-6 * expected.max())
    # zero frequency at [N/2, N/2]: a flat object gives the probe's DC term there
    flat = Forward(np.ones((80, 80), np.complex64), default_probe(32), fft=fft)
    _, i_flat, _ = flat.run(np.array([40.0]), np.array([40.0]))
    dc = abs(default_probe(32).astype(np.complex128).sum()) ** 2 / 32**2
    assert i_flat[0, 16, 16] == pytest.approx(dc, rel=1e-5)


def test_patch_at_integer_position_is_the_object_slice() -> None:
    obj = random_object(64, 4)
    fw = Forward(obj, np.ones((16, 16), np.complex64))
    patches, _, _ = fw.run(np.array([20.0, 8.0]), np.array([30.0, 56.0]))
    np.testing.assert_array_equal(patches[0], obj[22:38, 12:28])  # rows y-8.., cols x-8..
    np.testing.assert_array_equal(patches[1], obj[48:64, 0:16])


def test_bilinear_shift_is_exact_for_a_linear_object() -> None:
    # bilinear interpolation reproduces any function linear in (row, column) exactly
    m, n = 64, 16
    rows, cols = np.mgrid[0:m, 0:m].astype(np.float64)
    obj = (0.3 + 0.01 * cols + 0.005 * rows) + 1j * (0.2 - 0.004 * cols + 0.006 * rows)
    fw = Forward(obj.astype(np.complex64), np.ones((n, n), np.complex64))
    x, y = 30.37, 21.81
    patches, _, _ = fw.run(np.array([x]), np.array([y]))
    i, j = np.mgrid[0:n, 0:n].astype(np.float64)
    r, c = y + i - n / 2, x + j - n / 2
    expected = (0.3 + 0.01 * c + 0.005 * r) + 1j * (0.2 - 0.004 * c + 0.006 * r)
    np.testing.assert_allclose(patches[0], expected, atol=2e-6)


def test_positions_outside_the_object_read_zeros() -> None:
    obj = np.ones((40, 40), np.complex64)
    fw = Forward(obj, np.ones((8, 8), np.complex64))
    patches, _, _ = fw.run(np.array([0.0, 40.0]), np.array([20.0, 20.0]))
    assert np.all(patches[0][:, :4] == 0) and np.all(patches[0][:, 4:] == 1)
    assert np.all(patches[1][:, :4] == 1) and np.all(patches[1][:, 4:] == 0)
    with pytest.raises(ValueError, match=r"x coordinates must lie in \[0, 40\]"):
        fw.check_positions(np.array([40.5]), np.array([3.0]))


def test_expected_energy_is_exact_against_gauss_legendre_quadrature() -> None:
    # |bilinear|^2 is biquadratic in the sub-pixel offsets: 2-point Gauss-Legendre per unit cell
    # and axis integrates it exactly, so the mean over those positions is the exact expectation
    obj, probe = random_object(40, 5), default_probe(16)
    lo, hi = position_bounds(40, 16)
    g = 0.5 + np.array([-0.5, 0.5]) / math.sqrt(3.0)
    axis = (np.arange(lo, hi)[:, None] + g[None, :]).ravel()
    ys, xs = np.meshgrid(axis, axis, indexing="ij")
    quad = Forward(obj, probe).mean_energy(xs.ravel(), ys.ravel())
    assert expected_energy_uniform(obj, probe) == pytest.approx(quad, rel=2e-6)


def test_dose_is_the_mean_photon_count_over_random_positions(tmp_path: Path) -> None:
    gen = small_generator(tmp_path, doses=[2000.0])
    totals = []
    for k in range(8):
        chunk = Chunk(index=k, start=256 * k, count=256, seed=11)
        out = gen.compute(gen.sample(chunk), chunk, CPU)
        totals.append(out["dose_2000/photons"])
        lam = gen.photon_scale2(2000.0) * out["exit_energy"]
        np.testing.assert_array_less(lam.std() / lam.mean(), 0.5)
    t = np.concatenate(totals)
    # Poisson noise plus position sampling: a 5-sigma band around the dose
    assert abs(t.mean() - 2000.0) < 5 * t.std() / math.sqrt(len(t))


# --- Poisson sampler ------------------------------------------------------------------------------

LAMBDAS = np.array(
    [
        0.0,
        0.003,
        0.05,
        0.3,
        TABLE_MIN - 0.01,
        TABLE_MIN,
        2.5,
        12.0,
        TABLE_MAX - 0.01,
        TABLE_MAX,
        300.0,
    ]
)


def draw_counts(method: str, reps: int, seed: int) -> np.ndarray:
    intensity = np.tile(LAMBDAS / 4.0, (reps, 1))  # scale2 = 4: lambda = 4 * intensity
    amp, photons = sample_amplitudes(intensity, 4.0, np.random.default_rng(seed), method)
    counts = counts_from_amplitudes(amp, 2.0)
    np.testing.assert_array_equal(counts.sum(axis=1), photons)
    return counts


@pytest.mark.parametrize("method", ["auto", "direct", "split"])
def test_every_sampler_draws_poisson_counts(method: str) -> None:
    reps = 40_000
    c = draw_counts(method, reps, seed=1).astype(np.float64)
    lam = LAMBDAS
    se_mean = np.sqrt(np.maximum(lam, 1e-12) / reps)
    assert np.all(np.abs(c.mean(0) - lam) < 5 * se_mean + 1e-12)
    # sample variance of Poisson: Var(s^2) ~ (2 lam^2 + lam) / reps
    se_var = np.sqrt((2 * lam**2 + lam) / reps)
    assert np.all(np.abs(c.var(0, ddof=1) - lam) < 5 * se_var + 1e-12)
    p0 = np.exp(-lam)
    se_p0 = np.sqrt(p0 * (1 - p0) / reps)
    assert np.all(np.abs((c == 0).mean(0) - p0) < 5 * se_p0 + 1e-12)
    total = c.sum(1)
    assert abs(total.mean() - lam.sum()) < 5 * math.sqrt(lam.sum() / reps)
    assert abs(total.var() / lam.sum() - 1) < 5 * math.sqrt(2 / reps)
    assert np.all(c[:, 0] == 0)  # lambda = 0 never gets a photon


def test_split_and_direct_samplers_agree_pixel_by_pixel() -> None:
    reps = 40_000
    a = draw_counts("split", reps, seed=2).astype(np.float64)
    b = draw_counts("direct", reps, seed=3).astype(np.float64)
    se = np.sqrt(2 * np.maximum(LAMBDAS, 1e-12) / reps)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 5 * se + 1e-12)
    # histograms of the pattern total: chi-square with the pooled counts
    ta, tb = a.sum(1).astype(int), b.sum(1).astype(int)
    edges = np.quantile(np.concatenate([ta, tb]), np.linspace(0, 1, 21))
    ha = np.histogram(ta, edges)[0]
    hb = np.histogram(tb, edges)[0]
    keep = (ha + hb) > 0
    chi2 = (((ha - hb) ** 2)[keep] / (ha + hb)[keep]).sum()
    assert chi2 < 60  # 20 bins: the 1e-6 tail of chi^2(19) is near 60


def test_direct_sampler_is_numpys_poisson() -> None:
    # lambdas 0, below 10 (multiplication) and above (PTRS), several thousand pixels
    lam = np.random.default_rng(0).uniform(0, 1, (7, 640)) ** 4 * 3000
    lam[:, ::50] = 0.0
    intensity = (lam / 3.0).astype(np.float32)
    amp, photons = sample_amplitudes(intensity, 3.0, np.random.default_rng(9), "direct")
    ref = np.random.default_rng(9).poisson(intensity.astype(np.float64) * 3.0)
    np.testing.assert_array_equal(counts_from_amplitudes(amp, math.sqrt(3.0)), ref)
    np.testing.assert_array_equal(photons, ref.sum(axis=1))


def chi2_pvalue(counts: np.ndarray, lam: float) -> float:
    """Chi-square goodness of fit of integer counts to Poisson(lam): bins with >= 20 expected
    draws, the tails pooled into the end bins."""
    n = len(counts)
    lo, hi = int(stats.poisson.ppf(1e-4, lam)), int(stats.poisson.isf(1e-4, lam))
    k = np.arange(lo, hi + 1)
    expected = n * stats.poisson.pmf(k, lam)
    expected[0] += n * stats.poisson.cdf(lo - 1, lam)
    expected[-1] += n * stats.poisson.sf(hi, lam)
    observed = np.bincount(np.clip(counts, lo, hi) - lo, minlength=len(k)).astype(np.float64)
    # merge neighbouring bins until each expects >= 20 draws
    edges = [0]
    acc = 0.0
    for i, e in enumerate(expected):
        acc += e
        if acc >= 20:
            edges.append(i + 1)
            acc = 0.0
    edges[-1] = len(k)
    obs = np.add.reduceat(observed, edges[:-1])
    exp = np.add.reduceat(expected, edges[:-1])
    chi2 = ((obs - exp) ** 2 / exp).sum()
    return float(stats.chi2.sf(chi2, len(obs) - 1))


@pytest.mark.parametrize(
    ("method", "lam"),
    [
        ("auto", lam)
        for lam in (0.02, 0.3, TABLE_MIN - 0.01, TABLE_MIN, 2.5, 7.9, 12.0, 30.5, TABLE_MAX - 0.01)
    ]
    + [("auto", lam) for lam in (TABLE_MAX, 100.0, 1000.0, 1e4, 2e5)]
    + [("split", lam) for lam in (0.3, 2.5, 12.0, 60.0)],
)
def test_sampler_counts_follow_the_poisson_distribution(method: str, lam: float) -> None:
    # one pixel of mean lam among dim pixels (mean 0.05, split in auto), 100,000 patterns; the
    # pixel's counts against scipy's Poisson pmf (chi-square), their mean and variance
    reps = 100_000
    row = np.full(16, 0.05)
    row[5] = lam
    amp, photons = sample_amplitudes(
        np.tile(row, (reps, 1)), 1.0, np.random.default_rng(int(lam * 100)), method
    )
    counts = counts_from_amplitudes(amp, 1.0)
    np.testing.assert_array_equal(counts.sum(axis=1), photons)
    c = counts[:, 5]
    assert chi2_pvalue(c, lam) > 1e-4
    assert abs(c.mean() - lam) < 5 * math.sqrt(lam / reps)
    assert abs(c.var(ddof=1) / lam - 1) < 5 * math.sqrt((2 + 1 / lam) / reps)
    dim = counts[:, np.arange(16) != 5]  # the neighbours stay Poisson(0.05), independent of it
    assert abs(dim.mean() - 0.05) < 5 * math.sqrt(0.05 / dim.size)
    assert abs(np.corrcoef(c, dim.sum(axis=1))[0, 1]) < 5 / math.sqrt(reps)


def test_samplers_are_deterministic_and_independent_of_batching() -> None:
    lam = np.random.default_rng(0).uniform(0, 1, (40, 640)) ** 4 * 300
    lam[:, ::50] = 0.0
    intensity = (lam / 3.0).astype(np.float32)
    for method in ("auto", "split", "direct"):
        a1, p1 = sample_amplitudes(intensity, 3.0, np.random.default_rng(5), method)
        a2, _ = sample_amplitudes(intensity, 3.0, np.random.default_rng(5), method)
        a3, _ = sample_amplitudes(intensity, 3.0, np.random.default_rng(6), method)
        assert a1.tobytes() == a2.tobytes() and a1.tobytes() != a3.tobytes()
        # drawn in pieces with one rng: the same bytes (the generator samples block by block)
        rng = np.random.default_rng(5)
        amp = np.empty_like(a1)
        photons = np.empty(len(a1), np.int64)
        for s, e in ((0, 7), (7, 8), (8, 40)):
            sample_into(intensity[s:e], 3.0, rng, method, amp[s:e], photons[s:e])
        assert amp.tobytes() == a1.tobytes() and np.array_equal(photons, p1)
        # the rng moves on: a second draw differs from the first
        rng = np.random.default_rng(5)
        b1, _ = sample_amplitudes(intensity, 3.0, rng, method)
        b2, _ = sample_amplitudes(intensity, 3.0, rng, method)
        assert b1.tobytes() != b2.tobytes()


def test_sample_into_checks_its_outputs() -> None:
    intensity = np.ones((3, 4, 4), np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="amplitude must be"):
        sample_into(intensity, 2.0, rng, "auto", np.empty((3, 4, 4)), np.empty(3, np.int64))
    with pytest.raises(ValueError, match="photons must be"):
        sample_into(intensity, 2.0, rng, "auto", np.empty((3, 4, 4), np.float32), np.empty(3))
    with pytest.raises(ValueError, match="scale2"):
        sample_amplitudes(intensity, 0.0, rng)
    with pytest.raises(ValueError, match="unknown Poisson sampler"):
        sample_amplitudes(intensity, 1.0, rng, "gauss")


# --- generator: doses, scans, base NPZ ------------------------------------------------------------


def test_doses_share_positions_and_patterns_with_independent_noise(tmp_path: Path) -> None:
    chunk = Chunk(index=2, start=64, count=80, seed=5)  # 3 blocks of the forward model
    both = small_generator(tmp_path, doses=[1e3, 1e12])
    one = small_generator(tmp_path, doses=[1e12])
    a = both.compute(both.sample(chunk), chunk, CPU)
    b = one.compute(one.sample(chunk), chunk, CPU)
    # a dose's noise stream is keyed by the dose: adding 1e3 to the sweep changes nothing of 1e12
    assert (
        a["dose_1000000000000/diffraction"].tobytes()
        == b["dose_1000000000000/diffraction"].tobytes()
    )
    # stored amplitude = sqrt(counts) / scale -> |FFT(exit)| when the dose is huge
    inputs = both.sample(chunk)
    model = np.sqrt(both.forward.run(inputs["xcoords"], inputs["ycoords"])[1])
    np.testing.assert_allclose(a["dose_1000000000000/diffraction"], model, atol=2e-4 * model.max())
    # block-by-block sampling in compute = sampling the whole chunk with the dose's stream
    ref, ref_photons = sample_amplitudes(
        both.forward.run(inputs["xcoords"], inputs["ycoords"])[1],
        both.photon_scale2(1e3),
        chunk.rng("noise", "dose_1000"),
    )
    assert ref.tobytes() == a["dose_1000/diffraction"].tobytes()
    np.testing.assert_array_equal(ref_photons, a["dose_1000/photons"])
    low = counts_from_amplitudes(a["dose_1000/diffraction"], both.amplitude_scale(1e3))
    assert np.all(low.sum(axis=(1, 2)) == a["dose_1000/photons"])
    lam = both.photon_scale2(1e3) * a["exit_energy"].sum()  # noise-free photons of the chunk
    assert abs(low.sum() - lam) < 5 * math.sqrt(lam)


def test_raster_positions_are_a_function_of_the_sample_index(tmp_path: Path) -> None:
    gen = small_generator(tmp_path, scan="raster", overlap=0.75)
    k, total, spacing, _ = scan.raster_shape(96, 32, 0.75)
    assert spacing == 8.0 and k == 9 and total == 81
    xs, ys = gen.scan_list
    assert xs.min() >= 16 and xs.max() <= 80 and np.allclose(np.diff(xs[:k]), 8.0)
    assert np.all(ys[:k] == ys[0]) and ys[k] - ys[0] == 8.0  # row by row
    a = gen.sample(Chunk(index=3, start=30, count=10, seed=1))
    b = gen.sample(Chunk(index=0, start=30, count=10, seed=99))
    assert a["xcoords"].tobytes() == b["xcoords"].tobytes()
    np.testing.assert_array_equal(a["xcoords"], xs[30:40])
    # dose calibration over the whole raster: its mean noise-free total is the dose exactly
    lam = gen.photon_scale2(1e3) * gen.forward.patches(xs, ys)[1]
    assert lam.mean() == pytest.approx(1e3, rel=1e-9)
    with pytest.raises(
        SpecError, match=r"n_samples must be <= 81: the raster .* has 81 positions \(asked for 82\)"
    ):
        gen.sample(Chunk(index=8, start=80, count=2, seed=1))


def test_file_scan_uses_the_npz_coordinates(tmp_path: Path) -> None:
    npz = tmp_path / "fly.npz"
    rng = np.random.default_rng(3)
    xc, yc = rng.uniform(16, 80, 40), rng.uniform(16, 80, 40)
    np.savez(
        npz,
        objectGuess=random_object(96),
        probeGuess=default_probe(32),
        xcoords=xc,
        ycoords=yc,
        diff3d=np.zeros((40, 32, 32), np.float32),
    )
    gen = PtychoGenerator(PtychoParams(N=32, base_npz=str(npz), scan="file", doses=(500.0,)))
    s = gen.sample(Chunk(index=1, start=10, count=5, seed=0))
    np.testing.assert_array_equal(s["xcoords"], xc[10:15])
    np.testing.assert_array_equal(s["ycoords"], yc[10:15])
    assert gen.input_files() == [npz]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"probeGuess": "probe"}, r"missing key\(s\) objectGuess \(has: probeGuess\)"),
        ({"objectGuess": "obj"}, r"missing key\(s\) probeGuess"),
        (
            {"objectGuess": "obj", "probeGuess": "probe16"},
            r"probeGuess is \(16, 16\), params.N asks",
        ),
        ({"objectGuess": "rect", "probeGuess": "probe"}, r"objectGuess must be a square 2-D array"),
        ({"objectGuess": "obj", "probeGuess": "probe", "xcoords": "x40"}, "has xcoords but not"),
        (
            {"objectGuess": "obj", "probeGuess": "probe", "xcoords": "x40", "ycoords": "y30"},
            r"xcoords \(40,\) and ycoords \(30,\) must be 1-D of equal length",
        ),
    ],
)
def test_bad_base_npz_gives_a_clear_error(tmp_path: Path, arrays: dict, message: str) -> None:
    values = {
        "obj": random_object(96),
        "rect": np.ones((96, 80), np.complex64),
        "probe": default_probe(32),
        "probe16": default_probe(16),
        "x40": np.full(40, 40.0),
        "y30": np.full(30, 40.0),
    }
    npz = tmp_path / "bad.npz"
    np.savez(npz, **{k: values[v] for k, v in arrays.items()})
    with pytest.raises(UserError, match=message) as e:
        load_base_npz(npz, 32)
    assert "\n" not in str(e.value)


def test_a_base_without_signal_or_positions_is_refused(tmp_path: Path) -> None:
    npz = tmp_path / "dark.npz"
    np.savez(npz, objectGuess=np.zeros((96, 96), np.complex64), probeGuess=default_probe(32))
    gen = PtychoGenerator(PtychoParams(N=32, base_npz=str(npz)))
    with pytest.raises(UserError, match="the exit wave has no energy on this scan"):
        gen.fields()
    np.savez(
        npz,
        objectGuess=random_object(96),
        probeGuess=default_probe(32),
        xcoords=np.zeros(0),
        ycoords=np.zeros(0),
    )
    with pytest.raises(UserError, match="xcoords/ycoords are empty"):
        load_base_npz(npz, 32, need_coords=True)
    np.savez(
        npz,
        objectGuess=random_object(96),
        probeGuess=default_probe(32),
        xcoords=np.array([50.0, 97.0]),
        ycoords=np.array([50.0, 50.0]),
    )
    gen = PtychoGenerator(PtychoParams(N=32, base_npz=str(npz), scan="file"))
    with pytest.raises(UserError, match=r"x coordinates must lie in \[0, 96\]"):
        gen.sample(Chunk(index=0, start=0, count=2, seed=0))


def test_params_are_validated() -> None:
    with pytest.raises(SpecError, match=r"params.doses must be > 0"):
        PtychoParams(doses=(1e3, -5.0))
    with pytest.raises(SpecError, match=r"params.doses must be distinct"):
        PtychoParams(doses=(1e3, 1e3))
    with pytest.raises(SpecError, match=r"params.N must be even"):
        PtychoParams(N=63)
    with pytest.raises(SpecError, match=r"params.overlap must be in \[0, 0.95\]"):
        PtychoParams(overlap=1.0)
    with pytest.raises(SpecError, match=r'scan = "file" needs params\.base_npz'):
        PtychoParams(scan="file")
    with pytest.raises(SpecError, match=r"params.sampler must be one of"):
        build_params(PtychoParams, {"sampler": "gauss"})
    with pytest.raises(SpecError, match=r"params.fft must be one of"):
        build_params(PtychoParams, {"fft": "mkl"})
    with pytest.raises(ValueError, match=r"FFT backend must be one of"):
        Forward(random_object(80, 3), default_probe(32), fft="numpy")
    assert dose_tag(1e5) == "dose_100000" and dose_tag(2.5e3) == "dose_2500"
    assert dose_tag(0.5) == "dose_0.5"


def test_default_object_and_probe_are_structured_and_fixed() -> None:
    obj, probe = default_object(256), default_probe(64)
    assert obj.dtype == np.complex64 and obj.shape == (256, 256)
    assert obj.tobytes() == default_object(256).tobytes()  # independent of any run seed
    amp, phase = np.abs(obj), np.angle(obj)
    assert 0.05 <= amp.min() and amp.max() <= 1.0 + 1e-6 and amp.std() > 0.05
    assert phase.std() > 0.2
    # the Siemens star: around its centre, phase alternates between sectors (36 spokes)
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    ring = phase[(128 + 25 * np.sin(theta)).astype(int), (128 + 25 * np.cos(theta)).astype(int)]
    crossings = np.count_nonzero(np.diff(np.sign(ring - ring.mean())))
    assert 60 <= crossings <= 80
    # a focused probe: compact, with curved phase fronts, little at the window edge
    inten = np.abs(probe) ** 2
    r = np.hypot(*(np.mgrid[0:64, 0:64] - 32))
    assert inten[r < 20].sum() > 0.9 * inten.sum() and inten[r > 30].max() < 0.02 * inten.max()
    ph = np.unwrap(np.angle(probe[32, 20:45]))
    assert np.ptp(ph) > 1.0  # defocus: the phase varies across the spot


# --- ePIE: forward model, positions and shifts agree ----------------------------------------------


def bilinear_taps(x: float, y: float, n: int) -> list[tuple[int, int, float]]:
    """(row0, col0, weight) of the 4 integer-shifted n x n windows whose sum is the patch."""
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    r, c = y0 - n // 2, x0 - n // 2
    return [
        (r, c, (1 - fy) * (1 - fx)),
        (r, c + 1, (1 - fy) * fx),
        (r + 1, c, fy * (1 - fx)),
        (r + 1, c + 1, fy * fx),
    ]


def epie_errors(
    amplitudes: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    probe: np.ndarray,
    truth: np.ndarray,
    iterations: int,
) -> list[float]:
    """Object error after each ePIE iteration (known probe), written independently of the
    generator: numpy FFTs, explicit bilinear taps and their adjoint."""
    n = probe.shape[0]
    obj = np.ones_like(truth, dtype=np.complex128)
    p = probe.astype(np.complex128)
    step = p.conj() / (np.abs(p) ** 2).max()
    cover = np.zeros(truth.shape)
    for x, y in zip(xs, ys):
        for r, c, w in bilinear_taps(x, y, n):
            cover[r : r + n, c : c + n] += w * np.abs(p) ** 2
    area = cover > 0.5 * cover.max()
    errors = []
    for _ in range(iterations):
        for a, x, y in zip(amplitudes, xs, ys):
            taps = bilinear_taps(x, y, n)
            patch = sum(w * obj[r : r + n, c : c + n] for r, c, w in taps)
            psi = patch * p
            f = np.fft.fftshift(np.fft.fft2(psi, norm="ortho"))
            f = a * np.exp(1j * np.angle(f))
            delta = step * (np.fft.ifft2(np.fft.ifftshift(f), norm="ortho") - psi)
            for r, c, w in taps:
                obj[r : r + n, c : c + n] += w * delta
        o, t = obj[area], truth[area].astype(np.complex128)
        g = np.vdot(o, t) / np.vdot(o, o)  # the global phase is not measurable
        errors.append(float(np.linalg.norm(t - g * o) / np.linalg.norm(t)))
    return errors


def test_epie_from_generated_patterns_lowers_the_object_error_every_iteration(
    tmp_path: Path,
) -> None:
    truth = default_object(96)
    npz = tmp_path / "epie.npz"
    np.savez(npz, objectGuess=truth, probeGuess=default_probe(32))
    # 1e12 photons per pattern: Poisson noise ~1e-6 of the amplitude, effectively noise-free
    gen = PtychoGenerator(PtychoParams(N=32, base_npz=str(npz), doses=(1e12,)))
    chunk = Chunk(index=0, start=0, count=120, seed=3)
    inputs = gen.sample(chunk)
    out = gen.compute(inputs, chunk, CPU)
    amps = out["dose_1000000000000/diffraction"].astype(np.float64)
    xs, ys = inputs["xcoords"], inputs["ycoords"]
    errors = epie_errors(amps, xs, ys, gen.base.probe, truth, iterations=10)
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.5 * errors[0], errors
    # control: with x and y swapped the same patterns do not fit the object
    swapped = epie_errors(amps, ys, xs, gen.base.probe, truth, iterations=10)
    assert swapped[-1] > 2 * errors[-1], (errors[-1], swapped[-1])


# --- GPU path -------------------------------------------------------------------------------------


def _cupy_or_skip() -> Any:
    cupy = pytest.importorskip("cupy")
    try:
        if not cupy.is_available():
            pytest.skip("no CUDA device")
    except Exception:  # a broken CUDA install
        pytest.skip("cupy cannot reach a CUDA device")
    return cupy


@pytest.mark.gpu
def test_gpu_forward_matches_cpu(tmp_path: Path) -> None:
    cupy = _cupy_or_skip()
    gen = small_generator(tmp_path, doses=[1e4])
    chunk = Chunk(index=1, start=100, count=100, seed=2)
    inputs = gen.sample(chunk)
    p_cpu, i_cpu, e_cpu = gen.forward.run(inputs["xcoords"], inputs["ycoords"])
    p_gpu, i_gpu, e_gpu = gen.forward.run_gpu(cupy, inputs["xcoords"], inputs["ycoords"])
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-6)
    np.testing.assert_allclose(i_gpu, i_cpu, rtol=1e-4, atol=1e-6 * i_cpu.max())
    np.testing.assert_allclose(e_gpu, e_cpu, rtol=1e-5)
    out = gen.compute(inputs, chunk, Device("gpu", cupy))
    assert out["dose_10000/diffraction"].dtype == np.float32
    lam = gen.photon_scale2(1e4) * out["exit_energy"].sum()
    assert abs(out["dose_10000/photons"].sum() - lam) < 5 * math.sqrt(lam)
