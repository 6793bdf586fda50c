"""illumination generator: geometry with hand-computable answers, model validation,
backends, sun directions and the verifier. In-process and fast; the CLI tests (ranks, CSV, plot)
are in test_illumination_cli.py.

Plate geometry used below: a unit plate ``base`` in z = 0 and an identical plate ``roof`` at
z = H above it. With the sun along (dx, dy, H) (shifts dx, dy in [-1, 1]), a base point q is
shadowed when q + (dx, dy) lies on the roof, so the lit fraction of base/top is
1 - (1 - |dx|)(1 - |dy|). Level-L sub-triangles of a unit square have edges on x = k/2^L,
y = k/2^L and the diagonals, so for shifts on that grid the estimate is exact; otherwise the
shadow edge crosses one column of cells and the error is at most 2^-L.
"""

from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest
import trimesh

from hpcgen.errors import SpecError, UserError
from hpcgen.generators.base import Chunk, build_params
from hpcgen.generators.illumination.generator import IlluminationGenerator, Params
from hpcgen.generators.illumination.lit import LitCalculator, subdivision_uv
from hpcgen.generators.illumination.model import (
    load_model,
    tracking_rotations,
    triangle_areas,
    unshadowable_faces,
)
from hpcgen.generators.illumination.raycast import EmbreeCaster

H = 1.0
PLATE_TOP = [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]
PLATE_BOTTOM = PLATE_TOP[::-1]


def plates_yaml(roof_height: float = H) -> str:
    return f"""
name: two_plates
components:
  - id: 1
    name: base
    position: [0, 0, 0]
    orientation: [1, 0, 0, 0]
    faces:
      top: {PLATE_TOP}
      bottom: {PLATE_BOTTOM}
  - id: 2
    name: roof
    position: [0, 0, {roof_height}]
    orientation: [1, 0, 0, 0]
    faces:
      top: {PLATE_TOP}
      bottom: {PLATE_BOTTOM}
"""


BOX_FACES = {  # cube of side 2 centred at the origin, outward normals by vertex order
    "+x": ([[1, -1, -1], [1, 1, -1], [1, 1, 1], [1, -1, 1]], [1, 0, 0]),
    "-x": ([[-1, -1, -1], [-1, -1, 1], [-1, 1, 1], [-1, 1, -1]], [-1, 0, 0]),
    "+y": ([[-1, 1, -1], [-1, 1, 1], [1, 1, 1], [1, 1, -1]], [0, 1, 0]),
    "-y": ([[-1, -1, -1], [1, -1, -1], [1, -1, 1], [-1, -1, 1]], [0, -1, 0]),
    "+z": ([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], [0, 0, 1]),
    "-z": ([[-1, -1, -1], [-1, 1, -1], [1, 1, -1], [1, -1, -1]], [0, 0, -1]),
}


def box_yaml(orientation: str = "[1, 0, 0, 0]") -> str:
    faces = "\n".join(f'      "{k}": {v}' for k, (v, _) in BOX_FACES.items())
    return f"""
components:
  - id: box
    name: box
    position: [3, -2, 1]
    orientation: {orientation}
    faces:
{faces}
"""


def write(tmp_path, text: str, name: str = "model.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def unit(v) -> np.ndarray:
    v = np.atleast_2d(np.asarray(v, dtype=float))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def uniform(n: int, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, 3)))


def lit_of(model, sun, **kw) -> dict[str, np.ndarray]:
    calc = LitCalculator(model, **kw)
    values = calc(unit(sun))
    return {name: values[:, i] for i, name in enumerate(model.face_names)}


def analytic_plate(dx: float, dy: float) -> float:
    return 1 - (1 - abs(dx)) * (1 - abs(dy))


@pytest.fixture(scope="module")
def default_model():
    return load_model("")


