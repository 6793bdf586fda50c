"""PtychoGenerator: diffraction patterns of a known object and probe at several photon doses.

Per sample (one scan position) the file holds the position, the ground-truth object patch Y,
the exit-wave energy and, for every dose, the normalised amplitude sqrt(counts) / scale and the
photon count. Positions and noise-free patterns are shared by all doses; each dose has its own
Poisson noise stream ``chunk.rng("noise", "dose_<d>")``, so adding a dose to the list never
changes the data of the others.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import SpecError, UserError
from hpcgen.generators.base import (
    CheckResult,
    Chunk,
    Device,
    Exporter,
    FieldSpec,
    FileView,
    Generator,
    StaticData,
    Verifier,
)
from hpcgen.generators.ptycho import scan
from hpcgen.generators.ptycho.base_data import (
    BaseData,
    default_object,
    default_probe,
    load_base_npz,
)
from hpcgen.generators.ptycho.forward import Forward, expected_energy_uniform
from hpcgen.generators.ptycho.options import OPTIONS
from hpcgen.generators.ptycho.params import PtychoParams, dose_tag
from hpcgen.generators.ptycho.poisson import sample_into

COORD_UNITS = "object pixels"


class PtychoGenerator(Generator):
    name = "ptycho"
    Params = PtychoParams
    #: 512 patterns: ~25 MB per chunk for one dose, ~41 MB for three (Y is 32 kB a pattern)
    default_chunk_size = 512
    cli_option_table = OPTIONS

    params: PtychoParams

    # --- ground truth (loaded lazily: reading a file must not need the base NPZ) ---------------
    @functools.cached_property
    def base(self) -> BaseData:
        p = self.params
        if p.base_npz is None:
            return BaseData(object=default_object(p.object_size), probe=default_probe(p.N))
        base = load_base_npz(p.base_npz, p.N, need_coords=p.scan == "file")
        if p.scan == "file":
            fw = Forward(base.object, base.probe)
            try:
                fw.check_positions(base.xcoords, base.ycoords)
            except ValueError as e:
                raise UserError(f"{p.base_npz}: {e} (the object is {fw.m} px)") from None
        return base

    @functools.cached_property
    def forward(self) -> Forward:
        return Forward(self.base.object, self.base.probe, fft=self.params.fft)

    @functools.cached_property
    def scan_list(self) -> tuple[np.ndarray, np.ndarray] | None:
        """All positions of a raster or file scan (sample i is entry i); None for random."""
        p = self.params
        if p.scan == "raster":
            return scan.raster_positions(self.forward.m, p.N, p.overlap)
        if p.scan == "file":
            return self.base.xcoords, self.base.ycoords
        return None

    @functools.cached_property
    def mean_energy(self) -> float:
        """Mean exit-wave energy the doses are calibrated on: exact expectation over uniform
        random positions, or the mean over the whole raster/file position list."""
        if self.scan_list is None:
            energy = expected_energy_uniform(self.base.object, self.base.probe)
        else:
            energy = self.forward.mean_energy(*self.scan_list)
        if not energy > 0:
            raise UserError(
                f"{self.base.source}: the exit wave has no energy on this scan (object zero "
                "under the probe): no dose can be set"
            )
        return energy

    def photon_scale2(self, dose: float) -> float:
        """Photons per unit of normalised intensity |FFT(exit)|^2 at ``dose``."""
        return dose / self.mean_energy

    def amplitude_scale(self, dose: float) -> float:
        """s with stored diffraction = sqrt(counts) / s (PtychoPINN's intensity_scale)."""
        return math.sqrt(self.photon_scale2(dose))

    def check_n_samples(self, n_samples: int) -> None:
        """A user's base NPZ is read and validated (UserError), and a raster or file scan has a
        fixed number of positions (SpecError beyond it), before any output exists."""
        if self.params.base_npz is not None:
            self.base  # noqa: B018 - loading validates the NPZ (missing file, dtypes, shapes)
        if self.scan_list is None or n_samples <= len(self.scan_list[0]):
            return
        p, k = self.params, len(self.scan_list[0])
        what = (
            f"the raster at overlap {p.overlap} on a {self.forward.m} px object with N = {p.N} "
            f"has {k} positions"
            if p.scan == "raster"
            else f"{p.base_npz} has {k} scan positions"
        )
        raise SpecError(f"n_samples must be <= {k}: {what} (asked for {n_samples})")

    # --- contract ---------------------------------------------------------------------------
    def fields(self) -> list[FieldSpec]:
        n = self.params.N
        out = [
            FieldSpec(
                "xcoords",
                (),
                "float64",
                COORD_UNITS,
                "probe-centre column (x) on the object; patch pixel [i, j] samples the "
                "object at (y + i - N/2, x + j - N/2)",
            ),
            FieldSpec("ycoords", (), "float64", COORD_UNITS, "probe-centre row (y) on the object"),
            FieldSpec("scan_index", (), "int64", "1", "index of the scan point"),
            FieldSpec(
                "Y",
                (n, n),
                "complex64",
                "1",
                "ground-truth object patch under the probe (bilinear sub-pixel shift)",
            ),
            FieldSpec(
                "exit_energy",
                (),
                "float64",
                "normalised intensity",
                "sum |Y * probe|^2 = noise-free photons / amplitude_scale^2 (Parseval)",
            ),
        ]
        for dose in self.params.doses:
            tag = dose_tag(dose)
            scale = self.amplitude_scale(dose)
            attrs = {
                "dose": dose,
                "amplitude_scale": scale,
                "photons_per_unit_intensity": scale * scale,
                "sampler": self.params.sampler,
            }
            out.append(
                FieldSpec(
                    f"{tag}/diffraction",
                    (n, n),
                    "float32",
                    "normalised amplitude",
                    f"sqrt(Poisson counts) / amplitude_scale at {dose:g} mean photons per pattern, "
                    "zero frequency at [N/2, N/2]; counts = (diffraction * amplitude_scale)**2",
                    attrs,
                )
            )
            out.append(
                FieldSpec(
                    f"{tag}/photons",
                    (),
                    "int64",
                    "photons",
                    f"detected photons in the pattern at dose {dose:g}",
                    attrs,
                )
            )
        return out

    def sample(self, chunk: Chunk) -> dict[str, np.ndarray]:
        idx = np.arange(chunk.start, chunk.start + chunk.count, dtype=np.int64)
        if self.scan_list is None:
            xs, ys = scan.random_positions(
                chunk.rng("positions"), chunk.count, self.forward.m, self.params.N
            )
        else:
            self.check_n_samples(chunk.start + chunk.count)
            xs, ys = self.scan_list[0][idx], self.scan_list[1][idx]
        return {
            "xcoords": xs.astype(np.float64),
            "ycoords": ys.astype(np.float64),
            "scan_index": idx,
        }

    def compute(
        self, inputs: Mapping[str, np.ndarray], chunk: Chunk, device: Device
    ) -> dict[str, np.ndarray]:
        xs, ys = inputs["xcoords"], inputs["ycoords"]
        n, doses = self.params.N, self.params.doses
        b = len(xs)
        tags = [dose_tag(d) for d in doses]
        scale2 = [self.photon_scale2(d) for d in doses]
        # Poisson noise is drawn on the CPU for every device: the same bytes everywhere
        rngs = [chunk.rng("noise", tag) for tag in tags]
        amps = [np.empty((b, n, n), np.float32) for _ in doses]
        photons = [np.empty(b, np.int64) for _ in doses]
        if device.kind == "gpu":
            patches, intensity, energy = self.forward.run_gpu(device.xp, xs, ys)
            blocks = [(0, b, intensity)]
        else:
            # block by block: each block's intensity is sampled at every dose while in cache
            patches = np.empty((b, n, n), np.complex64)
            energy = np.empty(b, np.float64)
            blocks = self.forward.run_blocks(xs, ys, patches, energy)
        for s, e, intensity in blocks:
            for k in range(len(doses)):
                sample_into(
                    intensity,
                    scale2[k],
                    rngs[k],
                    self.params.sampler,
                    amps[k][s:e],
                    photons[k][s:e],
                )
        out: dict[str, np.ndarray] = {"Y": patches, "exit_energy": energy}
        for k, tag in enumerate(tags):
            out[f"{tag}/diffraction"] = amps[k]
            out[f"{tag}/photons"] = photons[k]
        return out

    def static_datasets(self) -> dict[str, StaticData]:
        src = self.base.source
        return {
            "objectGuess": StaticData(
                self.base.object,
                {
                    "units": "1",
                    "description": "ground-truth complex object (M, M), [y, x]",
                    "source": src,
                },
            ),
            "probeGuess": StaticData(
                self.base.probe,
                {
                    "units": "1",
                    "description": "probe (N, N), [y, x], multiplies the patch",
                    "source": src,
                },
            ),
        }

    def root_attrs(self) -> dict[str, Any]:
        doses = list(self.params.doses)
        return {
            "ptycho_doses": np.asarray(doses, np.float64),
            "ptycho_dose_groups": [dose_tag(d) for d in doses],
            "ptycho_amplitude_scales": np.asarray([self.amplitude_scale(d) for d in doses]),
            "ptycho_mean_exit_energy": self.mean_energy,
            "ptycho_dose_calibration": (
                "exact mean over uniform random positions"
                if self.scan_list is None
                else f"mean over all {len(self.scan_list[0])} scan positions"
            ),
            "ptycho_base": self.base.source,
            "ptycho_fft": "orthonormal FFT2, zero frequency centred (fftshift)",
            "ptycho_fft_backend": self.params.fft,
        }

    def input_files(self) -> list[Path]:
        return [Path(self.params.base_npz)] if self.params.base_npz else []

    def supports_device(self, kind: str) -> bool:
        # gpu: patches, exit waves and FFTs with cupy; Poisson noise stays on the CPU
        return kind in ("cpu", "gpu")

    def verifier(self) -> Verifier:
        from hpcgen.generators.ptycho.checks import PtychoVerifier

        return PtychoVerifier(self)

    def file_checks(self, view: FileView) -> list[CheckResult]:
        """The stored objectGuess/probeGuess against the run's base, the dose calibration and a
        random sample of rows recomputed from the stored data (file_checks.py)."""
        from hpcgen.generators.ptycho.file_checks import file_checks

        return file_checks(self, view)

    def exporters(self) -> dict[str, Exporter]:
        from hpcgen.generators.ptycho.export import export_data001

        return {"data001": export_data001}

    def plot(self, view: FileView, out: Path, options: Mapping[str, Any]) -> None:
        from hpcgen.generators.ptycho.plot import plot_file

        plot_file(view, out, options)
