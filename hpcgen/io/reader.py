"""Read any hpcgen file (full run, shard, merged, virtual) without the writer's code path.

``Reader`` rebuilds the run spec and the generator from the file's attributes, and streams rows
in bounded-size blocks so that verify/export/plot never hold a whole file in memory::

    with Reader("tracks.h5") as r:
        for start, block in r.iter_rows(["X", "Y"]):   # block: {name: np.ndarray}
            ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.base import FieldSpec, Generator
from hpcgen.io import layout
from hpcgen.io.writer import ensure_open_files, virtual_sources
from hpcgen.spec import RunSpec


class Reader:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"no such file: {self.path}")
        try:
            sources = virtual_sources(self.path)
        except OSError as e:
            raise UserError(f"{self.path}: not a readable HDF5 file ({e})") from None
        ensure_open_files(len(sources), self.path)
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as e:
            raise UserError(f"{self.path}: not a readable HDF5 file ({e})") from None
        if layout.ATTR_SPEC not in self.h5.attrs:
            self.h5.close()
            raise UserError(f"{self.path}: not an hpcgen file (no {layout.ATTR_SPEC} attribute)")
        self.spec = RunSpec.from_dict(json.loads(self.h5.attrs[layout.ATTR_SPEC]))
        self.generator: Generator = self.spec.make_generator()
        self.fields: list[FieldSpec] = self.generator.fields()
        a, b = (int(x) for x in self.h5.attrs[layout.ATTR_CHUNK_RANGE])
        self.chunk_range = (a, b)
        self.row_range = layout.rows_of((a, b), self.spec.chunk_size, self.spec.n_samples)

    # --- what is in the file -------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return self.row_range[1] - self.row_range[0]

    @property
    def done(self) -> np.ndarray:
        return self.h5[layout.DONE][...].astype(bool)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    @property
    def provenance(self) -> dict[str, Any]:
        raw = self.h5.attrs.get(layout.ATTR_PROVENANCE)
        return json.loads(raw) if raw is not None else {}

    # --- data ----------------------------------------------------------------------------------
    def read(self, name: str, rows: slice = slice(None)) -> np.ndarray:
        """Rows of one field (indices local to this file)."""
        return self.h5[name][rows]

    def iter_rows(
        self, names: Sequence[str] | None = None, block: int | None = None
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield (local start row, {name: rows}) blocks of at most ``block`` rows (default: the
        run's chunk size), for the named fields (default: all generator fields)."""
        names = list(names) if names is not None else [f.name for f in self.fields]
        step = block or self.spec.chunk_size
        for start in range(0, self.n_rows, step):
            stop = min(start + step, self.n_rows)
            yield start, {n: self.h5[n][start:stop] for n in names}

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
