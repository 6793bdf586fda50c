"""``hpcgen verify`` for ptycho files, part 2: the file as a whole, judged from what it stores
(part 1, every row streamed, is checks.py).

A client of the file sees the stored objectGuess, probeGuess, positions, amplitudes and the
``amplitude_scale`` attribute, so these checks use nothing else, through reference.py's numpy
model (no code shared with the generator):

- objectGuess and probeGuess equal the run's ground truth (the built-in object and probe or the
  base NPZ), bit for bit: a changed or conjugated object fails here;
- the dose calibration: amplitude_scale^2 times the mean exit energy is the dose, the energy
  recomputed from the stored object and probe (Gauss-Legendre quadrature for random scans, the
  whole position list for raster and file scans);
- a random sample of rows (:data:`SAMPLE_ROWS`, spread over every written chunk, fixed seed so a
  report is reproducible): Y against the bilinear patch of the stored objectGuess at the stored
  (x, y), and per dose the counts c = (diffraction * amplitude_scale)^2 against
  lambda = amplitude_scale^2 |FFT(patch * probeGuess)|^2 -- totals (z of sum c - sum lambda,
  Poisson) and Pearson's chi-square over pixels with lambda >= 1 (mean k, variance
  sum (2 + 1/lambda) under Poisson, z-score).

Thresholds: |z| < 5 (checks.Z_LIMIT); the calibration to :data:`CALIBRATION_RTOL`; Y to
checks.Y_RTOL of max |objectGuess|.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from hpcgen.generators.base import CheckResult, FileView
from hpcgen.generators.ptycho import reference
from hpcgen.generators.ptycho.checks import Y_RTOL, Z_LIMIT
from hpcgen.generators.ptycho.params import dose_tag

if TYPE_CHECKING:
    from hpcgen.generators.ptycho.generator import PtychoGenerator

#: rows recomputed from the stored object and probe (all rows if the file holds fewer): a
#: bounded cost per dose whatever the file's size
SAMPLE_ROWS = 256
#: seed of the row sample: the same rows every time for one file
SAMPLE_SEED = 20_240_815
#: relative tolerance of amplitude_scale^2 * mean energy = dose (the generator sums float32
#: exit energies over a scan list; its uniform-scan expectation is exact in float64)
CALIBRATION_RTOL = 1e-5
#: sampled rows recomputed at a time (bounds the float64 temporaries at large N)
BLOCK = 32


def file_checks(gen: PtychoGenerator, view: FileView) -> list[CheckResult]:
    """Checks of one file from its stored ground truth and a random sample of its rows."""
    truth = _truth_result(gen, view)
    if not truth.passed and truth.value.startswith("missing"):
        return [truth]
    obj = view.static("objectGuess")
    probe = view.static("probeGuess")
    n = gen.params.N
    if probe.shape != (n, n) or obj.ndim != 2 or obj.shape[0] != obj.shape[1] or len(obj) < n + 2:
        return [truth]  # the shapes are wrong: nothing below can be computed
    out = [truth, _calibration_result(gen, view, obj, probe)]
    rows = sample_rows(view)
    if not len(rows):
        return [*out, CheckResult("sampled rows", False, "no written rows")]
    out += _sampled_results(gen, view, obj, probe, rows)
    return out


def sample_rows(view: FileView, k: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> np.ndarray:
    """``k`` distinct rows (local indices, sorted) drawn uniformly from the rows of the chunks
    marked done (rows of unwritten chunks hold no data)."""
    done = np.asarray(view.done, bool)
    cs = view.spec.chunk_size
    starts = np.arange(len(done), dtype=np.int64) * cs
    sizes = np.where(done, np.minimum(cs, view.n_rows - starts), 0)
    total = int(sizes.sum())
    picks = np.sort(np.random.default_rng(seed).choice(total, min(k, total), replace=False))
    ends = np.cumsum(sizes)
    chunk = np.searchsorted(ends, picks, side="right")
    return starts[chunk] + picks - (ends[chunk] - sizes[chunk])


def _truth_result(gen: PtychoGenerator, view: FileView) -> CheckResult:
    name = "objectGuess, probeGuess = the run's base"
    detail = f"source: {gen.base.source}"
    missing = [k for k in ("objectGuess", "probeGuess") if view.node(k) is None]
    if missing:
        return CheckResult(name, False, f"missing {', '.join(missing)}", detail)
    wrong = []
    for key, want in (("objectGuess", gen.base.object), ("probeGuess", gen.base.probe)):
        got = view.static(key)
        if got.shape != want.shape or got.dtype != want.dtype:
            wrong.append(f"{key} {got.dtype}{got.shape} vs {want.dtype}{want.shape}")
        elif not np.array_equal(got, want):
            diff = float(np.abs(got.astype(np.complex128) - want).max())
            wrong.append(f"{key} differs (max |d| {diff:.2e})")
    return CheckResult(name, not wrong, "; ".join(wrong) if wrong else "identical", detail)


def _calibration_result(
    gen: PtychoGenerator, view: FileView, obj: np.ndarray, probe: np.ndarray
) -> CheckResult:
    name = "amplitude_scale^2 * mean energy = dose"
    if gen.scan_list is None:
        energy = reference.uniform_mean_energy(obj, probe)
        how = "energy by Gauss-Legendre quadrature of objectGuess, probeGuess (uniform positions)"
    else:
        energy = reference.list_mean_energy(obj, probe, *gen.scan_list)
        how = f"energy: mean over all {len(gen.scan_list[0])} scan positions, numpy bilinear"
    worst, where = 0.0, ""
    for dose in gen.params.doses:
        tag = dose_tag(dose)
        scale = view.dataset_attrs(f"{tag}/diffraction").get("amplitude_scale")
        rel = math.inf if scale is None else abs(float(scale) ** 2 * energy - dose) / dose
        if not rel <= worst:
            worst, where = rel, tag
    value = f"worst rel {worst:.1e}" + (f" ({where})" if worst > CALIBRATION_RTOL else "")
    return CheckResult(name, worst <= CALIBRATION_RTOL, value, how)


class _Fit:
    """Running sums of one dose's counts against the recomputed lambda."""

    def __init__(self) -> None:
        self.counts = 0.0
        self.lam = 0.0
        self.chi2 = 0.0
        self.k = 0
        self.var = 0.0

    def add(self, counts: np.ndarray, lam: np.ndarray) -> None:
        self.counts += float(counts.sum())
        self.lam += float(lam.sum())
        bright = lam >= 1.0
        d = counts[bright] - lam[bright]
        self.chi2 += float((d * d / lam[bright]).sum())
        self.k += int(bright.sum())
        self.var += float((2.0 + 1.0 / lam[bright]).sum())

    def result(self, name: str, detail: str) -> CheckResult:
        z_tot = (self.counts - self.lam) / math.sqrt(max(self.lam, 1e-300))
        z_chi = (self.chi2 - self.k) / math.sqrt(self.var) if self.k else 0.0
        ok = abs(z_tot) < Z_LIMIT and abs(z_chi) < Z_LIMIT
        fit = (
            f"chi2/k {self.chi2 / self.k:.4f} (z {z_chi:+.2f}, k {self.k})"
            if self.k
            else "no pixel with lambda >= 1"
        )
        value = f"{fit}, totals z {z_tot:+.2f}"
        return CheckResult(name, ok, value, detail)


