"""LHCb field maps: the text format, a binary cache keyed by SHA-256, artefacts (the synthetic
map and the summary's Gaussian fit: synthmap.py).

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


# --- writing -------------------------------------------------------------------------------------


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
    np.savetxt formats row by row in Python, slow for a 1M-row map."""
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
