"""LCAS satellite models (``*_model.yaml`` and ``*_articulation.yaml``), read as data only.

LCAS (the Lightcurve Analysis System) saves a satellite with PyYAML's ``yaml.dump``, so its
model files carry Python tags::

    !src.models.model_definitions.Satellite
    id: '-126824'
    name: Intelsat 901
    components:
    - !src.models.model_definitions.Component
      id: IS901_SP_N
      name: Solar_Panel_North
      conceptual_face_definitions:          # face name -> polygon (component frame, m)
        SPN_Front: [[0.05, -1.75, -6.3], [0.05, 1.75, -6.3], [0.05, 1.75, 6.3], ...]
      relative_position: !numpy.ndarray [0.0, 0.0, 9.2]
      relative_orientation: !numpy.quaternion [1.0, 0.0, 0.0, 0.0]    # w, x, y, z
      articulation_rule: TRACK_SUN_PRIMARY_AXIS_Z_SECONDARY_X
      default_material: !src.models.model_definitions.BRDFMaterialProperties
        {r_d: 0.7, r_s: 0.2, n_phong: 15.0}
    body_frame_name: IS901_BUS_Frame

LCAS loads them with a ``yaml.FullLoader`` subclass that instantiates its own classes. We never
import or call anything a tag names: :func:`loader` is a ``yaml.SafeLoader`` (plus the duplicate
key check of :func:`.model.strict_loader`) with constructors for exactly these tags, building
:class:`LcasObject` (a dict that remembers its class name), float arrays and
:class:`QuaternionWXYZ`. Any other tag, ``!!python/object/apply:os.system`` included, is a YAML
error and the file is refused.

Mapping onto :class:`.model.Model` (the conventions are LCAS's own code):

- faces: ``conceptual_face_definitions``, one planar convex polygon per name, fan-triangulated
  from its first vertex (``generate_facets_from_conceptual_definitions``);
- placement: a component-frame point ``p`` sits at ``R p + t`` in the body frame, ``t`` the
  ``relative_position``, ``R = quaternion.as_rotation_matrix(relative_orientation)``:
  numpy-quaternion's order (w, x, y, z), an active rotation (``[cos 45, 0, 0, sin 45]`` turns
  +x into +y), exactly :func:`.model.quaternion_matrix`;
- sun tracking (used when the run sets ``sun_tracking = true``): a ``track_sun`` rule of the
  articulation file for the component's name, else the legacy ``articulation_rule``
  ``TRACK_SUN_PRIMARY_AXIS_Z_SECONDARY_X`` (axis z, reference normal x, centre 0), as in LCAS's
  ``ArticulationEngine.get_component_behavior``. The turn angle is
  ``calculate_sun_pointing_rotation`` (the normal's and the sun's projections on the plane
  normal to the axis), clipped to ``limits``;
- names: a conceptual face name used by one component only is its column name as it is
  (``Bus_Face_X_Positive``); a name that several components use (Intelsat's ``SPN_*`` on both
  panels, ``ADW_*`` on both dishes) becomes ``<component name>/<face>`` for every one of them
  (``Solar_Panel_North/SPN_Front``). LCAS's own generator keys its results by face name alone,
  so there the last component silently overwrites the others.

Every problem is a one-line :class:`SpecError` naming the file and the component or face.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import SpecError
from hpcgen.generators.illumination.model import (
    Component,
    Face,
    Model,
    _check_name,
    _polygon,
    _rotation,
    read_yaml,
    strict_loader,
)

#: LCAS's dataclass tags: ``!<module>.<class>`` of src/models/model_definitions.py
CLASS_TAG_PREFIX = "!src.models.model_definitions."
LCAS_CLASSES = ("Satellite", "Component", "BRDFMaterialProperties", "Facet")
NDARRAY_TAG = "!numpy.ndarray"
QUATERNION_TAG = "!numpy.quaternion"

#: the legacy ``articulation_rule`` LCAS still honours: sun tracking about z, normal x
LEGACY_SUN_RULE = "TRACK_SUN_PRIMARY_AXIS_Z_SECONDARY_X"
#: rule types of LCAS's ArticulationEngine that need more than a sun direction
_NEEDS_EPHEMERIS = ("track_earth", "oscillate")

_SATELLITE_KEYS = ("id", "name", "components", "body_frame_name")
_COMPONENT_KEYS = (
    "id",
    "name",
    "conceptual_face_definitions",
    "relative_position",
    "relative_orientation",
    "articulation_rule",
    "default_material",
)
#: derived fields LCAS's loader drops before building a Component; so do we
_DERIVED_KEYS = ("facets", "conceptual_faces_map")
_MATERIAL_KEYS = ("r_d", "r_s", "n_phong")
_RULE_KEYS = (
    "rule_type",
    "rotation_center",
    "rotation_axis",
    "reference_normal",
    "limits",
    "parameters",
)


class LcasObject(dict):
    """The fields of an LCAS dataclass tag as a plain mapping; ``kind`` is the class name."""

    def __init__(self, kind: str, items: Mapping[Any, Any]) -> None:
        super().__init__(items)
        self.kind = kind


class QuaternionWXYZ(tuple):
    """The four numbers of a ``!numpy.quaternion`` tag, in its order (w, x, y, z)."""


@dataclass(frozen=True)
class SunRule:
    """A ``track_sun`` articulation (component frame; angles in degrees as LCAS writes them)."""

    center: np.ndarray
    axis: np.ndarray
    normal: np.ndarray
    limits_deg: tuple[float, float] | None


# --- the loader -----------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _numbers(value: Any) -> bool:
    if isinstance(value, list):
        return all(_numbers(v) for v in value)
    return _is_number(value)


@functools.cache
def loader() -> type:
    """SafeLoader + duplicate-key check + constructors for LCAS's tags (data only)."""
    import yaml

    class LcasLoader(strict_loader()):
        pass

    def class_constructor(kind: str) -> Any:
        def construct(loader: Any, node: Any) -> LcasObject:
            if not isinstance(node, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    None, None, f"{CLASS_TAG_PREFIX}{kind} must tag a mapping", node.start_mark
                )
            return LcasObject(kind, loader.construct_mapping(node, deep=True))

        return construct

    def construct_ndarray(loader: Any, node: Any) -> np.ndarray:
        value = (
            loader.construct_sequence(node, deep=True)
            if isinstance(node, yaml.SequenceNode)
            else None
        )
        if not value or not _numbers(value):
            raise yaml.constructor.ConstructorError(
                None, None, f"{NDARRAY_TAG} must tag a list of numbers", node.start_mark
            )
        return np.array(value, dtype=np.float64)

    def construct_quaternion(loader: Any, node: Any) -> QuaternionWXYZ:
        value = (
            loader.construct_sequence(node, deep=True)
            if isinstance(node, yaml.SequenceNode)
            else None
        )
        if value is None or len(value) != 4 or not all(_is_number(v) for v in value):
            raise yaml.constructor.ConstructorError(
                None, None, f"{QUATERNION_TAG} must tag 4 numbers (w, x, y, z)", node.start_mark
            )
        return QuaternionWXYZ(float(v) for v in value)

    for kind in LCAS_CLASSES:
        LcasLoader.add_constructor(CLASS_TAG_PREFIX + kind, class_constructor(kind))
    LcasLoader.add_constructor(NDARRAY_TAG, construct_ndarray)
    LcasLoader.add_constructor(QUATERNION_TAG, construct_quaternion)
    return LcasLoader


