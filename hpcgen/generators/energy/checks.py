"""``hpcgen verify`` for energy files: physics checks that judge the stored data as a third party,
plus The Well layout check.

Independence: every quantity a check compares is recomputed here from the stored frames with code
the generator does not run -- plain float64 sums (not the generator's fused float32 row sums), the
entropy as -sum p ln p in float64 (not :func:`maps.entropy` nor the generator's float32 logarithm),
the declared totals and the rescale flags from the stored scale factors, and the reader's pyramid
(:func:`maps.rescale`) against scipy's own zoom. Tolerances come from float32 storage, not from the
source workflow's 5 %, which stays a reported figure (docs/energy.md, "What verify checks").

Coverage: the conservation, finiteness, sign, flag and entropy checks see every frame of every
trajectory; the pyramid comparison (a scipy zoom per level, by far the costliest check) sees a
random sample of trajectories spread over the whole file (:func:`in_sample`; its cost:
docs/energy.md, "What verify checks").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import scipy.ndimage as ndi

from hpcgen.generators.base import CheckResult, Verifier
from hpcgen.generators.energy import maps, well
from hpcgen.generators.energy.params import EnergyParams, valid_shape

#: float32 unit roundoff: rounding a value to float32 changes it by at most this fraction
U32 = 2.0**-24
#: |sum of a stored frame / declared total - 1| allowed. The declared total is H * W (frame 0 has
#: mean 1) times the stored scale factors since the last rescale. Worst case of what float32 storage
#: does to a frame's total, each a relative error of at most U32: the cast of frame 0 to float32
#: (every pixel rounded), the float32 renormalisation factor, the rounding of every pixel times that
#: factor, and one more multiply of every pixel (the scale factor, or the rescale to frame 0's
#: total) -- four, so 4 U32 = 2.4e-7; float64 sums of up to 8192^2 pixels add < 1e-8. Twice that
#: bound allows for summation orders we do not know (GPU reductions). Measured on the demo specs of
#: all five domains: 2.4e-7 at most while the generator renormalised to the measured total of the
#: previous frame (a random walk: 1.8e-6 after 1000 steps), 6.0e-8 since it renormalises to the
#: declared total (also after 1000 steps). A generator that stops renormalising (2.5e-3 per step)
#: is 5000 times over.
CONSERVATION_RTOL = 8 * U32
#: stored entropy (float32) against -sum p ln p recomputed in float64, nats: the float32 rounding
#: of the stored value (half a unit in the last place: at most 9.5e-7 for S <= ln(8192^2) = 18)
#: plus the generator's float32 logarithms and row sums (measured below 2e-8 nats); measured
#: 4.9e-7 at most on the demo specs
ENTROPY_MATCH = 2e-6
#: entropy differences below this (nats) are float rounding, not a decrease
ENTROPY_EPS = 1e-6
#: pyramid level (float32) against scipy's zoom of the stored frame, relative to the level's
#: largest value: the float32 rounding of the level (U32) and its renormalisation factor (U32)
#: against a float64 reference; float64 differences of the two zooms are ~1e-12. Twice that bound.
PYRAMID_MATCH = 4 * U32
#: pixels per slab of the entropy recomputation (a few float64 copies of 32 MB each)
ENTROPY_SLAB_PIXELS = 1 << 22
#: the pyramid comparison checks row i with probability min(1, PYRAMID_SAMPLE / (i + 1))
PYRAMID_SAMPLE = 8
#: drift ratios this close to the tolerance may round either way: a flag there is not a mismatch
FLAG_MARGIN = 1e-9


def frame_totals(e: np.ndarray) -> np.ndarray:
    """Plain float64 sum of every frame (..., H, W) -> (...); NaN where a frame holds a NaN."""
    return np.sum(e, axis=(-2, -1), dtype=np.float64)


def declared_totals(n_pixels: int, scale: np.ndarray, rescaled: np.ndarray) -> np.ndarray:
    """The total each frame must hold, (B, T) float64, from the stored per-step scalars: frame 0
    holds ``n_pixels`` (mean 1); a flagged frame is back at ``n_pixels``; any other frame holds
    the previous frame's total times its scale factor."""
    scale = np.asarray(scale, np.float64)
    out = np.empty(scale.shape)
    out[:, 0] = n_pixels
    for t in range(1, scale.shape[1]):
        out[:, t] = np.where(rescaled[:, t], n_pixels, out[:, t - 1] * scale[:, t])
    return out