# --- hand-computable geometry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dx", "dy"), [(0.25, 0.0), (0.5, 0.0), (0.0, 0.375), (0.75, 0.5), (-0.25, 0.125), (1.0, 0.0)]
)
def test_plate_shadowed_by_plate_is_exact_on_grid_aligned_shadows(tmp_path, dx, dy):
    model = load_model(write(tmp_path, plates_yaml()))
    lit = lit_of(model, [dx, dy, H], level=3)
    assert lit["base/top"][0] == pytest.approx(analytic_plate(dx, dy), abs=1e-12)
    # nothing above the roof; bottoms face away from a sun above
    assert lit["roof/top"][0] == 1.0
    assert lit["base/bottom"][0] == 0.0
    assert lit["roof/bottom"][0] == 0.0
    # sun from below: the base shadows the roof's underside the same way, and base/top is dark
    below = lit_of(model, [dx, dy, -H], level=3)
    assert below["roof/bottom"][0] == pytest.approx(analytic_plate(dx, dy), abs=1e-12)
    assert below["base/bottom"][0] == 1.0
    assert below["base/top"][0] == 0.0


def trapezoid_yaml() -> str:
    """base/top: the convex quad (0,0) (2,0) (2,1) (0,3) in z = 0, fan-split from (0,0) into a
    triangle of area 1 and one of area 3. roof/shade at z = 1 is exactly the area-1 triangle.
    base turns about z (tracking), which a sun along z leaves unturned."""
    return """
components:
  - id: 1
    name: base
    position: [0, 0, 0]
    orientation: [1, 0, 0, 0]
    tracking: {axis: [0, 0, 1], normal: [1, 0, 0]}
    faces:
      top: [[0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 3, 0]]
  - id: 2
    name: roof
    position: [0, 0, 1]
    orientation: [1, 0, 0, 0]
    faces:
      shade: [[0, 0, 0], [2, 0, 0], [2, 1, 0]]
"""


@pytest.mark.parametrize("backend", ["embree", "brute"])
@pytest.mark.parametrize("tracking", [False, True])
@pytest.mark.parametrize("level", [0, 2])
def test_lit_fraction_is_area_weighted_over_unequal_triangles(tmp_path, backend, tracking, level):
    """Sun along +z: the roof shadows the area-1 triangle of base/top and nothing of the area-3
    one, so the lit area fraction is exactly 3/4 (a mean over triangles would say 1/2)."""
    model = load_model(write(tmp_path, trapezoid_yaml()))
    base = model.faces[model.face_names.index("base/top")]
    np.testing.assert_array_equal(np.sort(triangle_areas(base.triangles)), [1.0, 3.0])
    kw = {"level": level, "backend": backend, "tracking": tracking}
    lit = lit_of(model, [0, 0, 1], **kw)
    assert lit["base/top"][0] == 0.75
    assert lit["roof/shade"][0] == 1.0
    # the seed's definition counts sun-facing triangles instead: 1 lit of 2
    assert lit_of(model, [0, 0, 1], convention="lcas", **kw)["base/top"][0] == 0.5


@pytest.mark.parametrize("level", [2, 3, 4, 5])
def test_plate_shadow_off_grid_within_one_cell_column(tmp_path, level):
    model = load_model(write(tmp_path, plates_yaml()))
    shifts = [(0.3, 0.0), (0.1, 0.0), (0.55, 0.0), (0.0, 0.7)]
    calc = LitCalculator(model, level=level)
    lit = calc(unit([[dx, dy, H] for dx, dy in shifts]))[:, model.face_names.index("base/top")]
    exact = np.array([analytic_plate(dx, dy) for dx, dy in shifts])
    assert np.all(np.abs(lit - exact) <= 2.0**-level)


def test_lcas_convention_counts_facets_at_level_0(tmp_path):
    """Seed definition: one ray from each level-0 triangle centroid. base/top is split along the
    diagonal (0,0)-(1,1): centroids at x = 2/3 and x = 1/3; a shift dx shadows x < 1 - dx."""
    model = load_model(write(tmp_path, plates_yaml()))
    sun = [[0.5, 0, H], [0.7, 0, H], [0.2, 0, H], [0.5, 0, -H]]
    lcas = lit_of(model, sun, convention="lcas", level=5)  # level is ignored by lcas
    np.testing.assert_array_equal(lcas["base/top"], [0.5, 1.0, 0.0, 0.0])
    area = lit_of(model, sun, level=5)
    np.testing.assert_allclose(area["base/top"], [0.5, 0.7, 0.2, 0.0], atol=2**-5)


