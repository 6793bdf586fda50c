"""LHCb field maps: reading (any row order, refusing defects), the SHA-256 cache, trilinear
interpolation, polarity, artefact policies, and the synthetic map's physics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import run_hpcgen

from hpcgen.errors import UserError
from hpcgen.generators.tracks import fieldmap as fm
from hpcgen.generators.tracks import synthmap as sm
from hpcgen.generators.tracks.fields import LEFT_VOLUME, MASKED_CELL, FieldMap
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.generators.tracks.propagate import Propagator, make_field
from hpcgen.generators.tracks.stepper import StepperSettings

# a small grid with a variable z step; coefficients dyadic so node values are exact in float32
XS = np.array([-200.0, -100.0, 0.0, 100.0, 200.0])
YS = np.array([-100.0, 0.0, 100.0])
ZS = np.array([0.0, 100.0, 150.0, 300.0, 400.0, 800.0])


def trilinear_poly(x, y, z):
    """A field that trilinear interpolation reproduces exactly (linear in each coordinate)."""
    s = 2.0**-10
    bx = s * (1 + 0.5 * x / 100 - 0.25 * y / 100 + 0.125 * x * y * z / 1e6)
    by = -1.0 + s * (x / 100 + y / 100 + z / 100 + 0.5 * x * z / 1e4)
    bz = s * (0.75 * y * z / 1e4 - 0.25)
    return bx, by, bz


def small_grid(fn=trilinear_poly) -> fm.MapGrid:
    X, Y, Z = np.meshgrid(XS, YS, ZS, indexing="ij")
    return fm.MapGrid(XS, YS, ZS, np.stack(fn(X, Y, Z), axis=-1))


def write_rows(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def small_rows() -> list[str]:
    g = small_grid()
    return [
        f"{x} {y} {z} {float(b[0])!r} {float(b[1])!r} {float(b[2])!r}"
        for (i, x) in enumerate(g.xs)
        for (j, y) in enumerate(g.ys)
        for (k, z) in enumerate(g.zs)
        for b in [g.B[i, j, k]]
    ]


# --- reading --------------------------------------------------------------------------------------


def test_rows_are_placed_by_their_coordinates_in_any_order(tmp_path):
    rows = small_rows()
    rng = np.random.default_rng(3)
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    a = fm.load_map(write_rows(tmp_path / "a.txt", ["# comment line", *rows]), use_cache=False)
    b = fm.load_map(write_rows(tmp_path / "b.txt", shuffled), use_cache=False)
    ref = small_grid()
    for g in (a, b):
        assert g.shape == (5, 3, 6)
        np.testing.assert_array_equal(g.zs, ZS)  # the variable step survives
        np.testing.assert_array_equal(g.B, ref.B)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r[:-1], "missing grid point x=200 y=100 z=800 (1 of 90 points"),
        (lambda r: [*r, r[7]], "duplicate grid point"),
        (lambda r: [r[0].rsplit(" ", 1)[0] + " nan", *r[1:]], "non-finite value in data row 1"),
        (lambda r: [*r[:5], "0 0 abc 1 2 3", *r[5:]], "could not convert string 'abc'"),
        (lambda r: [*r[:5], "0 0 0 1 2", *r[5:]], "number of columns changed"),
        (lambda r: [r[0].replace("-200.0 ", "-250.0 ", 1), *r[1:]], "missing grid point"),
        (lambda r: [], "no data rows"),
    ],
)
def test_defective_maps_are_refused_with_a_clear_error(tmp_path, edit, message):
    path = write_rows(tmp_path / "bad.txt", edit(small_rows()))
    with pytest.raises(UserError, match=r"field map .*bad\.txt") as e:
        fm.load_map(path, use_cache=False)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_map_is_an_error_never_a_fallback(tmp_path):
    with pytest.raises(UserError, match=r"not found.*hpcgen fieldmap synth"):
        make_field(TracksParams(field="map", field_map=str(tmp_path / "none.txt")))


def test_binary_cache_is_keyed_by_the_text_hash(tmp_path, monkeypatch):
    path = write_rows(tmp_path / "m.txt", small_rows())
    first = fm.load_map(path)
    sha = fm.sha256_file(path)
    cache = tmp_path / f"m.txt.{sha[:16]}.cache.npz"
    assert first.sha256 == sha and cache.is_file()

    def no_parse(*a):
        raise AssertionError("parsed although the cache matches")

    monkeypatch.setattr(fm, "parse_text", no_parse)
    again = fm.load_map(path)
    np.testing.assert_array_equal(again.B, first.B)
    monkeypatch.undo()
    rows = small_rows()
    rows[0] = rows[0].rsplit(" ", 1)[0] + " 0.5"  # new text, new hash: parsed again
    write_rows(path, rows)
    changed = fm.load_map(path)
    assert changed.sha256 != sha and changed.B[0, 0, 0, 2] == 0.5
    cache.write_bytes(b"not an npz")  # a corrupt cache of the old text is simply not used
    assert fm.load_map(path).B[0, 0, 0, 2] == 0.5


def test_cache_dir_from_the_environment(tmp_path, monkeypatch):
    path = write_rows(tmp_path / "m.txt", small_rows())
    monkeypatch.setenv(fm.CACHE_ENV, str(tmp_path / "cache"))
    fm.load_map(path)
    assert len(list((tmp_path / "cache").glob("m.txt.*.cache.npz"))) == 1
    assert not list(tmp_path.glob("*.cache.npz"))


# --- interpolation --------------------------------------------------------------------------------


def test_trilinear_interpolation_is_exact_for_trilinear_fields_and_zero_outside():
    f = FieldMap(small_grid())
    rng = np.random.default_rng(5)
    n = 2000
    x = rng.uniform(-200, 200, n)
    y = rng.uniform(-100, 100, n)
    z = rng.uniform(0, 800, n)
    x[:3], y[:3], z[:3] = [-200, 200, 100], [-100, 100, 0], [0, 800, 150]  # on faces and planes
    bx, by, bz, fl = f.lookup(x, y, z)
    ex = trilinear_poly(x, y, z)
    for got, want in zip((bx, by, bz), ex):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.all(fl == 0)
    out = f.lookup(np.array([-200.001, 0, 0]), np.array([0, 100.5, 0]), np.array([5, 5, 800.1]))
    assert np.all(np.array(out[:3]) == 0) and np.all(out[3] == LEFT_VOLUME)


def test_polarity_flips_the_map_field():
    g = small_grid()
    up, down = FieldMap(g, polarity=1), FieldMap(g, polarity=-1)
    pts = (np.array([10.0, -150.0]), np.array([20.0, 50.0]), np.array([120.0, 500.0]))
    for a, b in zip(up.lookup(*pts)[:3], down.lookup(*pts)[:3]):
        np.testing.assert_array_equal(a, -b)


def test_artefact_policies(tmp_path):
    def spiky(x, y, z):
        bx, by, bz = trilinear_poly(x, y, z)
        return bx, np.where((x == 200) & (y == 100) & (z == 400), 3.0, by), bz

    grid = small_grid(spiky)
    path = tmp_path / "spiky.txt"
    fm.write_text(path, grid)
    with pytest.raises(UserError, match=r"1 grid points with \|B\| > 2\.0 T"):
        make_field(TracksParams(field="map", field_map=str(path), artefact_policy="fail"))
    assert grid.masked_cells().sum() == 2  # the corner belongs to the cells below and above z=400
    # a straight track (q/p = 0) through the spike's cells, and one far from them
    state = np.array([[150.0, 50.0, 0.0, 0.0, 0.0], [-150.0, -50.0, 0.0, 0.0, 0.0]])
    z0, z1 = np.zeros(2), np.full(2, 800.0)
    for policy, flagged in (("mask", MASKED_CELL), ("keep", 0)):
        field = make_field(TracksParams(field="map", field_map=str(path), artefact_policy=policy))
        for kernel in ("numpy", "numba"):
            _, status, _ = Propagator(field, StepperSettings(), kernel)(state, z0, z1)
            assert list(status) == [flagged, 0], (policy, kernel)


# --- the synthetic map ----------------------------------------------------------------------------


def test_synthetic_map_has_the_lhcb_dipole_numbers():
    s = sm.summarize(sm.synth_map())
    assert s["grid"] == [81, 81, 146]
    assert s["ranges_mm"]["x"][:2] == [-4000.0, 4000.0] and s["ranges_mm"]["x"][2] == "100"
    assert s["ranges_mm"]["z"][:2] == [-500.0, 14000.0] and "variable" in s["ranges_mm"]["z"][2]
    assert s["peak_by_axis_T"] == pytest.approx(-1.03, abs=0.005)
    assert s["peak_z_mm"] == pytest.approx(5007, abs=15)
    assert s["integral_by_dz_axis_Tm"] == pytest.approx(-4.44, abs=0.01)
    g = s["gaussian_fit"]
    assert g["B0_T"] == pytest.approx(-1.018, abs=0.01) and g["w_mm"] == pytest.approx(1744, 40)
    assert 0.005 < g["rms_residual_T"] < 0.02  # not a Gaussian: like the real map (0.013 T)
    assert s["max_abs_B_T"] < 1.5 and s["artefact_points"] == 0


def test_synthetic_artefacts_are_three_percent_of_the_edge_points():
    s = sm.summarize(sm.synth_map(artefacts=0.03))
    assert s["artefact_fraction_of_edge_points"] == pytest.approx(0.03, abs=0.001)
    assert s["artefact_points_off_edge"] == 0


def _div_curl(x, y, z, h=1.0):
    def B(*p):
        return np.array(sm.synth_field(*p))

    dx = (B(x + h, y, z) - B(x - h, y, z)) / (2 * h)
    dy = (B(x, y + h, z) - B(x, y - h, z)) / (2 * h)
    dz = (B(x, y, z + h) - B(x, y, z - h)) / (2 * h)
    div = dx[0] + dy[1] + dz[2]
    curl = np.array([dy[2] - dz[1], dz[0] - dx[2], dx[1] - dy[0]])
    return np.abs(div).max(), np.abs(curl).max(), np.abs(dz[2]).max()


def test_synthetic_field_is_divergence_and_curl_free_to_second_order():
    """Numerically, through the magnet: div B and curl B grow as r^3 off the axis (a first-order
    field B = (0, b, y b') has div B = y b'' ~ r), and are small against the gradients."""
    rng = np.random.default_rng(0)
    th = rng.uniform(0, 2 * np.pi, 300)
    z = rng.uniform(2000, 8000, 300)
    res = {r: _div_curl(r * np.cos(th), r * np.sin(th), z) for r in (200.0, 400.0)}
    for k in (0, 1):  # div, curl
        assert 6 < res[400.0][k] / res[200.0][k] < 10  # 2^3
    div, curl, dbz_dz = res[400.0]
    assert div < 0.05 * dbz_dz and curl < 0.05 * dbz_dz
    # on the axis: By = b(z), Bx = Bz = 0
    bx, by, bz = sm.synth_field(np.zeros(3), np.zeros(3), np.array([3000.0, 5007.0, 8000.0]))
    assert np.all(bx == 0) and np.all(bz == 0)
    np.testing.assert_allclose(by, sm.synth_profile(np.array([3000.0, 5007.0, 8000.0]))[0])


# --- the commands ---------------------------------------------------------------------------------


def test_fieldmap_synth_and_info_commands(tmp_path):
    out = tmp_path / "m.txt"
    run_hpcgen("fieldmap", "synth", "--out", out, "--artefacts", check=True)
    again = run_hpcgen("fieldmap", "synth", "--out", out)
    assert again.returncode == 2 and "exists" in again.stderr
    png = tmp_path / "by.png"
    info = run_hpcgen("fieldmap", "info", out, "--plot", png, check=True)
    assert "81 x 81 x 146" in info.stdout
    assert "peak |By| on axis       1.030" in info.stdout
    assert "at z = 5007 mm" in info.stdout and "-4.440 T m" in info.stdout
    assert "3.00 % of edge points" in info.stdout
    assert png.stat().st_size > 10_000
    bad = tmp_path / "bad.txt"
    bad.write_text("0 0 0 1 2\n")
    proc = run_hpcgen("fieldmap", "info", bad)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "6" in proc.stderr
