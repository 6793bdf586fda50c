"""Where a run's rows go: one shared file written through MPI-IO (:class:`MpioRoute`), or one file
per rank joined by a virtual dataset (:class:`ShardsRoute`).

A route answers for its files in each phase of a run (hpcgen.engine.run):

    prepare   rank 0, holding the output's lock: is there an output of this route to resume,
              which files does the run replace, what has to exist before the files are opened
    open      every rank: create or reopen the file(s), open the writer, learn this rank's
              pending chunks (``plan``, ``my_chunks``)
    finish    every rank, after the loop closed the writer: the final provenance, and for
              shards the virtual-dataset file that joins them

Every step that may fail on some ranks only is agreed (hpcgen.engine.comm.agree) before the next
collective call, so that all ranks stop together (docs/reliability.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpcgen.engine import partition, space
from hpcgen.engine.comm import CollectiveError, SerialComm, agree, bcast_result
from hpcgen.errors import UserError
from hpcgen.generators.base import Generator
from hpcgen.io.writer import (
    FileWriter,
    build_vds,
    check_resumable,
    create_file,
    finalize_file,
    reserve_file,
    shard_dir,
    shard_name,
)
from hpcgen.spec import RunSpec


class Route:
    """What both routes share; the subclasses fill in their files."""

    name = ""

    def __init__(
        self,
        spec: RunSpec,
        gen: Generator,
        chunk_range: tuple[int, int],
        comm: Any,
        identity: dict[str, Any],
    ) -> None:
        """``identity``: the data hash and the input files' hashes the files are stamped with
        (``data_hash``, ``inputs``)."""
        self.spec, self.gen, self.chunk_range, self.comm = spec, gen, chunk_range, comm
        self.identity = identity
        self.out = Path(spec.output)
        #: this rank's writer (None: a shards rank with no chunks)
        self.writer: FileWriter | None = None
        #: the file this rank writes (mpio: the shared file, on every rank)
        self.path: Path | None = None
        self.plan = partition.Plan(spec.n_samples, spec.chunk_size, spec.seed, comm.size, [])
        #: the chunks this rank writes, in order, one per round
        self.my_chunks: list[int] = []

    # --- prepare: rank 0, holding the lock ----------------------------------------------------

    def n_files(self) -> int:
        """Files the output takes (for the free-space estimate)."""
        return 1

    def found(self) -> bool:
        """Whether an output of this route exists at the output path."""
        return self.out.exists()

    def check_resumable(self) -> None:
        """Refuse to resume an existing output written with other settings (UserError)."""

    def make_ready(self) -> None:
        """After the space check, before any file is opened: what must exist or go."""

    def mode(self, exists: bool) -> str:
        """ "open" to resume an existing file in place, else "create"."""
        return "create"

    # --- open, finish: every rank ---------------------------------------------------------------

    def open(self, decision: dict[str, Any], provenance: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self, provenance: dict[str, Any], atomic: bool) -> None:
        raise NotImplementedError


class MpioRoute(Route):
    """One shared file; every rank opens it with the MPI-IO driver, chunks round-robin."""

    name = "mpio"

    def check_resumable(self) -> None:
        check_resumable(self.out, self.spec, self.chunk_range, **self.identity)

    def mode(self, exists: bool) -> str:
        return "open" if exists else "create"

    def open(self, decision: dict[str, Any], provenance: dict[str, Any]) -> None:
        comm, spec, gen = self.comm, self.spec, self.gen
        path = Path(decision["target"])
        created = decision["mode"] == "create"

        def ready() -> None:  # one process, no MPI
            if created:
                create_file(path, spec, gen, self.chunk_range, provenance, **self.identity)
            else:
                reserve_file(path)  # the holes of a killed run get their blocks now

        bcast_result(comm, ready)
        self.path = path
        owned = path if comm.rank == 0 else None
        writer = open_writer(
            comm, owned, created, lambda: FileWriter(path, spec, gen, self.chunk_range, comm)
        )
        assert writer is not None  # every rank opens the shared file
        self.writer = writer
        self.plan = bcast_result(
            comm,
            lambda: partition.make_plan(
                spec.n_samples, spec.chunk_size, spec.seed, comm.size, writer.pending()
            ),
        )
        self.my_chunks = self.plan.chunks_of(comm.rank)

    def finish(self, provenance: dict[str, Any], atomic: bool) -> None:
        path = self.path
        assert path is not None  # opened
        bcast_result(self.comm, finalize_file, path, provenance)
        if atomic:
            bcast_result(self.comm, lambda: os.replace(path, self.out))


class ShardsRoute(Route):
    """A file per rank (its contiguous block of chunks, written without MPI-IO) in OUT.shards/,
    and OUT itself a virtual-dataset file over them, rebuilt at the end of every run."""

    name = "shards"

    def blocks(self) -> list[tuple[int, int]]:
        """Each rank's block of chunks; the ranks past the last chunk get none."""
        return partition.contiguous(*self.chunk_range, self.comm.size)

    def n_files(self) -> int:
        return self.comm.size + 1

    def found(self) -> bool:
        return self.out.exists() or shard_dir(self.out).exists()

    def make_ready(self) -> None:
        sdir = shard_dir(self.out)
        if self.out.exists() and not sdir.exists():
            # one file written by the mpio route (another rank count, or --io mpio): resuming it
            # here would replace it by an empty set of shards
            raise UserError(
                f"cannot resume {self.out}: it was written as one file (--io mpio), not as "
                f"shards; resume with --io mpio (or 1 rank)"
            )
        sdir.mkdir(exist_ok=True)
        expected = {shard_name(cr) for cr in self.blocks() if cr[0] < cr[1]}
        found = {p.name for p in sdir.glob("chunks-*.h5")}
        if found - expected:
            raise UserError(
                f"cannot resume {self.out}: its shards were written by a different rank "
                f"count ({len(found)} shard files in {sdir}); resume with the same -n"
            )
        self.out.unlink(missing_ok=True)  # the VDS file is rebuilt at the end

    def open(self, decision: dict[str, Any], provenance: dict[str, Any]) -> None:
        spec, gen = self.spec, self.gen
        block = self.blocks()[self.comm.rank]
        path = shard_dir(self.out) / shard_name(block) if block[0] < block[1] else None
        created = path is not None and not path.exists()

        def open_shard() -> FileWriter | None:
            if path is None:
                return None
            if created:
                create_file(path, spec, gen, block, provenance, **self.identity)
            else:
                check_resumable(path, spec, block, **self.identity)
                reserve_file(path)
            return FileWriter(path, spec, gen, block, SerialComm())

        self.path = path
        self.writer = open_writer(self.comm, path, created, open_shard)
        self.my_chunks = self.writer.pending() if self.writer is not None else []

    def finish(self, provenance: dict[str, Any], atomic: bool) -> None:
        path = self.path
        agree(self.comm, lambda: finalize_file(path, provenance) if path is not None else None)
        sdir = shard_dir(self.out)
        shards = [(sdir / shard_name(cr), cr) for cr in self.blocks() if cr[0] < cr[1]]
        bcast_result(self.comm, build_vds, self.out, self.spec, self.gen, shards, provenance)


