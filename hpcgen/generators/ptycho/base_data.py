"""The base object and probe: the built-in defaults, or a user's NPZ (fly64 layout).

Conventions used throughout the package: arrays are indexed [row, column] = [y, x]; a scan
position (x, y) is the object-pixel coordinate of the probe centre, i.e. patch pixel [i, j]
samples the object at (y + i - N/2, x + j - N/2).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcgen.errors import UserError

#: fixed seed of the built-in object's texture: the object never depends on the run seed, so
#: every run (and every dose) sees the same ground truth
_OBJECT_SEED = 20_240_607


@dataclass(frozen=True)
class BaseData:
    """Ground truth of a simulation: object (M, M) complex64, probe (N, N) complex64 and,
    from a file, its scan coordinates (object pixels, float64) or None."""

    object: np.ndarray
    probe: np.ndarray
    xcoords: np.ndarray | None = None
    ycoords: np.ndarray | None = None
    source: str = "built-in"


# --- built-in probe -------------------------------------------------------------------------------


def default_probe(n: int = 64) -> np.ndarray:
    """A focused X-ray probe seen slightly out of focus, (n, n) complex64.

    Made as a lens does: a circular pupil (radius n/5.3 detector pixels, soft edge 1 px) with a
    defocus phase (9 rad at the pupil edge) and a little astigmatism (1.5 rad), inverse-Fourier
    transformed to the sample plane. The result is a ~n/2-wide spot with curved phase fronts and
    weak rings, < 1% of its peak at the window edge. Normalised so that the far field of a
    transparent object has amplitude 1 in the bright-field disc (orthonormal FFT).
    """
    k = np.fft.fftfreq(n) * n
    ky, kx = np.meshgrid(k, k, indexing="ij")
    r = np.hypot(ky, kx)
    radius = n / 5.3
    # soft aperture edge: a hard edge rings across the whole window
    aperture = 0.5 * (1.0 - np.tanh((r - radius) / 1.0))
    rho2 = (r / radius) ** 2
    phase = 9.0 * rho2 + 1.5 * (ky**2 - kx**2) / radius**2
    pupil = aperture * np.exp(1j * phase)
    probe = np.fft.fftshift(np.fft.ifft2(pupil, norm="ortho"))
    return probe.astype(np.complex64)


# --- built-in object ------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, m: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation."""
    # a heavy import that only the built-in object needs: not paid by runs on a base NPZ
    from scipy import ndimage

    a = ndimage.gaussian_filter(rng.standard_normal((m, m)), sigma, mode="wrap")
    return a / a.std()


