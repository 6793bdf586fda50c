"""``hpcgen verify`` for ptycho files: the DATA-001 contract and the photon statistics.

Streaming: every block is checked against the ground truth the generator rebuilds (object,
probe, dose calibration). The noise-free model of each stored pattern is recomputed from its
stored patch Y (lambda = scale^2 |FFT(Y * probe)|^2), so the Poisson checks test the stored counts
themselves, not a fresh draw:

- photon totals: sum of counts against sum of lambda (Poisson z-score);
- dispersion: sum (counts - lambda)^2 / lambda over pixels with lambda >= 1 has mean 1 and
  variance 2 + 1/lambda per pixel if counts are Poisson (variance = mean), z-score;
- dim pixels (lambda < 1): the number of empty pixels against sum exp(-lambda), z-score;
- dose: the mean noise-free total against the dose (exact for raster/file scans that use every
  position, within position-sampling error for random scans).

Plus the literal "variance = mean over repeated draws of one pattern": the first pattern's lambda
is redrawn 1000 times with the file's sampler and the per-pixel variance compared with the mean.
Only running sums, the y coordinates and scan indices (16 bytes a row, for the train/test
split check) are kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft

from hpcgen.generators.base import CheckResult, Verifier
from hpcgen.generators.ptycho.forward import FFT_WORKERS, position_bounds
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


def model_intensity(patches: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """|fftshift(FFT2(Y * probe))|^2 (orthonormal), float64: the noise-free pattern of stored Y."""
    f = scipy.fft.fft2(patches * probe, norm="ortho", workers=FFT_WORKERS)
    return np.abs(np.fft.fftshift(f, axes=(-2, -1))).astype(np.float64) ** 2


class _DoseStats:
    def __init__(self) -> None:
        self.photons = 0  # observed total
        self.lam_total = 0.0  # noise-free total (from exit_energy)
        self.lam_sq = 0.0  # sum of squared per-pattern noise-free totals
        self.disp = 0.0
        self.disp_n = 0
        self.disp_var = 0.0
        self.zero_obs = 0
        self.zero_exp = 0.0
        self.zero_var = 0.0
        self.max_frac = 0.0  # worst distance of (amp * scale)^2 from an integer
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
            lo, hi = position_bounds(gen.forward.m, p.N)
            self.outside += int(np.count_nonzero((xs < lo) | (xs > hi) | (ys < lo) | (ys > hi)))
        else:
            idx = np.asarray(data["scan_index"])
            ok = (idx >= 0) & (idx < len(gen.scan_list[0]))
            sx, sy = gen.scan_list[0][idx[ok]], gen.scan_list[1][idx[ok]]
            self.outside += int((~ok).sum()) + int(
                np.count_nonzero((sx != xs[ok]) | (sy != ys[ok]))
            )
        # ground truth: the patches and energies the file claims
        patches, energy = gen.forward.patches(xs, ys)
        y = data["Y"]
        self.y_err = max(self.y_err, float(np.abs(y - patches).max(initial=0.0)))
        e_file = data["exit_energy"]
        rel = np.abs(e_file - energy) / np.maximum(energy, 1e-300)
        self.energy_err = max(self.energy_err, float(rel.max(initial=0.0)))
        model = model_intensity(y, gen.base.probe)
        if self.first_model is None and rows:
            self.first_model = model[0]
        for dose in p.doses:
            self._update_dose(dose, data, model, e_file)

    def _update_dose(
        self, dose: float, data: Mapping[str, np.ndarray], model: np.ndarray, energy: np.ndarray
    ) -> None:
        st = self.stats[dose]
        tag = dose_tag(dose)
        amp = data[f"{tag}/diffraction"]
        st.negative += int(np.count_nonzero(amp < 0))
        scale2 = self.gen.photon_scale2(dose)
        raw = (amp.astype(np.float64) * math.sqrt(scale2)) ** 2
        exact = raw < EXACT_COUNTS
        if exact.any():
            st.max_frac = max(st.max_frac, float(np.abs(raw[exact] - np.rint(raw[exact])).max()))
        counts = np.rint(raw)
        st.photons_mismatch += int(
            np.count_nonzero(counts.sum(axis=(1, 2)) != data[f"{tag}/photons"])
            if np.all(exact)
            else 0
        )
        st.photons += int(data[f"{tag}/photons"].sum())
        lam_rows = scale2 * energy
        st.lam_total += float(lam_rows.sum())
        st.lam_sq += float((lam_rows**2).sum())
        lam = scale2 * model
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
                self.y_err <= 1e-5,
                f"max |dY| {self.y_err:.2e}",
                "bilinear shift of objectGuess",
            ),
            CheckResult(
                "exit_energy = sum |Y probe|^2",
                self.energy_err <= 1e-5,
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
                st.max_frac < 0.05 and st.photons_mismatch == 0,
                f"max |c - round(c)| {st.max_frac:.1e}, {st.photons_mismatch} photon totals off",
                "c = (diffraction * amplitude_scale)^2",
            )
        ]
        z_tot = (st.photons - st.lam_total) / math.sqrt(max(st.lam_total, 1e-300))
        res.append(
            CheckResult(
                f"{tag}: photons = model (Poisson)",
                abs(z_tot) < Z_LIMIT,
                f"mean {st.photons / n:.2f} vs {st.lam_total / n:.2f}, z = {z_tot:+.2f}",
            )
        )
        mean_lam = st.lam_total / n
        full_list = self.gen.scan_list is not None and self.n == len(self.gen.scan_list[0])
        if self.gen.scan_list is None:
            var = max(st.lam_sq / n - mean_lam**2, 0.0)
            err = math.sqrt(var / n) if n > 1 else math.inf
            z = (mean_lam - dose) / err if err > 0 else 0.0
            ok, detail = abs(z) < Z_LIMIT, f"z = {z:+.2f} (position sampling)"
        elif full_list:
            rel = abs(mean_lam - dose) / dose
            ok, detail = rel < 1e-6, f"rel {rel:.1e} (every scan position)"
        else:
            ok, detail = True, "calibrated on the whole scan list; this file holds part of it"
        poisson_err = math.sqrt(dose / n)
        res.append(
            CheckResult(
                f"{tag}: mean photons per pattern = dose",
                ok,
                f"{st.photons / n:.2f} ± {poisson_err:.2f} (Poisson) vs {dose:g}",
                detail,
            )
        )
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