def test_lone_convex_box_faces_are_exactly_one_or_zero(tmp_path):
    # rotated 30 degrees about (1, 1, 1)/sqrt(3): normals are R n
    half = np.radians(30) / 2
    q = [np.cos(half), *(np.sin(half) / np.sqrt(3) * np.ones(3))]
    model = load_model(write(tmp_path, box_yaml(str(list(map(float, q))))))
    rot = model.components[0].rotation
    sun = uniform(400, seed=3)
    lit = lit_of(model, sun, level=2)
    for name, (_, normal) in BOX_FACES.items():
        facing = sun @ (rot @ np.array(normal, dtype=float)) > 0
        np.testing.assert_array_equal(lit[f"box/{name}"], facing.astype(float), err_msg=name)


def test_face_turned_away_is_zero_and_level_gives_2_4L_triangles_per_quad(default_model):
    calc = LitCalculator(default_model, level=2)
    assert calc.K * 2 == 2 * 4**2  # each quad = 2 triangles x 4^L sub-triangles
    sun = uniform(300, seed=5)
    lit = calc(sun)
    normals = calc.normal_body[calc.face_start]  # planar faces: one normal each
    assert np.all(lit[(sun @ normals.T) < 0] == 0)
    assert np.all((lit >= 0) & (lit <= 1))


def test_subdivision_partitions_the_triangle():
    for level in range(5):
        uv = subdivision_uv(level)
        assert len(uv) == 4**level
        assert len({tuple(x) for x in np.round(uv, 12)}) == 4**level
        assert np.all(uv > 0) and np.all(uv.sum(axis=1) < 1)
        # equal-area pieces: the mean of their centroids is the triangle's centroid
        np.testing.assert_allclose(uv.mean(axis=0), [1 / 3, 1 / 3], atol=1e-12)


# --- the bundled model ----------------------------------------------------------------------------


def test_bundled_model_layout(default_model):
    m = default_model
    assert len(m.faces) == 22 and len(set(m.face_names)) == 22
    assert all("/" in n for n in m.face_names)
    comps = {c.name: c for c in m.components}
    np.testing.assert_allclose(comps["panel_north"].position, [0, 0, 9.2])
    np.testing.assert_allclose(comps["reflector_west"].position, [-0.947, -3.640, 0])
    # reflectors turned +-15 degrees about z: front normal (cos 15, +-sin 15, 0)
    tris, face = m.body_triangles()
    front = tris[face == m.face_names.index("reflector_east/front")]
    n = np.cross(front[0, 1] - front[0, 0], front[0, 2] - front[0, 0])
    np.testing.assert_allclose(n / np.linalg.norm(n), [np.cos(np.pi / 12), np.sin(np.pi / 12), 0])
    # bus 5.6 x 3.5 x 2.8 m, panels 0.1 x 3.5 x 12.6 m
    areas = dict(zip(m.face_names, m.face_areas))
    assert areas["bus/+x"] == pytest.approx(3.5 * 2.8)
    assert areas["panel_south/front"] == pytest.approx(3.5 * 12.6)
    assert areas["panel_south/edge_+z"] == pytest.approx(0.1 * 3.5)
    # every box face points away from its component's centre
    for f in m.faces:
        c = m.components[f.component]
        if c.name.startswith("reflector"):
            continue
        t = f.triangles[0]
        assert np.cross(t[1] - t[0], t[2] - t[0]) @ t.mean(axis=0) > 0, f.name


def test_unshadowable_faces_of_the_bundled_model(default_model):
    """By hand: bus +-x (everything else lies within |x| <= 2.8), the outer panel ends."""
    expected = {"bus/+x", "bus/-x", "panel_north/edge_+z", "panel_south/edge_-z"}
    for tracking in (False, True):
        found = {default_model.face_names[i] for i in unshadowable_faces(default_model, tracking)}
        assert found == expected
    calc = LitCalculator(default_model, level=2)
    sun = uniform(500, seed=8)
    lit = calc(sun)
    normals = calc.normal_body[calc.face_start]
    dots = sun @ normals.T
    for name in expected:
        j = default_model.face_names.index(name)
        assert np.all(lit[dots[:, j] > 0, j] == 1.0), name
    # while a face that can be shadowed is, for some sun directions (panel over bus/+z)
    j = default_model.face_names.index("bus/+z")
    assert np.any((lit[:, j] > 0) & (lit[:, j] < 1))


