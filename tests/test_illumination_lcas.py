"""illumination with LCAS satellite models: the tagged ``*_model.yaml`` read as data (never
imported or executed), faces/positions/orientations/articulation mapped as LCAS's code does, and
the CSV as LCAS's generator writes it and its tests read it.

The fixture ``tests/data/lcas/box_plates_model.yaml`` (written for these tests in LCAS's layout):
a 2 m cube ``Box`` at the origin; ``Plate_North``, a 2 x 2 m plate of zero thickness at y = +2
turned +90 deg about z (quaternion [cos 45, 0, 0, sin 45], w first), so its ``PL_Front`` (+x in
its own frame) faces +y; ``Plate_South`` at y = -2 turned -90 deg, ``PL_Front`` facing -y, with
LCAS's legacy sun-tracking rule. Both plates use the face names ``PL_Front``/``PL_Back``.

Hand-derived lit fractions for the sun along (0, 1, 1)/sqrt(2): a ray from (x, 1, z) on the
box's +y face reaches y = 2 at height z + 1, inside the north plate when z <= 0, so
``Box_Face_Y_Positive`` is half lit (shadow edge z = 0: a line of the subdivision grid, and the
two level-0 centroids lie on either side of it); likewise a ray from the south plate's back
(x, -2, z) meets the box at y = -1 when z <= 0. The box top and the north plate's front see
nothing above them; faces with n . s <= 0 are 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import trimesh
from helpers import run_hpcgen

from hpcgen.errors import SpecError
from hpcgen.generators.base import build_params
from hpcgen.generators.illumination.generator import IlluminationGenerator, Params
from hpcgen.generators.illumination.lit import LitCalculator
from hpcgen.generators.illumination.model import (
    load_model,
    tracking_rotations,
    triangle_normals,
)

DATA = Path(__file__).parent / "data" / "lcas"
MODEL = DATA / "box_plates_model.yaml"
ARTICULATION = DATA / "box_plates_articulation.yaml"
COLUMNS = [
    "Box_Face_X_Positive",
    "Box_Face_X_Negative",
    "Box_Face_Y_Positive",
    "Box_Face_Y_Negative",
    "Box_Face_Z_Positive",
    "Box_Face_Z_Negative",
    "Plate_North/PL_Front",
    "Plate_North/PL_Back",
    "Plate_South/PL_Front",
    "Plate_South/PL_Back",
]
#: outward normals in the body frame: [cos 45, 0, 0, sin 45] turns +x into +y
BODY_NORMALS = {
    "Box_Face_X_Positive": [1, 0, 0],
    "Box_Face_X_Negative": [-1, 0, 0],
    "Box_Face_Y_Positive": [0, 1, 0],
    "Box_Face_Y_Negative": [0, -1, 0],
    "Box_Face_Z_Positive": [0, 0, 1],
    "Box_Face_Z_Negative": [0, 0, -1],
    "Plate_North/PL_Front": [0, 1, 0],
    "Plate_North/PL_Back": [0, -1, 0],
    "Plate_South/PL_Front": [0, -1, 0],
    "Plate_South/PL_Back": [0, 1, 0],
}
SUN_DIAGONAL = [0.0, 1.0, 1.0]
LIT_DIAGONAL = {
    "Box_Face_Y_Positive": 0.5,
    "Box_Face_Z_Positive": 1.0,
    "Plate_North/PL_Front": 1.0,
    "Plate_South/PL_Back": 0.5,
}  # every other face: 0


def unit(v) -> np.ndarray:
    v = np.atleast_2d(np.asarray(v, dtype=float))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def body_normal(model, name: str) -> np.ndarray:
    face = model.faces[model.face_names.index(name)]
    normals = triangle_normals(face.triangles) @ model.components[face.component].rotation.T
    assert np.allclose(normals, normals[0], atol=1e-12)  # planar
    return normals[0]


def variant(tmp_path: Path, old: str, new: str, name: str = "model.yaml") -> Path:
    text = MODEL.read_text()
    assert old in text, old
    p = tmp_path / name
    p.write_text(text.replace(old, new, 1))
    return p


def lcas_sun_pointing_angle(sun: np.ndarray, axis: np.ndarray, normal: np.ndarray) -> float:
    """Transcription of LCAS's geometry_utils.calculate_sun_pointing_rotation, in radians."""
    s, a, n = (
        sun / np.linalg.norm(sun),
        axis / np.linalg.norm(axis),
        normal / np.linalg.norm(normal),
    )
    sp, np_ = s - (s @ a) * a, n - (n @ a) * a
    if np.linalg.norm(sp) < 1e-9 or np.linalg.norm(np_) < 1e-9:
        return 0.0
    sp, np_ = sp / np.linalg.norm(sp), np_ / np.linalg.norm(np_)
    return float(np.arctan2(np.cross(np_, sp) @ a, np_ @ sp))


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# --- reading the tagged YAML as data ------------------------------------------------------------


