"""illumination through the real CLI: rank-count invariance, verify, the seed CSV format, the sky
plot, and user errors (one line, exit 2)."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_same_data, run_hpcgen

N, CHUNK = 2_300, 500  # 5 chunks, the last one short
SPEC = f"""generator = "illumination"
n_samples = {N}
seed = 17
chunk_size = {CHUNK}
output = "illum.h5"

[params]
level = 1
"""
NUMBER = re.compile(r"-?\d+\.\d{6}")


def run_ok(*args, ranks: int = 0):
    return run_hpcgen(*args, ranks=ranks, check=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("illum")
    spec = d / "illum.toml"
    spec.write_text(SPEC)
    out = d / "ref.h5"
    run_ok("run", spec, "--out", out, "--quiet")
    return spec, out


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_same_data_for_1_2_3_ranks(tmp_path, reference, ranks):
    spec, ref = reference
    out = tmp_path / f"r{ranks}.h5"
    run_ok("run", spec, "--out", out, "--quiet", ranks=ranks)
    assert_same_data(ref, out)


def test_file_layout_and_verify(reference):
    _, ref = reference
    with h5py.File(ref, "r") as f:
        assert f["sun_vectors"].shape == (N, 3)
        lit = f["lit_fractions"]
        names = [str(n) for n in lit.attrs["face_names"]]
        assert lit.shape == (N, len(names)) and len(names) == 22
        assert names[0] == "bus/+x" and "panel_north/front" in names
        assert f["model_triangles"].shape == (44, 3, 3)
    assert run_hpcgen("verify", ref).returncode == 0


def test_csv_export_seed_format(tmp_path, reference):
    _, ref = reference
    out = tmp_path / "illum.csv"
    run_ok("export", ref, "--format", "csv", "--out", out)
    lines = out.read_text().splitlines()
    with h5py.File(ref, "r") as f:
        names = [str(n) for n in f["lit_fractions"].attrs["face_names"]]
        data = np.hstack([f["sun_vectors"][...], f["lit_fractions"][...]])
    assert lines[0] == "sun_vec_x,sun_vec_y,sun_vec_z," + ",".join(names)
    assert len(lines) == N + 1
    for line in (lines[1], lines[N // 2], lines[-1]):
        cells = line.split(",")
        assert len(cells) == 3 + len(names) and all(NUMBER.fullmatch(c) for c in cells)
    values = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_allclose(values, data, atol=5e-7)


def test_plot_sky_png_and_face_errors(tmp_path, reference):
    _, ref = reference
    png = tmp_path / "sky.png"
    run_ok("plot", ref, "--face", "panel_north/front", "--out", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run_hpcgen("plot", ref, "--face", "panel_north/nope", "--out", tmp_path / "x.png")
    assert bad.returncode == 2
    assert "no face 'panel_north/nope'" in bad.stderr and "panel_north/front" in bad.stderr


def test_bad_model_is_a_one_line_user_error(tmp_path):
    model = tmp_path / "dup.yaml"
    model.write_text(
        "components:\n"
        "  - {id: 1, name: a, position: [0, 0, 0], orientation: [1, 0, 0, 0],\n"
        "     faces: {f: [[0, 0, 0], [1, 0, 0], [1, 1, 0]]}}\n"
        "  - {id: 2, name: a, position: [0, 0, 1], orientation: [1, 0, 0, 0],\n"
        "     faces: {f: [[0, 0, 0], [1, 0, 0], [1, 1, 0]]}}\n"
    )
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC + f'model = "{model}"\n')
    proc = run_hpcgen("run", spec, "--out", tmp_path / "bad.h5")
    assert proc.returncode == 2
    assert "duplicate component name" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