def is_satellite(doc: Any) -> bool:
    return isinstance(doc, LcasObject) and doc.kind == "Satellite"


# --- the model ------------------------------------------------------------------------------------


def satellite_model(doc: LcasObject, path: Path, articulation: Path | None) -> Model:
    """Our :class:`Model` of an LCAS Satellite (see the module docstring for the mapping)."""
    unknown = [k for k in doc if k not in _SATELLITE_KEYS]
    if unknown:
        raise SpecError(
            f"{path}: unknown Satellite field {unknown[0]!r} (LCAS's Satellite has "
            f"{', '.join(_SATELLITE_KEYS)})"
        )
    raw = doc.get("components")
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{path}: the Satellite's 'components' must be a non-empty list")
    parsed = []
    seen: dict[str, int] = {}
    for k, item in enumerate(raw):
        comp = _component_fields(item, f"{path}: component #{k + 1}")
        if comp["name"] in seen:
            raise SpecError(
                f"{path}: component {comp['name']!r}: duplicate component name (also component "
                f"#{seen[comp['name']]}); LCAS keys articulation and materials by name"
            )
        seen[comp["name"]] = k + 1
        parsed.append(comp)
    rules = read_articulation(articulation, set(seen)) if articulation is not None else {}

    uses = Counter(f for c in parsed for f in c["faces"])
    components: list[Component] = []
    faces: list[Face] = []
    for c in parsed:
        where = f"{path}: component {c['name']!r}"
        rule = rules.get(c["name"]) or _legacy_rule(c["articulation_rule"], where)
        shift = np.zeros(3) if rule is None else rule.center
        rotation = c["rotation"]
        index = len(components)
        components.append(
            Component(
                c["id"],
                c["name"],
                rotation,
                # a turn about the rule's centre: the centre becomes the component's origin
                c["position"] + rotation @ shift,
                c["material"],
                None if rule is None else rule.axis,
                None if rule is None else rule.normal,
                None if rule is None or rule.limits_deg is None else _radians(rule.limits_deg),
            )
        )
        for face_name, tris in c["faces"].items():
            column = face_name if uses[face_name] == 1 else f"{c['name']}/{face_name}"
            faces.append(Face(column, index, tris - shift))
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise SpecError(f"{path}: the Satellite's name must be a non-empty string, got {name!r}")
    return Model(name, path, tuple(components), tuple(faces))


