"""``hpcgen verify`` checks for illumination files: geometry and statistics, streamed.

- lit fractions are finite and in [0, 1];
- a face turned away from the sun (every triangle n . s < 0) has lit fraction 0;
- a face that nothing can shadow (found geometrically, :func:`.model.unshadowable_faces`) has lit
  fraction exactly 1 whenever it faces the sun;
- sun vectors have unit length; generated ones are uniform on the sphere: the mean vector is 0
  within 5 standard errors (each component has variance 1/3) and z is uniform on [-1, 1] by a
  Kolmogorov-Smirnov test (on a 4096-bin histogram, so memory stays bounded).

Samples with |n . s| < 1e-9 for a face (grazing sun) are left out of the two face checks: there the
sign of n . s depends on the last bit of the arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcgen.generators.base import CheckResult, Verifier
from hpcgen.generators.illumination.model import (
    Model,
    tracking_rotations,
    triangle_normals,
    unshadowable_faces,
)

#: |n . s| below this is "grazing": no face check there
GRAZING = 1e-9
#: KS p-value below this fails (a correct generator fails 1 run in 10^4)
KS_P_MIN = 1e-4
#: the mean sun vector may be this many standard errors from 0
MEAN_SIGMAS = 5.0
Z_BINS = 4096


class IlluminationVerifier(Verifier):
    def __init__(self, model: Model, params: Any, float_dtype: np.dtype) -> None:
        self.model = model
        self.params = params
        self.generated = not params.sun_file
        self.unit_tol = 1e-12 if np.dtype(float_dtype) == np.float64 else 2e-6
        self.tracking = [
            k for k, c in enumerate(model.components) if params.sun_tracking and c.can_track
        ]
        self.free = unshadowable_faces(model, params.sun_tracking)
        tris, comp = [], []
        for f in model.faces:
            tris.append(f.triangles)
            comp += [f.component] * len(f.triangles)
        self.tri_comp = np.array(comp)
        self.tri_face = np.concatenate(
            [np.full(len(f.triangles), i) for i, f in enumerate(model.faces)]
        )
        self.face_start = np.flatnonzero(np.diff(self.tri_face, prepend=-1))
        self.normal_local = triangle_normals(np.concatenate(tris))
        rot = np.stack([c.rotation for c in model.components])[self.tri_comp]
        self.normal_body = np.einsum("tij,tj->ti", rot, self.normal_local)
        self.n = 0
        self.out_of_range = 0
        self.away_checked = self.away_bad = 0
        self.free_checked = self.free_bad = 0
        self.first_bad: dict[str, str] = {}
        self.max_unit_err = 0.0
        self.sum = np.zeros(3)
        self.z_hist = np.zeros(Z_BINS, dtype=np.int64)

    def _dots(self, sun: np.ndarray) -> np.ndarray:
        """n . s for every model triangle (n, T), tracking components turned as in the run."""
        dots = sun @ self.normal_body.T
        for k in self.tracking:
            sel = self.tri_comp == k
            m = tracking_rotations(self.model.components[k], sun)
            dots[:, sel] = np.einsum("bij,tj,bi->bt", m, self.normal_local[sel], sun)
        return dots

    def update(self, data: Mapping[str, np.ndarray], start: int) -> None:
        sun = np.asarray(data["sun_vectors"], dtype=np.float64)
        lit = np.asarray(data["lit_fractions"], dtype=np.float64)
        self.n += len(sun)
        bad = ~np.isfinite(lit) | (lit < 0) | (lit > 1)
        self.out_of_range += int(bad.sum())
        self._note("range", bad, start)
        dots = self._dots(sun)
        # faces own consecutive triangles: per-face extremes of n . s by segment reductions
        lo = np.minimum.reduceat(dots, self.face_start, axis=1)
        hi = np.maximum.reduceat(dots, self.face_start, axis=1)
        away = hi < -GRAZING  # every triangle of the face turned away
        self.away_checked += int(away.sum())
        bad = away & (lit != 0)
        self.away_bad += int(bad.sum())
        self._note("away", bad, start)
        if self.free:
            facing = lo[:, self.free] > GRAZING
            self.free_checked += int(facing.sum())
            bad = facing & (lit[:, self.free] != 1)
            self.free_bad += int(bad.sum())
            self._note("free", bad, start, self.free)
        norm = np.linalg.norm(sun, axis=1)
        if len(sun):
            self.max_unit_err = max(self.max_unit_err, float(np.abs(norm - 1).max()))
        self.sum += sun.sum(axis=0)
        z = np.clip(sun[:, 2], -1, 1)
        self.z_hist += np.histogram(z, bins=Z_BINS, range=(-1.0, 1.0))[0]

    def _note(self, key: str, bad: np.ndarray, start: int, cols: list[int] | None = None) -> None:
        if key not in self.first_bad and bad.any():
            r, c = (int(x[0]) for x in np.nonzero(bad))
            face = self.model.face_names[cols[c] if cols is not None else c]
            self.first_bad[key] = f"first at row {start + r}, face {face}"

    def results(self) -> list[CheckResult]:
        from scipy import stats

        out = [
            CheckResult(
                "lit fractions in [0, 1]",
                self.out_of_range == 0,
                f"{self.out_of_range} outside",
                self.first_bad.get("range", ""),
            ),
            CheckResult(
                "faces turned away from the sun are 0",
                self.away_bad == 0,
                f"{self.away_bad} of {self.away_checked} nonzero",
                self.first_bad.get("away", ""),
            ),
        ]
        names = ", ".join(self.model.face_names[i] for i in self.free) or "none in this model"
        out.append(
            CheckResult(
                "unshadowable faces facing the sun are 1",
                self.free_bad == 0,
                f"{self.free_bad} of {self.free_checked} below 1",
                self.first_bad.get("free", f"faces: {names}"),
            )
        )
        out.append(
            CheckResult(
                "sun vectors have unit length",
                self.max_unit_err <= self.unit_tol,
                f"max |norm - 1| = {self.max_unit_err:.2g}",
                f"tolerance {self.unit_tol:g}",
            )
        )
        if not self.generated or self.n == 0:
            reason = "sun vectors from sun_file" if not self.generated else "no rows"
            out.append(
                CheckResult("sun vectors uniform on the sphere", True, f"skipped ({reason})")
            )
            return out
        # each component of a uniform unit vector has mean 0 and variance 1/3
        z_score = np.abs(self.sum / self.n) * np.sqrt(3 * self.n)
        out.append(
            CheckResult(
                "mean sun vector is 0",
                bool(z_score.max() < MEAN_SIGMAS),
                f"max |mean| = {np.abs(self.sum / self.n).max():.3g} ({z_score.max():.2f} sigma)",
                f"bound {MEAN_SIGMAS} standard errors",
            )
        )
        ecdf = np.cumsum(self.z_hist) / self.n
        cdf = np.linspace(-1, 1, Z_BINS + 1)[1:] * 0.5 + 0.5
        d = float(np.abs(ecdf - cdf).max())
        p = float(stats.kstwo.sf(d, self.n))
        out.append(
            CheckResult(
                "sun z uniform on [-1, 1] (KS)",
                p > KS_P_MIN,
                f"D = {d:.3g}, p = {p:.3g}",
                f"fails below p = {KS_P_MIN:g}; {Z_BINS}-bin histogram",
            )
        )
        return out
