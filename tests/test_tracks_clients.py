"""The tracks data as its clients read it: the ML track-extrapolation workflow (seed document 003
and the trainers of TrackExtrapolation_RKPINN).

Contract facts, from the client:
- the trainers' ``load_data`` read ``X`` (N, 6) [x, y, tx, ty, q/p, dz], ``Y[:, :4]`` and ``P``
  from the NPZ and standardise every column by ``X.std(0) + 1e-8``: a constant column (dz = 6000
  for every track) divides by ~0, so every column of X must vary;
- the seed's data table: dz 1000-10000 mm, ``Z`` the per-track [z_start, z_end];
- the seed's "Verification" block, run on the NPZ (``seed_verification`` below, its assertions
  as written);
- the field-map loaders (``InterpolatedFieldNumpy._load_field_map``) read the twodip text with
  ``np.loadtxt`` and assume its row order, y fastest, then x, then z: the columns are reshaped to
  (nz, nx, ny) and transposed to (nx, ny, nz), whatever the coordinates in the rows say; they
  check By at (0, 0, the first z plane >= 5000 mm).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, data_fields, run_hpcgen

from hpcgen.errors import SpecError
from hpcgen.generators.base import Chunk, Device, build_params
from hpcgen.generators.tracks import fieldmap as fm
from hpcgen.generators.tracks import synthmap as sm
from hpcgen.generators.tracks.fields import ABORTED, OUT_OF_ACCEPTANCE, STATUS_NAMES
from hpcgen.generators.tracks.generator import TracksGenerator
from hpcgen.generators.tracks.params import LHCB_T_ACCEPTANCE, TracksParams
from hpcgen.generators.tracks.sampling import sample_tracks

SPECS = ["tracks_demo.toml", "tracks_10M.toml", "tracks_10M_map.toml"]


def seed_verification(X: np.ndarray, Y: np.ndarray, P: np.ndarray) -> None:
    """The seed document's "Verification" block, its assertions as written."""
    # Data integrity
    assert np.all(np.isfinite(X)), "NaN/Inf in inputs"
    assert np.all(np.isfinite(Y)), "NaN/Inf in outputs"
    assert np.all(P > 0), "Negative momentum"

    # Physics sanity checks
    assert np.abs(Y[:, 0]).max() < 10000, "x position unreasonable"
    assert np.abs(Y[:, 2]).max() < 1.0, "tx slope too large"

    # Bending check: opposite charges should bend opposite ways
    pos_charge = X[:, 4] > 0
    neg_charge = X[:, 4] < 0
    dx_pos = (Y[pos_charge, 0] - X[pos_charge, 0]).mean()
    dx_neg = (Y[neg_charge, 0] - X[neg_charge, 0]).mean()
    assert dx_pos * dx_neg < 0, "Charges not bending opposite!"


def upstream_read_map(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_grid, y_grid, z_grid, By_grid (nx, ny, nz)) read as the trainers' map loader does: the
    row order assumed, never looked up from the coordinates."""
    data = np.loadtxt(path)
    x, y, z, by = data[:, 0], data[:, 1], data[:, 2], data[:, 4]
    xg, yg, zg = (np.sort(np.unique(c)) for c in (x, y, z))
    nx, ny, nz = len(xg), len(yg), len(zg)
    # "File ordering is y-fastest, then x, then z -> reshape order is (nz, nx, ny)"
    return xg, yg, zg, by.reshape(nz, nx, ny).transpose(1, 2, 0)


def spec_params(name: str, map_path: Path) -> tuple[dict, TracksParams]:
    """A job spec's table and its params, the map pointed at ``map_path``."""
    d = tomllib.loads((ROOT / "jobs" / name).read_text())
    values = dict(d["params"])
    if values.get("field") == "map":
        values["field_map"] = str(map_path)
    return d, build_params(TracksParams, values)


def small_spec(name: str, tmp_path: Path, map_path: Path, n: int, chunk: int) -> Path:
    """The job spec as written, with fewer tracks, smaller chunks and the test's map."""
    text = (ROOT / "jobs" / name).read_text()
    for key, value in (
        ("n_samples", str(n)),
        ("chunk_size", str(chunk)),
        ("output", '"small.h5"'),
        ("field_map", f'"{map_path}"'),
    ):
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    out = tmp_path / name
    out.write_text(text)
    return out


