"""Sun directions: uniform on the sphere from the chunk's stream, or rows of a user file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hpcgen.errors import SpecError, UserError


def uniform_sphere(rng: np.random.Generator, n: int) -> np.ndarray:
    """n unit vectors uniform on the sphere: normalised 3-D standard normal draws (isotropic)."""
    v = rng.standard_normal((n, 3))
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    # a zero draw has probability 0; keep the row finite anyway (it points along +z)
    v[norm[:, 0] == 0] = (0.0, 0.0, 1.0)
    return v / np.where(norm == 0, 1.0, norm)


class SunFile:
    """Body-frame sun vectors from a user file: rows [start, start + count) on demand.

    ``.npy``: an (N, >=3) float array (memory-mapped, so any size). Anything else: a text table,
    comma- or blank-separated, optionally with one header line (a CSV written by ``hpcgen export
    --format csv`` works: its first three columns are the sun vector). Rows are normalised; a
    zero or non-finite row is an error.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise SpecError(f"sun_file not found: {self.path}")
        self.npy = self.path.suffix.lower() == ".npy"
        if self.npy:
            try:
                arr = np.load(self.path, mmap_mode="r")
            except ValueError as e:
                raise SpecError(f"sun_file {self.path}: not a readable .npy array ({e})") from None
            if arr.ndim != 2 or arr.shape[1] < 3:
                raise SpecError(f"sun_file {self.path}: expected an (N, 3) array, got {arr.shape}")
            self.n_rows = arr.shape[0]
            self.header = 0
            self.delimiter: str | None = None
        else:
            self.header, self.delimiter, self.n_rows = _scan_text(str(self.path))
        self._cache: np.ndarray | None = None  # the parsed file (text) or its memory map (.npy)

    def _table(self) -> np.ndarray:
        """Opened or parsed once per process: re-reading a text file from its top for every
        chunk would cost O(N^2) for N rows."""
        if self._cache is None:
            if self.npy:
                self._cache = np.load(self.path, mmap_mode="r")
            else:
                try:
                    self._cache = np.loadtxt(
                        self.path,
                        delimiter=self.delimiter,
                        usecols=(0, 1, 2),
                        skiprows=self.header,
                        ndmin=2,
                    )
                except ValueError as e:
                    raise UserError(f"sun_file {self.path}: unreadable row: {e}") from None
        return self._cache

    def rows(self, start: int, count: int) -> np.ndarray:
        """Unit vectors (count, 3) float64 of rows [start, start + count)."""
        if start + count > self.n_rows:
            raise UserError(
                f"sun_file {self.path} has {self.n_rows} rows; this run needs rows up "
                f"to {start + count}: lower n_samples or give a longer file"
            )
        raw = np.array(self._table()[start : start + count, :3], dtype=float)
        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        bad = ~np.isfinite(norm[:, 0]) | (norm[:, 0] == 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(f"sun_file {self.path}: row {start + i} is not a direction: {raw[i]}")
        return raw / norm


def _scan_text(path: str) -> tuple[int, str | None, int]:
    """(header lines, delimiter, data rows) of a text table; one pass (once per file version:
    the generator caches the SunFile)."""
    header, delimiter, rows, first = 0, None, 0, True
    with open(path, errors="replace") as fh:
        for line in fh:
            text = line.strip()
            if not text or text.startswith("#"):
                if first and text.startswith("#"):
                    header += 1
                    continue
                if not text:
                    continue
            if first:
                first = False
                delimiter = "," if "," in text else None
                try:
                    [float(x) for x in text.split(delimiter)[:3]]
                except ValueError:
                    header += 1
                    continue
            rows += 1
    if rows == 0:
        raise SpecError(f"sun_file {path}: no data rows")
    return header, delimiter, rows