def test_the_model_loads_without_importing_what_its_tags_name(tmp_path):
    """A fake ``src`` package and ``quaternion`` module on the path record any import: loading
    the model must not touch them (LCAS's own loader imports both)."""
    marker = tmp_path / "imported.txt"
    fake = tmp_path / "fake"
    (fake / "src" / "models").mkdir(parents=True)
    trap = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for f in ("src/__init__.py", "src/models/__init__.py", "src/models/model_definitions.py"):
        (fake / f).write_text(trap)
    (fake / "quaternion.py").write_text(trap)
    code = textwrap.dedent(
        f"""
        import sys
        from hpcgen.generators.illumination.model import load_model
        m = load_model({str(MODEL)!r}, {str(ARTICULATION)!r})
        assert len(m.faces) == 10
        bad = [k for k in sys.modules if k == "quaternion" or k.split(".")[0] == "src"]
        print("modules:", bad)
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "modules: []" in proc.stdout
    assert not marker.exists()


FIRST_VERTEX = "    - - 1.0\n      - -1.0\n      - -1.0\n"
ROOT_TAG = "!src.models.model_definitions.Satellite\n"
NORTH_POSITION = "relative_position: !numpy.ndarray\n  - 0.0\n  - 2.0"
BOX_TAG = "!src.models.model_definitions.Component\n  id: BOX"
BOX_QUATERNION = "relative_orientation: !numpy.quaternion\n  - 1.0\n  - -0.0\n  - -0.0\n  - -0.0"
APPLY = "!!python/object/apply:os.system"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (FIRST_VERTEX, f"    - {APPLY} ['{{cmd}}']\n"),  # a Python call for a vertex
        (ROOT_TAG, f"{APPLY}\nargs: ['{{cmd}}']\n"),  # the same at the root
        (NORTH_POSITION, NORTH_POSITION.replace("!numpy.ndarray", "!os.system")),
        (BOX_TAG, BOX_TAG.replace("Component", "Evil")),  # a class LCAS does not have
        ("  articulation_rule: null\n", "  articulation_rule: !!python/name:os.system\n"),
        (BOX_QUATERNION, "relative_orientation: !numpy.quaternion '{cmd}'"),  # wrong node kind
    ],
)
def test_tags_that_name_code_are_refused_and_never_run(tmp_path, old, new):
    marker = tmp_path / "ran.txt"
    path = variant(tmp_path, old, new.format(cmd=f"touch {marker}"))
    with pytest.raises(SpecError) as err:
        load_model(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert not marker.exists()


# --- faces, positions, orientations ------------------------------------------------------------


def test_faces_are_the_conceptual_faces_with_shared_names_qualified():
    model = load_model(MODEL)
    assert model.name == "Box and Plates"
    assert model.face_names == COLUMNS
    assert [c.name for c in model.components] == ["Box", "Plate_North", "Plate_South"]
    assert [c.id for c in model.components] == ["BOX", "PLATE", "PLATE"]  # ids may repeat
    assert model.components[1].material == {"r_d": 0.7, "r_s": 0.2, "n_phong": 15.0}
    # every quad fan-triangulated from its first vertex: 2 triangles of 2 m^2
    np.testing.assert_array_equal(model.face_areas, np.full(10, 4.0))
    assert all(len(f.triangles) == 2 for f in model.faces)


def test_the_box_is_a_closed_mesh_with_outward_faces():
    """The Box component's triangles, merged by trimesh, close a 2 m cube: watertight, and its
    signed volume is +8 m^3 only if every face winds outward."""
    model = load_model(MODEL)
    tris, face_of = model.body_triangles()
    box = tris[np.isin(face_of, [model.face_names.index(n) for n in COLUMNS[:6]])]
    mesh = trimesh.Trimesh(box.reshape(-1, 3), np.arange(3 * len(box)).reshape(-1, 3))
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(8.0, abs=1e-12)
    assert len(mesh.faces) == 12


def test_quaternions_are_w_first_and_rotate_component_into_body_frame():
    model = load_model(MODEL)
    for name, normal in BODY_NORMALS.items():
        np.testing.assert_allclose(body_normal(model, name), normal, atol=1e-12, err_msg=name)
    # a point of Plate_North's frame: R p + t with R the +90 deg turn about z
    tris, face_of = model.body_triangles()
    front = tris[face_of == model.face_names.index("Plate_North/PL_Front")].reshape(-1, 3)
    # local (0, -1, -1) -> (1, 0, -1) + (0, 2, 0); local (0, 1, 1) -> (-1, 0, 1) + (0, 2, 0)
    assert np.isclose(front, [1, 2, -1], atol=1e-12).all(axis=1).any()
    assert np.isclose(front, [-1, 2, 1], atol=1e-12).all(axis=1).any()


@pytest.mark.parametrize("backend", ["embree", "brute"])
@pytest.mark.parametrize(("convention", "level"), [("area", 0), ("area", 2), ("lcas", 0)])
def test_exact_lit_fractions_of_the_box_and_plates(backend, convention, level):
    model = load_model(MODEL)
    lit = LitCalculator(model, level=level, convention=convention, backend=backend)
    values = lit(unit(SUN_DIAGONAL))[0]
    expected = [LIT_DIAGONAL.get(name, 0.0) for name in COLUMNS]
    np.testing.assert_array_equal(values, expected)


# --- articulation ------------------------------------------------------------------------------


def test_articulation_file_and_legacy_rule_turn_the_plates_towards_the_sun():
    model = load_model(MODEL, ARTICULATION)
    box, north, south = model.components
    assert not box.can_track  # rule_type none, no legacy rule
    assert north.can_track and south.can_track
    sun = unit([1, 0, 0])
    # south (legacy rule, full turn): its front turns from -y to face the sun
    np.testing.assert_allclose(
        tracking_rotations(south, sun)[0] @ south.tracking_normal, [1, 0, 0], atol=1e-12
    )
    # north: the sun needs -90 deg about its z axis, the file limits the turn to -45 deg
    c = np.sqrt(0.5)
    np.testing.assert_allclose(
        tracking_rotations(north, sun)[0] @ north.tracking_normal, [c, c, 0], atol=1e-12
    )
    static = LitCalculator(model, level=1)(sun)[0]
    turned = LitCalculator(model, level=1, tracking=True)(sun)[0]
    j = COLUMNS.index("Plate_South/PL_Front")
    assert static[j] == 0.0  # edge-on to the sun at rest
    assert turned[j] == 1.0  # facing it once turned, nothing beyond it


def test_turn_angle_is_lcas_sun_pointing_rotation_in_the_component_frame():
    model = load_model(MODEL)  # legacy rules only: no limits
    south = model.components[2]
    rng = np.random.default_rng(4)
    suns = unit(rng.normal(size=(50, 3)))
    got = tracking_rotations(south, suns)
    for s, m in zip(suns, got):
        angle = lcas_sun_pointing_angle(south.rotation.T @ s, np.array([0, 0, 1.0]), np.eye(3)[0])
        np.testing.assert_allclose(m, south.rotation @ rot_z(angle), atol=1e-12)


def test_rotation_center_is_the_pivot_of_the_turn(tmp_path):
    art = tmp_path / "art.yaml"
    art.write_text(
        "articulation_rules:\n  Plate_North:\n    rule_type: track_sun\n"
        "    rotation_center: [0.0, 1.0, 0.0]\n    rotation_axis: [0.0, 0.0, 1.0]\n"
        "    reference_normal: [1.0, 0.0, 0.0]\n"
    )
    model = load_model(MODEL, art)
    rest = load_model(MODEL)
    np.testing.assert_allclose(model.body_triangles()[0], rest.body_triangles()[0], atol=1e-12)
    north = model.components[1]
    pivot = np.array([0.0, 2.0, 0.0]) + rot_z(np.pi / 2) @ [0.0, 1.0, 0.0]  # t + R c
    sun = unit([1, 0, 0])
    m = tracking_rotations(north, sun)[0]
    angle = lcas_sun_pointing_angle(north.rotation.T @ sun[0], np.eye(3)[2], np.eye(3)[0])
    assert angle == pytest.approx(-np.pi / 2)
    for face in (f for f in model.faces if f.component == 1):
        at_rest = rest.faces[model.faces.index(face)].triangles @ rest.components[1].rotation.T
        at_rest = at_rest + rest.components[1].position
        turned = face.triangles @ m.T + north.position
        expected = (at_rest - pivot) @ rot_z(angle).T + pivot
        np.testing.assert_allclose(turned, expected, atol=1e-12)


# --- errors: one line, file and component named ----------------------------------------------


LEGACY = "  articulation_rule: TRACK_SUN_PRIMARY_AXIS_Z_SECONDARY_X\n"
BOX_MATERIAL = (
    "  default_material: !src.models.model_definitions.BRDFMaterialProperties\n"
    "    r_d: 0.5\n    r_s: 0.05\n    n_phong: 8.0\n"
)
NORTH_Q = "  - 0.7071067811865476\n  - 0.0\n  - 0.0\n  - 0.7071067811865476"
NORTH_QUATERNION = "relative_orientation: !numpy.quaternion\n" + NORTH_Q
PL_BACK = "PL_Back: [[0.0, -1.0, -1.0], [0.0, -1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 1.0, -1.0]]"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  name: Plate_South\n", "  name: Plate_North\n", "duplicate component name"),
        (LEGACY, "  articulation_rule: SPIN\n", "articulation_rule 'SPIN' is not known"),
        ("  articulation_rule: null\n" + BOX_MATERIAL, "", "no default_material"),
        ("  id: BOX\n", "  id: BOX\n  mesh_path: box.stl\n", "Component field 'mesh_path'"),
        (NORTH_QUATERNION, "relative_orientation: [1, 0, 0, 0]", "must be a !numpy.quaternion"),
        (NORTH_Q, "  - 0.7\n  - 0.0\n  - 0.0\n  - 0.8", "has norm"),
        (PL_BACK, "PL_Back: [[0.0, -1.0, -1.0], [0.0, -1.0, 1.0]]", "at least 3 vertices"),
        ("    PL_Front: [[0.0, -1.0, -1.0]", "    PL_Front: [[0.5, -1.0, -1.0]", "not planar"),
        ("body_frame_name: BOX", "body_frame: BOX", "unknown Satellite field 'body_frame'"),
        ("    Box_Face_Z_Negative:", "    Box_Face_Z_Positive:", "duplicate key"),
    ],
)
def test_model_errors_are_one_line_with_file_and_component(tmp_path, old, new, message):
    path = variant(tmp_path, old, new)
    with pytest.raises(SpecError, match=message) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


NORTH_SUN = "  Plate_North:\n    rule_type: track_sun\n"
ERROR_RULES = {
    "unknown component": ("  Plate_West:\n    rule_type: track_sun\n", "no component of that"),
    "earth": ("  Plate_North:\n    rule_type: track_earth\n", "needs an Earth direction"),
    "unknown type": ("  Plate_North:\n    rule_type: wobble\n", "unknown rule_type 'wobble'"),
    "unknown field": (NORTH_SUN + "    speed: 2\n", "unknown field 'speed'"),
    "parallel": (NORTH_SUN + "    reference_normal: [0, 0, 2]\n", "must not be parallel"),
    "limits": (
        NORTH_SUN + "    limits: {min_angle: 50, max_angle: 10}\n",
        "min_angle <= max_angle",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_RULES))
def test_articulation_errors(tmp_path, case):
    body, message = ERROR_RULES[case]
    art = tmp_path / "art.yaml"
    art.write_text("articulation_rules:\n" + body)
    with pytest.raises(SpecError, match=message) as err:
        load_model(MODEL, art)
    assert str(art) in str(err.value) and "\n" not in str(err.value)


def test_articulation_param_is_for_lcas_models_and_is_an_input_file(tmp_path):
    params = build_params(
        Params, {"model": str(MODEL), "articulation": str(ARTICULATION), "sun_tracking": True}
    )
    gen = IlluminationGenerator(params)
    assert gen.model.face_names == COLUMNS
    assert ARTICULATION in gen.input_files() and MODEL in gen.input_files()
    with pytest.raises(SpecError, match="applies to LCAS models only"):
        build_params(Params, {"articulation": str(ARTICULATION)})  # the bundled model
    with pytest.raises(SpecError, match="articulation file not found"):
        build_params(Params, {"model": str(MODEL), "articulation": str(tmp_path / "no.yaml")})


# --- the CSV, as LCAS writes and reads it -------------------------------------------------------


def lcas_read(path: Path) -> tuple[list[str], np.ndarray]:
    """What LCAS's tests do with the generator's CSV (tests/test_surrogate_data_generator.py):
    the header line split on commas, the data by np.loadtxt(delimiter=',', skiprows=1)."""
    with open(path) as f:
        header = f.readline().strip()
        first = f.readline().strip()
    assert header.startswith("sun_vec_x,sun_vec_y,sun_vec_z")
    columns = header.split(",")
    assert len(first.split(",")) == len(columns)
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    assert data.shape[1] == len(columns)
    assert np.allclose(np.linalg.norm(data[:, :3], axis=1), 1.0, atol=1e-5)
    assert np.all((data[:, 3:] >= 0.0) & (data[:, 3:] <= 1.0))
    return columns, data


@pytest.mark.parametrize("tracking", [False, True])
def test_csv_has_the_conceptual_columns_and_reads_as_lcas_reads_it(tmp_path, tracking):
    n = 300
    spec = tmp_path / "lcas.toml"
    spec.write_text(
        f'generator = "illumination"\nn_samples = {n}\nseed = 3\nchunk_size = 100\n'
        f'output = "lcas.h5"\n\n[params]\nmodel = "{MODEL}"\narticulation = "{ARTICULATION}"\n'
        f"level = 1\nsun_tracking = {str(tracking).lower()}\n"
    )
    h5 = tmp_path / "lcas.h5"
    run_hpcgen("run", spec, "--out", h5, "--quiet", check=True)
    assert run_hpcgen("verify", h5).returncode == 0
    csv = tmp_path / "lcas.csv"
    run_hpcgen("export", h5, "--format", "csv", "--out", csv, check=True)

    columns, data = lcas_read(csv)
    assert columns == ["sun_vec_x", "sun_vec_y", "sun_vec_z", *COLUMNS]
    assert len(csv.read_text().splitlines()) == n + 1
    with h5py.File(h5, "r") as f:
        rows = np.hstack([f["sun_vectors"][...], f["lit_fractions"][...]])
    np.testing.assert_allclose(data, rows, atol=5e-7)
    # byte for byte what LCAS's run_generation writes for these rows
    theirs = tmp_path / "theirs.csv"
    np.savetxt(theirs, rows, delimiter=",", header=",".join(columns), fmt="%.6f", comments="")
    assert csv.read_bytes() == theirs.read_bytes()
