"""The tracks generator: charged tracks through the LHCb dipole, inputs and outputs for ML track
extrapolators (seed workflow: X, Y, P, Z as its trainers read them), plus a per-track status and
step count."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.base import (
    FLOAT,
    Chunk,
    Device,
    Exporter,
    FieldSpec,
    FileView,
    Generator,
    Verifier,
)
from hpcgen.generators.tracks.fields import (
    KIND_MAP,
    OUT_OF_ACCEPTANCE,
    STATUS_NAMES,
    Field,
    UniformField,
)
from hpcgen.generators.tracks.options import OPTIONS
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.generators.tracks.propagate import Propagator, make_field
from hpcgen.generators.tracks.sampling import check_z_sampling, draws_z_start, sample_tracks
from hpcgen.generators.tracks.stepper import CELL, GRID_MODES, StepperSettings


class TracksGenerator(Generator):
    name = "tracks"
    Params = TracksParams
    default_chunk_size = 100_000  # ~13 MB of float64 output per chunk
    cli_option_table = OPTIONS

    def __init__(self, params: TracksParams, float_dtype: str = "float64") -> None:
        super().__init__(params, float_dtype)
        self.settings = StepperSettings.from_params(params)
        self._field: Field | None = None
        self._propagators: dict[str, Propagator] = {}

    @property
    def field(self) -> Field:
        """Built on first use: ``hpcgen export`` of a map-based file does not need the map."""
        if self._field is None:
            self._field = make_field(self.params)
        return self._field

    def fields(self) -> list[FieldSpec]:
        flag_doc = "; ".join(f"{bit}: {name}" for bit, name in STATUS_NAMES.items())
        return [
            FieldSpec(
                "X",
                (6,),
                FLOAT,
                "mm, mm, 1, 1, 1/MeV, mm",
                "inputs at z_start: x, y, tx, ty, q/p, dz = z_end - z_start",
                {"columns": ["x", "y", "tx", "ty", "qop", "dz"]},
            ),
            FieldSpec(
                "Y",
                (4,),
                FLOAT,
                "mm, mm, 1, 1",
                "outputs at z_end: x, y, tx, ty (NaN where status has step limit or slope)",
                {"columns": ["x", "y", "tx", "ty"]},
            ),
            FieldSpec("P", (), FLOAT, "GeV", "momentum magnitude"),
            FieldSpec("Z", (2,), FLOAT, "mm", "z_start, z_end", {"columns": ["z_start", "z_end"]}),
            FieldSpec(
                "status",
                (),
                "uint8",
                "1",
                f"bit flags, 0 = ok; {flag_doc}",
                {
                    "flag_bits": list(STATUS_NAMES),
                    "flag_names": list(STATUS_NAMES.values()),
                },
            ),
            FieldSpec(
                "n_steps", (), "int32", "1", "accepted integration steps from z_start to z_end"
            ),
        ]

    def check_n_samples(self, n_samples: int) -> None:
        """Up front, before any output: per-track z_start must fit the field's z extent (loads
        the map when z is drawn per track)."""
        if draws_z_start(self.params):
            check_z_sampling(self.params, self.field.z_extent())

    def sample(self, chunk: Chunk) -> dict[str, np.ndarray]:
        p = self.params
        # the field's z extent bounds the ends only where z_start is drawn and z_range is empty
        extent = self.field.z_extent() if draws_z_start(p) and not p.z_range else None
        raw = sample_tracks(p, chunk.rng("inputs"), chunk.count, extent)
        # Round inputs to the stored dtype first, so Y is the propagation of the stored X.
        return {k: v.astype(self.float_dtype) for k, v in raw.items()}

    def compute(
        self, inputs: Mapping[str, np.ndarray], chunk: Chunk, device: Device
    ) -> dict[str, np.ndarray]:
        X = np.asarray(inputs["X"], dtype=np.float64)
        Z = np.asarray(inputs["Z"], dtype=np.float64)
        kernel = "cuda" if device.kind == "gpu" and self.params.kernel == "auto" else None
        Y, status, nsteps = self.propagator(kernel)(X[:, :5], Z[:, 0], Z[:, 1])
        Y = Y.astype(self.float_dtype)
        if self.params.acceptance:  # on the stored values, so that verify sees the same cut
            status = status | np.where(
                _outside(Y, self.params.acceptance), OUT_OF_ACCEPTANCE, 0
            ).astype(np.uint8)
        return {"Y": Y, "status": status, "n_steps": nsteps}

    def propagator(self, kernel: str | None = None) -> Propagator:
        """The file's field and settings on ``kernel`` (default: the CPU kernel of the params)."""
        kernel = kernel or ("numpy" if self.params.kernel == "numpy" else "numba")
        if kernel not in self._propagators:
            self._propagators[kernel] = Propagator(self.field, self.settings, kernel)
        return self._propagators[kernel]

    def verifier(self, sample_rows: int | None = None, flag_rows: int | None = None) -> Verifier:
        """The streaming checks; ``sample_rows`` and ``flag_rows``: how many rows the independent
        reference propagates (defaults: checks.SAMPLE_ROWS, FLAG_ROWS)."""
        # imported here: the independent reference (scipy's constants, its own compiled
        # integrator) is verify's, and `hpcgen run` need not load it
        from hpcgen.generators.tracks.checks import FLAG_ROWS, SAMPLE_ROWS, TracksVerifier
        from hpcgen.generators.tracks.independent import ReferenceField

        p = self.params
        cpu = self.propagator().kernel
        dz = tuple(d for d in p.dz_range if d != 0) or (p.z_end - p.z_start,)
        if p.both_directions:
            dz += tuple(-d for d in dz)

        st = self.settings
        if (
            self.field.kind == KIND_MAP
            and not st.tableau.adaptive
            and GRID_MODES[st.grid_steps] & CELL
        ):
            # fixed steps in "cell" end on the map's z planes: where the run has field its steps
            # are no longer than the widest z cell, and the uniform field's probes (no cells, no
            # planes) take those steps, not `step`, which only the field-free outside reaches
            st = dataclasses.replace(
                st, step=min(st.step, float(np.diff(self.field.axes[2]).max()))
            )

        def uniform(f: UniformField) -> Propagator:
            return Propagator(f, st, cpu)

        return TracksVerifier(
            self.field,
            propagate=self.propagator(),
            make_uniform=uniform,
            accuracy_mm=integrator_accuracy(p),
            field_accuracy_mm=field_accuracy(p),
            dz_values=dz,
            float_dtype=str(self.float_dtype),
            acceptance=p.acceptance,
            reference=ReferenceField.from_params(p, getattr(self.field, "grid", None)),
            max_slope=p.max_slope,
            longest_step_mm=p.step if p.integrator == "rk4" else p.max_step,
            sample_rows=SAMPLE_ROWS if sample_rows is None else sample_rows,
            flag_rows=FLAG_ROWS if flag_rows is None else flag_rows,
            rel_tolerance=turn_allowance(p),
        )

    def root_attrs(self) -> dict[str, str]:
        p = self.params
        attrs = {
            "units": "mm, T, GeV (P), 1/MeV (q/p)",
            "description": "charged tracks propagated through the LHCb dipole field",
            "field": p.field,
            "integrator": p.integrator,
        }
        if p.field == "map":
            attrs["field_map"] = p.field_map
            attrs["field_map_sha256"] = getattr(self.field, "sha256", "")
        return attrs

    def input_files(self) -> list[Path]:
        if self.params.field != "map":
            return []
        self.field  # noqa: B018 - load and check the map now: a bad map fails the run up front
        return [Path(self.params.field_map)]

    def exporters(self) -> dict[str, Exporter]:
        return {"npz": export_npz_tracks}

    def plot(self, reader: FileView, out: Path, options: Mapping[str, Any]) -> None:
        """Trajectories, By(z), bending against 1/p, status counts, input distributions."""
        from hpcgen.generators.tracks.plot import plot_file

        plot_file(reader, Path(out), options)

    def supports_device(self, kind: str) -> bool:
        return kind == "cpu" or (kind == "gpu" and self.params.kernel == "auto")


