"""Ptycho verify judges a file as a third party: from the stored objectGuess, probeGuess,
positions and amplitudes, through a numpy model that shares no code with the generator, on rows
spread over the whole file. The corruptions below are the ones a user made by hand; each must
make ``hpcgen verify`` exit 1 naming its check, and a clean file must pass. Bad base NPZ inputs
give one line on stderr and exit 2."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from helpers import run_hpcgen

from hpcgen.errors import UserError
from hpcgen.generators.ptycho import reference
from hpcgen.generators.ptycho.base_data import default_probe, load_base_npz
from hpcgen.generators.ptycho.file_checks import SAMPLE_ROWS, sample_rows
from hpcgen.generators.ptycho.forward import expected_energy_uniform
from hpcgen.verify import verify_file

# N = 32 on the built-in 128 px object; dose 200 keeps every count small (the worst pixel holds
# a few tens of photons), the regime where a 0.1 % amplitude error moves no count by 1/2
SPEC = """generator = "ptycho"
n_samples = 400
seed = 11
chunk_size = 100
output = "p.h5"

[params]
N = 32
object_size = 128
doses = [200, 1e5]
"""

NEW_CHECKS = (
    "objectGuess, probeGuess = the run's base",
    "amplitude_scale^2 * mean energy = dose",
    "Y = objectGuess patch at (x, y), sampled rows",
    "dose_200: counts fit the recomputed patterns, sampled rows",
    "dose_100000: counts fit the recomputed patterns, sampled rows",
)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ptycho_verify")
    (d / "p.toml").write_text(SPEC)
    run_hpcgen("run", d / "p.toml", "--out", d / "p.h5", cwd=d, check=True)
    return d / "p.h5"


def corrupted(clean: Path, tmp_path: Path, edit: Callable[[h5py.File], None]) -> Path:
    bad = tmp_path / "bad.h5"
    shutil.copy(clean, bad)
    with h5py.File(bad, "r+") as f:
        edit(f)
    return bad


def results(path: Path) -> dict[str, bool]:
    """{check name: passed} of an in-process verify."""
    _, report = verify_file(path)
    return {c["name"]: c["passed"] for c in report["checks"]}


# --- the user's reports through the CLI -----------------------------------------------------------


def test_clean_file_passes_every_check_including_the_independent_ones(clean: Path) -> None:
    proc = run_hpcgen("verify", clean)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in NEW_CHECKS:
        assert f"PASS  {name}" in proc.stdout, proc.stdout
    assert f"{min(SAMPLE_ROWS, 400)} random rows of 400" in proc.stdout


def test_diffraction_times_1_001_at_one_dose_fails_counts_are_integers(
    clean: Path, tmp_path: Path
) -> None:
    with h5py.File(clean, "r") as f:
        d = f["dose_200/diffraction"]
        counts = (d[...].astype(np.float64) * d.attrs["amplitude_scale"]) ** 2
    # the geometry this test is about: 0.2 % moves no count across a half-integer
    assert 0.002 * counts.max() < 0.5

    def scale(f: h5py.File) -> None:
        d = f["dose_200/diffraction"]
        d[...] = d[...] * np.float32(1.001)

    proc = run_hpcgen("verify", corrupted(clean, tmp_path, scale))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  dose_200: counts are integers" in proc.stdout, proc.stdout
    assert "PASS  dose_100000: counts are integers" in proc.stdout, proc.stdout


def test_conjugated_object_guess_fails(clean: Path, tmp_path: Path) -> None:
    with h5py.File(clean, "r") as f:
        rows = np.arange(0, 400, 40)
        y, probe = f["Y"][rows].astype(np.complex128), f["probeGuess"][...]
    # the test geometry distinguishes O from conj(O): the probe is complex and not symmetric
    # enough for |FFT(conj(Y) P)| to equal |FFT(Y P)| (they would for a real object)
    a = np.abs(np.fft.fft2(y * probe)) ** 2
    b = np.abs(np.fft.fft2(np.conj(y) * probe)) ** 2
    assert np.abs(a - b).sum() > 0.2 * a.sum()

    def conjugate(f: h5py.File) -> None:
        f["objectGuess"][...] = np.conj(f["objectGuess"][...])

    proc = run_hpcgen("verify", corrupted(clean, tmp_path, conjugate))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for name in NEW_CHECKS[:1] + NEW_CHECKS[2:]:
        assert f"FAIL  {name}" in proc.stdout, proc.stdout
    assert "PASS  Y = object patch at (x, y)" in proc.stdout, proc.stdout  # rows untouched


# --- more corruptions, in process ---------------------------------------------------------------


def test_conjugated_object_and_patches_fail_on_the_diffraction_alone(
    clean: Path, tmp_path: Path
) -> None:
    """objectGuess and Y conjugated together agree with each other; the stored diffraction
    (made from O, not conj(O)) no longer fits the pattern recomputed from them."""

    def conjugate_both(f: h5py.File) -> None:
        f["objectGuess"][...] = np.conj(f["objectGuess"][...])
        f["Y"][...] = np.conj(f["Y"][...])

    res = results(corrupted(clean, tmp_path, conjugate_both))
    assert res["Y = objectGuess patch at (x, y), sampled rows"]
    assert not res["dose_200: counts fit the recomputed patterns, sampled rows"]
    assert not res["dose_100000: counts fit the recomputed patterns, sampled rows"]


def test_a_wrong_amplitude_scale_attribute_fails_the_calibration(
    clean: Path, tmp_path: Path
) -> None:
    def rescale_attr(f: h5py.File) -> None:
        d = f["dose_100000/diffraction"]
        d.attrs["amplitude_scale"] = d.attrs["amplitude_scale"] * 1.001

    res = results(corrupted(clean, tmp_path, rescale_attr))
    assert not res["amplitude_scale^2 * mean energy = dose"]
    assert res["dose_100000: counts are integers"]  # the rows are untouched


def test_doubled_counts_fail_the_dose_from_the_observed_photons(
    clean: Path, tmp_path: Path
) -> None:
    """Every count doubled, photons updated to match: still integer counts, but the mean photon
    count is twice the dose."""

    def double(f: h5py.File) -> None:
        d = f["dose_100000/diffraction"]
        s = d.attrs["amplitude_scale"]
        c = np.rint((d[...].astype(np.float64) * s) ** 2)
        d[...] = (np.sqrt(2 * c) / s).astype(np.float32)
        f["dose_100000/photons"][...] = (2 * c).sum(axis=(1, 2)).astype(np.int64)

    res = results(corrupted(clean, tmp_path, double))
    assert res["dose_100000: counts are integers"]
    assert not res["dose_100000: mean photons per pattern = dose"]
    assert res["dose_200: mean photons per pattern = dose"]


# --- the sample and the independent model ---------------------------------------------------------


def test_sampled_rows_are_spread_over_the_written_chunks() -> None:
    done = np.ones(100, bool)
    done[[3, 50, 99]] = False  # chunks 3, 50 and the last one (short) not written
    reader = SimpleNamespace(done=done, spec=SimpleNamespace(chunk_size=100), n_rows=9_950)
    rows = sample_rows(reader, k=256, seed=1)
    assert len(rows) == 256 and len(np.unique(rows)) == 256 and np.all(np.diff(rows) > 0)
    assert done[rows // 100].all() and rows.max() < 9_900
    assert rows.min() < 300 and rows.max() > 9_600  # the whole file, not the first rows
    np.testing.assert_array_equal(rows, sample_rows(reader, k=256, seed=1))
    small = SimpleNamespace(done=np.ones(2, bool), spec=SimpleNamespace(chunk_size=5), n_rows=7)
    np.testing.assert_array_equal(sample_rows(small, k=256), np.arange(7))


def random_object(m: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.3, 1, (m, m)) * np.exp(1j * rng.uniform(-2, 2, (m, m)))).astype(
        np.complex64
    )


@pytest.mark.parametrize("strip", [3, 256])
def test_reference_dose_calibration_equals_the_generators(
    strip: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two methods, one integral: Gauss-Legendre per cell (verify) and the mass matrix with a
    summed-area table (generator), in strips of 3 cell rows or all at once."""
    monkeypatch.setattr(reference, "STRIP", strip)
    obj, probe = random_object(45), default_probe(32)
    got = reference.uniform_mean_energy(obj, probe)
    assert got == pytest.approx(expected_energy_uniform(obj, probe), rel=1e-12)