def _radians(limits_deg: tuple[float, float]) -> tuple[float, float]:
    return (float(np.radians(limits_deg[0])), float(np.radians(limits_deg[1])))


def _component_fields(item: Any, where: str) -> dict[str, Any]:
    """Check one LCAS Component and return its fields in our terms."""
    if not isinstance(item, LcasObject) or item.kind != "Component":
        raise SpecError(f"{where}: expected a {CLASS_TAG_PREFIX}Component mapping, got {item!r}")
    if isinstance(item.get("name"), str):
        where = f"{where.rsplit(': ', 1)[0]}: component {item['name']!r}"
    for key in item:
        if key not in _COMPONENT_KEYS and key not in _DERIVED_KEYS:
            raise SpecError(
                f"{where}: unknown Component field {key!r} (LCAS's Component has "
                f"{', '.join(_COMPONENT_KEYS)}; it has no mesh files)"
            )
    for key in ("id", "name"):
        if key not in item:
            raise SpecError(f"{where}: missing field {key!r}")
    if isinstance(item["id"], bool) or not isinstance(item["id"], (str, int)):
        raise SpecError(f"{where}: id must be a string or an integer, got {item['id']!r}")
    name = _check_name(item["name"], f"{where}: name")
    defs = item.get("conceptual_face_definitions") or {}
    if not isinstance(defs, dict) or not defs:
        raise SpecError(
            f"{where}: conceptual_face_definitions must be a non-empty mapping face name -> "
            "vertices (LCAS gives a component without faces no geometry: remove it)"
        )
    material = item.get("default_material")
    if material is None:
        raise SpecError(
            f"{where}: no default_material: LCAS generates no facets for such a component (it "
            "vanishes from LCAS's own results); give it a BRDFMaterialProperties"
        )
    faces = {}
    for face_name, verts in defs.items():
        face_name = _check_name(face_name, f"{where}: face name")
        if isinstance(verts, np.ndarray):
            verts = verts.tolist()
        elif isinstance(verts, list):
            verts = [v.tolist() if isinstance(v, np.ndarray) else v for v in verts]
        faces[face_name] = _polygon(verts, f"{where} face {face_name!r}")
    return {
        "id": str(item["id"]),
        "name": name,
        "position": _position(item.get("relative_position", [0.0, 0.0, 0.0]), where),
        "rotation": _orientation(item.get("relative_orientation"), where),
        "material": _material(material, where),
        "articulation_rule": item.get("articulation_rule"),
        "faces": faces,
    }


def _position(value: Any, where: str) -> np.ndarray:
    v = value.tolist() if isinstance(value, np.ndarray) else value
    if not isinstance(v, list) or len(v) != 3 or not all(_is_number(x) for x in v):
        raise SpecError(f"{where}: relative_position must be 3 numbers (m), got {value!r}")
    a = np.asarray(v, dtype=np.float64)
    if not np.isfinite(a).all():
        raise SpecError(f"{where}: relative_position must be finite, got {value!r}")
    return a


def _orientation(value: Any, where: str) -> np.ndarray:
    if value is None:  # LCAS's default: the identity quaternion
        return np.eye(3)
    if not isinstance(value, QuaternionWXYZ):
        raise SpecError(
            f"{where}: relative_orientation must be a {QUATERNION_TAG} [w, x, y, z], got "
            f"{value!r} (an untagged list does not say its component order)"
        )
    return _rotation(list(value), f"{where}: relative_orientation")


def _material(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: default_material must be a BRDFMaterialProperties mapping")
    out = {}
    for key, v in value.items():
        if key not in _MATERIAL_KEYS or not _is_number(v):
            raise SpecError(
                f"{where}: default_material fields are numbers {', '.join(_MATERIAL_KEYS)}, "
                f"got {key!r}: {v!r}"
            )
        out[str(key)] = float(v)
    return out


def _legacy_rule(rule: Any, where: str) -> SunRule | None:
    """The Component's own ``articulation_rule`` (used when the articulation file has none)."""
    if rule is None:
        return None
    if rule == LEGACY_SUN_RULE:
        return SunRule(np.zeros(3), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]), None)
    raise SpecError(
        f"{where}: articulation_rule {rule!r} is not known (LCAS's engine knows "
        f"{LEGACY_SUN_RULE!r} only; other rules go in the articulation file)"
    )


