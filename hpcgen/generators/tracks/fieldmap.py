"""LHCb field maps: the text format, a binary cache keyed by SHA-256, artefacts, a synthetic map.

Text format (LHCb's twodip map): whitespace-separated rows ``x y z Bx By Bz`` in mm and tesla on a
regular grid (the real map: 81 x 81 x 146 points, x, y in [-4000, 4000] mm step 100, z in
[-500, 14000] mm with a variable step), y varying fastest, then x, then z. Our reader accepts rows
in any order: each row is placed on the grid by its coordinates. The writer keeps the real order,
which other readers of the format assume. Lines starting with ``#`` are comments. A map with a
missing or duplicate grid point, a non-finite value or a row that is not six numbers is refused
with a one-line error.

Parsing 60 MB of text takes seconds; 10,000 batch jobs should not each do it. The parsed grid is
cached in a binary ``.npz`` named by the text's SHA-256, beside the map (``MAP.<sha16>.cache.npz``)
or in ``$HPCGEN_CACHE_DIR``. A cache whose recorded hash does not match is ignored and rebuilt.

Non-physical cells: the real map has about 3 % of its edge points (|x| or |y| > 3500 mm) at
|B| > 2 T, extrapolation artefacts of the map's production. A grid point with |B| above
``artefact_b`` (default 2 T, twice the dipole's peak) is an artefact; a cell with an artefact corner
is a masked cell. What happens to tracks that enter one is the generator's ``artefact_policy``.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.engine.provenance import sha256_file
from hpcgen.errors import UserError

CACHE_ENV = "HPCGEN_CACHE_DIR"
CACHE_VERSION = 1
#: |B| (T) above which a grid point is an artefact: twice the LHCb dipole's peak field
ARTEFACT_B = 2.0
#: |B| (T) no magnet makes (the strongest continuous laboratory fields are ~45 T): a map or a
#: parameter beyond it is a unit slip (gauss for tesla: x 1e4) or a corrupt file, refused
MAX_FIELD_T = 100.0


@dataclass(frozen=True)
class MapGrid:
    """A parsed field map: axes (mm, strictly increasing) and B (nx, ny, nz, 3) in T."""

    xs: np.ndarray
    ys: np.ndarray
    zs: np.ndarray
    B: np.ndarray
    sha256: str = ""
    path: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.xs), len(self.ys), len(self.zs))

    def artefact_points(self, threshold: float = ARTEFACT_B) -> np.ndarray:
        """Bool (nx, ny, nz): grid points with |B| > threshold (T)."""
        return np.sqrt((self.B**2).sum(axis=-1)) > threshold

    def masked_cells(self, threshold: float = ARTEFACT_B) -> np.ndarray:
        """uint8 (nx-1, ny-1, nz-1): 1 where any of the cell's 8 corners is an artefact."""
        a = self.artefact_points(threshold)
        c = a[:-1, :-1, :-1] | a[1:, :-1, :-1] | a[:-1, 1:, :-1] | a[:-1, :-1, 1:]
        c |= a[1:, 1:, :-1] | a[1:, :-1, 1:] | a[:-1, 1:, 1:] | a[1:, 1:, 1:]
        return c.astype(np.uint8)


# --- reading ------------------------------------------------------------------------------------


