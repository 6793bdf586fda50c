"""``hpcgen verify`` for ptycho files, part 1: every row, streamed (part 2, the file as a whole and
a random sample of rows recomputed from the stored object and probe, is file_checks.py).

Verify is a third party: the noise-free model of each row comes from reference.py (numpy, float64,
no code shared with the generator's numba/FFTW kernels), built from the stored patch Y, the
run's probe and the stored position; the generator contributes only its ground-truth inputs (the
object and probe that file_checks.py compares with the stored objectGuess and probeGuess), its
scan list and its amplitude scale (checked against the dose there). Per row:

- contract: dtypes and shapes, equal lengths, finite values, non-negative amplitudes, positions;
- Y = bilinear patch of the object at (x, y); exit_energy = sum |Y probe|^2;
- per dose, with c = (diffraction * amplitude_scale)^2 and lambda = s^2 |FFT(Y probe)|^2:
  counts are integers within float32 rounding; photons = sum c; sum c vs sum lambda (Poisson);
  the mean of the per-pattern totals vs the dose (the spec's number, not a generator constant);
  dispersion sum (c - lambda)^2 / lambda over pixels with lambda >= 1 (mean 1, variance
  2 + 1/lambda per pixel under Poisson); empty pixels vs sum exp(-lambda) where lambda < 1.

Plus the literal "variance = mean over repeated draws of one pattern": the first pattern's lambda
is redrawn 1000 times with the file's sampler (a test of the sampler against the definition).
Only running sums, the y coordinates and scan indices (16 bytes a row, for the train/test split
check) are kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from hpcgen.generators.base import CheckResult, Verifier
from hpcgen.generators.ptycho import reference
from hpcgen.generators.ptycho.params import dose_tag
from hpcgen.generators.ptycho.poisson import counts_from_amplitudes, sample_amplitudes

if TYPE_CHECKING:
    from hpcgen.generators.ptycho.generator import PtychoGenerator

#: |z| above this fails a statistical check (false alarm ~6e-7 per check for a normal z)
Z_LIMIT = 5.0
#: replicate draws of one pattern for the sampler check
REDRAWS = 1000
#: counts are recoverable exactly from float32 amplitudes below this many photons per pixel
EXACT_COUNTS = 1e6
#: |c - round(c)| allowed per photon: the stored amplitude sqrt(c)/s is rounded to float32
#: (relative 2^-24), so c = (amplitude s)^2 is off by at most 2 * 2^-24 = 1.2e-7 c; 2.5x margin.
#: A diffraction scaled by 1 + e moves a count of 1 by 2e, far above this for e >= 1e-6.
COUNT_RTOL = 3e-7
#: |Y - patch| / max|object| allowed (the generator interpolates in float32)
Y_RTOL = 1e-5
#: relative difference allowed between exit_energy and sum |Y probe|^2 (float32 partial sums)
ENERGY_RTOL = 1e-5
#: rows per block of the float64 model (bounds the temporaries at large N)
MODEL_BLOCK = 64


class _DoseStats:
    def __init__(self) -> None:
        self.totals = 0.0  # sum of per-pattern totals sum c (observed photons)
        self.totals_sq = 0.0  # sum of squared per-pattern totals
        self.lam_total = 0.0  # sum of lambda over all pixels
        self.disp = 0.0
        self.disp_n = 0
        self.disp_var = 0.0
        self.zero_obs = 0
        self.zero_exp = 0.0
        self.zero_var = 0.0
        self.not_integer = 0  # pixels whose count is off an integer beyond float32 rounding
        self.worst_frac = 0.0  # largest |c - round(c)| / max(c, 1)
        self.photons_mismatch = 0
        self.negative = 0


class PtychoVerifier(Verifier):
    def __init__(self, gen: PtychoGenerator) -> None:
        self.gen = gen
        self.p = gen.params
        self.n = 0
        self.bad_dtype: list[str] = []
        self.bad_len = 0
        self.nonfinite: dict[str, int] = {}
        self.outside = 0
        self.y_err = 0.0
        self.energy_err = 0.0
        self.ys: list[np.ndarray] = []
        self.index: list[np.ndarray] = []
        self.stats = {d: _DoseStats() for d in self.p.doses}
        self.first_model: np.ndarray | None = None
        self.expected = {f.name: (np.dtype(f.dtype), f.shape) for f in gen.fields()}
        self.obj_max = float(np.abs(gen.base.object).max())
        self.padded = reference.pad_object(gen.base.object, self.p.N)
        self.probe = gen.base.probe.astype(np.complex128)
        self.m = gen.base.object.shape[0]

    def update(self, data: Mapping[str, np.ndarray], start: int) -> None:
        gen, p = self.gen, self.p
        rows = len(data["xcoords"])
        for name, (dt, shape) in self.expected.items():
            a = data[name]
            if a.dtype != dt or a.shape[1:] != shape:
                self.bad_dtype.append(f"{name} {a.dtype}{a.shape[1:]}")
            if len(a) != rows:
                self.bad_len += 1
            if a.dtype.kind in "fc":
                bad = int(np.count_nonzero(~np.isfinite(a)))
                if bad:
                    self.nonfinite[name] = self.nonfinite.get(name, 0) + bad
        self.n += rows
        xs, ys = data["xcoords"], data["ycoords"]
        self.ys.append(np.asarray(ys, np.float64))
        self.index.append(np.asarray(data["scan_index"], np.int64))
        if gen.scan_list is None:
            lo, hi = p.N / 2, self.m - p.N / 2  # PtychoPINN's border of N/2
            inside = (xs >= lo) & (xs <= hi) & (ys >= lo) & (ys <= hi)
            self.outside += int(np.count_nonzero(~inside))
        else:
            idx = np.asarray(data["scan_index"])
            ok = (idx >= 0) & (idx < len(gen.scan_list[0]))
            sx, sy = gen.scan_list[0][idx[ok]], gen.scan_list[1][idx[ok]]
            self.outside += int((~ok).sum()) + int(
                np.count_nonzero((sx != xs[ok]) | (sy != ys[ok]))
            )
        scales2 = {d: gen.photon_scale2(d) for d in p.doses}
        for s in range(0, rows, MODEL_BLOCK):
            e = min(s + MODEL_BLOCK, rows)
            block = {k: v[s:e] for k, v in data.items()}
            model = self._model(block)
            for dose in p.doses:
                self._update_dose(dose, scales2[dose], block, model)

    def _model(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        """Check Y and exit_energy of a block; return the noise-free |FFT(Y probe)|^2 (float64)."""
        xs, ys = data["xcoords"], data["ycoords"]
        y = data["Y"].astype(np.complex128)
        placed = reference.on_object(xs, ys, self.m)
        if not placed.all():
            self.y_err = math.inf  # no patch to compare with; the positions check names them
        if placed.any():
            patches = reference.object_patches(self.padded, self.p.N, xs[placed], ys[placed])
            err = float(np.abs(y[placed] - patches).max()) / max(self.obj_max, 1e-30)
            self.y_err = max(self.y_err, err)
        exit_waves = y * self.probe
        energy = (exit_waves.real**2 + exit_waves.imag**2).sum(axis=(1, 2))
        e_file = data["exit_energy"]
        rel = np.abs(e_file - energy) / np.maximum(energy, 1e-300)
        self.energy_err = max(self.energy_err, float(rel.max(initial=0.0)))
        model = reference.far_field(exit_waves)
        if self.first_model is None and len(model):
            self.first_model = model[0]
        return model

    def _update_dose(
        self, dose: float, scale2: float, data: Mapping[str, np.ndarray], model: np.ndarray
    ) -> None:
        st = self.stats[dose]
        tag = dose_tag(dose)
        amp = data[f"{tag}/diffraction"]
        st.negative += int(np.count_nonzero(amp < 0))
        raw = (amp.astype(np.float64) * math.sqrt(scale2)) ** 2
        counts = np.rint(raw)
        exact = raw < EXACT_COUNTS
        frac = np.abs(raw - counts)[exact] / np.maximum(raw[exact], 1.0)
        st.not_integer += int(np.count_nonzero(frac > COUNT_RTOL))
        st.worst_frac = max(st.worst_frac, float(frac.max(initial=0.0)))
        totals = counts.sum(axis=(1, 2))
        if np.all(exact):
            st.photons_mismatch += int(np.count_nonzero(totals != data[f"{tag}/photons"]))
        st.totals += float(totals.sum())
        st.totals_sq += float((totals**2).sum())
        lam = scale2 * model
        st.lam_total += float(lam.sum())
        bright = lam >= 1.0
        d = counts[bright] - lam[bright]
        st.disp += float((d * d / lam[bright]).sum())
        st.disp_n += int(bright.sum())
        st.disp_var += float((2.0 + 1.0 / lam[bright]).sum())
        dim = lam[~bright]
        p0 = np.exp(-dim)
        st.zero_obs += int(np.count_nonzero(counts[~bright] == 0))
        st.zero_exp += float(p0.sum())
        st.zero_var += float((p0 * (1 - p0)).sum())

    # --- results -------------------------------------------------------------------------------
    def results(self) -> list[CheckResult]:
        from hpcgen.generators.ptycho.export import split_masks

        p = self.p
        out = [
            CheckResult(
                "DATA-001 dtypes and shapes",
                not self.bad_dtype,
                "ok" if not self.bad_dtype else ", ".join(sorted(set(self.bad_dtype)))[:200],
                "float32 diffraction, complex64 Y, float64 coords, int64 scan_index",
            ),
            CheckResult("equal first-axis lengths", self.bad_len == 0, f"{self.n} rows"),
            CheckResult(
                "finite values",
                not self.nonfinite,
                "all finite" if not self.nonfinite else str(self.nonfinite),
            ),
            CheckResult(
                "diffraction amplitudes non-negative",
                all(s.negative == 0 for s in self.stats.values()),
                f"{sum(s.negative for s in self.stats.values())} negative",
            ),
            CheckResult(
                "positions on the scan",
                self.outside == 0,
                f"{self.outside} off",
                "random: inside [N/2, M - N/2]; raster/file: the list entry",
            ),
            CheckResult(
                "Y = object patch at (x, y)",
                self.y_err <= Y_RTOL,
                f"max |dY| / max|O| {self.y_err:.2e}",
                "every row; numpy float64 bilinear of the run's object, not the generator's kernel",
            ),
            CheckResult(
                "exit_energy = sum |Y probe|^2",
                self.energy_err <= ENERGY_RTOL,
                f"max rel {self.energy_err:.2e}",
            ),
        ]
        for dose in p.doses:
            out += self._dose_results(dose)
        if self.ys:
            y = np.concatenate(self.ys)
            idx = np.concatenate(self.index)
            train, split = split_masks(y)
            disjoint = not np.intersect1d(idx[train], idx[~train]).size
            separated = (
                (not train.any()) or (not (~train).any()) or (y[train].max() < y[~train].min())
            )
            n_tr, n_te = int(train.sum()), int((~train).sum())
            out.append(
                CheckResult(
                    "train/test separated in y",
                    disjoint and separated and n_tr > 0 and n_te > 0,
                    f"split y < {split:.2f}: {n_tr} train, {n_te} test",
                    "data001 export: no scan position in both",
                )
            )
        # numpy bools -> bool: the report is JSON
        return [CheckResult(c.name, bool(c.passed), c.value, c.detail) for c in out]

    def _dose_results(self, dose: float) -> list[CheckResult]:
        st = self.stats[dose]
        tag = dose_tag(dose)
        n = max(self.n, 1)
        res = [
            CheckResult(
                f"{tag}: counts are integers",
                st.not_integer == 0 and st.photons_mismatch == 0,
                f"{st.not_integer} pixels off (worst |c - round(c)| / c {st.worst_frac:.1e}), "
                f"{st.photons_mismatch} photon totals off",
                f"c = (diffraction * amplitude_scale)^2; float32 allows {COUNT_RTOL:g} c",
            )
        ]
        z_tot = (st.totals - st.lam_total) / math.sqrt(max(st.lam_total, 1e-300))
        res.append(
            CheckResult(
                f"{tag}: photons = model (Poisson)",
                abs(z_tot) < Z_LIMIT,
                f"mean {st.totals / n:.2f} vs {st.lam_total / n:.2f}, z = {z_tot:+.2f}",
                "lambda = s^2 |numpy fft2(Y probe)|^2",
            )
        )
        res.append(self._dose_mean_result(dose))
        if st.disp_n:
            z = (st.disp - st.disp_n) / math.sqrt(st.disp_var)
            res.append(
                CheckResult(
                    f"{tag}: variance = mean (pixels, lambda >= 1)",
                    abs(z) < Z_LIMIT,
                    f"ratio {st.disp / st.disp_n:.4f}, z = {z:+.2f}",
                    f"{st.disp_n} pixels",
                )
            )
        if st.zero_var > 0:
            z = (st.zero_obs - st.zero_exp) / math.sqrt(st.zero_var)
            res.append(
                CheckResult(
                    f"{tag}: P(0) = exp(-lambda) (pixels, lambda < 1)",
                    abs(z) < Z_LIMIT,
                    f"{st.zero_obs} empty vs {st.zero_exp:.1f}, z = {z:+.2f}",
                )
            )
        res.append(self._redraw_check(dose))
        return res

    def _dose_mean_result(self, dose: float) -> CheckResult:
        """The observed photons per pattern against the dose itself.

        Random scans: each total is Poisson around s^2 E(position) with E over uniform positions
        averaging to dose / s^2, so the mean total has the spread of the totals over sqrt(n)
        (Poisson plus position sampling; the empirical variance). Full raster/file lists: the
        lambdas sum to n * dose exactly, so the sum of totals is Poisson(n * dose)."""
        st = self.stats[dose]
        name = f"{dose_tag(dose)}: mean photons per pattern = dose"
        n = self.n
        if n == 0:
            return CheckResult(name, False, "no rows")
        mean = st.totals / n
        scan_list = self.gen.scan_list
        if scan_list is None:
            var = max(st.totals_sq / n - mean**2, 0.0) * n / max(n - 1, 1)
            err = math.sqrt(var / n) if n > 1 else math.inf
            how = "spread of the totals / sqrt(n): Poisson and position sampling"
        elif n == len(scan_list[0]):
            err = math.sqrt(dose / n)
            how = "every scan position: Poisson only"
        else:
            return CheckResult(
                name, True, f"{mean:.2f} vs {dose:g}", "the scale is set on the whole scan list"
            )
        z = (mean - dose) / err if err > 0 else math.inf
        return CheckResult(
            name, abs(z) < Z_LIMIT, f"{mean:.2f} ± {err:.2f} vs {dose:g}, z = {z:+.2f}", how
        )

    def _redraw_check(self, dose: float) -> CheckResult:
        """Draw the first pattern REDRAWS times: per-pixel variance vs mean (sampler check)."""
        tag = dose_tag(dose)
        name = f"{tag}: redraws of pattern 0 have variance = mean"
        if self.first_model is None:
            return CheckResult(name, False, "no rows")
        scale2 = self.gen.photon_scale2(dose)
        lam = scale2 * self.first_model
        rng = np.random.default_rng(12345)
        reps = np.repeat(self.first_model[None].astype(np.float32), REDRAWS, axis=0)
        amp, _ = sample_amplitudes(reps, scale2, rng, self.p.sampler)
        c = counts_from_amplitudes(amp, math.sqrt(scale2)).astype(np.float64)
        use = lam >= 0.1
        mean, var = c.mean(0)[use], c.var(0, ddof=1)[use]
        # z of the summed sample means and of the summed variances (var of s^2 ~ (2 l^2 + l)/R)
        lam_u = lam[use]
        z_mean = (mean.sum() - lam_u.sum()) / math.sqrt(lam_u.sum() / REDRAWS)
        z_var = (var.sum() - lam_u.sum()) / math.sqrt(
            ((2 * lam_u**2 + lam_u) / (REDRAWS - 1)).sum()
        )
        ok = abs(z_mean) < Z_LIMIT and abs(z_var) < Z_LIMIT
        return CheckResult(
            name,
            ok,
            f"sum var / sum mean {var.sum() / mean.sum():.4f}",
            f"z_mean {z_mean:+.2f}, z_var {z_var:+.2f}, {int(use.sum())} pixels",
        )