def run_block(gen: TracksGenerator, n: int, seed: int) -> dict[str, np.ndarray]:
    chunk = Chunk(0, 0, n, seed=seed)
    inputs = gen.sample(chunk)
    return {**inputs, **gen.compute(inputs, chunk, Device("cpu", np))}


# --- 1. every column of X carries information -----------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_every_x_column_varies_in_the_job_specs(name, synth_path):
    d, p = spec_params(name, synth_path)
    gen = TracksGenerator(p)
    gen.check_n_samples(d["n_samples"])  # the spec's z sampling fits its field
    s = gen.sample(Chunk(0, 0, 2000, seed=d["seed"]))
    X, Z = s["X"], s["Z"]
    assert (X.std(axis=0) > 0).all(), X.std(axis=0)
    # the seed's table: dz 1000-10000 mm; Z the per-track [z_start, z_end] with dz = z_end - z_start
    assert X[:, 5].min() >= 1000 and X[:, 5].max() <= 10000
    assert Z[:, 0].std() > 1000
    np.testing.assert_allclose(Z[:, 1] - Z[:, 0], X[:, 5], atol=1e-9)
    assert Z.min() >= 0 and Z.max() <= 14000


def test_drawn_z_start_leaves_every_other_draw_alone():
    """z_start is drawn after dz: the same stream gives the same X as fixed-plane sampling, so dz
    keeps exactly its distribution; both ends lie in z_range."""
    fixed = TracksParams(dz_range=(1000.0, 10000.0))
    drawn = TracksParams(dz_range=(1000.0, 10000.0), z_range=(0.0, 14000.0))
    a = sample_tracks(fixed, np.random.default_rng(3), 5000)
    b = sample_tracks(drawn, np.random.default_rng(3), 5000)
    np.testing.assert_array_equal(a["X"], b["X"])
    np.testing.assert_array_equal(a["Z"][:, 0], 3000.0)  # the fixed plane is still there
    z0, z1 = b["Z"].T
    assert z0.min() >= 0 and z1.max() <= 14000 and z0.min() < 300 and z1.max() > 13700
    # where every dz fits (z_start <= 4000 mm) z_start is uniform, density E[1 / (14000 - dz)]
    per_bin = 1000 * np.log(13000 / 4000) / 9000
    counts = np.histogram(z0, bins=4, range=(0, 4000))[0]
    np.testing.assert_allclose(counts / 5000, per_bin, atol=0.02)


def test_both_directions_draws_the_sign_with_equal_probability():
    p = TracksParams(dz_range=(1000.0, 10000.0), z_range=(0.0, 14000.0), both_directions=True)
    s = sample_tracks(p, np.random.default_rng(5), 20_000)
    dz, (z0, z1) = s["X"][:, 5], s["Z"].T
    back = dz < 0
    assert abs(back.mean() - 0.5) < 0.02
    assert np.abs(dz).min() >= 1000 and np.abs(dz).max() <= 10000
    np.testing.assert_array_less(z1[back], z0[back])
    assert min(z0.min(), z1.min()) >= 0 and max(z0.max(), z1.max()) <= 14000


def test_z_planes_start_on_the_planes_and_end_inside_the_field(synth_path):
    """Without z_range the window is the field's z extent (the synthetic map's [-500, 14000])."""
    planes = (0.0, 2500.0, 7800.0, 9400.0)
    p = TracksParams(
        field="map", field_map=str(synth_path), z_planes=planes, dz_range=(1000.0, 10000.0)
    )
    s = TracksGenerator(p).sample(Chunk(0, 0, 6000, seed=9))
    dz, (z0, z1) = s["X"][:, 5], s["Z"].T
    assert set(np.unique(z0)) == set(planes)
    assert z1.min() >= -500 and z1.max() <= 14000
    # equal probability among the planes that fit: 9400 fits dz <= 4600, 7800 dz <= 6200
    long = dz > 6200
    assert set(np.unique(z0[long])) == {0.0, 2500.0}
    assert abs((z0[long] == 0).mean() - 0.5) < 0.05
    short = dz < 4600
    np.testing.assert_allclose([(z0[short] == q).mean() for q in planes], 0.25, atol=0.04)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"z_range": [0.0, 5000.0], "dz_range": [1000.0, 6000.0]}, "no z_start keeps"),
        ({"z_planes": [8000.0], "z_range": [0.0, 9000.0], "dz_range": [500.0, 2000.0]}, "no plane"),
        ({"z_planes": [15000.0], "z_range": [0.0, 14000.0]}, "outside the z window"),
        ({"both_directions": True, "dz_range": [-1000.0, 5000.0]}, "magnitudes"),
        ({"acceptance": [3000.0, 2500.0, 1.0]}, "acceptance"),
    ],
)
def test_impossible_z_sampling_is_refused(values, message):
    with pytest.raises(SpecError, match=message):
        build_params(TracksParams, values)