def test_sun_tracking_panels_face_the_sun(default_model):
    names = default_model.face_names
    az = np.linspace(0, 2 * np.pi, 37)[:-1]
    sun = np.stack([np.cos(az), np.sin(az), np.zeros_like(az)], axis=1)  # in the panels' plane
    tracked = LitCalculator(default_model, level=2, tracking=True)(sun)
    fixed = LitCalculator(default_model, level=2)(sun)
    for panel in ("panel_north", "panel_south"):
        front, back = names.index(f"{panel}/front"), names.index(f"{panel}/back")
        # nothing lies in the panels' z range but the panels: tracked fronts are fully lit
        np.testing.assert_array_equal(tracked[:, front], 1.0)
        np.testing.assert_array_equal(tracked[:, back], 0.0)
        np.testing.assert_array_equal(fixed[:, front], (sun[:, 0] > 0).astype(float))
    comp = next(c for c in default_model.components if c.name == "panel_north")
    s = unit([[0.3, -0.8, 0.5], [0, 0, 1]])
    m = tracking_rotations(comp, s)
    np.testing.assert_allclose(m[0] @ [1, 0, 0], unit([0.3, -0.8, 0])[0], atol=1e-12)
    np.testing.assert_allclose(m[1], np.eye(3), atol=1e-12)  # sun along the axis: no turn


# --- backends -------------------------------------------------------------------------------------


def test_backends_agree_on_the_bundled_model(default_model):
    sun = uniform(120, seed=11)
    for tracking in (False, True):
        embree = LitCalculator(default_model, level=1, tracking=tracking)(sun)
        brute = LitCalculator(default_model, level=1, tracking=tracking, backend="brute")(sun)
        np.testing.assert_array_equal(embree, brute)


def test_embree_caster_matches_trimesh_intersector(default_model):
    tris, _ = default_model.body_triangles()
    mesh = trimesh.Trimesh(
        tris.reshape(-1, 3), np.arange(3 * len(tris)).reshape(-1, 3), process=False
    )
    rng = np.random.default_rng(4)
    origins = rng.uniform(-12, 12, size=(20_000, 3))
    dirs = uniform(20_000, seed=6)
    ours = EmbreeCaster(tris).occluded(origins, dirs)
    reference = mesh.ray.intersects_any(origins, dirs)
    assert 0.05 < ours.mean() < 0.95
    np.testing.assert_array_equal(ours, reference)


def test_array_module_code_path_used_on_gpu_matches_embree(default_model):
    """The branches taken when xp is not numpy (cupy on a GPU), run here with a stand-in module
    that has numpy's functions but is not numpy."""
    stand_in = types.ModuleType("numpy_stand_in")
    stand_in.__dict__.update(np.__dict__)
    sun = uniform(60, seed=13)
    for convention in ("area", "lcas"):
        embree = LitCalculator(default_model, level=1, convention=convention)(sun)
        calc = LitCalculator(
            default_model, level=1, convention=convention, backend="brute", xp=stand_in
        )
        np.testing.assert_array_equal(calc(sun), embree)


@pytest.mark.gpu
def test_gpu_brute_backend_matches_embree(default_model):
    cupy = pytest.importorskip("cupy")
    if not cupy.is_available():
        pytest.skip("no CUDA device")
    sun = uniform(200, seed=12)
    embree = LitCalculator(default_model, level=2)(sun)
    gpu = LitCalculator(default_model, level=2, backend="brute", xp=cupy)(sun)
    np.testing.assert_array_equal(embree, gpu)


# --- model files: names and errors ----------------------------------------------------------------


def test_same_face_name_on_two_components_is_namespaced(tmp_path):
    model = load_model(write(tmp_path, plates_yaml()))
    assert model.face_names == ["base/top", "base/bottom", "roof/top", "roof/bottom"]


def test_duplicate_face_names_refused(tmp_path):
    text = plates_yaml().replace(
        "      bottom: " + str(PLATE_BOTTOM) + "\n  - id: 2",
        "      top: " + str(PLATE_BOTTOM) + "\n  - id: 2",
    )
    with pytest.raises(SpecError, match=r"duplicate key 'top' at line \d+ \(first at line \d+\)"):
        load_model(write(tmp_path, text))