def test_reference_patches_and_far_field_follow_the_conventions() -> None:
    n, m = 8, 20
    obj = random_object(m)
    padded = reference.pad_object(obj, n)
    # integer centre (x, y) = (7, 9): patch[i, j] = object[9 + i - 4, 7 + j - 4]
    patch = reference.object_patches(padded, n, np.array([7.0]), np.array([9.0]))[0]
    np.testing.assert_array_equal(patch, obj[5:13, 3:11].astype(np.complex128))
    # a linear object is reproduced exactly at a sub-pixel shift
    yy, xx = np.mgrid[0:m, 0:m]
    ramp = (2 * yy + 3j * xx).astype(np.complex64)
    shifted = reference.pad_object(ramp, n)
    p = reference.object_patches(shifted, n, np.array([8.25]), np.array([9.5]))[0]
    i, j = np.mgrid[0:n, 0:n]
    np.testing.assert_allclose(p, 2 * (9.5 + i - 4) + 3j * (8.25 + j - 4), atol=1e-12)
    # outside the object: zeros
    edge = reference.object_patches(padded, n, np.array([0.0]), np.array([0.0]))[0]
    assert not edge[:4].any() and not edge[:, :4].any()
    # far field: zero frequency at [N/2, N/2], Parseval
    flat = reference.far_field(np.ones((1, n, n)))[0]
    assert flat[n // 2, n // 2] == pytest.approx(n * n) and flat.sum() == pytest.approx(n * n)


# --- bad inputs -----------------------------------------------------------------------------------


def run_with_base(tmp_path: Path, base: str) -> tuple[int, str, bool]:
    spec = tmp_path / "p.toml"
    spec.write_text(SPEC.replace("doses = [200, 1e5]", f'doses = [200]\nbase_npz = "{base}"'))
    proc = run_hpcgen("run", spec, "--out", tmp_path / "x.h5", cwd=tmp_path)
    return proc.returncode, proc.stderr, (tmp_path / "x.h5").exists()


def test_cli_refuses_an_object_of_strings_in_one_line(tmp_path: Path) -> None:
    npz = tmp_path / "strings.npz"
    np.savez(npz, objectGuess=np.full((96, 96), "a"), probeGuess=default_probe(32))
    rc, err, made = run_with_base(tmp_path, str(npz))
    assert rc == 2 and not made, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert "objectGuess must hold real or complex numbers, got dtype <U1" in err


def test_cli_refuses_a_missing_base_npz_in_one_line(tmp_path: Path) -> None:
    rc, err, made = run_with_base(tmp_path, str(tmp_path / "nowhere.npz"))
    assert rc == 2 and not made, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert "base NPZ not found" in err and "nowhere.npz" in err


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"objectGuess": np.ones((96, 96), bool)}, "objectGuess must hold real or complex"),
        ({"probeGuess": np.full((32, 32), b"x")}, "probeGuess must hold real or complex"),
        ({"objectGuess": np.full((96, 96), 1e300)}, "objectGuess has values beyond the complex64"),
        ({"xcoords": np.array(["1"]), "ycoords": np.array([1.0])}, "xcoords must hold real"),
        ({"xcoords": np.ones(2) + 1j, "ycoords": np.ones(2)}, "xcoords must hold real"),
    ],
)
def test_base_npz_arrays_must_be_numbers(tmp_path: Path, arrays: dict, message: str) -> None:
    base = {"objectGuess": random_object(96), "probeGuess": default_probe(32)}
    npz = tmp_path / "bad.npz"
    np.savez(npz, **{**base, **arrays})
    with pytest.raises(UserError, match=message) as e:
        load_base_npz(npz, 32)
    assert "\n" not in str(e.value)


def test_base_npz_of_real_integers_is_accepted(tmp_path: Path) -> None:
    npz = tmp_path / "ints.npz"
    coords = np.arange(40, 50)
    np.savez(
        npz,
        objectGuess=np.ones((96, 96), np.int16),
        probeGuess=np.ones((32, 32)),
        xcoords=coords,
        ycoords=coords,
    )
    base = load_base_npz(npz, 32)
    assert base.object.dtype == np.complex64 and base.probe.dtype == np.complex64
    assert base.xcoords is not None and base.xcoords.dtype == np.float64
