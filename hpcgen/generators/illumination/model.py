"""Satellite geometry: a YAML box-wing model or any mesh scene trimesh can load.

A model is a list of rigid *components*, each carrying named planar *faces* (the unit whose lit
fraction is reported). Face names are namespaced ``component/face``. Everything is in metres in
the satellite body frame once placed; a component-frame point ``p`` sits at ``R p + t`` in the
body frame, with ``R`` from the unit quaternion ``orientation = (w, x, y, z)`` and ``t`` the
``position``.

YAML layout (see ``models/intelsat901.yaml``)::

    name: my_sat
    components:
      - id: 1                         # int or string, unique
        name: bus                     # unique; no "/" or ","
        position: [0, 0, 0]           # m (alias: relative_position)
        orientation: [1, 0, 0, 0]     # unit quaternion w, x, y, z (alias: relative_orientation)
        material: {r_d: 0.6}          # optional, numbers only (kept for light-curve users)
        tracking: {axis: [0, 0, 1], normal: [1, 0, 0]}   # optional sun-tracking articulation
        faces:
          "+x": [[2.8, -1.75, -1.4], [2.8, 1.75, -1.4], [2.8, 1.75, 1.4], [2.8, -1.75, 1.4]]

Faces are planar convex polygons (normally quads), vertex order giving the outward normal by the
right-hand rule. Mesh files (GLB, OBJ, PLY ... anything ``trimesh.load`` reads as a scene) give
one face per scene node, named by the node: a face is then any set of triangles. LCAS model files
(``*_model.yaml`` with ``!src.models.model_definitions.Satellite`` at the root) are read as data
by :mod:`.lcas`, with an optional LCAS articulation file.

Every problem in a model file is a :class:`SpecError` naming the file, the component and the face.
"""

from __future__ import annotations

import functools
import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import SpecError
from hpcgen.generators.base import FileVersion, file_version

#: the bundled Intelsat 901 box-wing model (package data)
DEFAULT_MODEL = Path(__file__).with_name("models") / "intelsat901.yaml"
YAML_SUFFIXES = (".yaml", ".yml")

#: |q| may differ from 1 by this much (rounded decimals in files); it is then normalised
QUATERNION_NORM_TOL = 1e-3
#: relative tolerances (to the face size) for planarity and degeneracy of polygons
PLANAR_TOL = 1e-6
AREA_TOL = 1e-12

_BAD_NAME = re.compile(r"[/,\n\r\"]")
_COMPONENT_KEYS = ("id", "name", "position", "orientation", "faces", "material", "tracking")
_ALIASES = {"relative_position": "position", "relative_orientation": "orientation"}


@dataclass(frozen=True)
class Component:
    """A rigid part. ``rotation`` (3, 3) maps component-frame vectors to the body frame."""

    id: str
    name: str
    rotation: np.ndarray
    position: np.ndarray
    material: Mapping[str, float] = field(default_factory=dict)
    #: sun-tracking articulation (component frame, unit vectors): turn about ``tracking_axis``
    #: (through ``position``) until ``tracking_normal`` points as close to the sun as it can
    tracking_axis: np.ndarray | None = None
    tracking_normal: np.ndarray | None = None
    #: (min, max) turn angle in rad, or None for a full turn (LCAS articulation ``limits``)
    tracking_limits: tuple[float, float] | None = None

    @property
    def can_track(self) -> bool:
        return self.tracking_axis is not None


@dataclass(frozen=True)
class Face:
    """A named face: triangles (k, 3, 3) in its component's frame (counter-clockwise = outward)."""

    name: str
    component: int
    triangles: np.ndarray

    @property
    def area(self) -> float:
        return float(triangle_areas(self.triangles).sum())


@dataclass(frozen=True)
class Model:
    name: str
    source: Path
    components: tuple[Component, ...]
    faces: tuple[Face, ...]

    @property
    def face_names(self) -> list[str]:
        return [f.name for f in self.faces]

    @property
    def face_areas(self) -> np.ndarray:
        return np.array([f.area for f in self.faces])

    def body_triangles(self) -> tuple[np.ndarray, np.ndarray]:
        """All triangles in the body frame at rest (T, 3, 3) and their face index (T,)."""
        tris, index = [], []
        for i, f in enumerate(self.faces):
            c = self.components[f.component]
            tris.append(f.triangles @ c.rotation.T + c.position)
            index.append(np.full(len(f.triangles), i))
        return np.concatenate(tris), np.concatenate(index)

    @property
    def scale(self) -> float:
        """Diagonal of the body-frame bounding box (m)."""
        pts = self.body_triangles()[0].reshape(-1, 3)
        return float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0))) or 1.0


