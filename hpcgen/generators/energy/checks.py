"""``hpcgen verify`` for energy files: streaming physics checks plus The Well layout check."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import h5py
import numpy as np

from hpcgen.generators.base import CheckResult, Verifier
from hpcgen.generators.energy import maps, well
from hpcgen.generators.energy.params import EnergyParams, valid_shape

#: entropy differences below this (nats) are float rounding, not a decrease
ENTROPY_EPS = 1e-6
#: stored entropy (float32) against the entropy recomputed from the stored frames
ENTROPY_MATCH = 1e-4


class EnergyVerifier(Verifier):
    """Energy conservation at every step, positivity, finiteness, shapes, pyramid conservation,
    entropy bookkeeping, diversity of frame 0. Keeps running extrema and counts, one reference
    frame and an 8-byte digest per trajectory's frame 0."""

    def __init__(self, params: EnergyParams) -> None:
        self.params = params
        self.rows = 0
        self.max_err = 0.0
        self.worst = (0, 0)
        self.n_negative = 0
        self.n_nonfinite = 0
        self.shapes: set[tuple[int, int]] = set()
        self.max_pyramid_err = 0.0
        self.pyramid_negative = 0
        self.pyramid_levels: set[int] = set()
        self.max_entropy_mismatch = 0.0
        self.n_steps = 0
        self.n_decreases = 0
        self.n_rescaled = 0
        # frame 0 of the first trajectory seen, and a digest of every frame 0
        self.reference: np.ndarray | None = None
        self.frame0_digests: set[bytes] = set()
        self.frame0_rms_sum = 0.0
        self.frame0_rms_min = float("inf")
        self.frame0_compared = 0

    def update(self, data: Mapping[str, np.ndarray], start: int) -> None:
        e = np.asarray(data[well.ENERGY])
        if e.shape[0] == 0:
            return
        self.rows += e.shape[0]
        self.shapes.add(tuple(int(s) for s in e.shape[-2:]))
        finite = np.isfinite(e)
        self.n_nonfinite += int(e.size - np.count_nonzero(finite))
        self.n_negative += int(np.count_nonzero(e < 0))
        clean = np.where(finite, e, 0)  # one copy, used by both sums below
        totals = maps.total_energy(clean)
        err = np.abs(totals / totals[:, :1] - 1.0)
        k = int(np.argmax(err))
        if err.flat[k] > self.max_err:
            self.max_err = float(err.flat[k])
            self.worst = (start + k // err.shape[1], k % err.shape[1])

        s = maps.entropy(np.maximum(clean, 0))
        stored = np.asarray(data["scalars/entropy"], np.float64)
        self.max_entropy_mismatch = max(self.max_entropy_mismatch, float(np.abs(s - stored).max()))
        ds = np.diff(s, axis=1)
        self.n_steps += ds.size
        self.n_decreases += int(np.count_nonzero(ds < -ENTROPY_EPS))
        self.n_rescaled += int(np.count_nonzero(np.asarray(data["scalars/rescaled"])))

        self._frame0(e[:, 0])

        # pyramid: the first and last frame of each trajectory at every smaller level
        ends = e[:, [0, -1]]
        ends_total = maps.total_energy(ends)
        for scale in maps.SCALES:
            if scale >= e.shape[-2] or not _keeps_aspect(e.shape[-2:], scale):
                continue
            level = maps.rescale(ends, scale)
            self.pyramid_levels.add(scale)
            rel = np.abs(maps.total_energy(level) / ends_total - 1.0)
            self.max_pyramid_err = max(self.max_pyramid_err, float(np.nanmax(rel)))
            self.pyramid_negative += int(np.count_nonzero(level < 0))

    def _frame0(self, first: np.ndarray) -> None:
        """Digest each trajectory's frame 0 and its RMS difference from the reference frame
        (relative to the reference's mean energy)."""
        for f in first:
            self.frame0_digests.add(hashlib.blake2b(f.tobytes(), digest_size=8).digest())
        if self.reference is None:
            self.reference = first[0].astype(np.float64)
            first = first[1:]
        if len(first) == 0:
            return
        scale = float(np.abs(self.reference).mean()) or 1.0
        diff = first.astype(np.float64) - self.reference
        rms = np.sqrt(np.mean(diff * diff, axis=(1, 2))) / scale
        self.frame0_rms_sum += float(rms.sum())
        self.frame0_rms_min = min(self.frame0_rms_min, float(rms.min()))
        self.frame0_compared += len(rms)

    def frame0_result(self) -> CheckResult:
        """Whether the trajectories start from different frames. Vortex and laminar frames are
        analytic: identical starts are expected only under pattern_variation = "source"."""
        distinct = len(self.frame0_digests)
        analytic = self.params.preset.pattern in ("vortex", "laminar")
        shared_by_design = analytic and self.params.pattern_variation == "source"
        if self.frame0_compared:
            mean = self.frame0_rms_sum / self.frame0_compared
            detail = (
                f"RMS difference from trajectory 0's frame 0, relative to its mean energy: "
                f"mean {mean:.3g}, min {self.frame0_rms_min:.3g}"
            )
        else:
            detail = "one trajectory: nothing to compare"
        if shared_by_design:
            detail += "; pattern_variation = source: one initial frame by design"
        return CheckResult(
            "frame 0 differs between trajectories",
            self.rows <= 1 or distinct == self.rows or shared_by_design,
            f"{distinct} distinct of {self.rows}",
            detail,
        )

    def results(self) -> list[CheckResult]:
        tol = self.params.drift_tolerance
        rate = self.n_decreases / self.n_steps if self.n_steps else 0.0
        shapes = ", ".join(f"{h} x {w}" for h, w in sorted(self.shapes)) or "none"
        return [
            CheckResult(
                f"energy conserved within {tol:.0%} at every step",
                self.rows > 0 and self.max_err <= tol,
                f"max error {self.max_err:.3g}",
                f"worst: trajectory {self.worst[0]} frame {self.worst[1]}"
                if self.rows
                else "no trajectories",
            ),
            CheckResult("no negative energy", self.n_negative == 0, f"{self.n_negative} pixels"),
            CheckResult("all values finite", self.n_nonfinite == 0, f"{self.n_nonfinite} pixels"),
            CheckResult(
                "maps square or 2:3", all(valid_shape(h, w) for h, w in self.shapes), shapes
            ),
            CheckResult(
                "pyramid levels conserve energy",
                self.max_pyramid_err <= tol and self.pyramid_negative == 0,
                f"max error {self.max_pyramid_err:.3g}",
                f"levels {', '.join(map(str, sorted(self.pyramid_levels))) or 'none'} (of "
                f"{', '.join(map(str, maps.SCALES))}, below the map height), first and last "
                f"frame of each trajectory; {self.pyramid_negative} negative pixels",
            ),
            CheckResult(
                "stored entropy matches the frames",
                self.max_entropy_mismatch <= ENTROPY_MATCH,
                f"max difference {self.max_entropy_mismatch:.3g} nats",
            ),
            CheckResult(
                "entropy decrease rate (reported)",
                True,
                f"{rate:.1%} of steps",
                f"{self.n_decreases} of {self.n_steps} steps have dS < 0 (source: about 4 %)",
            ),
            CheckResult(
                "drift rescales (reported)",
                True,
                f"{self.n_rescaled} steps",
                f"total energy off by more than {tol:.0%} and rescaled",
            ),
            self.frame0_result(),
        ]


def _keeps_aspect(shape: tuple[int, ...], scale: int) -> bool:
    h, w = shape
    return (scale * w) % h == 0


def layout_result(h5: h5py.File) -> CheckResult:
    """The Well layout check as one verify line."""
    problems = well.check_layout(h5)
    return CheckResult(
        "The Well layout (attributes and shapes)",
        not problems,
        "conforms" if not problems else f"{len(problems)} problem(s)",
        "; ".join(problems[:5]),
    )


def virtual_result(h5: h5py.File) -> CheckResult:
    """Whether the energy field is a virtual dataset (the shards route's ``merge --virtual``).
    Reported, not failed: hpcgen reads such files, but The Well's WellDataset opens files through
    fsspec file objects, where HDF5 cannot follow a virtual dataset to its sources."""
    d = h5.get(well.ENERGY)
    virtual = isinstance(d, h5py.Dataset) and d.is_virtual
    return CheckResult(
        "plain datasets for The Well's loader (reported)",
        True,
        "virtual" if virtual else "plain",
        "WellDataset cannot read a virtual dataset: hpcgen export FILE --format well --out DIR"
        if virtual
        else "",
    )
