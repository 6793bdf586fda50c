"""Parameters of the ptycho generator (the ``[params]`` table of a run spec)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from hpcgen.generators.base import require

#: raster overlaps used by the fly64 dose/overlap study (dense, sparse)
STUDY_OVERLAPS = (0.7, 0.2)


@dataclass(frozen=True)
class PtychoParams:
    """Simulated far-field ptychography at one or several photon doses.

    Lengths are in object pixels (the object and the probe share one pixel size); doses are in
    photons per diffraction pattern.
    """

    #: mean photons per pattern, one output group per entry; each > 0, distinct
    doses: tuple[float, ...] = (1e3, 1e4, 1e5)
    #: probe / detector size N (pixels, even, 8..1024); with ``base_npz`` it must equal the
    #: probe's size
    N: int = 64
    #: side M of the built-in square object (pixels, >= N + 2); ignored with ``base_npz``
    object_size: int = 512
    #: NPZ with objectGuess (M, M) and probeGuess (N, N), optionally xcoords/ycoords; None: the
    #: built-in object and probe
    base_npz: str | None = None
    #: scan positions: "random" (uniform within a border of N/2, PtychoPINN's default),
    #: "raster" (square grid of spacing (1 - overlap) * N, row by row), "file" (xcoords/ycoords
    #: of ``base_npz``, in file order)
    scan: Literal["random", "raster", "file"] = "random"
    #: raster overlap f in [0, 0.95]: spacing (1 - f) * N (the study uses 0.7 and 0.2)
    overlap: float = 0.7
    #: Poisson sampler: "auto" (exact hybrid per pixel: photon splitting below lambda 1, table
    #: inversion plus splitting to 64, PTRS above), "direct" (numpy's Poisson per pixel),
    #: "split" (photon splitting everywhere).
    #: All three are exact; they draw different random numbers, so bytes differ between them.
    sampler: Literal["auto", "direct", "split"] = "auto"
    #: CPU FFT library: "fftw" (pyfftw, FFTW_ESTIMATE plans; the faster, docs/ptycho.md) or "scipy"
    #: (scipy.fft). Both are exact to float32 rounding; they round differently, so bytes differ
    #: between them (and with the GPU's cuFFT).
    fft: Literal["fftw", "scipy"] = "fftw"

    def __post_init__(self) -> None:
        require(len(self.doses) >= 1, "params.doses must list at least one dose")
        for d in self.doses:
            require(math.isfinite(d) and d > 0, f"params.doses must be > 0 and finite, got {d!r}")
            require(d <= 1e15, f"params.doses: {d!r} photons per pattern is above 1e15")
        require(len(set(self.doses)) == len(self.doses), "params.doses must be distinct")
        tags = [dose_tag(d) for d in self.doses]
        require(len(set(tags)) == len(tags), f"params.doses give clashing group names {tags}")
        require(
            8 <= self.N <= 1024 and self.N % 2 == 0, f"params.N must be even, 8..1024, got {self.N}"
        )
        require(
            self.object_size >= self.N + 2,
            f"params.object_size must be >= N + 2 = {self.N + 2}, got {self.object_size}",
        )
        require(
            self.object_size <= 16384,
            f"params.object_size must be <= 16384, got {self.object_size}",
        )
        require(
            0.0 <= self.overlap <= 0.95,
            f"params.overlap must be in [0, 0.95], got {self.overlap}",
        )
        require(
            not (self.scan == "file" and self.base_npz is None),
            'params.scan = "file" needs params.base_npz with xcoords and ycoords',
        )
        require(self.base_npz is None or self.base_npz != "", "params.base_npz must not be empty")


def dose_tag(dose: float) -> str:
    """Group name for a dose: ``dose_1000`` for 1e3, ``dose_2500.5`` for a fractional dose."""
    return f"dose_{int(dose)}" if float(dose).is_integer() else f"dose_{dose!r}"