# --- geometry helpers -----------------------------------------------------------------------------


def triangle_areas(tris: np.ndarray) -> np.ndarray:
    return 0.5 * np.linalg.norm(
        np.cross(tris[..., 1, :] - tris[..., 0, :], tris[..., 2, :] - tris[..., 0, :]), axis=-1
    )


def triangle_normals(tris: np.ndarray) -> np.ndarray:
    n = np.cross(tris[..., 1, :] - tris[..., 0, :], tris[..., 2, :] - tris[..., 0, :])
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def quaternion_matrix(q: Sequence[float]) -> np.ndarray:
    """Rotation matrix of the unit quaternion (w, x, y, z) (active: rotates vectors)."""
    w, x, y, z = (float(v) for v in q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def axis_rotations(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: rotations (n, 3, 3) by ``angle`` (n,) rad about the unit ``axis``."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def tracking_rotations(comp: Component, sun: np.ndarray) -> np.ndarray:
    """Component -> body rotations (n, 3, 3) of a sun-tracking component for sun vectors (n, 3).

    The component turns about its tracking axis by the angle that brings its tracking normal onto
    the projection of the sun direction on the plane normal to the axis (no turn when the sun is
    along the axis), clipped to ``tracking_limits`` when the component has them.
    """
    a, n0 = comp.tracking_axis, comp.tracking_normal
    s_local = sun @ comp.rotation  # R^T s for each row
    s_perp = s_local - np.outer(s_local @ a, a)
    angle = np.arctan2(s_perp @ np.cross(a, n0), s_perp @ n0)
    if comp.tracking_limits is not None:
        angle = np.clip(angle, *comp.tracking_limits)
    return comp.rotation @ axis_rotations(a, angle)


def unshadowable_faces(model: Model, tracking: bool = False) -> list[int]:
    """Indices of faces that nothing in the model can shadow.

    Sufficient condition: the face is planar and every other vertex of the model lies on or
    behind its plane. A ray leaving such a face towards a sun it faces moves into the open
    half-space in front of the plane, where there is nothing to hit. With ``tracking``, a
    tracking component's vertices are taken at the worst angle of their turn, and a face on a
    tracking component only qualifies when its normal is along the turn axis (its plane does not
    move).
    """
    tris, face_of = model.body_triangles()
    scale = model.scale
    out = []
    for i, f in enumerate(model.faces):
        comp = model.components[f.component]
        own = tris[face_of == i]
        normals = triangle_normals(own)
        n = normals[0]
        if not np.allclose(normals, n, atol=1e-9):
            continue
        p = own[0, 0]
        if tracking and comp.can_track:
            axis_body = comp.rotation @ comp.tracking_axis
            if abs(abs(n @ axis_body) - 1) > 1e-9:
                continue
        reach = []
        for j, other in enumerate(model.faces):
            if j == i:
                continue
            verts = tris[face_of == j].reshape(-1, 3)
            oc = model.components[other.component]
            if tracking and oc.can_track and other.component != f.component:
                # max over the turn angle of n . (vertex - p), vertex rotating about the axis
                a = oc.rotation @ oc.tracking_axis
                w = verts - oc.position
                w_par = np.outer(w @ a, a)
                w_perp = w - w_par
                amp = np.hypot(w_perp @ n, np.cross(a, w_perp) @ n)
                reach.append((oc.position - p) @ n + w_par @ n + amp)
            else:
                reach.append((verts - p) @ n)
        if not reach or max(r.max() for r in reach) <= 1e-9 * scale:
            out.append(i)
    return out


# --- loading --------------------------------------------------------------------------------------


def resolve_model_path(model: str) -> Path:
    """'' -> the bundled default; otherwise the user's path (must exist)."""
    if not model:
        return DEFAULT_MODEL
    p = Path(model).expanduser()
    if not p.is_file():
        raise SpecError(f"model file not found: {p}")
    return p


def resolve_articulation_path(articulation: str) -> Path | None:
    """'' -> None (no articulation file); otherwise the user's path (must exist)."""
    if not articulation:
        return None
    p = Path(articulation).expanduser()
    if not p.is_file():
        raise SpecError(f"articulation file not found: {p}")
    return p


def load_model(model: str | Path, articulation: str | Path = "") -> Model:
    """Load and validate a model ('' = bundled Intelsat 901). Cached per file version.

    ``articulation``: an LCAS articulation file (``*_articulation.yaml``) for an LCAS model
    (:mod:`.lcas`); '' = none.
    """
    p = resolve_model_path(str(model))
    a = resolve_articulation_path(str(articulation))
    return _load_cached(file_version(p), None if a is None else file_version(a))


@functools.lru_cache(maxsize=8)
def _load_cached(model: FileVersion, articulation: FileVersion | None) -> Model:
    """The model of one version of its files (base.file_version)."""
    p = Path(model[0])
    a = Path(articulation[0]) if articulation is not None else None
    if p.suffix.lower() in YAML_SUFFIXES:
        return _load_yaml(p, a)
    if a is not None:
        raise SpecError(f"params.articulation applies to LCAS models only, not to mesh file {p}")
    return _load_mesh(p)


class DuplicateKey(Exception):
    """A mapping repeats a key (raised while loading; callers turn it into a SpecError)."""


@functools.cache
def strict_loader() -> type:
    """A yaml SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one).

    Every mapping goes through ``construct_mapping``, so mappings built by added constructors
    (the LCAS tags, :mod:`.lcas`) are checked too.
    """
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKey(
                        f"duplicate key {key!r} at line {line} (first at line {seen[key]})"
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def read_yaml(p: Path, loader: type) -> Any:
    """Parse a YAML file with ``loader``; every problem is a one-line SpecError."""
    import yaml

    try:
        return yaml.load(p.read_text(), Loader=loader)
    except DuplicateKey as e:
        raise SpecError(f"{p}: {e}: face and component names must be unique") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: not valid YAML: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a text (YAML) file") from None


def _load_yaml(p: Path, articulation: Path | None) -> Model:
    from hpcgen.generators.illumination import lcas

    doc = read_yaml(p, lcas.loader())
    if lcas.is_satellite(doc):
        return lcas.satellite_model(doc, p, articulation)
    if articulation is not None:
        raise SpecError(
            f"params.articulation = {str(articulation)!r} applies to LCAS models only; "
            f"{p} is not one (its root is not an LCAS Satellite): put sun-tracking in the "
            "components' 'tracking' blocks"
        )
    if not isinstance(doc, dict) or type(doc) is not dict:
        raise SpecError(f"{p}: a model is a mapping with a 'components' list")
    unknown = sorted(set(doc) - {"name", "components"}, key=str)
    if unknown:
        raise SpecError(f"{p}: unknown key {unknown[0]!r} (known: name, components)")
    if "components" not in doc:
        raise SpecError(f"{p}: missing key 'components'")
    comps_raw = doc["components"]
    if not isinstance(comps_raw, list) or not comps_raw:
        raise SpecError(f"{p}: 'components' must be a non-empty list")
    components: list[Component] = []
    faces: list[Face] = []
    ids: dict[str, int] = {}
    names: dict[str, int] = {}
    for k, raw in enumerate(comps_raw):
        where = f"{p}: component #{k + 1}"
        comp, comp_faces = _parse_component(raw, where)
        where = f"{p}: component {comp.name!r}"
        if comp.name in names:
            raise SpecError(
                f"{where}: duplicate component name (also component #{names[comp.name]});"
                " face names `component/face` must be unique"
            )
        if comp.id in ids:
            raise SpecError(
                f"{where}: duplicate component id {comp.id!r} (also component #{ids[comp.id]})"
            )
        names[comp.name], ids[comp.id] = k + 1, k + 1
        components.append(comp)
        for face_name, tris in comp_faces:
            faces.append(Face(f"{comp.name}/{face_name}", len(components) - 1, tris))
    name = str(doc.get("name", p.stem))
    return Model(name, p, tuple(components), tuple(faces))


def _parse_component(raw: Any, where: str) -> tuple[Component, list[tuple[str, np.ndarray]]]:
    if not isinstance(raw, dict):
        raise SpecError(
            f"{where}: a component is a mapping (id, name, position, orientation, faces)"
        )
    d: dict[str, Any] = {}
    for key, value in raw.items():
        canon = _ALIASES.get(key, key)
        if canon not in _COMPONENT_KEYS:
            raise SpecError(f"{where}: unknown key {key!r} (known: {', '.join(_COMPONENT_KEYS)})")
        if canon in d:
            raise SpecError(f"{where}: both {canon!r} and its alias given")
        d[canon] = value
    if "name" in d:
        where = f"{where.rsplit(': ', 1)[0]}: component {d['name']!r}"
    for key in ("id", "name", "position", "orientation", "faces"):
        if key not in d:
            raise SpecError(f"{where}: missing key {key!r}")
    name = _check_name(d["name"], f"{where}: name")
    if isinstance(d["id"], bool) or not isinstance(d["id"], (int, str)):
        raise SpecError(f"{where}: id must be an integer or a string, got {d['id']!r}")
    position = _vector(d["position"], 3, f"{where}: position")
    rotation = _rotation(d["orientation"], f"{where}: orientation")
    material = d.get("material") or {}
    if not isinstance(material, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in material.values()
    ):
        raise SpecError(f"{where}: material must be a mapping of numbers, got {material!r}")
    axis = normal = None
    if "tracking" in d:
        axis, normal = _tracking(d["tracking"], f"{where}: tracking")
    if not isinstance(d["faces"], dict) or not d["faces"]:
        raise SpecError(f"{where}: faces must be a non-empty mapping name -> list of vertices")
    faces = []
    for fname, verts in d["faces"].items():
        fname = _check_name(fname, f"{where}: face name")
        faces.append((fname, _polygon(verts, f"{where} face {fname!r}")))
    comp = Component(
        str(d["id"]),
        name,
        rotation,
        position,
        {str(k): float(v) for k, v in material.items()},
        axis,
        normal,
    )
    return comp, faces


def _check_name(name: Any, where: str, slash: bool = False) -> str:
    """A component or face name: it becomes a CSV column, so no commas, quotes or newlines;
    no "/" either, except in mesh node names (the user's own `component/face` namespacing)."""
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"{where} must be a non-empty string, got {name!r}")
    bad = _BAD_NAME.search(name.replace("/", "") if slash else name)
    if bad or name != name.strip():
        forbidden = "',', quotes, newlines" if slash else "'/', ',', quotes, newlines"
        raise SpecError(
            f"{where} {name!r} may not contain {forbidden} or surrounding blanks "
            "(it becomes a CSV column)"
        )
    return name


def _vector(v: Any, n: int, where: str) -> np.ndarray:
    if (
        not isinstance(v, (list, tuple))
        or len(v) != n
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    ):
        raise SpecError(f"{where} must be a list of {n} numbers, got {v!r}")
    a = np.asarray(v, dtype=float)
    if not np.isfinite(a).all():
        raise SpecError(f"{where} must be finite, got {v!r}")
    return a


def _rotation(q: Any, where: str) -> np.ndarray:
    a = _vector(q, 4, f"{where} (quaternion w, x, y, z)")
    norm = float(np.linalg.norm(a))
    if abs(norm - 1) > QUATERNION_NORM_TOL:
        raise SpecError(
            f"{where}: quaternion {q!r} has norm {norm:.6g}, not 1: give a unit "
            "quaternion (w, x, y, z)"
        )
    return quaternion_matrix(a / norm)


def _tracking(t: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(t, dict) or set(t) != {"axis", "normal"}:
        raise SpecError(f"{where} must be a mapping with exactly 'axis' and 'normal', got {t!r}")
    axis = _vector(t["axis"], 3, f"{where}.axis")
    normal = _vector(t["normal"], 3, f"{where}.normal")
    if np.linalg.norm(axis) == 0 or np.linalg.norm(normal) == 0:
        raise SpecError(f"{where}: axis and normal must be non-zero vectors")
    axis, normal = axis / np.linalg.norm(axis), normal / np.linalg.norm(normal)
    if abs(axis @ normal) > 1e-6:
        raise SpecError(f"{where}: normal {t['normal']} must be perpendicular to axis {t['axis']}")
    return axis, normal


def _polygon(verts: Any, where: str) -> np.ndarray:
    """Validate a planar convex polygon and fan-triangulate it: (n - 2, 3, 3)."""
    if not isinstance(verts, (list, tuple)) or len(verts) < 3:
        raise SpecError(
            f"{where}: a face is a list of at least 3 vertices (a quad: 4), got {verts!r}"
        )
    v = np.stack([_vector(x, 3, f"{where}: vertex {i}") for i, x in enumerate(verts)])
    size = float(np.linalg.norm(v.max(axis=0) - v.min(axis=0)))
    tris = np.stack([np.stack([v[0], v[i], v[i + 1]]) for i in range(1, len(v) - 1)])
    areas = triangle_areas(tris)
    if size == 0 or (areas <= AREA_TOL * size * size).any():
        raise SpecError(f"{where}: degenerate face (repeated or collinear vertices, zero area)")
    normals = triangle_normals(tris)
    if (normals @ normals[0] < 1 - 1e-9).any():
        raise SpecError(
            f"{where}: the polygon is not planar and convex "
            "(vertices must go round the face in order)"
        )
    if np.abs((v - v[0]) @ normals[0]).max() > PLANAR_TOL * size:
        raise SpecError(f"{where}: the polygon is not planar")
    return tris


def _load_mesh(p: Path) -> Model:
    """A mesh scene: one face per scene node with geometry, named by the node."""
    import trimesh

    if p.suffix.lower() == ".obj":
        _check_obj_names(p)
    elif p.suffix.lower() in (".glb", ".gltf"):
        _check_gltf_names(p)
    try:
        scene = trimesh.load(str(p), force="scene")
    except Exception as e:  # trimesh raises many types for unreadable files
        raise SpecError(
            f"{p}: trimesh cannot load it as a mesh scene ({type(e).__name__}: {e})"
        ) from None
    components: list[Component] = []
    faces: list[Face] = []
    for node in sorted(scene.graph.nodes_geometry):
        transform, geom_name = scene.graph[node]
        geom = scene.geometry[geom_name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        name = _check_name(str(node), f"{p}: node name", slash=True)
        tris = trimesh.transform_points(geom.triangles.reshape(-1, 3), transform).reshape(-1, 3, 3)
        areas = triangle_areas(tris)
        if areas.sum() <= 0:
            raise SpecError(f"{p}: node {name!r}: degenerate geometry (zero area)")
        tris = tris[areas > 0]  # zero-area triangles carry no weight and no normal
        components.append(Component(name, name, np.eye(3), np.zeros(3)))
        faces.append(Face(name, len(components) - 1, tris))
    if not faces:
        raise SpecError(f"{p}: no triangle geometry found")
    names = [f.name for f in faces]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError(f"{p}: duplicate face name {dup[0]!r}: node names must be unique")
    return Model(p.stem, p, tuple(components), tuple(faces))


def _check_obj_names(p: Path) -> None:
    """OBJ object/group names must be unique: trimesh would merge or rename repeats silently."""
    seen: dict[str, int] = {}
    with open(p, errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith(("o ", "g ")):
                name = line[2:].strip()
                key = f"{line[0]} {name}"
                if key in seen:
                    raise SpecError(
                        f"{p}: duplicate {'object' if line[0] == 'o' else 'group'} "
                        f"name {name!r} at line {lineno} (first at line {seen[key]}): "
                        "face names must be unique"
                    )
                seen[key] = lineno


def _check_gltf_names(p: Path) -> None:
    """glTF node names (of nodes with a mesh) must be unique: trimesh renames repeats ('a_1')."""
    raw = p.read_bytes()
    try:
        if raw[:4] == b"glTF":  # binary: 12-byte header, then the JSON chunk (length, type, data)
            (length,) = struct.unpack_from("<I", raw, 12)
            doc = json.loads(raw[20 : 20 + length])
        else:
            doc = json.loads(raw)
    except (ValueError, struct.error) as e:
        raise SpecError(f"{p}: not a readable glTF file ({e})") from None
    seen: set[str] = set()
    for node in doc.get("nodes", []):
        name = node.get("name")
        if "mesh" in node and name is not None:
            if name in seen:
                raise SpecError(f"{p}: duplicate node name {name!r}: face names must be unique")
            seen.add(name)


def model_summary(model: Model) -> str:
    return (
        f"{model.name}: {len(model.components)} components, {len(model.faces)} faces, "
        f"{sum(len(f.triangles) for f in model.faces)} triangles, "
        f"size {model.scale:.3g} m, total area {model.face_areas.sum():.4g} m^2"
    )
