"""``hpcgen verify`` judges illumination files as a third party: it re-casts random rows by shadow
projection (hpcgen/generators/illumination/recast.py), code that shares nothing with the
generator's ray casting, so lit fractions that are wrong on a few rows cannot pass.

The user's case: lit fractions x 0.9 on the partly lit faces of 1 % of the rows passed verify.
Files are written in-process by the engine (one rank) and judged by ``verify_file``, or by the
real CLI where the exit status is the point.
"""

from __future__ import annotations

import ast
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import ROOT, run_hpcgen

from hpcgen.engine.comm import SerialComm
from hpcgen.engine.run import RunOptions, run
from hpcgen.generators.base import Chunk, Device
from hpcgen.generators.illumination import checks, lit, recast
from hpcgen.generators.illumination.generator import IlluminationGenerator, Params
from hpcgen.io.reader import Reader
from hpcgen.spec import RunSpec
from hpcgen.verify import verify_file

RECAST = checks.RECAST_CHECK
PKG = ROOT / "hpcgen" / "generators" / "illumination"


def write(path: Path, n: int = 400, chunk: int = 100, dtype: str = "float64", **params) -> Path:
    """An illumination file (bundled Intelsat 901 model) written by the engine in this process."""
    spec = RunSpec.from_dict(
        {
            "generator": "illumination",
            "n_samples": n,
            "seed": 23,
            "chunk_size": chunk,
            "output": str(path),
            "dtype": dtype,
            "device": "cpu",
            "params": {"level": 3, **params},
        }
    )
    run(spec, RunOptions(quiet=True), SerialComm())
    return path


def failed(path: Path) -> dict[str, dict]:
    passed, report = verify_file(path)
    bad = {c["name"]: c for c in report["checks"] if not c["passed"]}
    assert passed == (not bad)
    return bad


def scale_partly_lit(lit_fractions: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The user's corruption: x 0.9 on the partly lit faces (0 < f < 1) of the given rows."""
    out = lit_fractions.copy()
    sub = out[rows]
    sub[(sub > 0) & (sub < 1)] *= 0.9
    out[rows] = sub
    return out


def one_percent_of_partly_lit_rows(lit_fractions: np.ndarray, seed: int = 0) -> np.ndarray:
    partly = ((lit_fractions > 0) & (lit_fractions < 1)).any(axis=1)
    rows = np.flatnonzero(partly)
    k = max(1, len(lit_fractions) // 100)
    return np.sort(np.random.default_rng(seed).choice(rows, size=k, replace=False))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("illum") / "clean.h5")


def test_clean_file_passes_with_the_recast(clean):
    passed, report = verify_file(clean)
    names = {c["name"]: c for c in report["checks"]}
    assert passed, [c for c in report["checks"] if not c["passed"]]
    assert names[RECAST]["passed"] and names[RECAST]["value"].startswith("0 of 400 random rows")
    assert names["stored model geometry is the model file's"]["passed"]


def test_user_corruption_in_the_file_fails_naming_the_recast(clean, tmp_path):
    """Scale 1 % of the rows' partly lit faces by 0.9 in the HDF5 file: verify exits 1 and the
    table names the recast check (the streamed checks cannot see it: the values stay in [0, 1],
    turned-away faces stay 0 and the unshadowable faces are never partly lit)."""
    bad = tmp_path / "bad.h5"
    bad.write_bytes(clean.read_bytes())
    with h5py.File(bad, "r+") as f:
        values = f["lit_fractions"][...]
        rows = one_percent_of_partly_lit_rows(values)
        f["lit_fractions"][...] = scale_partly_lit(values, rows)
    proc = run_hpcgen("verify", bad)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if RECAST in x)
    assert line.split()[0] == "FAIL"
    assert f"{len(rows)} of 400 random rows disagree" in line
    for r in rows:  # the report names the rows
        assert f"row {r} " in line


