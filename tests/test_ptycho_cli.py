"""Ptycho through the real CLI: rank invariance, verify (passing and failing), data001 export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_same_data, run_hpcgen

from hpcgen.generators.ptycho.export import validate_data001

SPEC = """generator = "ptycho"
n_samples = 600
seed = 3
chunk_size = 128
output = "p.h5"

[params]
N = 32
object_size = 128
doses = [1e3, 1e5]
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The same spec on 1, 2 and 3 ranks (5 chunks, the last one short)."""
    d = tmp_path_factory.mktemp("ptycho")
    spec = d / "p.toml"
    spec.write_text(SPEC)
    out = {}
    for ranks in (1, 2, 3):
        out[ranks] = d / f"p{ranks}.h5"
        run_hpcgen("run", spec, "--out", out[ranks], ranks=ranks, cwd=d, check=True)
    return out


def test_same_data_for_1_2_3_ranks(runs: dict[int, Path]) -> None:
    assert_same_data(runs[1], runs[2])
    assert_same_data(runs[1], runs[3])
    with h5py.File(runs[2], "r") as f:
        assert f["Y"].dtype == np.complex64 and f["Y"].shape == (600, 32, 32)
        assert f["dose_1000/diffraction"].dtype == np.float32
        assert f["objectGuess"].shape == (128, 128) and f["probeGuess"].shape == (32, 32)
        scale = f["dose_100000/diffraction"].attrs["amplitude_scale"]
        counts = (f["dose_100000/diffraction"][:10].astype(np.float64) * scale) ** 2
        np.testing.assert_allclose(counts.sum(axis=(1, 2)), f["dose_100000/photons"][:10])
        assert list(f.attrs["ptycho_dose_groups"]) == ["dose_1000", "dose_100000"]


def test_verify_passes(runs: dict[int, Path]) -> None:
    proc = run_hpcgen("verify", runs[2])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in (
        "dose_1000: variance = mean",
        "dose_100000: mean photons per pattern = dose",
        "train/test separated in y",
        "Y = object patch at (x, y)",
    ):
        assert f"PASS  {name}" in proc.stdout, proc.stdout


def scale_pattern(f: h5py.File) -> None:
    """Pattern 7 at dose 1e3 times 1.2: its counts are no longer integers."""
    d = f["dose_1000/diffraction"]
    d[7] = d[7] * 1.2


def overdisperse(f: h5py.File) -> None:
    """Counts c -> 2 Binomial(c, 1/2): the mean is kept, the variance doubles (not Poisson)."""
    d = f["dose_100000/diffraction"]
    s = d.attrs["amplitude_scale"]
    c = np.rint((d[...].astype(np.float64) * s) ** 2).astype(np.int64)
    c2 = 2 * np.random.default_rng(0).binomial(c, 0.5)
    d[...] = (np.sqrt(c2) / s).astype(np.float32)
    f["dose_100000/photons"][...] = c2.sum(axis=(1, 2))


def move_position(f: h5py.File) -> None:
    """Position 3 moved by half a pixel: it no longer matches its patch."""
    f["xcoords"][3] = f["xcoords"][3] + 0.5


def test_verify_fails_on_corrupted_data(runs: dict[int, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    shutil.copy(runs[1], bad)
    with h5py.File(bad, "r+") as f:
        for corrupt in (scale_pattern, overdisperse, move_position):
            corrupt(f)
    proc = run_hpcgen("verify", bad)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for failing in (
        "dose_1000: counts are integers",
        "dose_100000: variance = mean",
        "Y = object patch at (x, y)",
    ):
        assert f"FAIL  {failing}" in proc.stdout, proc.stdout
    # each corruption trips only its own checks
    assert "PASS  dose_1000: variance = mean" in proc.stdout, proc.stdout
    assert "PASS  dose_100000: counts are integers" in proc.stdout, proc.stdout


def test_export_data001(runs: dict[int, Path], tmp_path: Path) -> None:
    out = tmp_path / "d001"
    proc = run_hpcgen("export", runs[3], "--format", "data001", "--out", out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert [d["group"] for d in manifest["doses"]] == ["dose_1000", "dose_100000"]
    assert manifest["seeds"]["seed"] == 3
    with h5py.File(runs[3], "r") as f:
        y = f["ycoords"][...]
        photons = f["dose_1000/photons"][...]
        diffraction = f["dose_1000/diffraction"][...]
    split = y.min() + 0.5 * (y.max() - y.min())
    train = y < split
    for tag in ("dose_1000", "dose_100000"):
        for name in ("train", "test"):
            assert validate_data001(out / tag / f"patched_{name}.npz") == []
    with (
        np.load(out / "dose_1000/patched_train.npz") as a,
        np.load(out / "dose_1000/patched_test.npz") as b,
    ):
        assert a["diffraction"].dtype == np.float32 and a["Y"].dtype == np.complex64
        assert a["xcoords"].dtype == np.float64 and a["objectGuess"].shape == (128, 128)
        assert len(a["xcoords"]) + len(b["xcoords"]) == 600
        assert a["ycoords"].max() < split <= b["ycoords"].min()
        assert not set(a["scan_index"]) & set(b["scan_index"])
        np.testing.assert_array_equal(a["diffraction"], diffraction[train])
        np.testing.assert_array_equal(b["scan_index"], np.flatnonzero(~train))
    stats = manifest["doses"][0]["splits"]["train"]
    assert stats["n_patterns"] == int(train.sum())
    assert stats["photons_mean"] == pytest.approx(photons[train].mean())
    # the standalone checker agrees, and catches a train/test pair that shares a position
    check = run_hpcgen("data001-check", out)
    assert check.returncode == 0 and "PASS  " + str(out / "dose_1000") in check.stdout
    with np.load(out / "dose_1000/patched_test.npz") as b:
        leaked = {k: b[k] for k in b.files}
    with np.load(out / "dose_1000/patched_train.npz") as a:
        for key in ("xcoords", "ycoords", "xcoords_start", "ycoords_start"):
            leaked[key][0] = a[key][0]
    np.savez(out / "dose_1000/patched_test.npz", **leaked)
    check = run_hpcgen("data001-check", out / "dose_1000")
    assert check.returncode == 1 and "1 scan positions in both train and test" in check.stdout


def test_validate_data001_reports_contract_violations(tmp_path: Path) -> None:
    good = {
        "diffraction": np.ones((4, 8, 8), np.float32),
        "Y": np.ones((4, 8, 8), np.complex64),
        "objectGuess": np.ones((20, 20), np.complex64),
        "probeGuess": np.ones((8, 8), np.complex64),
        "xcoords": np.arange(4.0),
        "ycoords": np.arange(4.0),
        "scan_index": np.arange(4),
    }
    good["diff3d"] = good["diffraction"]
    good["xcoords_start"], good["ycoords_start"] = good["xcoords"], good["ycoords"]
    good["_metadata"] = np.array(json.dumps({"physics_parameters": {"nphotons": 1e3, "N": 8}}))
    cases = {
        "missing key Y": {k: v for k, v in good.items() if k != "Y"},
        "diffraction is float64": {**good, "diffraction": np.ones((4, 8, 8))},
        "first-axis lengths differ": {**good, "xcoords": np.arange(5.0)},
        "diffraction has 1 negative amplitudes": {
            **good,
            "diffraction": np.where(np.arange(256).reshape(4, 8, 8) == 5, -1, 1).astype(np.float32),
        },
        "diffraction has 1 non-finite values": {
            **good,
            "diffraction": np.where(np.arange(256).reshape(4, 8, 8) == 5, np.nan, 1).astype(
                np.float32
            ),
        },
    }
    p = tmp_path / "ok.npz"
    np.savez(p, **good)
    assert validate_data001(p) == []
    for expected, arrays in cases.items():
        np.savez(p, **arrays)
        assert any(expected in msg for msg in validate_data001(p)), (expected, validate_data001(p))


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, objectGuess=np.ones((64, 64), np.complex64))
    spec = tmp_path / "p.toml"
    spec.write_text(SPEC + f'base_npz = "{bad}"\n')
    proc = run_hpcgen("run", spec, "--out", tmp_path / "x.h5", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "missing key(s) probeGuess (has: objectGuess)" in proc.stderr
    spec.write_text(SPEC.replace("N = 32", 'N = 32\nscan = "raster"'))
    proc = run_hpcgen("run", spec, "--out", tmp_path / "r.h5", cwd=tmp_path)
    assert proc.returncode == 2 and "n_samples must be <= 121" in proc.stderr
    assert not (tmp_path / "r.h5").exists()  # refused before any output is created
    proc = run_hpcgen("plan", spec)
    assert proc.returncode == 2 and "n_samples must be <= 121" in proc.stderr