def test_duplicate_component_names_refused(tmp_path):
    text = plates_yaml().replace("name: roof", "name: base")
    with pytest.raises(SpecError, match="component 'base': duplicate component name"):
        load_model(write(tmp_path, text))


def test_duplicate_obj_object_names_refused(tmp_path):
    plate = "v 0 0 0\nv 1 0 0\nv 1 1 0\nf 1 2 3\n"
    obj = f"o plate\n{plate}o plate\n{plate}"
    with pytest.raises(SpecError, match="duplicate object name 'plate' at line 6"):
        load_model(write(tmp_path, obj, "dup.obj"))


def test_duplicate_gltf_node_names_refused(tmp_path):
    tri = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [1, 1, 0]], [[0, 1, 2]])
    scene = trimesh.Scene()
    scene.add_geometry(tri, node_name="a", geom_name="ga")
    scene.add_geometry(tri.copy().apply_translation([0, 0, 1]), node_name="b", geom_name="gb")
    gltf = scene.export(file_type="gltf")  # {name: bytes}: the JSON and its buffers
    doc = json.loads(gltf["model.gltf"])
    for node in doc["nodes"]:
        node["name"] = "a" if node.get("name") == "b" else node.get("name")
    gltf["model.gltf"] = json.dumps(doc).encode()
    for name, data in gltf.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(SpecError, match="duplicate node name 'a'"):
        load_model(str(tmp_path / "model.gltf"))


BAD_MODELS = [
    (
        "orientation: [1, 0, 0, 0]",
        "orientation: [2, 0, 0, 0]",
        r"component 'base': orientation: quaternion \[2, 0, 0, 0\] has norm 2",
    ),
    ("orientation: [1, 0, 0, 0]", "orientation: [1, 0, 0]", "list of 4 numbers"),
    ("orientation: [1, 0, 0, 0]", "orientation: [1, 0, zero, 0]", "list of 4 numbers"),
    (
        f"top: {PLATE_TOP}",
        "top: [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]]",
        "component 'base' face 'top': degenerate face",
    ),
    (f"top: {PLATE_TOP}", "top: [[0, 0, 0], [1, 0, 0], [1, 1, 0.3], [0, 1, 0]]", "not planar"),
    (f"top: {PLATE_TOP}", "top: [[0, 0, 0], [1, 0, 0]]", "at least 3 vertices"),
    (
        f"top: {PLATE_TOP}",
        "top: [[0, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]]",
        "not planar and convex",
    ),
    ("    position: [0, 0, 0]\n", "", "component 'base': missing key 'position'"),
    ("name: base", "nom: base", "component #1: unknown key 'nom'"),
    ("components:", "parts:", "unknown key 'parts'"),
    ("top: [", "to,p: [", "may not contain"),
    ("    faces:\n      top", "    faces:\n     top", "not valid YAML"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_MODELS)
def test_bad_model_files_give_clear_errors(tmp_path, old, new, message):
    text = plates_yaml()
    assert old in text
    path = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(SpecError, match=message) as err:
        load_model(path)
    assert path in str(err.value) and "\n" not in str(err.value)


def test_missing_files_and_tracking_without_tracking_block(tmp_path):
    with pytest.raises(SpecError, match="model file not found"):
        build_params(Params, {"model": str(tmp_path / "nope.yaml")})
    with pytest.raises(SpecError, match="has no sun-tracking component"):
        build_params(Params, {"model": write(tmp_path, plates_yaml()), "sun_tracking": True})
    with pytest.raises(SpecError, match=r"params.level must be in \[0, 7\]"):
        build_params(Params, {"level": 9})
    with pytest.raises(SpecError, match="sun_file not found"):
        build_params(Params, {"sun_file": str(tmp_path / "sun.npy")})


def test_mesh_scene_faces_are_named_nodes_and_agree_with_yaml(tmp_path):
    top = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]])
    bottom = trimesh.Trimesh(top.vertices, top.faces[:, ::-1])
    scene = trimesh.Scene()
    for comp, z in (("base", 0.0), ("roof", H)):
        for name, mesh in (("top", top), ("bottom", bottom)):
            transform = trimesh.transformations.translation_matrix([0, 0, z])
            scene.add_geometry(
                mesh, node_name=f"{comp}/{name}", geom_name=f"{comp}_{name}", transform=transform
            )
    path = tmp_path / "plates.glb"
    scene.export(path)
    mesh_model = load_model(str(path))
    yaml_model = load_model(write(tmp_path, plates_yaml()))
    assert sorted(mesh_model.face_names) == sorted(yaml_model.face_names)
    sun = [[0.25, 0.5, H], [-0.5, 0.125, H], [0.75, 0, -H]]
    a, b = lit_of(mesh_model, sun, level=3), lit_of(yaml_model, sun, level=3)
    for name in yaml_model.face_names:
        np.testing.assert_allclose(a[name], b[name], atol=1e-12, err_msg=name)