def test_generator_mistake_on_one_percent_of_rows_fails(tmp_path, monkeypatch):
    """The same mistake made by the generator itself (so every stored checksum and attribute is
    consistent): only an independent recomputation can catch it."""
    original = IlluminationGenerator.compute

    def wrong(self, inputs, chunk, device):
        out = original(self, inputs, chunk, device)
        index = chunk.start + np.arange(chunk.count)
        rows = np.flatnonzero(index % 100 == 37)  # 1 % of the rows, in every chunk
        out["lit_fractions"] = scale_partly_lit(out["lit_fractions"], rows)
        return out

    monkeypatch.setattr(IlluminationGenerator, "compute", wrong)
    path = write(tmp_path / "wrong.h5", n=800, chunk=200)
    monkeypatch.undo()
    with h5py.File(path, "r") as f:
        values = f["lit_fractions"][...]
    hit = [r for r in range(37, 800, 100) if ((values[r] > 0) & (values[r] < 1)).any()]
    assert hit, "the corrupted rows have partly lit faces"
    with Reader(path) as r:
        seen = np.intersect1d(hit, checks.sample_rows(r, checks.RECAST_ROWS))
    assert len(seen), "the 400 random rows of 800 include corrupted ones"
    bad = failed(path)
    assert set(bad) == {RECAST}, bad
    assert bad[RECAST]["value"].startswith(f"{len(seen)} of 400 random rows disagree")


def test_wrong_sample_points_in_the_generator_fail(tmp_path, monkeypatch):
    """A generator that casts from the wrong points (centroids of a grid one level coarser,
    weighted as if they were the level's) passes the streamed checks but not the recast."""
    coarse = lit.subdivision_uv

    def wrong(level: int) -> np.ndarray:
        return np.repeat(coarse(max(level - 1, 0)), 4, axis=0)

    monkeypatch.setattr(lit, "subdivision_uv", wrong)
    path = write(tmp_path / "points.h5")
    monkeypatch.undo()
    assert set(failed(path)) == {RECAST}


