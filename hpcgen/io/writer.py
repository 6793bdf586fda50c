"""Write chunks into hpcgen files: one shared file through MPI-IO, or per-rank shards + a VDS.

Both writers hold chunks [a, b) of a run (a whole run: [0, n_chunks)) and expose the same calls:

    w.pending()                      # chunks of [a, b) whose done flag is not set
    w.write(k, data)                 # k: chunk index or None (nothing this round); collective
    w.checkpoint()                   # flush, then set the done flags of what was flushed
    w.finish(provenance)             # checkpoint, provenance attributes, close; collective

Crash safety: a chunk's done flag is written only after a flush that put its rows on disk (and is
itself flushed at the next checkpoint), so after a crash every chunk marked done holds its final
bytes; ``--resume`` redoes the rest. A flush is an fsync on most MPI-IO layers, so the engine
checkpoints every few seconds rather than after every chunk: a crash costs at most that much
work. Data datasets are contiguous and allocated up front, so writing rows never touches HDF5
metadata: a file killed mid-run keeps a consistent structure and can be reopened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcgen.engine.comm import max_op
from hpcgen.errors import UserError
from hpcgen.generators.base import FieldSpec, Generator
from hpcgen.io import layout
from hpcgen.spec import RunSpec


def mpio_available() -> bool:
    return bool(h5py.get_config().mpi)


# --- layout ---------------------------------------------------------------------------------------


def create_layout(
    f: h5py.File,
    spec: RunSpec,
    gen: Generator,
    chunk_range: tuple[int, int],
    provenance: dict[str, Any],
) -> None:
    """Create every dataset and attribute of an hpcgen file (collective under MPI-IO: every rank
    calls this with the same arguments)."""
    r0, r1 = layout.rows_of(chunk_range, spec.chunk_size, spec.n_samples)
    rows = r1 - r0
    for fs in gen.fields():
        dt = fs.resolved_dtype(spec.dtype)
        d = f.create_dataset(fs.name, shape=(rows, *fs.shape), dtype=dt, fill_time="never")
        _field_attrs(d, fs, r0)
    f.create_dataset(layout.DONE, shape=(chunk_range[1] - chunk_range[0],), dtype="u1", fillvalue=0)
    _common(f, spec, gen, chunk_range, provenance)


def _common(
    f: h5py.File,
    spec: RunSpec,
    gen: Generator,
    chunk_range: tuple[int, int],
    provenance: dict[str, Any],
) -> None:
    """What every hpcgen file has besides its data: static datasets, generator and hpcgen root
    attributes, the bookkeeping group."""
    for name, sd in gen.static_datasets().items():
        d = f.create_dataset(name, data=sd.data)
        for k, v in sd.attrs.items():
            d.attrs[k] = v
    for k, v in gen.root_attrs().items():
        f.attrs[k] = v
    r0, r1 = layout.rows_of(chunk_range, spec.chunk_size, spec.n_samples)
    for path, attrs in gen.group_attrs(r1 - r0).items():
        g = f if path == "/" else f.require_group(path)
        for k, v in attrs.items():
            g.attrs[k] = v
    grp = f.require_group(layout.GROUP)
    grp.attrs["description"] = "hpcgen bookkeeping: done[i] = 1 once chunk a+i is on disk"
    f.attrs[layout.ATTR_SPEC] = spec.to_json()
    f.attrs[layout.ATTR_DATA_HASH] = spec.data_hash()
    f.attrs[layout.ATTR_CHUNK_RANGE] = np.array(chunk_range, dtype=np.int64)
    f.attrs[layout.ATTR_VERSION] = provenance["versions"]["hpcgen"]
    f.attrs[layout.ATTR_PROVENANCE] = json.dumps(provenance, sort_keys=True)


def _field_attrs(d: h5py.Dataset, fs: FieldSpec, first_row: int) -> None:
    d.attrs["units"] = fs.units
    d.attrs["description"] = fs.description
    d.attrs["sample_axis"] = 0
    d.attrs["first_sample"] = first_row
    for k, v in fs.attrs.items():
        d.attrs[k] = v


def check_existing(f: h5py.File, spec: RunSpec, chunk_range: tuple[int, int], path: Path) -> None:
    """A file we resume must be of the same data identity and chunk range."""
    if f.attrs.get(layout.ATTR_DATA_HASH) != spec.data_hash():
        raise UserError(
            f"cannot resume {path}: it was written from a different spec "
            "(generator, params, n_samples, seed, chunk_size or dtype differ)"
        )
    have = tuple(int(x) for x in f.attrs[layout.ATTR_CHUNK_RANGE])
    if have != tuple(chunk_range):
        raise UserError(f"cannot resume {path}: it holds chunks {have}, this run {chunk_range}")


# --- collective row writes ------------------------------------------------------------------------


def _collective_dxpl() -> h5py.h5p.PropDXID:
    dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
    dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
    return dxpl


def write_rows(
    dset: h5py.Dataset, start: int | None, data: np.ndarray | None, collective: bool
) -> None:
    """Write ``data`` at rows [start, start+len); ``data`` None joins the collective call with an
    empty selection. (h5py's ``dset[a:a] = empty`` skips H5Dwrite, which hangs the other ranks.)"""
    dxpl = _collective_dxpl() if collective else None
    fspace = dset.id.get_space()
    if data is None or len(data) == 0:
        if not collective:
            return
        fspace.select_none()
        buf = np.zeros((1, *dset.shape[1:]), dtype=dset.dtype)
        mspace = h5py.h5s.create_simple(buf.shape)
        mspace.select_none()
        dset.id.write(mspace, fspace, buf, dxpl=dxpl)
        return
    buf = np.ascontiguousarray(data, dtype=dset.dtype)
    if buf.shape[1:] != dset.shape[1:]:
        raise ValueError(
            f"{dset.name}: rows of shape {buf.shape[1:]}, dataset wants {dset.shape[1:]}"
        )
    fspace.select_hyperslab((start,) + (0,) * (buf.ndim - 1), buf.shape)
    mspace = h5py.h5s.create_simple(buf.shape)
    dset.id.write(mspace, fspace, buf, dxpl=dxpl)


class FileWriter:
    """Chunks [a, b) into one file. ``comm`` with size > 1 means MPI-IO collective writes."""

    def __init__(
        self,
        path: Path,
        spec: RunSpec,
        gen: Generator,
        chunk_range: tuple[int, int],
        comm: Any,
        mode: str,
        provenance: dict[str, Any],
    ) -> None:
        self.path, self.spec, self.chunk_range, self.comm = path, spec, chunk_range, comm
        self.collective = mpio_available() and comm.size > 1
        kw: dict[str, Any] = {"driver": "mpio", "comm": comm} if self.collective else {}
        if mode == "create":
            self.f = h5py.File(path, "w", **kw)
            create_layout(self.f, spec, gen, chunk_range, provenance)
            self.f.flush()
        else:
            self.f = h5py.File(path, "r+", **kw)
            check_existing(self.f, spec, chunk_range, path)
        self.names = [fs.name for fs in gen.fields()]
        self.row0 = chunk_range[0] * spec.chunk_size
        self.unflagged: list[int] = []  # chunks written since the last checkpoint (this rank)
        self.unflagged: list[int] = []  # chunks written since the last checkpoint (this rank)

    def pending(self) -> list[int]:
        done = self.f[layout.DONE][...]
        a = self.chunk_range[0]
        return [a + i for i in np.flatnonzero(done == 0).tolist()]

    def write(self, k: int | None, data: Mapping[str, np.ndarray] | None) -> None:
        start = None if k is None else k * self.spec.chunk_size - self.row0
        for name in self.names:
            write_rows(self.f[name], start, None if data is None else data[name], self.collective)
        if k is not None:
            self.unflagged.append(k)

    def checkpoint(self) -> None:
        """Collective. Flush the rows written so far, then set their chunks' done flags."""
        self.f.flush()  # rows on disk before a done flag says so
        n = len(self.unflagged)
        n_max = self.comm.allreduce(n, op=max_op()) if self.collective else n
        done = self.f[layout.DONE]
        for i in range(n_max):
            k = self.unflagged[i] if i < n else None
            flag = None if k is None else np.ones(1, dtype="u1")
            write_rows(done, None if k is None else k - self.chunk_range[0], flag, self.collective)
        self.unflagged = []

    def finish(self, provenance: dict[str, Any]) -> None:
        self.checkpoint()
        self.f.attrs[layout.ATTR_PROVENANCE] = json.dumps(provenance, sort_keys=True)
        self.f.close()


# --- shards + virtual dataset ---------------------------------------------------------------------


def shard_dir(out: Path) -> Path:
    return out.with_name(out.name + ".shards")


def shard_name(chunk_range: tuple[int, int]) -> str:
    return f"chunks-{chunk_range[0]:09d}-{chunk_range[1]:09d}.h5"


def build_vds(
    out: Path,
    spec: RunSpec,
    gen: Generator,
    shards: list[tuple[Path, tuple[int, int]]],
    provenance: dict[str, Any],
    missing: list[tuple[int, int]] | None = None,
) -> None:
    """Write ``out``: virtual datasets over shard files (paths stored relative to out's folder),
    real copies of static data and a done bitmap gathered from the shards."""
    n_chunks = spec.n_chunks
    tmp = out.with_name(out.name + ".partial")
    with h5py.File(tmp, "w") as f:
        for fs in gen.fields():
            dt = fs.resolved_dtype(spec.dtype)
            vl = h5py.VirtualLayout(shape=(spec.n_samples, *fs.shape), dtype=dt)
            for path, cr in shards:
                r0, r1 = layout.rows_of(cr, spec.chunk_size, spec.n_samples)
                rel = os.path.relpath(path, out.parent)
                vl[r0:r1] = h5py.VirtualSource(rel, fs.name, shape=(r1 - r0, *fs.shape))
            d = f.create_virtual_dataset(fs.name, vl, fillvalue=None)
            _field_attrs(d, fs, 0)
        done = np.zeros(n_chunks, dtype="u1")
        for path, cr in shards:
            with h5py.File(path, "r") as s:
                done[cr[0] : cr[1]] = s[layout.DONE][...]
        f.create_dataset(layout.DONE, data=done)
        _common(f, spec, gen, (0, n_chunks), provenance)
        f[layout.GROUP].attrs["virtual_sources"] = json.dumps(
            [[os.path.relpath(p, out.parent), list(cr)] for p, cr in shards]
        )
        if missing:
            f.attrs[layout.ATTR_MISSING] = np.array(missing, dtype=np.int64)
    os.replace(tmp, out)


def ensure_open_files(n_sources: int, path: Path) -> None:
    """Make room to open ``n_sources`` files at once, or refuse.

    HDF5 (1.10) keeps every source of a virtual dataset open; past the soft RLIMIT_NOFILE it
    reads the remaining sources as fill values WITHOUT an error (seen here: 494 of 1000 shards read
    as zeros under ``ulimit -n 512``). Raise the soft limit towards the hard one; if that is still
    too low, refuse rather than return wrong data.
    """
    import resource

    if n_sources == 0:
        return
    need = n_sources + 64  # the interpreter, libraries and MPI hold some descriptors too
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    if soft != resource.RLIM_INFINITY and soft < need:
        raise UserError(
            f"{path}: its virtual datasets have {n_sources} source files but only "
            f"{soft} files may be open at once (hard limit); raise it (ulimit -n "
            f"{need}) or merge without --virtual"
        )


def virtual_sources(path: Path) -> list[tuple[str, tuple[int, int]]]:
    """(relative path, chunk range) of each source of a virtual hpcgen file ([] if not one)."""
    with h5py.File(path, "r") as f:
        raw = f[layout.GROUP].attrs.get("virtual_sources") if layout.GROUP in f else None
    return [] if raw is None else [(p, tuple(cr)) for p, cr in json.loads(raw)]


def check_vds_sources(path: Path) -> list[str]:
    """Source files of a virtual file that do not exist (HDF5 would read them as fill values)."""
    return [p for p, _ in virtual_sources(path) if not (path.parent / p).is_file()]
