"""Read any hpcgen file (full run, shard, merged, virtual) without the writer's code path.

``Reader`` rebuilds the run spec and the generator from the file's attributes, and streams rows
in bounded-size blocks so that verify/export/plot never hold a whole file in memory::

    with Reader("tracks.h5") as r:
        for start, block in r.iter_rows(["X", "Y"]):   # block: {name: np.ndarray}
            ...

It implements :class:`hpcgen.generators.base.FileView`, all that the generators' hooks see.
``Reader.h5`` (the open h5py.File) is for hpcgen/io's own code: integrity checks, checksums and
the engine's attribute names live here, not in the generators.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.base import FieldSpec, Generator, Node
from hpcgen.io import layout
from hpcgen.io.writer import ensure_open_files, virtual_sources
from hpcgen.spec import RunSpec


class Reader:
    """An hpcgen file opened read-only (a :class:`~hpcgen.generators.base.FileView`)."""

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

    @property
    def data_hash(self) -> str | None:
        raw = self.h5.attrs.get(layout.ATTR_DATA_HASH)
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    @property
    def attrs(self) -> dict[str, Any]:
        return _attrs(self.h5.attrs)

    def group_attrs(self, name: str) -> dict[str, Any]:
        node = self.node(name)
        if node is None or node.kind != "group":
            raise UserError(f"{self.path}: no group {name!r}")
        return dict(node.attrs)

    def dataset_attrs(self, name: str) -> dict[str, Any]:
        return _attrs(self._dataset(name).attrs)

    def node(self, path: str) -> Node | None:
        """The group or dataset at ``path``; the engine's bookkeeping (``_hpcgen/``: done flags,
        checksums) is not part of the view."""
        key = path.strip("/")
        if _engine_path(key):
            return None
        obj = self.h5 if key == "" else self.h5.get(key)
        if isinstance(obj, h5py.Group):
            children = tuple(sorted(k for k in obj.keys() if not _engine_path(f"{key}/{k}")))
            return Node(key, "group", _attrs(obj.attrs), children=children)
        if isinstance(obj, h5py.Dataset):
            return Node(
                key,
                "dataset",
                _attrs(obj.attrs),
                shape=tuple(obj.shape),
                dtype=obj.dtype,
                virtual=bool(obj.is_virtual),
            )
        return None

    # --- data ----------------------------------------------------------------------------------
    def read(
        self, name: str, rows: slice | int | Sequence[int] | np.ndarray = slice(None)
    ) -> np.ndarray:
        """Rows of one field (indices local to this file): a slice, an int, or a 1-d sequence of
        ints in any order, repeats allowed (negative indices count from the end)."""
        ds = self._dataset(name)
        if isinstance(rows, (slice, int, np.integer)):
            return ds[rows]
        idx = np.asarray(rows)
        if idx.ndim == 1 and idx.size == 0:
            return np.empty((0, *ds.shape[1:]), ds.dtype)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise UserError(f"rows must be a slice, an int or a 1-d sequence of ints, got {rows!r}")
        n = ds.shape[0]
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        # h5py reads increasing unique indices only: read those, then put them in the asked order
        uniq, inverse = np.unique(idx, return_inverse=True)
        return ds[uniq][inverse.reshape(-1)]

    def static(self, name: str) -> np.ndarray:
        """A dataset without a sample axis (e.g. the generator's static datasets), read whole."""
        ds = None if _engine_path(name) else self.h5.get(name)
        if not isinstance(ds, h5py.Dataset) or "sample_axis" in ds.attrs:
            known = ", ".join(self.generator.static_datasets()) or "none"
            raise UserError(f"{self.path}: no static dataset {name!r} (static datasets: {known})")
        return ds[()]

    def _dataset(self, name: str) -> h5py.Dataset:
        ds = None if _engine_path(name) else self.h5.get(name)
        if not isinstance(ds, h5py.Dataset):
            raise UserError(f"{self.path}: no dataset {name!r}")
        return ds

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

    def __repr__(self) -> str:
        return f"<Reader {str(self.path)!r}: {self.spec.generator}, {self.n_rows} rows>"

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _attrs(a: h5py.AttributeManager) -> dict[str, Any]:
    """Attribute values as h5py reads them (numpy scalars and arrays, str): no h5py objects,
    and written back unchanged where an exporter copies them."""
    return dict(a.items())


def _engine_path(path: str) -> bool:
    """Whether ``path`` is the engine's bookkeeping group or inside it."""
    key = path.strip("/")
    return key == layout.GROUP or key.startswith(layout.GROUP + "/")