def test_recast_sample_covers_the_whole_file_and_only_written_chunks():
    """Rows drawn from every part of the file, the same for every verify of it, and never from a
    chunk that is not written."""
    done = np.ones(50, bool)
    done[7] = False

    def reader(seed: int) -> types.SimpleNamespace:
        spec = types.SimpleNamespace(chunk_size=1000, seed=seed)
        return types.SimpleNamespace(done=done, spec=spec, n_rows=49_500)

    rows = checks.sample_rows(reader(5), 400)
    assert len(rows) == 400 and len(np.unique(rows)) == 400
    assert np.array_equal(rows, checks.sample_rows(reader(5), 400))
    assert not np.array_equal(rows, checks.sample_rows(reader(6), 400))
    assert not ((rows >= 7000) & (rows < 8000)).any()
    assert rows.max() < 49_500
    # spread: every tenth of the file holds some of them (not the first N rows)
    assert (np.bincount(rows * 10 // 49_500, minlength=10) > 20).all()
    every = np.setdiff1d(np.arange(49_500), np.arange(7000, 8000))
    assert np.array_equal(checks.sample_rows(reader(5), 10**6), every)


@pytest.mark.parametrize(
    "params, dtype",
    [
        ({"sun_tracking": True}, "float64"),
        ({"convention": "lcas"}, "float32"),
        ({"convention": "lcas", "sun_tracking": True}, "float64"),
        ({"level": 1}, "float32"),
    ],
)
def test_recast_agrees_with_the_generator_on_every_definition(params, dtype):
    """Tracking, the lcas convention and float32 storage: every generated value lies in the
    recast's interval, and the interval pins the partly lit faces (x 0.9 falls out of it)."""
    gen = IlluminationGenerator(Params(**{"level": 3, **params}), dtype)
    chunk = Chunk(index=0, start=0, count=120, seed=3)
    data = gen.sample(chunk)
    data |= gen.compute(data, chunk, Device("cpu", np))
    tris, face, comp = recast.body_triangles(gen.model)
    rc = recast.Recaster(
        tris,
        face,
        len(gen.model.faces),
        recast.trackers_of(gen.model, comp, gen.params.sun_tracking),
        gen.params.convention,
        gen.params.level,
        gen.root_attrs()["illumination_ray_offset_m"],
    )
    tol = checks.VALUE_TOL[np.dtype(dtype)]
    partly = caught = 0
    for s, v in zip(data["sun_vectors"], data["lit_fractions"].astype(np.float64)):
        lo, hi = rc.bounds(s)
        assert ((v >= lo - tol) & (v <= hi + tol)).all(), (s, v, lo, hi)
        p = (v > 0) & (v < 1)
        partly += p.sum()
        caught += (p & ((0.9 * v < lo - tol) | (0.9 * v > hi + tol))).sum()
    assert partly > 50 and caught >= 0.9 * partly


def test_recast_agrees_on_a_curved_mesh_model(tmp_path):
    """A mesh scene (a box, a sphere above it, a ring beside it: faces of many non-coplanar
    triangles that shadow each other and themselves), level 2: every value in its interval."""
    import trimesh

    scene = trimesh.Scene()
    move = trimesh.transformations.translation_matrix
    scene.add_geometry(trimesh.creation.box((2, 2, 2)), node_name="bus")
    ball = trimesh.creation.icosphere(subdivisions=1, radius=0.8)
    scene.add_geometry(ball, node_name="ball", transform=move([0, 0, 1.9]))
    ring = trimesh.creation.annulus(r_min=0.5, r_max=1.5, height=0.2)
    scene.add_geometry(ring, node_name="ring", transform=move([0, 1.8, 0.5]))
    scene.export(tmp_path / "sat.glb")
    gen = IlluminationGenerator(Params(model=str(tmp_path / "sat.glb"), level=2))
    chunk = Chunk(index=0, start=0, count=40, seed=4)
    data = gen.sample(chunk)
    data |= gen.compute(data, chunk, Device("cpu", np))
    tris, face, _ = recast.body_triangles(gen.model)
    offset = gen.root_attrs()["illumination_ray_offset_m"]
    rc = recast.Recaster(tris, face, 3, [], "area", 2, offset)
    partly = 0
    for s, v in zip(data["sun_vectors"], data["lit_fractions"]):
        lo, hi = rc.bounds(s)
        assert ((v >= lo - 1e-9) & (v <= hi + 1e-9)).all(), (s, v, lo, hi)
        partly += ((v > 0) & (v < 1)).sum()
    assert partly > 40


def test_recast_of_a_plate_shadow_is_the_hand_value(tmp_path):
    """Two unit plates 1 m apart, the sun along (0.5, 0.25, 1): the roof shadows the base's top
    over (1 - 0.5)(1 - 0.25) = 3/8 of it, shadow edges on the level-2 grid, so the definition's
    value is exactly 5/8; the roof's top and the turned-away bottoms are 1 and 0."""
    square = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]
    parts = [
        f"""
  - id: {k}
    name: {name}
    position: [0, 0, {z}]
    orientation: [1, 0, 0, 0]
    faces:
      top: {square}
      bottom: {square[::-1]}"""
        for k, (name, z) in enumerate([("base", 0), ("roof", 1)])
    ]
    model = tmp_path / "plates.yaml"
    model.write_text("components:" + "".join(parts) + "\n")
    gen = IlluminationGenerator(Params(model=str(model), level=2))
    tris, face, _ = recast.body_triangles(gen.model)
    rc = recast.Recaster(tris, face, 4, [], "area", 2, 1e-5 * gen.model.scale)
    s = np.array([0.5, 0.25, 1.0]) / np.linalg.norm([0.5, 0.25, 1.0])
    lo, hi = rc.bounds(s)
    names = gen.model.face_names
    assert names == ["base/top", "base/bottom", "roof/top", "roof/bottom"]
    np.testing.assert_allclose(lo, [5 / 8, 0, 1, 0], atol=1e-15)
    np.testing.assert_array_equal(lo, hi)


def test_centroids_are_the_midpoint_subdivision_of_the_definition():
    """Level L: 4^L points, the centroids of congruent sub-triangles: they average to the
    triangle's centroid and, at level 1, are the four hand-computed ones."""
    for level in range(5):
        b = recast.centroid_barycentrics(level)
        assert b.shape == (4**level, 3)
        np.testing.assert_allclose(b.sum(axis=1), 1)
        np.testing.assert_allclose(b.mean(axis=0), [1 / 3, 1 / 3, 1 / 3])
    got = {tuple(np.round(x * 6).astype(int)) for x in recast.centroid_barycentrics(1)}
    assert got == {(4, 1, 1), (1, 4, 1), (1, 1, 4), (2, 2, 2)}


def test_verify_code_shares_nothing_with_the_ray_casting():
    """The recast and the checks import neither the generator's ray casting nor its geometry
    helpers (normals, tracking turns, unshadowable faces, the ray offset constant)."""

    def imports(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        return names

    pkg = "hpcgen.generators.illumination"
    for name in ("recast.py", "checks.py"):
        got = imports(PKG / name)
        assert not {n for n in got if n.startswith((f"{pkg}.lit", f"{pkg}.raycast"))}, got
        assert {n for n in got if n.startswith(f"{pkg}.model")} <= {f"{pkg}.model.Model"}, got
    assert not {n for n in imports(PKG / "recast.py") if n.startswith("hpcgen")}
