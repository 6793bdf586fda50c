"""Write chunks into hpcgen files: one shared file through MPI-IO, or per-rank shards + a VDS.

A file goes through three steps, and HDF5 metadata is only ever written by one process:

    create_file(path, ...)           # one process, no MPI: every dataset, attribute, allocation
    reserve_file(path)               # one process: every block of the file allocated on disk
    w = FileWriter(path, ...)        # every rank opens it (MPI-IO when several ranks share it)
    w.pending()                      # chunks of [a, b) whose done flag is not set
    w.write(k, data)                 # collective: rows (k None: nothing this round)
    w.checkpoint()                   # checksums, flush, then the done flags of what was flushed
    w.close()                        # collective; writes no metadata
    finalize_file(path, provenance)  # one process: room reserved, then the final provenance

Why: parallel HDF5 writes metadata collectively, and a write error there (a full disk) strands
the ranks in different collective calls, for ever. Created and finalized by one process, a full
disk is a plain Python error on that process, which the engine hands to every rank; in between,
rows go into blocks reserved before the first write, so they cannot meet a full disk.

Crash safety: a chunk's done flag is written only after a flush that put its rows and checksums
on disk (and is itself flushed at the next checkpoint), so after a crash every chunk marked done
holds its final bytes; ``--resume`` redoes the rest. A flush is an fsync on most MPI-IO layers,
so the engine checkpoints every few seconds rather than after every chunk: a crash costs at most
that much work. Data datasets are contiguous and allocated up front, so writing rows never
touches HDF5 metadata: a file killed mid-run keeps a consistent structure and can be reopened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcgen.engine import space
from hpcgen.errors import UserError
from hpcgen.generators.base import FieldSpec, Generator
from hpcgen.io import checksums, layout
from hpcgen.spec import RunSpec, identity_difference


def mpio_available() -> bool:
    return bool(h5py.get_config().mpi)


# --- layout ---------------------------------------------------------------------------------------


def _early_dcpl() -> h5py.h5p.PropDCID:
    """Allocate a dataset's space when it is created (parallel HDF5 does so anyway; serial
    HDF5 would allocate at the first write), so that ``reserve_file`` covers the rows."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


def create_layout(
    f: h5py.File,
    spec: RunSpec,
    gen: Generator,
    chunk_range: tuple[int, int],
    provenance: dict[str, Any],
    *,
    data_hash: str,
    inputs: Mapping[str, str],
) -> None:
    """Create every dataset and attribute of an hpcgen file. ``data_hash``: the spec's hash with
    the input files' contents (``spec.data_hash(inputs)``); ``inputs``: {path: SHA-256}."""
    r0, r1 = layout.rows_of(chunk_range, spec.chunk_size, spec.n_samples)
    rows = r1 - r0
    for fs in gen.fields():
        dt = fs.resolved_dtype(spec.dtype)
        d = f.create_dataset(
            fs.name, shape=(rows, *fs.shape), dtype=dt, fill_time="never", dcpl=_early_dcpl()
        )
        _field_attrs(d, fs, r0)
    n = chunk_range[1] - chunk_range[0]
    f.create_dataset(layout.DONE, shape=(n,), dtype="u1", fillvalue=0, dcpl=_early_dcpl())
    checksums.create(f, [fs.name for fs in gen.fields()], n)
    _common(f, spec, gen, chunk_range, provenance, data_hash=data_hash, inputs=inputs)


