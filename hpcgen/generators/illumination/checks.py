"""``hpcgen verify`` checks for illumination files.

verify judges with its own code (:mod:`.recast`), never with the generator's ray casting
(:mod:`.raycast`, :mod:`.lit`) or its geometry helpers: normals, tracking turns, the faces
nothing can shadow and the shadows themselves are recomputed there. What it shares with the
generator is the model as parsed from its file (:mod:`.model`), the input both judge.

Streamed over every row:

- lit fractions are finite and in [0, 1];
- a face turned away from the sun (every triangle n . s < 0) has lit fraction 0;
- a face that nothing can shadow (:func:`.recast.open_faces`) has lit fraction exactly 1
  whenever it faces the sun;
- sun vectors have unit length; generated ones are uniform on the sphere: the mean vector is 0
  within 5 standard errors (each component has variance 1/3) and z is uniform on [-1, 1] by a
  Kolmogorov-Smirnov test (on a 4096-bin histogram, so memory stays bounded).

Samples with |n . s| < 1e-9 for a face (grazing sun) are left out of the two face checks: there the
sign of n . s depends on the last bit of the arithmetic.

On the file as a whole (:func:`file_checks`):

- the model geometry stored in the file (``model_triangles``) is the model file's;
- a re-cast of ``RECAST_ROWS`` random rows from the whole file (deterministic: seeded by the
  run seed) by shadow projection (:class:`.recast.Recaster`): every stored value must lie in the
  interval the recast allows (its width: the points within the generator's float32 precision of
  a shadow edge; almost always a single value), within the storage dtype's rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpcgen.generators.base import CheckResult, FileView, Verifier
from hpcgen.generators.illumination.model import Model
from hpcgen.generators.illumination.recast import (
    GRAZING,
    Recaster,
    body_triangles,
    open_faces,
    trackers_of,
    turned_normals,
    unit_normals,
)

#: KS p-value below this fails (a correct generator fails 1 run in 10^4)
KS_P_MIN = 1e-4
#: the mean sun vector may be this many standard errors from 0
MEAN_SIGMAS = 5.0
Z_BINS = 4096
#: rows re-cast by verify (all rows of a smaller file): with 1 % of the rows wrong, 400 random
#: rows miss all of them with probability 0.99^400 = 1.8 %
RECAST_ROWS = 400
#: the recast sample's seed is (RECAST_SALT, run seed): fixed per file, unrelated to the streams
#: the generator draws from
RECAST_SALT = 0x1C457
#: stored values may differ from the recast interval by this much (float32: 2^-24 rounding of
#: values in [0, 1]; float64: the generator's sums of area weights)
VALUE_TOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-9}
#: disagreeing rows named in the report
SHOW_ROWS = 10


class IlluminationVerifier(Verifier):
    def __init__(self, model: Model, params: Any, float_dtype: np.dtype) -> None:
        self.model = model
        self.params = params
        self.generated = not params.sun_file
        self.unit_tol = 1e-12 if np.dtype(float_dtype) == np.float64 else 2e-6
        rest, self.tri_face, tri_comp = body_triangles(model)
        self.trackers = trackers_of(model, tri_comp, params.sun_tracking)
        self.free = open_faces(rest, self.tri_face, len(model.faces), self.trackers)
        self.face_start = np.flatnonzero(np.diff(self.tri_face, prepend=-1))
        self.normal_rest = unit_normals(rest)
        self.n = 0
        self.out_of_range = 0
        self.away_checked = self.away_bad = 0
        self.free_checked = self.free_bad = 0
        self.first_bad: dict[str, str] = {}
        self.max_unit_err = 0.0
        self.sum = np.zeros(3)
        self.z_hist = np.zeros(Z_BINS, dtype=np.int64)

    def _dots(self, sun: np.ndarray) -> np.ndarray:
        """n . s for every model triangle (n, T), tracking parts turned as in the run."""
        if not self.trackers:
            return sun @ self.normal_rest.T
        normals = turned_normals(self.normal_rest, self.trackers, sun)
        return np.einsum("nti,ni->nt", normals, sun)

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


# --- on the file as a whole -----------------------------------------------------------------------


#: the recast check's name (tests and users grep for it)
RECAST_CHECK = "lit fractions re-cast independently"


def file_checks(
    view: FileView, model: Model, params: Any, rows: int | None = None
) -> list[CheckResult]:
    """The stored geometry against the model file, then the re-cast of ``rows`` random rows
    (default :data:`RECAST_ROWS`)."""
    rows = RECAST_ROWS if rows is None else rows
    stored = np.asarray(view.static("model_triangles"), dtype=np.float64)
    stored_face = np.asarray(view.static("model_triangle_face"), dtype=np.int64)
    rest, tri_face, tri_comp = body_triangles(model)
    size = float(np.linalg.norm(np.ptp(rest.reshape(-1, 3), axis=0))) or 1.0
    same = stored.shape == rest.shape and np.array_equal(stored_face, tri_face)
    err = float(np.abs(stored - rest).max()) if same else np.inf
    geometry = CheckResult(
        "stored model geometry is the model file's",
        bool(err <= 1e-9 * size),
        f"{len(stored)} triangles stored, {len(rest)} in {model.source.name}"
        + (f", max |difference| {err:.3g} m" if same else ""),
        "" if same else "the model file changed since the run: the checks use the stored copy",
    )
    return [geometry, recast_check(view, model, params, stored, stored_face, tri_comp, rows)]


def sample_rows(view: FileView, rows: int) -> np.ndarray:
    """Sorted local indices of ``rows`` random rows of the file's written chunks (all of them
    when fewer), from a stream seeded by the run seed. Memory: O(chunks + rows)."""
    done = view.done
    chunk = view.spec.chunk_size
    # local rows of the file's chunk i: [i * chunk, (i + 1) * chunk), clipped to the file
    starts = np.arange(len(done), dtype=np.int64)[done] * chunk
    lengths = np.minimum(starts + chunk, view.n_rows) - starts
    total = int(lengths.sum())
    if total <= rows:
        parts = [np.arange(a, a + n) for a, n in zip(starts, lengths)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    rng = np.random.default_rng([RECAST_SALT, int(view.spec.seed)])
    rank = np.sort(rng.choice(total, size=rows, replace=False))  # among the written rows
    before = np.cumsum(lengths) - lengths  # written rows ahead of each written chunk
    k = np.searchsorted(before, rank, side="right") - 1
    return starts[k] + rank - before[k]


def recast_check(
    view: FileView,
    model: Model,
    params: Any,
    stored: np.ndarray,
    stored_face: np.ndarray,
    tri_comp: np.ndarray,
    rows: int,
) -> CheckResult:
    """Re-cast random rows with :class:`.recast.Recaster`, on the stored geometry and the
    definition the file states (``lit_fractions`` attributes ``convention``, ``level``,
    ``sun_tracking``; root attribute ``illumination_ray_offset_m``)."""
    lit_node = view.node("lit_fractions")
    if lit_node is None or lit_node.kind != "dataset":
        return CheckResult(RECAST_CHECK, False, "no lit_fractions dataset")
    lit_attrs = lit_node.attrs
    convention = str(lit_attrs.get("convention", params.convention))
    level = int(lit_attrs.get("level", params.level))
    offset = float(view.attrs["illumination_ray_offset_m"])
    tracking = bool(lit_attrs.get("sun_tracking", params.sun_tracking))
    if len(stored_face) != len(tri_comp):
        tri_comp = np.zeros(len(stored_face), np.int64)  # geometry check failed; no tracking
        tracking = False
    recaster = Recaster(
        stored,
        stored_face,
        lit_node.shape[1],
        trackers_of(model, tri_comp, tracking),
        convention,
        level,
        offset,
    )
    pick = sample_rows(view, rows)
    if len(pick) == 0:
        return CheckResult(RECAST_CHECK, True, "skipped (no written rows)")
    sun = np.asarray(view.read("sun_vectors", pick), dtype=np.float64)
    lit = np.asarray(view.read("lit_fractions", pick), dtype=np.float64)
    tol = VALUE_TOL.get(np.dtype(lit_node.dtype), 1e-6)
    names = [str(n) for n in lit_attrs["face_names"]]
    bad_values, bad_rows, shown, open_values = 0, 0, [], 0
    for row, s, v in zip(pick, sun, lit):
        lo, hi = recaster.bounds(s)
        open_values += int((hi > lo).sum())
        bad = ~((v >= lo - tol) & (v <= hi + tol))  # NaN is bad
        if bad.any():
            bad_values += int(bad.sum())
            bad_rows += 1
            if len(shown) < SHOW_ROWS:
                f = int(np.flatnonzero(bad)[0])
                expect = f"{lo[f]:.6g}" if hi[f] == lo[f] else f"[{lo[f]:.6g}, {hi[f]:.6g}]"
                shown.append(
                    f"row {view.row_range[0] + int(row)} {names[f]}: {v[f]:.6g}, recast "
                    f"{expect}" + (f" (+{int(bad.sum()) - 1} faces)" if bad.sum() > 1 else "")
                )
    n = len(pick)
    how = (
        f"shadow projection at the {convention} definition's points (level {level}); "
        f"{open_values} of {n * len(names)} values had an undecided interval; tolerance {tol:g}"
    )
    return CheckResult(
        RECAST_CHECK,
        bad_rows == 0,
        f"{bad_rows} of {n} random rows disagree ({bad_values} values)",
        "; ".join(shown) if shown else how,
    )
