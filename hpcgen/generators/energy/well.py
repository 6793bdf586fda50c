"""The Well's HDF5 layout (PolymathicAI/the_well, docs/data_format.md) for energy-map files, and a
checker of any file against that specification.

What an energy file holds (B trajectories, T frames of H x W pixels)::

    /  @dataset_name = "energy_<domain>"  @grid_type = "cartesian"  @n_spatial_dims = 2
       @n_trajectories = B  @simulation_parameters = [rotation_max_deg, noise_sigma, blur_sigma,
       translation_max_px, scaling_max]  @<each parameter> = value  @domain  @pattern
       @pattern_variation
    dimensions/            @spatial_dims = ["x", "y"]
        time  float32 (T)  step index           @sample_varying = False
        x     float32 (H)  pixel index, axis 2  @sample_varying = False  @time_varying = False
        y     float32 (W)  pixel index, axis 3  @sample_varying = False  @time_varying = False
    boundary_conditions/
        x_periodic/  @associated_dims = ["x"]  @associated_fields = []  @bc_type = "periodic"
                     @sample_varying = False  @time_varying = False
            mask    bool (H)     True on the two edge rows
            values  float32 (2)  unused for periodic boundaries (zeros)
        y_periodic/  ... the same along y (W)
    scalars/               @field_names = [the five parameters, entropy, rotation_deg, shift_x,
                                            shift_y, scale_factor, rescaled, pattern parameters]
        <parameter>   float32 ()      @sample_varying = False  @time_varying = False (0-d, as in
                                      The Well's own files: its to_xarray needs it)
        entropy       float32 (B, T)  -sum p ln p of each frame, nats
        rotation_deg  float32 (B, T)  rotation applied to reach frame t (0 at t = 0)
        shift_x/_y    float32 (B, T)  roll in pixels along x (axis 2) / y (axis 3)
        scale_factor  float32 (B, T)  energy scaling factor of the step (1: scaling off)
        rescaled      float32 (B, T)  1 where the drift rule rescaled the frame, else 0
                      (per-trajectory scalars: @sample_varying = True  @time_varying = True)
        <pattern parameter>  float32 (B)  vortex: vortex_centre_x, vortex_centre_y, vortex_width,
                      vortex_mode, vortex_phase; laminar: laminar_kx, laminar_ky, laminar_phase_x,
                      laminar_phase_y (only for those patterns; see patterns.PATTERN_PARAMETERS)
                      @sample_varying = True  @time_varying = False
    t0_fields/             @field_names = ["energy"]
        energy  float32 (B, T, H, W)  @dim_varying = [True, True]  @sample_varying = True
                                      @time_varying = True
    t1_fields/  @field_names = []      t2_fields/  @field_names = []
    trajectory_seed  uint64 (B)   seed of each trajectory's pixel noise (outside The Well's groups,
                                  which its readers ignore)

Spatial axes: The Well's reader (WellDataset) pairs ``spatial_dims[i]`` with field axis ``2 + i``,
so "x" runs along axis 2 (H rows) and "y" along axis 3 (W columns).
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from hpcgen.generators.base import FieldSpec, FileView, Node, StaticData
from hpcgen.generators.energy.params import SIMULATION_PARAMETERS, EnergyParams
from hpcgen.generators.energy.patterns import PATTERN_PARAMETERS

ENERGY = "t0_fields/energy"
SEED = "trajectory_seed"
SPATIAL_DIMS = ("x", "y")
#: per-trajectory, per-frame scalars: name -> (units, description)
TRAJECTORY_SCALARS: dict[str, tuple[str, str]] = {
    "entropy": ("nats", "Shannon entropy -sum p ln p of the frame, p = E / sum E"),
    "rotation_deg": ("degree", "rotation applied in the step that produced the frame (0 at t=0)"),
    "shift_x": ("pixel", "roll along x (axis 2) in the step that produced the frame"),
    "shift_y": ("pixel", "roll along y (axis 3) in the step that produced the frame"),
    "scale_factor": ("1", "energy scaling factor of the step (1 when scaling is off)"),
    "rescaled": ("1", "1 where the total drifted beyond the tolerance and was rescaled, else 0"),
}
FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
BC_TYPES = ("periodic", "wall", "open")
GRID_TYPES = ("cartesian", "spherical")


def _flags(sample: bool, time: bool) -> dict[str, Any]:
    return {"sample_varying": sample, "time_varying": time}


def pattern_scalars(params: EnergyParams) -> dict[str, tuple[str, str]]:
    """Per-trajectory shape parameters of the run's pattern (name -> (units, description));
    empty for turbulent and random."""
    return PATTERN_PARAMETERS.get(params.preset.pattern, {})


def field_specs(params: EnergyParams) -> list[FieldSpec]:
    t = params.n_steps
    specs = [
        FieldSpec(
            ENERGY,
            (t, params.height, params.width),
            "float32",
            "1",
            "energy per pixel; frame 0 has mean 1 (total H*W); each frame holds H*W times the "
            "scale_factor values since the last rescale, to float32 rounding; axes (trajectory, "
            "time, x, y)",
            attrs={"dim_varying": np.array([True, True]), **_flags(True, True)},
        )
    ]
    for name, (units, desc) in TRAJECTORY_SCALARS.items():
        specs.append(FieldSpec(f"scalars/{name}", (t,), "float32", units, desc, _flags(True, True)))
    for name, (units, desc) in pattern_scalars(params).items():
        specs.append(FieldSpec(f"scalars/{name}", (), "float32", units, desc, _flags(True, False)))
    specs.append(
        FieldSpec(SEED, (), "uint64", "1", "seed of the trajectory's base pattern and pixel noise")
    )
    return specs


def simulation_parameter_attrs(params: EnergyParams) -> dict[str, Any]:
    values = params.simulation_parameters()
    return {"simulation_parameters": list(SIMULATION_PARAMETERS), **values}


def root_attrs(params: EnergyParams) -> dict[str, Any]:
    """Root attributes that do not depend on the number of rows in the file."""
    return {
        "dataset_name": f"energy_{params.domain}",
        "grid_type": "cartesian",
        "n_spatial_dims": len(SPATIAL_DIMS),
        **simulation_parameter_attrs(params),
        "domain": params.domain,
        "pattern": params.preset.pattern,
        "pattern_variation": params.pattern_variation,
    }


def static_datasets(params: EnergyParams) -> dict[str, StaticData]:
    h, w, t = params.height, params.width, params.n_steps
    out: dict[str, StaticData] = {
        "dimensions/time": StaticData(
            np.arange(t, dtype=np.float32),
            {"sample_varying": False, "units": "step", "description": "frame index"},
        ),
    }
    for dim, n, axis in (("x", h, 2), ("y", w, 3)):
        out[f"dimensions/{dim}"] = StaticData(
            np.arange(n, dtype=np.float32),
            {
                **_flags(False, False),
                "units": "pixel",
                "description": f"pixel index along field axis {axis}",
            },
        )
        mask = np.zeros(n, bool)
        mask[[0, -1]] = True
        out[f"boundary_conditions/{dim}_periodic/mask"] = StaticData(
            mask, {"description": f"True on the two edges of {dim}"}
        )
        out[f"boundary_conditions/{dim}_periodic/values"] = StaticData(
            np.zeros(2, np.float32), {"description": "unused for periodic boundaries"}
        )
    for name, value in params.simulation_parameters().items():
        # 0-d: The Well's constant scalars have no axis (its to_xarray gives them no dimension)
        out[f"scalars/{name}"] = StaticData(np.array(value, np.float32), _flags(False, False))
    return out


def group_attrs(params: EnergyParams, n_rows: int) -> dict[str, dict[str, Any]]:
    """Attributes of every group of the layout ("/" is the root), for a file of ``n_rows``
    trajectories. Groups without datasets (t1_fields, t2_fields) exist only through this."""
    out: dict[str, dict[str, Any]] = {
        "/": {**root_attrs(params), "n_trajectories": int(n_rows)},
        "dimensions": {"spatial_dims": list(SPATIAL_DIMS)},
        "scalars": {
            "field_names": [
                *params.simulation_parameters(),
                *TRAJECTORY_SCALARS,
                *pattern_scalars(params),
            ],
        },
        "t0_fields": {"field_names": ["energy"]},
        "t1_fields": {"field_names": []},
        "t2_fields": {"field_names": []},
    }
    for dim in SPATIAL_DIMS:
        out[f"boundary_conditions/{dim}_periodic"] = {
            "associated_dims": [dim],
            "associated_fields": [],
            "bc_type": "periodic",
            **_flags(False, False),
        }
    out["boundary_conditions"] = {}
    return out


def apply_group_attrs(h5: h5py.File, attrs: dict[str, dict[str, Any]]) -> None:
    """Create the groups and set their attributes (what the engine's group-attribute hook does;
    used by tests and by ``repair`` of files written before the hook existed)."""
    for path, values in attrs.items():
        group = h5 if path == "/" else h5.require_group(path)
        for k, v in values.items():
            group.attrs[k] = v


# --- reading: an h5py file or a hook's view ------------------------------------------------------
#: an energy file to read: an open HDF5 file in The Well's layout (an export, a catalog file) or
#: the FileView ``hpcgen verify`` / ``hpcgen plot`` hand to the generator's hooks
Source = h5py.Group | FileView


def node_of(src: Source, path: str) -> Node | None:
    """The group or dataset at ``path`` of ``src`` ("" is the root), None where there is none."""
    if not isinstance(src, h5py.Group):
        return src.node(path)
    key = path.strip("/")
    obj = src if key == "" else src.get(key)
    if isinstance(obj, h5py.Group):
        return Node(key, "group", dict(obj.attrs.items()), children=tuple(sorted(obj.keys())))
    if isinstance(obj, h5py.Dataset):
        return Node(
            key,
            "dataset",
            dict(obj.attrs.items()),
            shape=tuple(obj.shape),
            dtype=obj.dtype,
            virtual=bool(obj.is_virtual),
        )
    return None


def read_row(src: Source, name: str, row: int) -> np.ndarray:
    """Row ``row`` of dataset ``name`` (its first axis)."""
    if isinstance(src, h5py.Group):
        return src[name][row]
    return src.read(name, slice(row, row + 1))[0]


def source_name(src: Source) -> str:
    """The file's name, for messages."""
    return str(src.file.filename) if isinstance(src, h5py.Group) else str(src.path)


