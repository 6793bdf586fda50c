"""The tracks generator: charged tracks through the LHCb dipole, inputs and outputs for ML track
extrapolators (seed workflow: X, Y, P, Z as its trainers read them)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hpcgen.generators.base import (
    FLOAT,
    Chunk,
    Device,
    FieldSpec,
    Generator,
    Verifier,
)
from hpcgen.generators.tracks.checks import TracksVerifier
from hpcgen.generators.tracks.fields import Field, GaussianDipole, UniformField
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.generators.tracks.rk4 import propagate_rk4
from hpcgen.generators.tracks.sampling import sample_tracks


class TracksGenerator(Generator):
    name = "tracks"
    Params = TracksParams
    default_chunk_size = 100_000  # ~13 MB of float64 output per chunk

    def __init__(self, params: TracksParams, float_dtype: str = "float64") -> None:
        super().__init__(params, float_dtype)
        self.field = make_field(params)

    def fields(self) -> list[FieldSpec]:
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
                "outputs at z_end: x, y, tx, ty",
                {"columns": ["x", "y", "tx", "ty"]},
            ),
            FieldSpec("P", (), FLOAT, "GeV", "momentum magnitude"),
            FieldSpec("Z", (2,), FLOAT, "mm", "z_start, z_end", {"columns": ["z_start", "z_end"]}),
        ]

    def sample(self, chunk: Chunk) -> dict[str, np.ndarray]:
        raw = sample_tracks(self.params, chunk.rng("inputs"), chunk.count)
        # Round inputs to the stored dtype first, so Y is the propagation of the stored X.
        return {k: v.astype(self.float_dtype) for k, v in raw.items()}

    def compute(
        self, inputs: Mapping[str, np.ndarray], chunk: Chunk, device: Device
    ) -> dict[str, np.ndarray]:
        xp = device.xp
        X = xp.asarray(inputs["X"], dtype=xp.float64)
        Z = xp.asarray(inputs["Z"], dtype=xp.float64)
        Y = propagate_rk4(X[:, :5], Z[:, 0], Z[:, 1], self.field, self.params.step, xp)
        return {"Y": device.to_host(Y).astype(self.float_dtype)}

    def verifier(self) -> Verifier:
        return TracksVerifier(self.field)

    def root_attrs(self) -> dict[str, str]:
        return {
            "units": "mm, T, GeV (P), 1/MeV (q/p)",
            "description": "charged tracks propagated through the LHCb dipole field",
        }

    def supports_device(self, kind: str) -> bool:
        return kind in ("cpu", "gpu")


def make_field(p: TracksParams) -> Field:
    if p.field == "uniform":
        return UniformField(*p.b_uniform)
    return GaussianDipole(p.b0, p.z_center, p.z_width)