def test_z_range_outside_the_field_is_refused_before_the_run(tmp_path, synth_path):
    p = TracksParams(field="map", field_map=str(synth_path), z_range=(-1000.0, 9000.0))
    with pytest.raises(SpecError, match=r"outside the field's z extent \[-500, 14000\]"):
        TracksGenerator(p).check_n_samples(10)
    spec = tmp_path / "bad.toml"
    spec.write_text(
        'generator = "tracks"\nn_samples = 10\nseed = 1\n\n[params]\nfield = "gaussian"\n'
        "z_range = [-20000.0, 0.0]\n"
    )
    proc = run_hpcgen("plan", spec)
    assert proc.returncode == 2 and "outside the field's z extent" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# --- 2. the acceptance cut and the seed's verification block ------------------------------------


def test_acceptance_flags_exactly_the_tracks_outside_the_box_and_keeps_their_y():
    base = TracksParams(z_range=(0.0, 14000.0), dz_range=(1000.0, 10000.0))
    cut = dataclasses.replace(base, acceptance=LHCB_T_ACCEPTANCE)
    a = run_block(TracksGenerator(base), 3000, seed=4)
    b = run_block(TracksGenerator(cut), 3000, seed=4)
    np.testing.assert_array_equal(a["Y"], b["Y"])
    assert not (a["status"] & OUT_OF_ACCEPTANCE).any()  # no kernel sets the bit
    np.testing.assert_array_equal(b["status"] & ~np.uint8(OUT_OF_ACCEPTANCE), a["status"])
    x, y, tx, ty = np.abs(b["Y"]).T
    outside = (x >= 3000) | (y >= 2500) | (tx >= 1) | (ty >= 1)
    np.testing.assert_array_equal((b["status"] & OUT_OF_ACCEPTANCE) != 0, outside)
    assert 0.1 < outside.mean() < 0.5
    assert STATUS_NAMES[OUT_OF_ACCEPTANCE] == "out of acceptance"
    assert not OUT_OF_ACCEPTANCE & ABORTED  # Y stays a state at z_end
    res = {c.name: c for c in _verify(TracksGenerator(cut), b)}
    assert all(c.passed for c in res.values()), [c for c in res.values() if not c.passed]
    b["status"][np.flatnonzero(outside)[:2]] &= ~np.uint8(OUT_OF_ACCEPTANCE)
    res = {c.name: c for c in _verify(TracksGenerator(cut), b)}
    assert not res["out-of-acceptance flag matches Y at z_end"].passed


def _verify(gen: TracksGenerator, data: dict) -> list:
    v = gen.verifier()
    v.update(data, 0)
    return v.results()


def test_x_bound_exempts_only_tracks_the_field_can_carry_past_10_m():
    """Per-track z lets a 2 GeV track bent outward travel 10 m after the magnet: |x_f| > 10 m is
    physics there, and the verifier must not call it an error; on a 50 GeV track it is one."""
    X_CHECK = "|x_f| < 10000 mm (where the field cannot carry the track further)"
    far = TracksParams(
        p_min=2.0, p_max=2.0, charges=(1,), x_range=(2500.0, 3000.0), tx_range=(0.25, 0.3),
        z_range=(0.0, 14000.0), dz_range=(9000.0, 10000.0),
    )  # fmt: skip
    gen = TracksGenerator(far)
    data = run_block(gen, 200, seed=1)
    assert (np.abs(data["Y"][:, 0]) > 10000).sum() > 50
    res = {c.name: c for c in _verify(gen, data)}
    assert all(c.passed for c in res.values()), [c for c in res.values() if not c.passed]
    stiff = TracksParams(p_min=50.0, p_max=100.0, z_range=(0.0, 14000.0), dz_range=(1000.0, 1e4))
    gen = TracksGenerator(stiff)
    data = run_block(gen, 200, seed=1)
    assert {c.name for c in _verify(gen, data) if not c.passed} == set()
    data["Y"][-1, 0] = 12000.0
    assert X_CHECK in {c.name for c in _verify(gen, data) if not c.passed}