# --- checker -------------------------------------------------------------------------------------
def _strs(v: Any) -> list[str]:
    if isinstance(v, (str, bytes)):
        v = [v]
    return [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(v).ravel()]


def _is_bool(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_))


def check_layout(src: Source) -> list[str]:
    """Problems of a file against The Well's format specification (empty: conforms). ``src``:
    an open HDF5 file (any file in The Well's layout, e.g. an export) or a hook's FileView.

    Checks the root attributes, the dimensions, boundary_conditions, scalars and t0/t1/t2_fields
    groups with their required attributes, and every dataset's shape against its varying flags
    (sample axis = n_trajectories, time axis = len(dimensions/time), spatial axes = the lengths of
    dimensions/<spatial_dims>), and float32 for coordinates, scalars and fields.
    """
    problems: list[str] = []
    root = node_of(src, "")
    a = root.attrs if root is not None else {}
    for key in (
        "dataset_name",
        "grid_type",
        "n_spatial_dims",
        "n_trajectories",
        "simulation_parameters",
    ):
        if key not in a:
            problems.append(f"root: missing attribute {key}")
    if problems:
        return problems
    if str(a["grid_type"]) not in GRID_TYPES:
        problems.append(f"root: grid_type {a['grid_type']!r} not one of {GRID_TYPES}")
    for p in _strs(a["simulation_parameters"]):
        if p not in a:
            problems.append(f"root: simulation parameter {p} listed but has no attribute")
    n_traj = int(a["n_trajectories"])
    ndims = int(a["n_spatial_dims"])
    groups: dict[str, Node] = {}
    for g in ("dimensions", "boundary_conditions", "scalars", *FIELD_GROUPS):
        node = node_of(src, g)
        if node is None or node.kind != "group":
            problems.append(f"missing group {g}/")
        else:
            groups[g] = node
    if problems:
        return problems

    # dimensions
    dims = groups["dimensions"]
    if "spatial_dims" not in dims.attrs:
        return [*problems, "dimensions: missing attribute spatial_dims"]
    spatial = _strs(dims.attrs["spatial_dims"])
    if len(spatial) != ndims:
        problems.append(f"dimensions: {len(spatial)} spatial_dims but n_spatial_dims = {ndims}")
    sizes: dict[str, int] = {}
    for name in ("time", *spatial):
        d = node_of(src, f"dimensions/{name}")
        if d is None or d.kind != "dataset":
            problems.append(f"dimensions: missing dataset {name}")
            continue
        flags = ("sample_varying",) if name == "time" else ("sample_varying", "time_varying")
        for f in flags:
            if not _is_bool(d.attrs.get(f)):
                problems.append(f"dimensions/{name}: missing boolean attribute {f}")
        if d.dtype != np.float32:
            problems.append(f"dimensions/{name}: dtype {d.dtype}, expected float32")
        sizes[name] = d.shape[-1] if d.shape else 0
    if problems:
        return problems
    n_time = sizes["time"]

    # boundary conditions
    for bc_name in groups["boundary_conditions"].children:
        where = f"boundary_conditions/{bc_name}"
        bc = node_of(src, where)
        if bc is None or bc.kind != "group":
            problems.append(f"{where}: not a group")
            continue
        for key in ("associated_dims", "associated_fields", "bc_type"):
            if key not in bc.attrs:
                problems.append(f"{where}: missing attribute {key}")
        for f in ("sample_varying", "time_varying"):
            if not _is_bool(bc.attrs.get(f)):
                problems.append(f"{where}: missing boolean attribute {f}")
        if "bc_type" in bc.attrs and str(bc.attrs["bc_type"]).lower() not in BC_TYPES:
            problems.append(f"{where}: bc_type {bc.attrs['bc_type']!r} not one of {BC_TYPES}")
        assoc = _strs(bc.attrs.get("associated_dims", []))
        if not set(assoc) <= set(spatial):
            problems.append(f"{where}: associated_dims {assoc} not in spatial_dims {spatial}")
            continue
        mask = node_of(src, f"{where}/mask")
        if mask is None or mask.kind != "dataset" or mask.dtype != bool:
            problems.append(f"{where}: missing boolean dataset mask")
        elif mask.shape[-len(assoc) :] != tuple(sizes[d] for d in assoc):
            problems.append(f"{where}/mask: shape {mask.shape} does not match {assoc}")

    # scalars and fields
    problems += _check_group(src, groups["scalars"], n_traj, n_time, [], sizes, 0)
    for order, g in enumerate(FIELD_GROUPS):
        problems += _check_group(src, groups[g], n_traj, n_time, spatial, sizes, order)
    return problems