# --- sun directions and the generator contract ----------------------------------------------------


def test_sample_is_deterministic_per_chunk_and_unit():
    gen = IlluminationGenerator(Params(level=0))
    a = gen.sample(Chunk(index=3, start=300, count=100, seed=7))["sun_vectors"]
    b = gen.sample(Chunk(index=3, start=300, count=100, seed=7))["sun_vectors"]
    c = gen.sample(Chunk(index=4, start=400, count=100, seed=7))["sun_vectors"]
    assert a.tobytes() == b.tobytes() and not np.array_equal(a, c)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-12)
    gen32 = IlluminationGenerator(Params(level=0), float_dtype="float32")
    assert gen32.sample(Chunk(index=3, start=300, count=100, seed=7))["sun_vectors"].dtype == (
        np.float32
    )


def test_sun_file_rows_follow_the_chunk(tmp_path):
    rows = np.random.default_rng(2).normal(size=(10, 3)) * 5
    np.save(tmp_path / "sun.npy", rows)
    header = "sun_vec_x,sun_vec_y,sun_vec_z,extra\n"
    lines = "".join(",".join(f"{x:.17g}" for x in r) + ",0.5\n" for r in rows)
    (tmp_path / "sun.csv").write_text(header + lines)
    for name in ("sun.npy", "sun.csv"):
        gen = IlluminationGenerator(Params(level=0, sun_file=str(tmp_path / name)))
        got = gen.sample(Chunk(index=1, start=4, count=3, seed=0))["sun_vectors"]
        np.testing.assert_allclose(got, unit(rows[4:7]), rtol=1e-15, err_msg=name)
        assert tmp_path / name in gen.input_files()
        with pytest.raises(UserError, match="has 10 rows; this run needs rows up to 12"):
            gen.sample(Chunk(index=2, start=8, count=4, seed=0))
    rows[5] = 0
    np.save(tmp_path / "zero.npy", rows)
    gen = IlluminationGenerator(Params(level=0, sun_file=str(tmp_path / "zero.npy")))
    with pytest.raises(UserError, match="row 5 is not a direction"):
        gen.sample(Chunk(index=1, start=4, count=3, seed=0))


def test_fields_carry_face_names_and_compute_shapes(default_model):
    gen = IlluminationGenerator(Params(level=1), float_dtype="float32")
    fields = {f.name: f for f in gen.fields()}
    assert fields["lit_fractions"].shape == (22,)
    assert list(fields["lit_fractions"].attrs["face_names"]) == default_model.face_names
    chunk = Chunk(index=0, start=0, count=50, seed=1)
    out = gen.compute(gen.sample(chunk), chunk, device=_cpu())
    assert out["lit_fractions"].shape == (50, 22) and out["lit_fractions"].dtype == np.float32


def _cpu():
    from hpcgen.generators.base import Device

    return Device("cpu", np)


# --- verifier -------------------------------------------------------------------------------------


def _verify(gen, data) -> dict[str, bool]:
    v = gen.verifier()
    n = len(data["sun_vectors"])
    for a in range(0, n, 700):
        v.update({k: x[a : a + 700] for k, x in data.items()}, a)
    return {r.name: r.passed for r in v.results()}


@pytest.fixture(scope="module")
def verified_data():
    gen = IlluminationGenerator(Params(level=1))
    chunk = Chunk(index=0, start=0, count=3000, seed=5)
    data = gen.sample(chunk)
    data |= gen.compute(data, chunk, _cpu())
    return gen, data