def _sampled_results(
    gen: PtychoGenerator,
    view: FileView,
    obj: np.ndarray,
    probe: np.ndarray,
    rows: np.ndarray,
) -> list[CheckResult]:
    n, m = probe.shape[0], obj.shape[0]
    padded = reference.pad_object(obj, n)
    p = probe.astype(np.complex128)
    obj_max = max(float(np.abs(obj).max()), 1e-30)
    tags = [dose_tag(d) for d in gen.params.doses]
    scales = [
        float(view.dataset_attrs(f"{t}/diffraction").get("amplitude_scale", math.nan)) for t in tags
    ]
    fits = [_Fit() for _ in tags]
    y_err, off = 0.0, 0
    for s in range(0, len(rows), BLOCK):
        sel = rows[s : s + BLOCK]
        xs, ys = view.read("xcoords", sel), view.read("ycoords", sel)
        placed = reference.on_object(xs, ys, m)
        off += int((~placed).sum())
        sel, xs, ys = sel[placed], xs[placed], ys[placed]
        if not len(sel):
            continue
        patches = reference.object_patches(padded, n, xs, ys)
        y_err = max(y_err, float(np.abs(view.read("Y", sel) - patches).max()) / obj_max)
        model = reference.far_field(patches * p)
        for tag, scale, fit in zip(tags, scales, fits, strict=True):
            counts = (view.read(f"{tag}/diffraction", sel).astype(np.float64) * scale) ** 2
            fit.add(np.rint(counts), scale * scale * model)
    where = f"{len(rows)} random rows of {view.n_rows}"
    out = [
        CheckResult(
            "Y = objectGuess patch at (x, y), sampled rows",
            y_err <= Y_RTOL and off == 0,
            f"max |dY| / max|O| {y_err:.2e}" + (f", {off} positions off the object" if off else ""),
            f"{where}; numpy bilinear of the stored objectGuess",
        )
    ]
    detail = (
        f"{where}; lambda = amplitude_scale^2 |numpy fft2(objectGuess patch * probeGuess)|^2; "
        "chi2 over pixels with lambda >= 1"
    )
    for tag, fit in zip(tags, fits, strict=True):
        out.append(fit.result(f"{tag}: counts fit the recomputed patterns, sampled rows", detail))
    return out