def expected_flags(scale: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """The drift rule replayed on the stored scale factors: (flags, ambiguous), (B, T) bool each.
    A frame is rescaled when the product of the factors since the last rescale leaves
    [1 - tolerance, 1 + tolerance]; ``ambiguous`` marks ratios within FLAG_MARGIN of the edge."""
    scale = np.asarray(scale, np.float64)
    flags = np.zeros(scale.shape, bool)
    ambiguous = np.zeros(scale.shape, bool)
    ratio = np.ones(scale.shape[0])
    for t in range(1, scale.shape[1]):
        ratio = ratio * scale[:, t]
        off = np.abs(ratio - 1.0) - tolerance
        flags[:, t] = off > 0
        ambiguous[:, t] = np.abs(off) <= FLAG_MARGIN
        ratio = np.where(flags[:, t], 1.0, ratio)
    return flags, ambiguous


def shannon_entropy(frames: np.ndarray) -> np.ndarray:
    """-sum p ln p with p = E / sum E over the last two axes, float64, nats (0 ln 0 = 0).
    Negative and non-finite pixels count as 0 (other checks report them)."""
    e = np.array(frames, np.float64)  # a copy: normalised in place below
    if not (np.isfinite(e).all() and e.min() >= 0):
        e = np.where(np.isfinite(e) & (e > 0), e, 0.0)
    p = e.reshape(*e.shape[:-2], -1)
    p /= p.sum(axis=-1, keepdims=True)
    ln_p = np.zeros_like(p)
    np.log(p, out=ln_p, where=p > 0)
    return -np.einsum("...i,...i->...", p, ln_p)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit integer hash (SplitMix64's finaliser), vectorised, wrapping arithmetic."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def in_sample(rows: np.ndarray, k: int) -> np.ndarray:
    """Which of the global row indices ``rows`` a sampled check takes: row i with probability
    min(1, k / (i + 1)), decided by a hash of i (the same rows on every run, whatever the chunk
    size). The first k rows are all taken; beyond, about k ln(n / k) more of n rows, from every
    part of the file -- without knowing n, as a streaming check must."""
    with np.errstate(over="ignore"):
        u = (_splitmix64(np.asarray(rows)) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return u * (np.asarray(rows) + 1) < k


def independent_level(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A pyramid level of one stored frame computed without hpcgen's code: scipy's periodic cubic
    zoom in float64, spline overshoots clipped at 0, renormalised to the frame's float64 total."""
    f = np.asarray(frame, np.float64)
    zoom = (shape[0] / f.shape[0], shape[1] / f.shape[1])
    z = ndi.zoom(f, zoom, order=3, mode="grid-wrap", grid_mode=True)
    np.maximum(z, 0, out=z)
    return z * (np.sum(f) / np.sum(z))


class EnergyVerifier(Verifier):
    """Energy conservation of every frame against its declared total, the rescale flags against
    the stored scale factors, positivity, finiteness, shapes, the stored entropy against the
    frames, the reader's pyramid against scipy, diversity of frame 0. Keeps running extrema and
    counts, one reference frame and an 8-byte digest per trajectory's frame 0."""

    def __init__(self, params: EnergyParams) -> None:
        self.params = params
        self.rows = 0
        self.max_err = 0.0
        self.worst = (0, 0)
        self.frames_off = 0
        self.trajectories_off = 0
        self.max_drift = 0.0
        self.drift_worst = (0, 0)
        self.flag_mismatches = 0
        self.first_mismatch: tuple[int, int] | None = None
        self.bad_scales = 0
        self.n_negative = 0
        self.n_nonfinite = 0
        self.shapes: set[tuple[int, int]] = set()
        self.max_pyramid_diff = 0.0
        self.max_pyramid_total = 0.0
        self.pyramid_negative = 0
        self.pyramid_levels: set[int] = set()
        self.pyramid_rows = 0
        self.max_entropy_mismatch = 0.0
        self.entropy_worst = (0, 0)
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
        self.n_nonfinite += int(e.size - np.count_nonzero(np.isfinite(e)))
        self.n_negative += int(np.count_nonzero(e < 0))
        scale = np.asarray(data["scalars/scale_factor"], np.float64)
        flags = np.asarray(data["scalars/rescaled"]) != 0
        self.n_rescaled += int(np.count_nonzero(flags))

        self._conservation(e, scale, flags, start)
        self._flags(scale, flags, start)
        self._entropy(e, np.asarray(data["scalars/entropy"], np.float64), start)
        self._frame0(e[:, 0])
        rows = start + np.arange(e.shape[0])
        for i in np.flatnonzero(in_sample(rows, PYRAMID_SAMPLE)):
            self._pyramid(e[i, [0, -1]])

    def _conservation(
        self, e: np.ndarray, scale: np.ndarray, flags: np.ndarray, start: int
    ) -> None:
        """Every frame's float64 total against its declared total (and, reported, against the
        trajectory's frame 0: the source workflow's criterion)."""
        totals = frame_totals(e)
        declared = declared_totals(e.shape[-2] * e.shape[-1], scale, flags)
        err = np.abs(totals / declared - 1.0)
        err[~np.isfinite(err)] = np.inf  # a frame with NaN or inf pixels conserves nothing
        k = int(np.argmax(err))
        if err.flat[k] > self.max_err:
            self.max_err = float(err.flat[k])
            self.worst = (start + k // err.shape[1], k % err.shape[1])
        off = err > CONSERVATION_RTOL
        self.frames_off += int(np.count_nonzero(off))
        self.trajectories_off += int(np.count_nonzero(off.any(axis=1)))
        with np.errstate(invalid="ignore", divide="ignore"):
            drift = np.abs(totals / totals[:, :1] - 1.0)
        drift[~np.isfinite(drift)] = np.inf
        k = int(np.argmax(drift))
        if drift.flat[k] > self.max_drift:
            self.max_drift = float(drift.flat[k])
            self.drift_worst = (start + k // drift.shape[1], k % drift.shape[1])

    def _flags(self, scale: np.ndarray, flags: np.ndarray, start: int) -> None:
        """The stored rescale flags against the drift rule replayed on the stored scale factors;
        the factors themselves: 1 at frame 0, within [1 - s, 1 + s] (exactly 1 when s = 0)."""
        s = self.params.scaling_max
        lo, hi = np.float32(1 - s), np.float32(1 + s)  # the bounds as float32 draws can reach them
        self.bad_scales += int(np.count_nonzero(scale[:, 0] != 1.0))
        self.bad_scales += int(np.count_nonzero((scale[:, 1:] < lo) | (scale[:, 1:] > hi)))
        want, ambiguous = expected_flags(scale, self.params.drift_tolerance)
        mismatch = (want != flags) & ~ambiguous
        n = int(np.count_nonzero(mismatch))
        if n and self.first_mismatch is None:
            i, t = np.argwhere(mismatch)[0]
            self.first_mismatch = (start + int(i), int(t))
        self.flag_mismatches += n

    def _entropy(self, e: np.ndarray, stored: np.ndarray, start: int) -> None:
        """-sum p ln p of every frame against the stored scalar, in slabs of frames of at most
        ENTROPY_SLAB_PIXELS (float64 copies stay small), and the entropy decrease rate from the
        same values."""
        step = max(1, ENTROPY_SLAB_PIXELS // (e.shape[-2] * e.shape[-1]))
        for i in range(e.shape[0]):
            s = np.concatenate(
                [shannon_entropy(e[i, a : a + step]) for a in range(0, e.shape[1], step)]
            )
            diff = np.abs(s - stored[i])
            diff[~np.isfinite(diff)] = np.inf
            t = int(np.argmax(diff))
            if diff[t] > self.max_entropy_mismatch:
                self.max_entropy_mismatch = float(diff[t])
                self.entropy_worst = (start + i, t)
            ds = np.diff(s)
            self.n_steps += ds.size
            self.n_decreases += int(np.count_nonzero(ds < -ENTROPY_EPS))

    def _pyramid(self, ends: np.ndarray) -> None:
        """The reader's pyramid (maps.rescale) of a trajectory's first and last frame against
        :func:`independent_level`, at every level below the map height that keeps the aspect."""
        h, w = ends.shape[-2:]
        self.pyramid_rows += 1
        totals = frame_totals(ends)
        for scale in maps.SCALES:
            if scale >= h or (scale * w) % h:
                continue
            self.pyramid_levels.add(scale)
            level = maps.rescale(ends, scale)
            self.pyramid_negative += int(np.count_nonzero(level < 0))
            rel = np.abs(frame_totals(level) / totals - 1.0)
            self.max_pyramid_total = max(self.max_pyramid_total, float(np.nanmax(rel)))
            for got, frame in zip(level, ends):
                want = independent_level(frame, got.shape)
                diff = float(np.max(np.abs(got - want)) / np.max(want))
                self.max_pyramid_diff = max(self.max_pyramid_diff, diff)

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
        pixels = ", ".join(str(h * w) for h, w in sorted(self.shapes)) or "H*W"
        worst = f"worst: trajectory {self.worst[0]} frame {self.worst[1]}; " if self.rows else ""
        mismatch = (
            f"first: trajectory {self.first_mismatch[0]} frame {self.first_mismatch[1]}; "
            if self.first_mismatch
            else ""
        )
        levels = ", ".join(map(str, sorted(self.pyramid_levels))) or "none"
        return [
            CheckResult(
                "energy conserved at every step",
                self.rows > 0 and self.max_err <= CONSERVATION_RTOL,
                f"max error {self.max_err:.3g}",
                f"{worst}{self.frames_off} frames of {self.trajectories_off} trajectories beyond "
                f"{CONSERVATION_RTOL:.3g} (8 float32 roundings); plain float64 sum of every stored "
                f"frame against its declared total: H*W = {pixels} times the stored scale factors "
                f"since the last rescale",
            ),
            CheckResult(
                "energy within the drift tolerance of frame 0 (reported)",
                True,
                f"max {self.max_drift:.3g}",
                f"the source workflow's criterion |sum E / sum E_0 - 1| < {tol:.0%}: "
                f"{'met' if self.max_drift < tol else 'not met'}; worst: trajectory "
                f"{self.drift_worst[0]} frame {self.drift_worst[1]}",
            ),
            CheckResult(
                "rescale flags follow the stored scale factors",
                self.flag_mismatches == 0 and self.bad_scales == 0,
                f"{self.flag_mismatches} mismatches",
                f"{mismatch}drift rule replayed: product of the factors since the last rescale "
                f"beyond {tol:.0%}; {self.bad_scales} scale factors outside "
                f"[1 - {self.params.scaling_max:g}, 1 + {self.params.scaling_max:g}] or not 1 "
                f"at frame 0",
            ),
            CheckResult("no negative energy", self.n_negative == 0, f"{self.n_negative} pixels"),
            CheckResult("all values finite", self.n_nonfinite == 0, f"{self.n_nonfinite} pixels"),
            CheckResult(
                "maps square or 2:3", all(valid_shape(h, w) for h, w in self.shapes), shapes
            ),
            CheckResult(
                "pyramid levels match an independent zoom",
                self.max_pyramid_diff <= PYRAMID_MATCH
                and self.max_pyramid_total <= PYRAMID_MATCH
                and self.pyramid_negative == 0,
                f"max difference {self.max_pyramid_diff:.3g}",
                f"maps.rescale against scipy.ndimage.zoom (periodic cubic, float64), relative to "
                f"the level's maximum, tolerance {PYRAMID_MATCH:.3g}; total error "
                f"{self.max_pyramid_total:.3g}; {self.pyramid_negative} negative pixels; levels "
                f"{levels} (of {', '.join(map(str, maps.SCALES))}, below the map height); first "
                f"and last frame of {self.pyramid_rows} of {self.rows} trajectories, chosen at "
                f"random over the file",
            ),
            CheckResult(
                "stored entropy matches the frames",
                self.max_entropy_mismatch <= ENTROPY_MATCH,
                f"max difference {self.max_entropy_mismatch:.3g} nats",
                f"-sum p ln p recomputed in float64, tolerance {ENTROPY_MATCH:g} nats; worst: "
                f"trajectory {self.entropy_worst[0]} frame {self.entropy_worst[1]}",
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
                f"declared total off by more than {tol:.0%} and rescaled",
            ),
            self.frame0_result(),
        ]


def layout_result(src: well.Source) -> CheckResult:
    """The Well layout check as one verify line."""
    problems = well.check_layout(src)
    return CheckResult(
        "The Well layout (attributes and shapes)",
        not problems,
        "conforms" if not problems else f"{len(problems)} problem(s)",
        "; ".join(problems[:5]),
    )


def virtual_result(src: well.Source) -> CheckResult:
    """Whether the energy field is a virtual dataset (the shards route's ``merge --virtual``).
    Reported, not failed: hpcgen reads such files, but The Well's WellDataset opens files through
    fsspec file objects, where HDF5 cannot follow a virtual dataset to its sources."""
    d = well.node_of(src, well.ENERGY)
    virtual = d is not None and d.virtual
    return CheckResult(
        "plain datasets for The Well's loader (reported)",
        True,
        "virtual" if virtual else "plain",
        "WellDataset cannot read a virtual dataset: hpcgen export FILE --format well --out DIR"
        if virtual
        else "",
    )
