"""One propagation front end over the three kernels (numpy reference, numba, CUDA) and the fields.

``make_field(params)`` builds the field (loading and checking a map: never a silent fallback);
``Propagator`` runs the chosen kernel and always returns host arrays (Y, status, n_steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.tracks.fieldmap import load_map
from hpcgen.generators.tracks.fields import Field, FieldMap, GaussianDipole, UniformField
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.generators.tracks.stepper import StepperSettings, propagate_reference


def make_field(p: TracksParams) -> Field:
    """The field the parameters ask for. A map that cannot be read, or has artefacts under the
    "fail" policy, is a UserError."""
    pol = float(p.polarity)
    if p.field == "uniform":
        bx, by, bz = p.b_uniform
        return UniformField(pol * bx, pol * by, pol * bz)
    if p.field == "gaussian":
        return GaussianDipole(pol * p.b0, p.z_center, p.z_width)
    grid = load_map(Path(p.field_map))
    n_art = int(grid.artefact_points(p.artefact_b).sum()) if p.artefact_policy == "fail" else 0
    if n_art:
        raise UserError(
            f"field map {p.field_map}: {n_art} grid points with |B| > {p.artefact_b} T "
            "(artefact_policy = 'fail'; use 'mask' to flag tracks through them)"
        )
    mask = grid.masked_cells(p.artefact_b) if p.artefact_policy == "mask" else None
    return FieldMap(grid, p.polarity, mask)


@dataclass
class Propagator:
    """field x settings x kernel ("numpy", "numba" or "cuda")."""

    field: Field
    settings: StepperSettings
    kernel: str = "numba"
    _cuda: Any = field(default=None, repr=False)

    def __call__(
        self, state: np.ndarray, z0: np.ndarray, z1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tracks (n, >=5) [x, y, tx, ty, q/p, ...] from z0 to z1: host (Y, status, n_steps)."""
        state = np.asarray(state)[:, :5]
        if self.kernel == "numpy":
            return propagate_reference(state, z0, z1, self.field, self.settings)
        if self.kernel == "numba":
            from hpcgen.generators.tracks.kernels_numba import propagate_numba

            return propagate_numba(state, z0, z1, self.field, self.settings)
        if self.kernel == "cuda":
            if self._cuda is None:
                from hpcgen.generators.tracks.kernels_cuda import CudaPropagator

                self._cuda = CudaPropagator(self.field, self.settings)
            out, status, nsteps = self._cuda(state, z0, z1)
            return out.get(), status.get(), nsteps.get()
        raise ValueError(f"unknown kernel {self.kernel!r}")
