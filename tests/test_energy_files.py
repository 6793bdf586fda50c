"""Energy generator through the real CLI: rank-count invariance, The Well layout, verify, catalog,
plot and the training reader on files written by ``hpcgen run``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_same_data, run_hpcgen

from hpcgen.generators.energy import maps, well
from hpcgen.generators.energy.generator import EnergyGenerator
from hpcgen.generators.energy.params import EnergyParams
from hpcgen.generators.energy.plot import plot_file
from hpcgen.generators.energy.reader import EnergyAtlas
from hpcgen.io.reader import Reader

SPEC = """
generator = "energy"
n_samples = 5
seed = 3
chunk_size = 2
output = "unused.h5"
dtype = "float32"

[params]
domain = "{domain}"
n_steps = 4
height = {h}
width = {w}
"""


def write_spec(directory: Path, domain: str = "plasma_physics", h: int = 48, w: int = 48) -> Path:
    p = directory / f"{domain}_{h}x{w}.toml"
    p.write_text(SPEC.format(domain=domain, h=h, w=w))
    return p


def run(spec: Path, out: Path, ranks: int = 0, *extra: str) -> Path:
    run_hpcgen("run", spec, "--out", out, "--quiet", *extra, ranks=ranks, check=True)
    return out


@pytest.fixture(scope="module")
def atlas_dir(tmp_path_factory) -> Path:
    """Two domains (one 2:3) written by the real CLI into one directory (plasma_physics under
    ``mpiexec -n 1``: the one-rank reference of the rank-invariance test)."""
    d = tmp_path_factory.mktemp("atlas")
    run(write_spec(d, "plasma_physics"), d / "energy_plasma_physics.h5", 1)
    run(write_spec(d, "fluid_dynamics", 32, 48), d / "energy_fluid_dynamics.h5")
    for spec in d.glob("*.toml"):
        spec.unlink()
    return d


def test_same_data_for_one_two_and_three_ranks(atlas_dir, tmp_path):
    spec = write_spec(tmp_path)  # the spec of the atlas' plasma_physics file, written by 1 rank
    one = atlas_dir / "energy_plasma_physics.h5"
    for n in (2, 3):
        assert_same_data(one, run(spec, tmp_path / f"r{n}.h5", n))


def test_written_file_follows_the_well_layout(atlas_dir):
    paths = sorted(atlas_dir.glob("*.h5"))
    assert paths
    for path in paths:
        with h5py.File(path, "r") as h5:
            assert well.check_layout(h5) == [], path
            assert h5.attrs["n_trajectories"] == h5["t0_fields/energy"].shape[0]


def test_layout_checker_accepts_the_layout_and_names_each_violation(atlas_dir, tmp_path):
    path = tmp_path / "f.h5"
    shutil.copy(atlas_dir / "energy_plasma_physics.h5", path)
    gen = EnergyGenerator(EnergyParams(n_steps=4, height=48, width=48))
    with h5py.File(path, "r+") as h5:
        assert well.check_layout(h5) == []
        assert h5.attrs["n_trajectories"] == 5 == h5["t0_fields/energy"].shape[0]
        assert list(h5["dimensions"].attrs["spatial_dims"]) == ["x", "y"]
        assert h5["t0_fields/energy"].dtype == np.float32
        assert h5["t0_fields/energy"].shape == (5, 4, 48, 48)
        assert list(h5["t0_fields/energy"].attrs["dim_varying"]) == [True, True]
        assert h5["boundary_conditions/x_periodic"].attrs["bc_type"] == "periodic"
        h5.attrs["n_trajectories"] = 6
        assert (
            "t0_fields/energy: shape (5, 4, 48, 48), expected (6, 4, 48, 48) from its flags"
            in well.check_layout(h5)
        )
        h5.attrs["n_trajectories"] = 5
        del h5["t1_fields"].attrs["field_names"]
        assert well.check_layout(h5) == ["t1_fields: missing attribute field_names"]
        h5["t1_fields"].attrs["field_names"] = []
        h5["scalars/entropy"].attrs["time_varying"] = False
        assert well.check_layout(h5) == [
            "scalars/entropy: shape (5, 4), expected (5,) from its flags"
        ]
        h5["scalars/entropy"].attrs["time_varying"] = True
        del h5["dimensions/y"]
        assert well.check_layout(h5) == ["dimensions: missing dataset y"]
        del h5.attrs["grid_type"]
        assert well.check_layout(h5) == ["root: missing attribute grid_type"]
        h5.attrs["grid_type"] = "cartesian"
        h5["dimensions/y"] = np.arange(48, dtype=np.float32)
        for k, v in {"sample_varying": False, "time_varying": False}.items():
            h5["dimensions/y"].attrs[k] = v
    with Reader(path) as r:
        line, plain = gen.file_checks(r)
    assert line.passed and line.value == "conforms"
    assert plain.passed and plain.value == "plain"


def test_verify_passes_and_catches_broken_conservation(atlas_dir, tmp_path):
    good = run_hpcgen(
        "verify", atlas_dir / "energy_fluid_dynamics.h5", "--report", tmp_path / "good.json"
    )
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads((tmp_path / "good.json").read_text())
    names = {c["name"]: c for c in report["checks"]}
    assert names["maps square or 2:3"]["value"] == "32 x 48"
    assert "entropy decrease rate (reported)" in names

    bad = tmp_path / "bad.h5"
    shutil.copy(atlas_dir / "energy_plasma_physics.h5", bad)
    with h5py.File(bad, "r+") as h5:
        e = h5["t0_fields/energy"]
        e[1, 2] = e[1, 2] * np.float32(1.1)  # trajectory 1, frame 2 gains 10 %
        e[3, 1, 0, 0] = -1.0
    res = run_hpcgen("verify", bad, "--report", tmp_path / "bad.json")
    assert res.returncode == 1
    checks = {c["name"]: c for c in json.loads((tmp_path / "bad.json").read_text())["checks"]}
    conservation = checks["energy conserved at every step"]
    assert not conservation["passed"]
    assert conservation["value"] == "max error 0.1"
    # two frames off: the 10 % one and the one with a pixel set to -1 (1 / 2304 of its total)
    assert conservation["detail"].startswith(
        "worst: trajectory 1 frame 2; 2 frames of 2 trajectories beyond 4.77e-07"
    )
    assert not checks["no negative energy"]["passed"]
    assert checks["no negative energy"]["value"] == "1 pixels"


def test_catalog_hashes_sizes_and_domain_statistics(atlas_dir):
    res = run_hpcgen("catalog", atlas_dir)
    assert res.returncode == 0, res.stderr
    cat = json.loads((atlas_dir / "catalog.json").read_text())
    paths = sorted(p for p in atlas_dir.rglob("*") if p.is_file() and p.name != "catalog.json")
    assert [f["path"] for f in cat["files"]] == [p.relative_to(atlas_dir).as_posix() for p in paths]
    for entry, p in zip(cat["files"], paths):
        assert entry["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
        assert entry["size_bytes"] == p.stat().st_size
    assert cat["total_size_bytes"] == sum(p.stat().st_size for p in paths)
    assert sorted(cat["domains"]) == ["fluid_dynamics", "plasma_physics"]
    with h5py.File(atlas_dir / "energy_fluid_dynamics.h5", "r") as h5:
        e = h5["t0_fields/energy"][...].astype(np.float64)
    st = cat["domains"]["fluid_dynamics"]
    assert st["mean"] == pytest.approx(1.0, rel=1e-5)  # energy conserved at unit mean
    assert st["variance"] == pytest.approx(e.var(), rel=1e-9)
    assert st["entropy_mean"] == pytest.approx(maps.entropy(e).mean(), rel=1e-6)
    assert st["n_frames"] == 5 * 4 and st["n_trajectories"] == 5


def test_catalog_of_a_missing_directory_is_a_user_error(tmp_path):
    res = run_hpcgen("catalog", tmp_path / "nope")
    assert res.returncode == 2
    assert res.stderr.strip() == f"hpcgen: error: not a directory: {tmp_path / 'nope'}"


def test_plot_draws_the_file_domain_and_refuses_another(atlas_dir, tmp_path):
    out = tmp_path / "seq.png"
    res = run_hpcgen("plot", atlas_dir / "energy_plasma_physics.h5", "--out", out)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with h5py.File(atlas_dir / "energy_plasma_physics.h5", "r") as h5:
        from hpcgen.errors import UserError

        with pytest.raises(UserError, match="holds domain 'plasma_physics', not 'astrophysics'"):
            plot_file(h5, tmp_path / "x.png", {"domain": "astrophysics"})


def test_reader_windows_pyramids_gradients_and_stats(atlas_dir):
    atlas = EnergyAtlas(atlas_dir)
    assert atlas.domains == ["fluid_dynamics", "plasma_physics"]
    with h5py.File(atlas_dir / "energy_plasma_physics.h5", "r") as h5:
        data = h5["t0_fields/energy"][...]
    batches = list(atlas.windows("plasma_physics", window=2, batch_size=4))
    windows = np.concatenate([b["energy"] for b in batches])
    assert windows.shape == (5 * 3, 2, 48, 48)  # 5 trajectories x 3 starts
    np.testing.assert_array_equal(windows[4], data[1, 1:3])  # trajectory 1, t0 = 1
    np.testing.assert_array_equal(atlas.window("plasma_physics", 4, 2, 2), data[4, 2:4])

    small = next(atlas.windows("fluid_dynamics", window=3, scale=16, gradients=True))
    assert small["energy"].shape[1:] == (3, 16, 24)
    np.testing.assert_allclose(maps.total_energy(small["energy"]), 32 * 48, rtol=1e-5)
    assert small["grad_mag"].shape == small["energy"].shape
    assert small["entropy"].shape == (small["energy"].shape[0], 3)

    stats = atlas.stats("plasma_physics")
    assert stats["mean"] == pytest.approx(float(data.mean(dtype=np.float64)), rel=1e-9)
    assert stats["variance"] == pytest.approx(float(data.astype(np.float64).var()), rel=1e-9)