@pytest.mark.parametrize("name", ["tracks_10M.toml", "tracks_10M_map.toml"])
def test_production_specs_ok_rows_pass_the_seed_verification(name, synth_path):
    d, p = spec_params(name, synth_path)
    gen = TracksGenerator(p)
    data = run_block(gen, 3000, d["seed"])
    failed = [c.name for c in _verify(gen, data) if not c.passed]
    assert failed == []
    ok = data["status"] == 0
    assert 0.5 < ok.mean() < 0.95
    seed_verification(data["X"][ok], data["Y"][ok], data["P"][ok])


def test_demo_spec_run_verify_export_only_ok_passes_the_seed_verification(tmp_path, synth_path):
    """The demo spec as shipped (fewer tracks), through the CLI, then the seed's block verbatim
    on the NPZ that ``hpcgen export --format npz --only-ok`` writes."""
    spec = small_spec("tracks_demo.toml", tmp_path, synth_path, n=3000, chunk=1500)
    out, npz = tmp_path / "demo.h5", tmp_path / "demo.npz"
    run_hpcgen("run", spec, "--out", out, "--quiet", check=True)
    v = run_hpcgen("verify", out)
    assert v.returncode == 0, v.stdout + v.stderr
    run_hpcgen("export", out, "--format", "npz", "--only-ok", "--out", npz, check=True)
    status = data_fields(out)["status"]
    assert (status & OUT_OF_ACCEPTANCE).any()
    with np.load(npz) as data:
        X, Y, P, Z = data["X"], data["Y"], data["P"], data["Z"]
    assert X.shape == (int((status == 0).sum()), 6) and Y.shape[1] == 4 and Z.shape[1] == 2
    assert (X.std(axis=0) > 0).all()
    seed_verification(X, Y, P)


# --- 3. the synthetic map in the real map's row order -------------------------------------------


def test_synthetic_map_reads_right_with_the_upstream_row_order(synth_path):
    """``hpcgen fieldmap synth``'s text (the session map) read the trainers' way: By at the magnet
    centre is the synthetic model's (-1.03 T), and every node matches our coordinate-based read."""
    xg, yg, zg, by = upstream_read_map(synth_path)
    ix0, iy0, iz5000 = np.searchsorted(xg, 0), np.searchsorted(yg, 0), np.searchsorted(zg, 5000)
    model = sm.synth_field(0.0, 0.0, zg[iz5000])[1]
    assert abs(by[ix0, iy0, iz5000] - model) < 1e-6 and model < -1.0
    ours = fm.load_map(synth_path)
    np.testing.assert_array_equal(by, ours.B[..., 1])


def test_written_map_rows_run_y_fastest_then_x_then_z(tmp_path):
    """A small non-cubic grid, so that any other order shows, read both ways."""
    xs, ys = np.arange(-3000.0, 3001.0, 1000.0), np.arange(-2000.0, 2001.0, 500.0)
    zs = np.array([0.0, 2000.0, 4000.0, 5000.0, 6000.0, 9000.0])
    X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
    grid = fm.MapGrid(xs, ys, zs, np.round(np.stack(sm.synth_field(X, Y, Z), axis=-1), 6))
    path = tmp_path / "small.txt"
    fm.write_text(path, grid)
    rows = np.loadtxt(path)
    np.testing.assert_array_equal(rows[: len(ys), 1], ys)  # y first
    np.testing.assert_array_equal(rows[:: len(ys), 0][: len(xs)], xs)  # then x
    np.testing.assert_array_equal(rows[:: len(xs) * len(ys), 2], zs)  # z outermost
    *_, by = upstream_read_map(path)
    np.testing.assert_array_equal(by, grid.B[..., 1])
    assert abs(by[3, 4, 3] - sm.synth_field(0.0, 0.0, 5000.0)[1]) < 1e-6
    np.testing.assert_array_equal(fm.load_map(path, use_cache=False).B, grid.B)