# --- the articulation file ------------------------------------------------------------------------


def read_articulation(path: Path, components: set[str]) -> dict[str, SunRule]:
    """``articulation_rules`` of an LCAS articulation file: component name -> sun tracking.

    ``rule_type: none`` gives no rule (LCAS then falls back to the Component's own
    ``articulation_rule``, and so do we); rules that need an Earth direction or a time
    (``track_earth``, ``oscillate``) cannot be computed from a sun direction and are refused,
    as are unknown rule types, unknown fields and component names the model does not have.
    """
    doc = read_yaml(path, strict_loader())
    if not isinstance(doc, dict) or set(doc) != {"articulation_rules"}:
        raise SpecError(f"{path}: an LCAS articulation file is a mapping with 'articulation_rules'")
    rules_raw = doc["articulation_rules"] or {}
    if not isinstance(rules_raw, dict):
        raise SpecError(f"{path}: 'articulation_rules' must map component names to rules")
    rules: dict[str, SunRule] = {}
    for name, raw in rules_raw.items():
        where = f"{path}: rule for {name!r}"
        if name not in components:
            raise SpecError(
                f"{where}: the model has no component of that name (components: "
                f"{', '.join(sorted(components))})"
            )
        if not isinstance(raw, dict):
            raise SpecError(f"{where}: a rule is a mapping ({', '.join(_RULE_KEYS)})")
        unknown = [k for k in raw if k not in _RULE_KEYS]
        if unknown:
            raise SpecError(
                f"{where}: unknown field {unknown[0]!r} (known: {', '.join(_RULE_KEYS)})"
            )
        rule_type = raw.get("rule_type", "none")
        if rule_type == "none":
            continue
        if rule_type in _NEEDS_EPHEMERIS:
            raise SpecError(
                f"{where}: rule_type {rule_type!r} needs an Earth direction or a time; the "
                "illumination generator samples sun directions only (use track_sun or none)"
            )
        if rule_type != "track_sun":
            raise SpecError(f"{where}: unknown rule_type {rule_type!r} (track_sun or none)")
        if not isinstance(raw.get("parameters", {}) or {}, dict):
            raise SpecError(f"{where}: parameters must be a mapping")
        rules[name] = _sun_rule(raw, where)
    return rules


def _vec3(value: Any, default: list[float], where: str) -> np.ndarray:
    v = default if value is None else value
    if not isinstance(v, list) or len(v) != 3 or not all(_is_number(x) for x in v):
        raise SpecError(f"{where} must be 3 numbers, got {value!r}")
    a = np.asarray(v, dtype=np.float64)
    if not np.isfinite(a).all():
        raise SpecError(f"{where} must be finite, got {value!r}")
    return a


def _sun_rule(raw: Mapping[str, Any], where: str) -> SunRule:
    """LCAS's defaults: centre 0, axis z, reference normal x; limits [-180, 180] per bound."""
    center = _vec3(raw.get("rotation_center"), [0.0, 0.0, 0.0], f"{where}: rotation_center")
    axis = _vec3(raw.get("rotation_axis"), [0.0, 0.0, 1.0], f"{where}: rotation_axis")
    normal = _vec3(raw.get("reference_normal"), [1.0, 0.0, 0.0], f"{where}: reference_normal")
    if np.linalg.norm(axis) < 1e-9:
        raise SpecError(f"{where}: rotation_axis must be a non-zero vector")
    axis = axis / np.linalg.norm(axis)
    # calculate_sun_pointing_rotation uses the normal's projection on the plane normal to the axis
    normal = normal - (normal @ axis) * axis
    if np.linalg.norm(normal) < 1e-9:
        raise SpecError(f"{where}: reference_normal must not be parallel to rotation_axis")
    normal = normal / np.linalg.norm(normal)
    limits = raw.get("limits")
    limits_deg = None
    if limits is not None:
        if not isinstance(limits, dict) or not set(limits) <= {"min_angle", "max_angle"}:
            raise SpecError(f"{where}: limits is a mapping with min_angle, max_angle (degrees)")
        lo, hi = limits.get("min_angle", -180.0), limits.get("max_angle", 180.0)
        if not (_is_number(lo) and _is_number(hi)) or not -180.0 <= lo <= hi <= 180.0:
            raise SpecError(
                f"{where}: limits must satisfy -180 <= min_angle <= max_angle <= 180 (degrees), "
                f"got {limits!r}"
            )
        if (lo, hi) != (-180.0, 180.0):  # the full turn needs no clipping
            limits_deg = (float(lo), float(hi))
    return SunRule(center, axis, normal, limits_deg)
