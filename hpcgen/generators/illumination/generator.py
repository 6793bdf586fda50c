"""The illumination generator: body-frame sun direction -> lit fraction of every satellite face.

Inputs per sample: a sun direction (unit vector, body frame), uniform on the sphere or read from a
user file. Outputs: the lit fraction of each named face (see :mod:`.lit` for the definition),
ordered as the ``face_names`` attribute of ``lit_fractions``. Documentation: docs/illumination.md.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hpcgen.generators.base import (
    FLOAT,
    CheckResult,
    Chunk,
    Device,
    Exporter,
    FieldSpec,
    FileVersion,
    FileView,
    Generator,
    StaticData,
    Verifier,
    file_version,
    require,
)
from hpcgen.generators.illumination.model import (
    Model,
    load_model,
    resolve_model_path,
    unshadowable_faces,
)
from hpcgen.generators.illumination.options import OPTIONS
from hpcgen.generators.illumination.raycast import RAY_OFFSET

MAX_LEVEL = 7


@dataclass(frozen=True)
class Params:
    """Parameters of the illumination generator ([params] table of a run spec)."""

    #: satellite model: a YAML model (ours or an LCAS ``*_model.yaml``) or a mesh scene (GLB,
    #: OBJ, ...); "" = bundled Intelsat 901
    model: str = ""
    #: LCAS articulation file (``*_articulation.yaml``) for an LCAS model; "" = none (the
    #: components' own ``articulation_rule`` still applies)
    articulation: str = ""
    #: subdivision level L >= 0: 4^L sub-triangles per model triangle (2*4^L per quad), at most 7
    level: int = 3
    #: "area": lit area / face area (L as given). "lcas": the seed workflow's definition, level 0,
    #: lit triangles / sun-facing triangles of the face
    convention: Literal["area", "lcas"] = "area"
    #: turn the model's tracking components (YAML `tracking` blocks) towards each sun vector
    sun_tracking: bool = False
    #: "" = uniform sun directions; else a file of body-frame vectors (.npy (N, 3) or text/CSV),
    #: sample i is row i (needs N >= n_samples)
    sun_file: str = ""
    #: ray caster: "embree" (CPU, reference) or "brute" (all-pairs array code; numpy or cupy/GPU)
    backend: Literal["embree", "brute"] = "embree"

    def __post_init__(self) -> None:
        require(
            0 <= self.level <= MAX_LEVEL,
            f"params.level must be in [0, {MAX_LEVEL}] (4^level rays per triangle), "
            f"got {self.level}",
        )
        # every model-file problem surfaces at spec validation
        model = load_model(self.model, self.articulation)
        if self.sun_tracking:
            require(
                any(c.can_track for c in model.components),
                f"params.sun_tracking = true but model {model.source} has no sun-tracking "
                "component (a 'tracking' block, or an LCAS track_sun articulation)",
            )
        if self.sun_file:
            _sun_file(self.sun_file)  # exists and is readable


def _sun_file(path: str) -> Any:
    """The SunFile that ``path`` names now, cached per file version (base.file_version, as the
    model): a process that runs again after the file was rewritten, or from another working
    directory, reads the file it names, never an earlier one."""
    try:
        version = file_version(path)
    except OSError:
        return _read_sun_file(path)  # its one-line error
    return _sun_file_version(version)


@functools.lru_cache(maxsize=4)
def _sun_file_version(version: FileVersion) -> Any:
    return _read_sun_file(version[0])


def _read_sun_file(path: str) -> Any:
    from hpcgen.generators.illumination.sun import SunFile

    return SunFile(path)


class IlluminationGenerator(Generator):
    name = "illumination"
    Params = Params
    #: 2 MB of output per chunk at the bundled model's face count; 100 chunks per million
    #: samples keep up to 100 ranks busy
    default_chunk_size = 10_000
    cli_option_table = OPTIONS

    def __init__(self, params: Params, float_dtype: str = "float64") -> None:
        super().__init__(params, float_dtype)
        self.model: Model = load_model(params.model, params.articulation)
        self._calculators: dict[str, Any] = {}
        self._sun: Any = None  # the sun file's SunFile, once a chunk has read it

    # --- fields -----------------------------------------------------------------------------------
    @property
    def effective_level(self) -> int:
        return 0 if self.params.convention == "lcas" else self.params.level

    def fields(self) -> list[FieldSpec]:
        p = self.params
        definition = (
            "lit area / face area, area-weighted over 4^L sub-triangles per triangle"
            if p.convention == "area"
            else "lit triangles / sun-facing triangles per face at level 0 (LCAS seed convention)"
        )
        return [
            FieldSpec(
                "sun_vectors",
                (3,),
                FLOAT,
                "1",
                "direction to the sun, unit vector (x, y, z) in the satellite body frame",
                attrs={"columns": ["x", "y", "z"], "frame": "satellite body frame"},
            ),
            FieldSpec(
                "lit_fractions",
                (len(self.model.faces),),
                FLOAT,
                "1",
                f"lit fraction in [0, 1] of each face ({definition}); 0 when the face is turned "
                "away from the sun; columns named by the face_names attribute",
                attrs={
                    "face_names": self.model.face_names,
                    "face_areas_m2": self.model.face_areas,
                    "convention": p.convention,
                    "level": self.effective_level,
                    "sun_tracking": p.sun_tracking,
                },
            ),
        ]

    def static_datasets(self) -> dict[str, StaticData]:
        tris, face = self.model.body_triangles()
        return {
            "model_triangles": StaticData(
                tris,
                {
                    "units": "m",
                    "description": "model triangles (T, 3 vertices, xyz) in the body frame at rest "
                    "(tracking components unturned); counter-clockwise = outward",
                },
            ),
            "model_triangle_face": StaticData(
                face.astype(np.int32),
                {
                    "units": "1",
                    "description": "index into lit_fractions' face_names of each model triangle",
                },
            ),
        }

    def root_attrs(self) -> dict[str, Any]:
        return {
            "illumination_model": self.model.name,
            "illumination_model_file": str(self.model.source),
            # comma-separated (face names cannot contain commas)
            "illumination_unshadowable_faces": ",".join(
                self.model.face_names[i]
                for i in unshadowable_faces(self.model, self.params.sun_tracking)
            ),
            "illumination_ray_offset_m": RAY_OFFSET * self.model.scale,
        }

    def input_files(self) -> list[Path]:
        files = [resolve_model_path(self.params.model)]
        if self.params.articulation:
            files.append(Path(self.params.articulation))
        if self.params.sun_file:
            files.append(Path(self.params.sun_file))
        return files

    # --- per chunk --------------------------------------------------------------------------------
    def sample(self, chunk: Chunk) -> dict[str, np.ndarray]:
        from hpcgen.generators.illumination.sun import uniform_sphere

        if self.params.sun_file:
            # one version for the whole run: the file the run's input hash was taken of (a file
            # rewritten during a run is refused by --resume, never mixed into it)
            if self._sun is None:
                self._sun = _sun_file(self.params.sun_file)
            sun = self._sun.rows(chunk.start, chunk.count)
        else:
            sun = uniform_sphere(chunk.rng("sun"), chunk.count)
        # compute() sees exactly the stored (possibly float32) values, so verify can recheck them
        return {"sun_vectors": sun.astype(self.float_dtype)}

    def compute(
        self, inputs: Mapping[str, np.ndarray], chunk: Chunk, device: Device
    ) -> dict[str, np.ndarray]:
        sun = np.asarray(inputs["sun_vectors"], dtype=np.float64)
        lit = self.calculator(device)(sun)
        return {"lit_fractions": lit.astype(self.float_dtype)}

    def calculator(self, device: Device | None = None) -> Any:
        """The (cached) LitCalculator for a device: builds the ray-casting scene once."""
        from hpcgen.generators.illumination.lit import LitCalculator

        kind = device.kind if device is not None else "cpu"
        if kind not in self._calculators:
            p = self.params
            xp = device.xp if device is not None and kind == "gpu" else np
            self._calculators[kind] = LitCalculator(
                self.model,
                level=p.level,
                convention=p.convention,
                tracking=p.sun_tracking,
                backend=p.backend,
                xp=xp,
            )
        return self._calculators[kind]

    def supports_device(self, kind: str) -> bool:
        # Embree is CPU only; the all-pairs caster is array code that runs on cupy as well
        return kind == "cpu" or (kind == "gpu" and self.params.backend == "brute")

    # --- after the run ----------------------------------------------------------------------------
    def verifier(self) -> Verifier:
        from hpcgen.generators.illumination.checks import IlluminationVerifier

        return IlluminationVerifier(self.model, self.params, self.float_dtype)

    def file_checks(self, view: FileView) -> list[CheckResult]:
        """The stored geometry against the model file, and an independent re-cast of random
        rows (see :mod:`.checks`)."""
        from hpcgen.generators.illumination.checks import file_checks

        return file_checks(view, self.model, self.params)

    def exporters(self) -> dict[str, Exporter]:
        from hpcgen.generators.illumination.export import export_csv

        return {"csv": export_csv}

    def plot(self, view: FileView, out: Path, options: Mapping[str, Any]) -> None:
        from hpcgen.generators.illumination.plot import plot_sky

        plot_sky(view, Path(out), options)