def _soft_disc(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    """Disc indicator with a 0.7 px soft edge (sharp enough for dark-field, without aliasing)."""
    return 0.5 * (1.0 - np.tanh((np.hypot(yy - cy, xx - cx) - r) / 0.7))


def siemens_star(m: int, cy: float, cx: float, radius: float, spokes: int = 36) -> np.ndarray:
    """Siemens star mask in [0, 1]: ``spokes`` dark/bright sector pairs inside ``radius``."""
    yy, xx = np.mgrid[0:m, 0:m].astype(np.float64)
    theta = np.arctan2(yy - cy, xx - cx)
    # sin > 0 on alternating sectors; tanh softens the sector edges by about one pixel at r/2
    r = np.hypot(yy - cy, xx - cx)
    sectors = 0.5 * (1.0 + np.tanh(np.sin(spokes * theta) * np.maximum(r, 1.0) * 0.5))
    return sectors * _soft_disc(yy, xx, cy, cx, radius)


def default_object(m: int = 512) -> np.ndarray:
    """A complex test object (m, m) complex64 with amplitude and phase structure at many scales.

    - texture: smoothed noise at 1.5, 6 and 24 px (amplitude +-0.1, phase +-0.5 rad);
    - a 36-spoke Siemens star (radius 0.17 m, centred) with phase 1.2 rad and amplitude 0.55 on
      the spokes: every spatial frequency up to the pixel scale, straddling the train/test split;
    - 60 soft-edged discs of radius 2..0.06 m (phase -1..1 rad, amplitude 0.6..1);
    Amplitude lies in [0.05, 1]; the object is fixed (its own seed), independent of the run seed.
    """
    rng = np.random.default_rng(_OBJECT_SEED)
    amp = 0.85 + 0.1 * (0.5 * _smooth_noise(rng, m, 1.5) + _smooth_noise(rng, m, 6.0)) / 1.5
    phase = 0.5 * (0.3 * _smooth_noise(rng, m, 6.0) + _smooth_noise(rng, m, 24.0)) / 1.3
    yy, xx = np.mgrid[0:m, 0:m].astype(np.float64)
    for _ in range(60):
        r = rng.uniform(2.0, max(3.0, 0.06 * m))
        cy, cx = rng.uniform(0, m, size=2)
        disc = _soft_disc(yy, xx, cy, cx, r)
        phase += rng.uniform(-1.0, 1.0) * disc
        amp *= 1.0 - rng.uniform(0.0, 0.4) * disc
    star = siemens_star(m, m / 2, m / 2, 0.17 * m)
    inside = _soft_disc(yy, xx, m / 2, m / 2, 0.17 * m)
    # the star replaces the texture inside its disc so that its contrast is clean
    amp = amp * (1 - inside) + inside * (1.0 - 0.45 * star)
    phase = phase * (1 - inside) + inside * 1.2 * star
    amp = np.clip(amp, 0.05, 1.0)
    return (amp * np.exp(1j * phase)).astype(np.complex64)


# --- user NPZ -------------------------------------------------------------------------------------


def load_base_npz(path: str | Path, n: int, need_coords: bool = False) -> BaseData:
    """Read objectGuess/probeGuess (and xcoords/ycoords if present) from a fly64-style NPZ.

    Raises UserError with a one-line message for a missing or unreadable file, missing keys,
    arrays that are not numbers (objectGuess/probeGuess real or complex, coordinates real), wrong
    ranks, non-square arrays, a probe that is not n x n, an object smaller than the probe,
    non-finite values or values beyond complex64, or coordinates of unequal length.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"base NPZ not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            missing = [k for k in ("objectGuess", "probeGuess") if k not in keys]
            if missing:
                raise UserError(
                    f"{p}: missing key(s) {', '.join(missing)} (has: {', '.join(sorted(keys))})"
                )
            has_x, has_y = "xcoords" in keys, "ycoords" in keys
            if has_x != has_y:
                raise UserError(f"{p}: has {'xcoords' if has_x else 'ycoords'} but not the other")
            arrays = {k: np.asarray(z[k]) for k in ("objectGuess", "probeGuess") if k in keys}
            coords = {k: np.asarray(z[k]) for k in ("xcoords", "ycoords") if k in keys}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        # ValueError: a pickled (object) array, refused with allow_pickle=False
        raise UserError(f"{p}: not a readable NPZ file ({e})") from None
    for name, a in arrays.items():
        _require_numbers(p, name, a, kinds="iufc", what="real or complex numbers")
    for name, a in coords.items():
        _require_numbers(p, name, a, kinds="iuf", what="real numbers")
    obj = _complex64(p, "objectGuess", arrays["objectGuess"])
    probe = _complex64(p, "probeGuess", arrays["probeGuess"])
    xc = coords["xcoords"].astype(np.float64) if coords else None
    yc = coords["ycoords"].astype(np.float64) if coords else None
    if probe.shape != (n, n):
        raise UserError(f"{p}: probeGuess is {probe.shape}, params.N asks for ({n}, {n})")
    if obj.shape[0] < n + 2:
        raise UserError(f"{p}: objectGuess {obj.shape} is smaller than the probe + 2 ({n + 2})")
    if not np.any(probe):
        raise UserError(f"{p}: probeGuess is all zeros")
    if xc is not None and yc is not None:
        if xc.ndim != 1 or xc.shape != yc.shape:
            raise UserError(
                f"{p}: xcoords {xc.shape} and ycoords {yc.shape} must be 1-D of equal length"
            )
        if not (np.all(np.isfinite(xc)) and np.all(np.isfinite(yc))):
            raise UserError(f"{p}: xcoords/ycoords have non-finite values")
        if need_coords and len(xc) == 0:
            raise UserError(f"{p}: xcoords/ycoords are empty")
    elif need_coords:
        raise UserError(f'{p}: params.scan = "file" needs xcoords and ycoords in the NPZ')
    return BaseData(object=obj, probe=probe, xcoords=xc, ycoords=yc, source=str(p))


def _require_numbers(p: Path, name: str, a: np.ndarray, kinds: str, what: str) -> None:
    """UserError unless ``a`` holds numbers of the given numpy kinds (i int, u unsigned, f float,
    c complex): strings, booleans, bytes and structured records are refused."""
    if a.dtype.kind not in kinds:
        raise UserError(f"{p}: {name} must hold {what}, got dtype {a.dtype}")


def _complex64(p: Path, name: str, a: np.ndarray) -> np.ndarray:
    """A square 2-D numeric array as complex64, refusing non-finite values and values that
    overflow complex64 (|v| > 3.4e38 would become inf)."""
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise UserError(f"{p}: {name} must be a square 2-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{p}: {name} has non-finite values")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        c = a.astype(np.complex64)
    if not np.all(np.isfinite(c)):
        raise UserError(f"{p}: {name} has values beyond the complex64 range (|v| > 3.4e38)")
    return c
