"""The tracks generator through the real CLI with the synthetic field map: the same bytes for 1
and 2 ranks, the map's hash in the provenance, verify, export --only-ok, and a missing or
artefact-laden map failing the run instead of falling back."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_same_data, data_fields, run_hpcgen

from hpcgen.generators.tracks import fieldmap as fm


def spec(tmp_path: Path, map_path: Path, extra: str = "") -> Path:
    s = tmp_path / "map.toml"
    s.write_text(
        'generator = "tracks"\nn_samples = 3000\nseed = 5\nchunk_size = 700\n'
        f'output = "map.h5"\n\n[params]\nfield = "map"\nfield_map = "{map_path}"\n'
        "dz_range = [-2000.0, 6000.0]\n" + extra
    )
    return s


@pytest.fixture(scope="module")
def map_run(tmp_path_factory, synth_path) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("maprun")
    fm.load_map(synth_path)  # parse once here (writes the cache) rather than in every rank
    s = spec(d, synth_path)
    out = d / "one.h5"
    run_hpcgen("run", s, "--out", out, "--quiet", check=True)
    return s, out


def test_map_run_is_the_same_for_1_and_2_ranks_and_records_the_map(map_run, synth_path, tmp_path):
    s, one = map_run
    two = tmp_path / "two.h5"
    run_hpcgen("run", s, "--out", two, "--quiet", ranks=2, check=True)
    assert_same_data(one, two)
    sha = fm.sha256_file(synth_path)
    with h5py.File(two) as f:
        prov = json.loads(f.attrs["hpcgen_provenance"])
        assert f.attrs["field_map_sha256"] == sha
        assert f["status"].dtype == np.uint8 and f["n_steps"].dtype == np.int32
    assert prov["input_files"] == {str(synth_path): sha}


def test_map_file_verifies_and_exports_only_ok_tracks(map_run, tmp_path):
    _, out = map_run
    v = run_hpcgen("verify", out, "--report", tmp_path / "v.json")
    assert v.returncode == 0, v.stdout
    report = json.loads((tmp_path / "v.json").read_text())
    names = {c["name"] for c in report["checks"]}
    assert "forward then backward returns to the start" in names
    d = data_fields(out)
    ok = d["status"] == 0
    assert 0 < ok.sum() < len(ok)  # the sample leaves the grid or meets the artefacts
    run_hpcgen("export", out, "--out", tmp_path / "all.npz", check=True)
    run_hpcgen("export", out, "--out", tmp_path / "ok.npz", "--only-ok", check=True)
    with np.load(tmp_path / "all.npz") as a, np.load(tmp_path / "ok.npz") as b:
        assert sorted(a) == sorted(b) == ["P", "X", "Y", "Z"]
        np.testing.assert_array_equal(a["Y"], d["Y"])
        for k in "XYPZ":
            np.testing.assert_array_equal(b[k], d[k][ok])


def test_a_missing_or_failing_map_stops_the_run(tmp_path, synth_path):
    out = tmp_path / "x.h5"
    proc = run_hpcgen("run", spec(tmp_path, tmp_path / "nope.txt"), "--out", out, ranks=2)
    assert proc.returncode == 2 and "field map" in proc.stderr and "not found" in proc.stderr
    assert not out.exists()
    proc = run_hpcgen("run", spec(tmp_path, synth_path, 'artefact_policy = "fail"\n'), "--out", out)
    assert proc.returncode == 2 and "artefact_policy = 'fail'" in proc.stderr
    assert not out.exists()