def _common(
    f: h5py.File,
    spec: RunSpec,
    gen: Generator,
    chunk_range: tuple[int, int],
    provenance: dict[str, Any],
    *,
    data_hash: str,
    inputs: Mapping[str, str],
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
    f.attrs[layout.ATTR_DATA_HASH] = data_hash
    f.attrs[layout.ATTR_INPUTS] = json.dumps(dict(inputs), sort_keys=True)
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


def check_layout(gen: Generator, spec: RunSpec, chunk_range: tuple[int, int]) -> None:
    """Build, and throw away, everything ``create_layout`` takes from the generator (static
    datasets, attributes): a late input error (a malformed model, a bad base file) surfaces here,
    before any output is created, replaced or locked."""
    r0, r1 = layout.rows_of(chunk_range, spec.chunk_size, spec.n_samples)
    gen.static_datasets()
    gen.root_attrs()
    gen.group_attrs(r1 - r0)


# --- one process: create, check, reserve, finalize ----------------------------------------------


def create_file(
    path: Path,
    spec: RunSpec,
    gen: Generator,
    chunk_range: tuple[int, int],
    provenance: dict[str, Any],
    *,
    data_hash: str,
    inputs: Mapping[str, str],
) -> None:
    """Create the file with its whole layout, without MPI, then allocate its blocks. Any error
    (a full disk included) removes what was created: no stub is left to block a rerun."""
    try:
        with h5py.File(path, "x") as f:  # "x": the lock holder checked it is absent
            create_layout(f, spec, gen, chunk_range, provenance, data_hash=data_hash, inputs=inputs)
        reserve_file(path)
    except BaseException as e:
        path.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _as_user_error(e, path, "cannot create") from None
        raise


def reserve_file(path: Path, extra: int = 0) -> None:
    """Allocate every block of the file, plus ``extra`` bytes past its end (one process).
    A full disk is a UserError naming the file system and the bytes still needed."""
    size = path.stat().st_size + extra
    try:
        space.reserve(path, size)
    except OSError as e:
        if space.is_enospc(e):
            need = max(size - space.allocated_bytes(path), 0)
            raise UserError(space.no_space_message(path, need)) from None
        raise UserError(f"cannot reserve disk space for {path}: {e.strerror or e}") from None


def finalize_file(path: Path, provenance: dict[str, Any]) -> None:
    """Write the final provenance (one process, after every rank closed the file). The room it
    needs is reserved first, so a full disk stops here, cleanly, with the rows and done flags
    already on disk: ``--resume`` then only writes this."""
    blob = json.dumps(provenance, sort_keys=True)
    reserve_file(path, extra=space.FINISH_ALLOWANCE + 2 * len(blob))
    try:
        with h5py.File(path, "r+") as f:
            f.attrs[layout.ATTR_PROVENANCE] = blob
    except OSError as e:
        raise _as_user_error(e, path, "cannot finish") from None


def _as_user_error(e: OSError, path: Path, what: str) -> UserError:
    if space.is_enospc(e):
        return UserError(space.no_space_message(path, space.METADATA_ALLOWANCE))
    return UserError(f"{what} {path}: {str(e).splitlines()[0]}")


def check_resumable(
    path: Path,
    spec: RunSpec,
    chunk_range: tuple[int, int],
    *,
    data_hash: str,
    inputs: Mapping[str, str],
) -> None:
    """A file we resume must be an hpcgen file of the same data identity (spec and input-file
    contents) and chunk range. One process, read-only, before any rank opens it for writing."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        text = str(e)
        if "truncated file" in text:
            raise UserError(
                f"cannot resume {path}: the file is truncated ({path.stat().st_size:,} bytes "
                "left); it cannot be finished: use --overwrite to start again"
            ) from None
        raise UserError(
            f"cannot resume {path}: not an HDF5 file, or damaged ({text.splitlines()[0]})"
        ) from None
    with f:
        if layout.ATTR_SPEC not in f.attrs or layout.DONE not in f:
            raise UserError(f"cannot resume {path}: not an hpcgen file (no {layout.ATTR_SPEC})")
        have_hash = f.attrs.get(layout.ATTR_DATA_HASH)
        if have_hash != data_hash:
            old = json.loads(f.attrs.get(layout.ATTR_INPUTS, "{}"))
            changed = sorted(p for p in inputs if p in old and old[p] != inputs[p])
            if changed and spec.data_hash(old) == have_hash:
                p = changed[0]
                raise UserError(
                    f"cannot resume {path}: input file {p} changed since the run started "
                    f"(sha256 {old[p][:12]}..., now {inputs[p][:12]}...): restore it, or use "
                    "--overwrite to start again"
                )
            try:
                was = json.loads(f.attrs[layout.ATTR_SPEC])
            except (TypeError, ValueError):
                was = {}
            now = json.loads(spec.to_json())  # as stored: lists, not tuples
            what = identity_difference(was, now) if isinstance(was, dict) else None
            if what and changed:  # both: name the input files too
                what += "".join(
                    f"; input file {p} changed since the run started (sha256 {old[p][:12]}..., "
                    f"now {inputs[p][:12]}...)"
                    for p in changed
                )
            raise UserError(
                f"cannot resume {path}: it was written from a different spec: "
                + (
                    what
                    or "the spec reads the same, its input files or the way hpcgen identifies "
                    "data differ (input files renamed or changed, another hpcgen version)"
                )
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


def write_row_set(
    dset: h5py.Dataset, rows: list[int], data: np.ndarray | None, collective: bool
) -> None:
    """Write ``data[i]`` at row ``rows[i]`` for every i, rows in any order and not contiguous,
    in ONE call (collective when ``collective``; a rank with no rows joins it empty-handed).
    One call per checkpoint instead of one per chunk: collective calls are what costs."""
    if not rows or data is None:
        write_rows(dset, None, None, collective)
        return
    order = np.argsort(rows, kind="stable")  # HDF5 fills a selection in file order
    buf = np.ascontiguousarray(np.asarray(data)[order], dtype=dset.dtype)
    tail = dset.shape[1:]
    fspace = dset.id.get_space()
    fspace.select_none()
    for r in np.asarray(rows)[order].tolist():
        fspace.select_hyperslab((r,) + (0,) * len(tail), (1, *tail), op=h5py.h5s.SELECT_OR)
    mspace = h5py.h5s.create_simple(buf.shape)
    dxpl = _collective_dxpl() if collective else None
    dset.id.write(mspace, fspace, buf, dxpl=dxpl)


class FileWriter:
    """Chunks [a, b) into one existing file (``create_file``). ``comm`` with size > 1 means
    MPI-IO collective writes."""

    def __init__(
        self,
        path: Path,
        spec: RunSpec,
        gen: Generator,
        chunk_range: tuple[int, int],
        comm: Any,
        mode: str = "open",
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """``mode`` "create" (for scripts and benchmarks; the engine creates files itself):
        rank 0 creates and reserves the file first, with the spec's identity and ``provenance``."""
        self.path, self.spec, self.chunk_range, self.comm = path, spec, chunk_range, comm
        self.collective = mpio_available() and comm.size > 1
        if mode == "create":
            from hpcgen.engine.comm import bcast_result
            from hpcgen.engine.provenance import hash_inputs

            def make() -> None:
                inputs = hash_inputs(gen.input_files())
                create_file(
                    path,
                    spec,
                    gen,
                    chunk_range,
                    provenance or {},
                    data_hash=spec.data_hash(inputs),
                    inputs=inputs,
                )

            bcast_result(comm, make)
        kw: dict[str, Any] = {"driver": "mpio", "comm": comm} if self.collective else {}
        try:
            self.f = h5py.File(path, "r+", **kw)
        except OSError as e:
            raise UserError(f"cannot open {path}: {str(e).splitlines()[0]}") from None
        self.names = [fs.name for fs in gen.fields()]
        self.dsets = [self.f[name] for name in self.names]
        self.sums = self.f[layout.CHECKSUMS] if layout.CHECKSUMS in self.f else None
        self.row0 = chunk_range[0] * spec.chunk_size
        self.unflagged: list[int] = []  # chunks written since the last checkpoint (this rank)
        self.sums_pending: list[np.ndarray] = []  # their checksum rows

    def pending(self) -> list[int]:
        done = self.f[layout.DONE][...]
        a = self.chunk_range[0]
        return [a + i for i in np.flatnonzero(done == 0).tolist()]

    def write(self, k: int | None, data: Mapping[str, np.ndarray] | None) -> None:
        """Collective. The rows of chunk k; their checksums are computed here, from the arrays in
        memory in the dtype on disk, and written at the next checkpoint, before its flush."""
        start = None if k is None else k * self.spec.chunk_size - self.row0
        if k is None or data is None:
            # this rank has nothing to write this round but joins the collective call
            for dset in self.dsets:
                write_rows(dset, start, None, self.collective)
            return
        bufs = [
            np.ascontiguousarray(data[name], dtype=dset.dtype)
            for name, dset in zip(self.names, self.dsets)
        ]
        row = np.array([checksums.digest(b) for b in bufs], dtype=checksums.DTYPE)
        for dset, buf in zip(self.dsets, bufs):
            write_rows(dset, start, buf, self.collective)
        self.unflagged.append(k)
        self.sums_pending.append(row)

    def checkpoint(self) -> None:
        """Collective. Write the checksums of the chunks written since the last checkpoint,
        flush (rows and checksums on disk), then set those chunks' done flags."""
        local = [k - self.chunk_range[0] for k in self.unflagged]
        if self.sums is not None:
            rows = np.array(self.sums_pending, dtype=checksums.DTYPE) if local else None
            write_row_set(self.sums, local, rows, self.collective)
        self.f.flush()  # rows and checksums on disk before a done flag says so
        flags = np.ones(len(local), dtype="u1") if local else None
        write_row_set(self.f[layout.DONE], local, flags, self.collective)
        self.unflagged = []
        self.sums_pending = []

    def finish(self, provenance: dict[str, Any]) -> None:
        """Collective: checkpoint, close, then rank 0 writes the final provenance."""
        from hpcgen.engine.comm import bcast_result

        self.checkpoint()
        self.close()
        bcast_result(self.comm, finalize_file, self.path, provenance)

    def close(self) -> None:
        """Collective. Nothing of HDF5's metadata changed since the file was created, so closing
        writes none (``finalize_file`` writes the final provenance afterwards)."""
        if self.f.id.valid:
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
    real copies of static data, and the done bitmap and checksums gathered from the shards. The
    data identity (hash, input files) is the shards'. Written to ``out.partial``, renamed when
    complete; an error (a full disk) leaves neither."""
    tmp = out.with_name(out.name + ".partial")
    try:
        _write_vds(tmp, out, spec, gen, shards, provenance, missing)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _as_user_error(e, out, "cannot write") from None
        raise
    os.replace(tmp, out)


def _write_vds(
    tmp: Path,
    out: Path,
    spec: RunSpec,
    gen: Generator,
    shards: list[tuple[Path, tuple[int, int]]],
    provenance: dict[str, Any],
    missing: list[tuple[int, int]] | None,
) -> None:
    n_chunks = spec.n_chunks
    names = [fs.name for fs in gen.fields()]
    done = np.zeros(n_chunks, dtype="u1")
    sums: np.ndarray | None = np.zeros((n_chunks, len(names), 2), dtype=checksums.DTYPE)
    data_hash, inputs = "", "{}"
    for path, cr in shards:
        with h5py.File(path, "r") as s:
            done[cr[0] : cr[1]] = s[layout.DONE][...]
            data_hash = str(s.attrs[layout.ATTR_DATA_HASH])
            inputs = s.attrs.get(layout.ATTR_INPUTS, "{}")
            got = checksums.stored(s)
            if got is None or got[0] != names:
                sums = None  # a shard written without checksums: the file has none
            elif sums is not None:
                sums[cr[0] : cr[1]] = got[1]
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
        f.create_dataset(layout.DONE, data=done)
        if sums is not None:
            checksums.create(f, names, n_chunks)[...] = sums
        _common(
            f,
            spec,
            gen,
            (0, n_chunks),
            provenance,
            data_hash=data_hash,
            inputs=json.loads(inputs),
        )
        f[layout.GROUP].attrs["virtual_sources"] = json.dumps(
            [[os.path.relpath(p, out.parent), list(cr)] for p, cr in shards]
        )
        if missing:
            f.attrs[layout.ATTR_MISSING] = np.array(missing, dtype=np.int64)


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