def integrator_accuracy(p: TracksParams) -> float:
    """What verify allows against a closed form in a smooth field (mm). Adaptive schemes:
    4 x ``tolerance`` with ``step_control = "global"`` (each step's error carried to z_end is
    within tolerance, and the tracks of 2-100 GeV end within 1 um at the defaults, 0.6 um:
    docs/tracks.md "What the tolerance means"), 10 x with "lhcb" (a per-step bound: the global
    error is several of them); 0.01 mm for fixed RK4 (5 mm steps err by ~1e-7 mm). Strongly
    turning tracks get turn_allowance on top."""
    if p.integrator == "rk4":
        return 0.01
    return (4 if p.step_control == "global" else 10) * p.tolerance


#: 1/mm: verify's turn allowance per unit of ``tolerance`` (mm) where ``rel_tolerance`` is smaller
TURN_ALLOWANCE_PER_MM = 0.1


def _outside(Y: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """Bool (n,): rows of Y (x, y, tx, ty at z_end) outside the acceptance box (mm, mm, 1, 1);
    NaN rows (stopped tracks) are not. Verify recomputes the flag with its own function
    (checks.outside_acceptance)."""
    with np.errstate(invalid="ignore"):
        return np.logical_or.reduce([np.abs(Y[:, i]) >= box[i] for i in range(4)])


def turn_allowance(p: TracksParams) -> float:
    """verify's extra allowance per unit of turn (1: x rel_tolerance in checks.TracksVerifier;
    the slope limit grows by it x turn, the position limit by it x |dz| x turn).

    An adaptive step's slope error is bounded by tolerance/|dz| + rel_tolerance x the step's
    change of tx; summed over a track the second part is rel_tolerance x the whole turn. With
    rel_tolerance 0 (the default) the bound is tolerance/|dz| per step, but a track that turns
    strongly (p below 2 GeV) magnifies its early slope errors by the bending still ahead, so its
    global error grows with the turn all the same, in proportion to the tolerance: measured on
    Cash-Karp and Dormand-Prince, 0.3-3 GeV, default planes and the specs' per-track z, forward
    and backward, at 0.25 and 1 um per step: at most 0.024 x tolerance (1/mm) x turn on the
    slopes, 0.003 x tolerance x |dz| x turn on x and y. The allowance is 0.1 x tolerance, or
    rel_tolerance where larger (at the defaults 2.5e-5, half of what LHCb's 5e-5 allowed). 0 for
    fixed RK4."""
    if p.integrator == "rk4":
        return 0.0
    return max(p.rel_tolerance, TURN_ALLOWANCE_PER_MM * p.tolerance)


def field_accuracy(p: TracksParams) -> float:
    """The same through the file's field: a trilinear map's kinks at grid planes, unseen by the
    embedded error estimate, cost accuracy unless steps end on the planes on every axis ("xyz",
    "cell"); with "off", "xy" or "z" verify allows what docs/tracks.md ("Grid-aware steps")
    measured, with a margin."""
    if p.field != "map" or p.integrator == "rk4" or p.grid_steps in ("xyz", "cell"):
        return integrator_accuracy(p)
    return {"off": 1.0, "xy": 1.0, "z": 0.05}[p.grid_steps]


def export_npz_tracks(reader: FileView, out: Path, options: Mapping[str, Any]) -> None:
    """NPZ with X, Y, P, Z (the seed trainers' keys); ``--only-ok`` keeps rows with status 0."""
    from hpcgen.io.export import export_npz

    row_filter = None
    if options.get("only_ok"):
        if reader.node("status") is None:
            raise UserError(
                f"{reader.path}: --only-ok needs a 'status' dataset, this file has none"
            )

        def row_filter(block: Mapping[str, np.ndarray]) -> np.ndarray:
            return np.asarray(block["status"]) == 0

    export_npz(
        reader, out, names=["X", "Y", "P", "Z"], row_filter=row_filter, filter_fields=["status"]
    )
