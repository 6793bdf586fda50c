"""The synthetic LHCb-like dipole map (``hpcgen fieldmap synth``), and what ``hpcgen fieldmap
info`` reports of any map: the on-axis profile, its peak and a Gaussian fit, the artefacts.

The text format, its cache and MapGrid: fieldmap.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.tracks.fieldmap import ARTEFACT_B, MapGrid


#: the synthetic map's grid: x, y in [-4000, 4000] step 100; z in [-500, 14000] with 146 planes,
#: 125 mm upstream, 80 mm through the magnet (2-10 m), 160 mm downstream (a variable step)
def synth_axes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xy = np.arange(-4000.0, 4000.1, 100.0)
    z = np.concatenate(
        [
            np.arange(-500.0, 2000.0, 125.0),
            np.arange(2000.0, 10000.0, 80.0),
            np.arange(10000.0, 14000.1, 160.0),
        ]
    )
    return xy, xy.copy(), z


#: on-axis profile b(z) = -sum a exp(-((z - c)/s)^2 / 2) (T, mm): peak |By| 1.030 T at z = 5007 mm,
#: integral -4.440 T m, a downstream shoulder so a single Gaussian fits it only to ~0.011 T RMS
#: (the real map: 0.013 T), Gaussian fit B0 -1.018 T, w ~1720 mm.
SYNTH_PROFILE = ((0.8043, 4987.0, 1806.25), (0.2201, 4987.0, 1200.0), (0.04, 7780.0, 1400.0))
#: transverse roll-off scale (mm) of the synthetic field, see synth_field
SYNTH_ROLLOFF = 3000.0


def synth_profile(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """b(z) and its first three z-derivatives (T, T/mm, T/mm^2, T/mm^3)."""
    z = np.asarray(z, dtype=np.float64)
    out = [np.zeros_like(z) for _ in range(4)]
    for a, c, s in SYNTH_PROFILE:
        u = (z - c) / s
        g = -a * np.exp(-0.5 * u * u)
        out[0] += g
        out[1] += g * (-u / s)
        out[2] += g * (u * u - 1.0) / s**2
        out[3] += g * (3.0 * u - u**3) / s**3
    return out[0], out[1], out[2], out[3]


def synth_field(x: Any, y: Any, z: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The synthetic dipole: B = -grad(phi) times a transverse roll-off E(x, y) (T at mm).

    phi = -y b(z) + b''(z) (x^2 y / 2 + y^3 / 6) / 2 is the magnetostatic expansion of a
    mid-plane-symmetric dipole with on-axis field By(0, 0, z) = b(z) (Bx = Bz = 0 on the axis):
    curl(grad phi) = 0 exactly and div(grad phi) = -laplace(phi) = -b''''(z)(x^2 y/2 + y^3/6)/2, so
    div B and curl B vanish through second order in the distance r from the axis (both are O(r^3)).
    A source-free field with a ~1.7 m wide on-axis profile must grow off axis (at r = 4 m the
    expansion reaches ~4 T); the real magnet's coils and iron sit there. E = exp(-(x/R)^4 - (y/R)^4)
    with R = 3 m rolls the field off beyond the aperture, keeping |B| < 1.4 T; E = 1 - O(r^4), so
    the O(r^3) statement above holds for E * B too.
    """
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    b, b1, b2, b3 = synth_profile(z)
    q = 0.5 * x * x + 0.5 * y * y  # d/dy of the cubic (x^2 y / 2 + y^3 / 6)
    bx = -b2 * 0.5 * x * y
    by = b - 0.5 * b2 * q
    bz = b1 * y - 0.5 * b3 * (0.5 * x * x * y + y**3 / 6.0)
    e = np.exp(-((x / SYNTH_ROLLOFF) ** 4) - (y / SYNTH_ROLLOFF) ** 4)
    return bx * e, by * e, bz * e


def synth_map(artefacts: float = 0.0, seed: int = 2026) -> MapGrid:
    """The synthetic stand-in for the LHCb map on the real map's grid. ``artefacts``: the fraction
    of edge points (|x| or |y| > 3500 mm) given a non-physical |By| in [2.2, 4] T, like the real
    map's ~3 %."""
    xs, ys, zs = synth_axes()
    X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
    B = np.stack(synth_field(X, Y, Z), axis=-1)
    if artefacts > 0:
        rng = np.random.default_rng(seed)
        edge = np.flatnonzero(((np.abs(X) > 3500) | (np.abs(Y) > 3500)).ravel())
        pick = rng.choice(edge, size=max(1, round(artefacts * len(edge))), replace=False)
        flat = B.reshape(-1, 3)
        flat[pick, 1] = rng.choice([-1.0, 1.0], len(pick)) * rng.uniform(2.2, 4.0, len(pick))
    # what the text holds (6 decimals): the in-memory map equals the map read back
    return MapGrid(xs, ys, zs, np.round(B, 6))