def make_route(
    name: str,
    spec: RunSpec,
    gen: Generator,
    chunk_range: tuple[int, int],
    comm: Any,
    identity: dict[str, Any],
) -> Route:
    """The route called ``name`` ("mpio" or "shards", as resolve_route answers)."""
    cls = {"mpio": MpioRoute, "shards": ShardsRoute}[name]
    return cls(spec, gen, chunk_range, comm, identity)


# --- the writer, agreed ---------------------------------------------------------------------


def open_writer(
    comm: Any, path: Path | None, created: bool, make: Callable[[], FileWriter | None]
) -> FileWriter | None:
    """Open (and for a shard, create) the file on every rank, agreed: if any rank fails, the
    others close what they opened, a file this run created is removed (``path``: given by the
    rank that owns the file), and all raise."""
    box: list[FileWriter | None] = [None]

    def step() -> None:
        box[0] = make()

    try:
        agree(comm, step)
    except CollectiveError:
        close_quietly(box[0])
        if created and path is not None:
            path.unlink(missing_ok=True)
        raise
    return box[0]


def close_quietly(writer: FileWriter | None) -> None:
    """Close after an agreed error (every rank calls this). Nothing was written to HDF5's
    metadata since the file was created, so the file on disk stays consistent."""
    if writer is None:
        return
    try:
        writer.close()
    except Exception:  # the error being reported matters more than a failed close
        pass


def checkpoint(writer: FileWriter | None) -> None:
    """Collective (agree it): the writer's checkpoint; a failed write is a UserError."""
    _call(writer, "checkpoint")


def close(writer: FileWriter | None) -> None:
    """Collective (agree it): close the writer; a failed write is a UserError."""
    _call(writer, "close")


def _call(writer: FileWriter | None, method: str) -> None:
    """writer.<method>() where there is a writer, an OSError as the one-line write error."""
    if writer is not None:
        try:
            getattr(writer, method)()
        except OSError as e:
            raise UserError(write_error(e, writer.path)) from None


def write_error(e: OSError, path: Path) -> str:
    """The one-line message for a failed write of ``path``."""
    if space.is_enospc(e):
        return space.no_space_message(path, space.METADATA_ALLOWANCE)
    return f"writing {path}: {str(e).splitlines()[0]}"