def test_verifier_passes_generated_data(verified_data):
    gen, data = verified_data
    results = _verify(gen, data)
    assert all(results.values()), results
    assert len(results) == 6


def test_verifier_catches_each_kind_of_bad_data(verified_data, default_model):
    gen, data = verified_data
    names = default_model.face_names
    sun, lit = data["sun_vectors"], data["lit_fractions"]

    def failing(**changed) -> set[str]:
        return {k for k, ok in _verify(gen, data | changed).items() if not ok}

    bad = lit.copy()
    bad[10, 3] = 1.2
    assert "lit fractions in [0, 1]" in failing(lit_fractions=bad)
    bad = lit.copy()
    j = names.index("bus/+x")
    bad[np.flatnonzero(sun[:, 0] < -0.1)[0], j] = 0.5  # bus/+x turned away
    assert failing(lit_fractions=bad) == {"faces turned away from the sun are 0"}
    bad = lit.copy()
    bad[np.flatnonzero(sun[:, 0] > 0.1)[0], j] = 0.9  # bus/+x lit and unshadowable
    assert failing(lit_fractions=bad) == {"unshadowable faces facing the sun are 1"}
    assert "sun vectors have unit length" in failing(sun_vectors=sun * 1.001)
    north = sun.copy()
    north[:, 2] = np.abs(north[:, 2])  # all suns in the upper hemisphere
    failed = failing(sun_vectors=north)
    assert {"mean sun vector is 0", "sun z uniform on [-1, 1] (KS)"} <= failed


def test_sun_file_rewritten_or_named_from_another_directory_is_read_again(tmp_path, monkeypatch):
    # one process (a notebook, the Python API) that runs again after the file changed, or from
    # another working directory, reads the file the path names now, not a cached earlier one
    first = np.tile([1.0, 0.0, 0.0], (10, 1))
    second = np.tile([0.0, 0.0, 1.0], (12, 1))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name, rows in (("a/sun.csv", first), ("b/sun.csv", second)):
        (tmp_path / name).write_text("".join(",".join(map(str, r)) + "\n" for r in rows))
    chunk = Chunk(index=0, start=0, count=10, seed=0)

    def sun(cwd: str) -> np.ndarray:
        monkeypatch.chdir(tmp_path / cwd)
        return IlluminationGenerator(Params(level=0, sun_file="sun.csv")).sample(chunk)[
            "sun_vectors"
        ]

    np.testing.assert_array_equal(sun("a"), first)
    np.testing.assert_array_equal(sun("b"), second[:10])  # same relative name, other file
    (tmp_path / "a" / "sun.csv").write_text("0,1,0\n" * 11)  # rewritten in place
    np.testing.assert_array_equal(sun("a"), np.tile([0.0, 1.0, 0.0], (10, 1)))


def test_sun_file_copied_over_with_its_size_and_mtime_is_read_again(tmp_path):
    # cp -p, rsync -t or a file system of whole seconds: the same size and mtime, new rows
    path = tmp_path / "sun.csv"
    path.write_text("1,0,0\n" * 4)
    chunk = Chunk(index=0, start=0, count=4, seed=0)
    gen = IlluminationGenerator(Params(level=0, sun_file=str(path)))
    np.testing.assert_array_equal(gen.sample(chunk)["sun_vectors"], np.tile([1.0, 0, 0], (4, 1)))
    st = path.stat()
    fresh = tmp_path / "fresh.csv"
    fresh.write_text("0,0,1\n" * 4)
    os.utime(fresh, ns=(st.st_atime_ns, st.st_mtime_ns))
    fresh.replace(path)  # same size, same mtime, another file
    again = IlluminationGenerator(Params(level=0, sun_file=str(path)))
    np.testing.assert_array_equal(again.sample(chunk)["sun_vectors"], np.tile([0, 0, 1.0], (4, 1)))
    # within one run (one generator) the version its first chunk read stays: a file rewritten
    # during a run is refused by --resume (its input hash), never mixed into the run's rows
    np.testing.assert_array_equal(gen.sample(chunk)["sun_vectors"], np.tile([1.0, 0, 0], (4, 1)))