# --- summary (hpcgen fieldmap info) ---------------------------------------------------------------


def gaussian_fit(z: np.ndarray, by: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares By(z) = B0 exp(-((z - zc)/w)^2 / 2): (B0 T, zc mm, w mm, RMS residual T)."""
    from scipy.optimize import curve_fit

    def g(zz: np.ndarray, b0: float, zc: float, w: float) -> np.ndarray:
        return b0 * np.exp(-0.5 * ((zz - zc) / w) ** 2)

    k = int(np.argmax(np.abs(by)))
    half = np.abs(by) > 0.5 * abs(by[k])
    w0 = max((z[half].max() - z[half].min()) / 2.355, 1.0)
    try:
        (b0, zc, w), _ = curve_fit(g, z, by, p0=[by[k], z[k], w0], maxfev=10_000)
    except RuntimeError as e:
        raise UserError(f"Gaussian fit of the on-axis field failed: {e}") from None
    rms = float(np.sqrt(np.mean((g(z, b0, zc, w) - by) ** 2)))
    return float(b0), float(zc), abs(float(w)), rms


def axis_profile(grid: MapGrid) -> tuple[np.ndarray, np.ndarray]:
    """(z, By) on the axis x = y = 0, interpolated bilinearly in x, y at every z plane."""
    from hpcgen.generators.tracks.fields import FieldMap

    fm = FieldMap(grid)
    z = grid.zs
    _, by, _, _ = fm.lookup(np.zeros_like(z), np.zeros_like(z), z)
    return z, by


def _vertex(z: np.ndarray, b: np.ndarray, k: int) -> tuple[float, float]:
    """Peak of the parabola through the grid maximum and its two neighbours: (z, B)."""
    if k == 0 or k == len(z) - 1:
        return float(z[k]), float(b[k])
    c2, c1, c0 = np.polyfit(z[k - 1 : k + 2] - z[k], b[k - 1 : k + 2], 2)
    if c2 == 0:
        return float(z[k]), float(b[k])
    dz = -c1 / (2 * c2)
    return float(z[k] + dz), float(c0 + c1 * dz + c2 * dz * dz)


def summarize(grid: MapGrid, threshold: float = ARTEFACT_B) -> dict[str, Any]:
    """Everything ``hpcgen fieldmap info`` prints, as a dict."""
    z, by = axis_profile(grid)
    k = int(np.argmax(np.abs(by)))
    z_pk, b_pk = _vertex(z, by, k)
    b0, zc, w, rms = gaussian_fit(z, by)
    art = grid.artefact_points(threshold)
    X, Y = np.meshgrid(grid.xs, grid.ys, indexing="ij")
    edge2d = (np.abs(X) > 3500) | (np.abs(Y) > 3500)
    edge = np.broadcast_to(edge2d[:, :, None], art.shape)
    n_edge = int(edge.sum())

    def spacing(a: np.ndarray) -> str:
        d = np.unique(np.round(np.diff(a), 6))
        return f"{d[0]:g}" if len(d) == 1 else f"variable {d.min():g}-{d.max():g}"

    return {
        "path": grid.path,
        "sha256": grid.sha256,
        "grid": list(grid.shape),
        "n_points": int(np.prod(grid.shape)),
        "ranges_mm": {
            n: [float(a[0]), float(a[-1]), spacing(a)]
            for n, a in zip("xyz", (grid.xs, grid.ys, grid.zs))
        },
        "peak_abs_by_axis_T": abs(b_pk),
        "peak_by_axis_T": b_pk,
        "peak_z_mm": z_pk,
        "peak_grid_point": {"z_mm": float(z[k]), "By_T": float(by[k])},
        "integral_by_dz_axis_Tm": float(np.trapezoid(by, z) / 1000.0),
        "max_abs_B_T": float(np.sqrt((grid.B**2).sum(-1)).max()),
        "gaussian_fit": {"B0_T": b0, "zc_mm": zc, "w_mm": w, "rms_residual_T": rms},
        "artefact_threshold_T": threshold,
        "artefact_points": int(art.sum()),
        "artefact_fraction": float(art.mean()),
        "artefact_fraction_of_edge_points": float(art[edge].mean()) if n_edge else 0.0,
        "artefact_points_off_edge": int((art & ~edge).sum()),
        "masked_cell_fraction": float(grid.masked_cells(threshold).mean()),
    }