def parse_text(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse and validate a text map; returns (xs, ys, zs, B). UserError on any defect."""
    where = f"field map {path}"
    try:
        with warnings.catch_warnings():  # an empty file: numpy warns, we refuse below
            warnings.simplefilter("ignore", UserWarning)
            rows = np.loadtxt(path, dtype=np.float64, comments="#", ndmin=2)
    except ValueError as e:  # non-numeric value or a row of the wrong length: numpy names the row
        msg = str(e).strip().rstrip(".")
        raise UserError(f"{where}: {msg} (expected rows 'x y z Bx By Bz')") from None
    except OSError as e:
        raise UserError(f"{where}: cannot read ({e.strerror or e})") from None
    if rows.shape[0] == 0:
        raise UserError(f"{where}: no data rows")
    if rows.shape[1] != 6:
        raise UserError(f"{where}: rows have {rows.shape[1]} columns, expected 6 (x y z Bx By Bz)")
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        r = int(np.argmax(bad))
        raise UserError(
            f"{where}: non-finite value in data row {r + 1} ({' '.join(map(str, rows[r]))}); "
            f"{int(bad.sum())} such rows"
        )
    axes = [np.unique(rows[:, i]) for i in range(3)]
    for name, ax in zip("xyz", axes):
        if len(ax) < 2:
            raise UserError(f"{where}: the grid needs at least 2 distinct {name} values")
    nx, ny, nz = (len(a) for a in axes)
    idx = [np.searchsorted(a, rows[:, i]) for i, a in enumerate(axes)]
    flat = (idx[0] * ny + idx[1]) * nz + idx[2]
    counts = np.bincount(flat, minlength=nx * ny * nz)
    if (counts > 1).any():
        k = int(np.argmax(counts > 1))
        i, j, m = np.unravel_index(k, (nx, ny, nz))
        raise UserError(
            f"{where}: duplicate grid point x={axes[0][i]:g} y={axes[1][j]:g} z={axes[2][m]:g} "
            f"({int((counts > 1).sum())} points appear more than once)"
        )
    if (counts == 0).any():
        k = int(np.argmax(counts == 0))
        i, j, m = np.unravel_index(k, (nx, ny, nz))
        raise UserError(
            f"{where}: missing grid point x={axes[0][i]:g} y={axes[1][j]:g} z={axes[2][m]:g} "
            f"({int((counts == 0).sum())} of {nx * ny * nz} points of the {nx}x{ny}x{nz} grid "
            "missing)"
        )
    B = np.empty((nx * ny * nz, 3))
    B[flat] = rows[:, 3:]
    return axes[0], axes[1], axes[2], B.reshape(nx, ny, nz, 3)


def cache_path(path: Path, sha: str) -> Path:
    """Where the binary cache of ``path`` (text hash ``sha``) lives."""
    base = os.environ.get(CACHE_ENV)
    name = f"{path.name}.{sha[:16]}.cache.npz"
    return Path(base) / name if base else path.with_name(name)


def load_map(path: str | Path, use_cache: bool = True) -> MapGrid:
    """Read a text map (through its binary cache when one matches the text's SHA-256)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"field map {path} not found (make a synthetic one with: "
            f"hpcgen fieldmap synth --out {path})"
        )
    sha = sha256_file(path)
    cp = cache_path(path, sha)
    if use_cache and cp.is_file():
        grid = _read_cache(cp, sha, str(path))
        if grid is not None:
            check_field_values(grid, f"field map {path}")
            return grid
    xs, ys, zs, B = parse_text(path)
    grid = MapGrid(xs, ys, zs, B, sha, str(path))
    check_field_values(grid, f"field map {path}")
    if use_cache:
        _write_cache(cp, grid)
    return grid


def check_field_values(grid: MapGrid, where: str) -> None:
    """UserError for a grid with |B| > MAX_FIELD_T anywhere (checked on the cached grid too: a
    cache written before this check may hold one)."""
    mag = np.sqrt((grid.B**2).sum(axis=-1))
    if not mag.size or mag.max() <= MAX_FIELD_T:
        return
    i, j, k = np.unravel_index(int(np.argmax(mag)), mag.shape)
    raise UserError(
        f"{where}: |B| = {mag[i, j, k]:.3g} T at x={grid.xs[i]:g} y={grid.ys[j]:g} "
        f"z={grid.zs[k]:g} ({int((mag > MAX_FIELD_T).sum())} grid points above {MAX_FIELD_T:g} T): "
        "not a magnetic field; a unit slip (gauss for tesla) or a corrupt map"
    )


def prime_cache(path: Path, grid: MapGrid) -> None:
    """Write the cache for a text map just written from ``grid`` (``hpcgen fieldmap synth``), so
    the first run does not parse it: valid because ``grid`` holds exactly what the text says."""
    sha = sha256_file(path)
    g = MapGrid(grid.xs, grid.ys, grid.zs, grid.B, sha, str(path))
    _write_cache(cache_path(path, sha), g)


def _read_cache(cp: Path, sha: str, source: str) -> MapGrid | None:
    try:
        with np.load(cp) as d:
            if str(d["sha256"]) != sha or int(d["version"]) != CACHE_VERSION:
                return None
            xs, ys, zs, B = (np.array(d[k]) for k in ("xs", "ys", "zs", "B"))
    except (OSError, KeyError, ValueError) as e:
        print(f"hpcgen: ignoring unreadable field-map cache {cp} ({e})", file=sys.stderr)
        return None
    if B.shape != (len(xs), len(ys), len(zs), 3):
        return None
    return MapGrid(xs, ys, zs, B, sha, source)


def _write_cache(cp: Path, grid: MapGrid) -> None:
    """Atomic (write + rename), so that concurrent jobs never read a half-written cache."""
    tmp = cp.with_name(f"{cp.name}.{os.getpid()}.tmp")
    try:
        cp.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(
                f,
                xs=grid.xs,
                ys=grid.ys,
                zs=grid.zs,
                B=grid.B,
                sha256=np.array(grid.sha256),
                version=np.array(CACHE_VERSION),
            )
        os.replace(tmp, cp)
    except OSError as e:  # a read-only map directory: say so, and go on without a cache
        tmp.unlink(missing_ok=True)
        print(f"hpcgen: could not write the field-map cache {cp} ({e})", file=sys.stderr)


# --- writing and the synthetic map ----------------------------------------------------------------


def write_text(path: Path, grid: MapGrid, order_seed: int | None = None) -> None:
    """Write ``grid`` in the LHCb text format: ``x y z`` with 1 decimal (mm), ``Bx By Bz`` with 6
    (T, 1 uT), in the real twodip map's row order: y fastest, then x, then z (z outermost).
    Readers of the real map rely on that order instead of the coordinates (the track-extrapolation
    trainers' loaders reshape the columns to (nz, nx, ny)); ours places rows by their coordinates.
    ``order_seed`` shuffles the rows (tests: our reader must not depend on the order)."""
    # axes (z, x, y), C order: y varies fastest; B (nx, ny, nz, 3) -> (nz, nx, ny, 3) to match
    Z, X, Y = np.meshgrid(grid.zs, grid.xs, grid.ys, indexing="ij")
    cols = [X.ravel(), Y.ravel(), Z.ravel(), *grid.B.transpose(2, 0, 1, 3).reshape(-1, 3).T]
    n = len(cols[0])
    perm = np.random.default_rng(order_seed).permutation(n) if order_seed is not None else None
    tmp = path.with_name(path.name + ".partial")
    block = 100_000
    with open(tmp, "wb") as f:
        f.write(b"# x y z Bx By Bz (mm, T)\n")
        for s in range(0, n, block):
            sel = slice(s, s + block) if perm is None else perm[s : s + block]
            parts = [_ascii_fixed(c[sel], 1) for c in cols[:3]]
            parts += [_ascii_fixed(c[sel], 6) for c in cols[3:]]
            m = parts[0].shape[0]
            sep = np.full((m, 1), ord(" "), np.uint8)
            pieces = []
            for p in parts:
                pieces += [p, sep]
            pieces[-1] = np.full((m, 1), ord("\n"), np.uint8)
            f.write(np.hstack(pieces).tobytes())
    os.replace(tmp, path)


def _ascii_fixed(values: np.ndarray, decimals: int) -> np.ndarray:
    """Right-aligned fixed-point ASCII (like ``%W.Df``) of a column, vectorised: (n, W) uint8.
    np.savetxt formats row by row in Python and takes ~10x longer for a 1M-row map."""
    v = np.rint(np.asarray(values, dtype=np.float64) * 10**decimals).astype(np.int64)
    neg = v < 0
    a = np.abs(v)
    n_int = max(1, len(str(int(a.max()) // 10**decimals))) if len(a) else 1
    width = 1 + n_int + 1 + decimals  # sign, integer digits, point, decimals
    out = np.full((len(v), width), ord(" "), np.uint8)
    pos = width - 1
    for _ in range(decimals):
        out[:, pos] = 48 + a % 10
        a //= 10
        pos -= 1
    out[:, pos] = ord(".")
    pos -= 1
    out[:, pos] = 48 + a % 10  # at least one integer digit
    a //= 10
    sign_at = np.full(len(v), pos - 1)
    for p in range(pos - 1, 0, -1):
        more = a > 0
        out[more, p] = 48 + a[more] % 10
        sign_at[more] = p - 1
        a //= 10
    out[np.flatnonzero(neg), sign_at[neg]] = ord("-")
    return out


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