def _check_group(
    src: Source,
    group: Node,
    n_traj: int,
    n_time: int,
    spatial: list[str],
    sizes: dict[str, int],
    order: int,
) -> list[str]:
    problems: list[str] = []
    where = group.path
    if "field_names" not in group.attrs:
        return [f"{where}: missing attribute field_names"]
    is_field = where != "scalars"
    for name in _strs(group.attrs["field_names"]):
        w = f"{where}/{name}"
        d = node_of(src, w)
        if d is None or d.kind != "dataset":
            problems.append(f"{w}: listed in field_names but missing")
            continue
        required = ["sample_varying", "time_varying"] + (["dim_varying"] if is_field else [])
        if order == 2:
            required += ["symmetric", "antisymmetric"]
        missing = [k for k in required if k not in d.attrs]
        if missing:
            problems.append(f"{w}: missing attribute(s) {', '.join(missing)}")
            continue
        if d.dtype != np.float32:
            problems.append(f"{w}: dtype {d.dtype}, expected float32")
        expected: list[int] = []
        if d.attrs["sample_varying"]:
            expected.append(n_traj)
        if d.attrs["time_varying"]:
            expected.append(n_time)
        if is_field:
            varying = [bool(v) for v in np.asarray(d.attrs["dim_varying"]).ravel()]
            if len(varying) != len(spatial):
                problems.append(
                    f"{w}: dim_varying has {len(varying)} entries, expected {len(spatial)}"
                )
                continue
            expected += [sizes[s] for s, v in zip(spatial, varying) if v]
            expected += [len(spatial)] * order
        if tuple(expected) != d.shape:  # constants 0-d, as The Well's own files store them
            problems.append(f"{w}: shape {d.shape}, expected {tuple(expected)} from its flags")
    return problems
