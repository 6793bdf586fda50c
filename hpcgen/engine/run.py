"""The SPMD loop: every rank runs this same function.

    validate: generator, parameters, input files read and hashed, layout, chunk count
    rank 0 takes OUT.lock, checks free space, decides create / resume / replace   --bcast-->
    rank 0 creates the file and reserves its blocks (one process, no MPI)
    every rank opens it, then round after round:
        inputs  = generator.sample(chunk)              # CPU, stream (seed, chunk)
        outputs = generator.compute(inputs, device)    # numpy / numba / cupy
        writer.write(chunk, inputs | outputs)          # collective: rows and their checksums
        flags   = allreduce(error | SIGTERM | checkpoint due)   # every rank acts on the same flags
    --> close; rank 0 writes the final provenance and a sidecar metadata.json

Nothing touches the output before every input has been read and checked, and every rank learns
of an error (a full disk, a bad input met late, SIGTERM) at the same point, so that all stop
together and nobody waits for ever in a collective call (docs/reliability.md).

A run covers chunks [a, b) of the spec's plan: all of them for ``hpcgen run``, a slice for a batch
job (``--chunks a:b``), so a job array reproduces exactly the rows an ``mpiexec`` run writes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.engine import partition, space
from hpcgen.engine.comm import (
    CollectiveError,
    SerialComm,
    agree,
    bcast_result,
    bor_op,
    max_op,
    world,
)
from hpcgen.engine.device import select_device
from hpcgen.engine.lock import OutputLock
from hpcgen.engine.progress import Progress, describe_run
from hpcgen.engine.provenance import base_record, hash_inputs, now_iso
from hpcgen.errors import OutputExistsError, UserError
from hpcgen.generators.base import Generator
from hpcgen.io import layout
from hpcgen.io.writer import (
    FileWriter,
    build_vds,
    check_layout,
    check_resumable,
    create_file,
    finalize_file,
    mpio_available,
    reserve_file,
    shard_dir,
    shard_name,
)
from hpcgen.spec import RunSpec

#: testing hook: rank 0 kills its own process (SIGKILL) after this many rounds: a real crash
CRASH_ENV = "HPCGEN_TEST_CRASH_AFTER_ROUNDS"
#: testing hook: rank 0 fills the output's file system (another job filling the disk) after this
#: many rounds; 0: right after the free-space check, before the output is created. The filler
#: file is OUT.fill; removing it frees the space.
FILL_ENV = "HPCGEN_TEST_FILL_DISK_AFTER_ROUNDS"

# the flag bits all ranks OR together after every round
_ERROR, _STOP, _CHECKPOINT = 1, 2, 4


class RunInterrupted(Exception):
    """SIGTERM (SLURM's time limit) stopped the run cleanly on every rank: the chunks written so
    far are flushed and flagged done; ``--resume`` finishes the file."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"interrupted: {done} of {total} chunks done, --resume to finish")
        self.done, self.total = done, total


@dataclass
class RunOptions:
    resume: bool = False
    overwrite: bool = False
    chunks: tuple[int, int] | None = None  # None: every chunk
    atomic: bool = False  # batch jobs: write OUT.partial, rename when complete
    quiet: bool = False
    log_interval: float = 30.0
    #: seconds between checkpoints (flush + done flags); a crash loses at most this much work
    checkpoint_s: float = 10.0


@dataclass
class RunResult:
    output: Path
    chunks_written: int
    samples_written: int
    wall_s: float
    skipped: str = ""  # why nothing was done (e.g. "already complete")
    timings: list[dict[str, float]] = field(default_factory=list)


def sample_bytes(spec: RunSpec, gen: Generator) -> int:
    """Bytes of one sample on disk (all fields)."""
    total = 0
    for fs in gen.fields():
        total += fs.resolved_dtype(spec.dtype).itemsize * int(np.prod(fs.shape, dtype=np.int64))
    return total


def estimate_bytes(
    spec: RunSpec, gen: Generator, chunk_range: tuple[int, int], n_files: int = 1
) -> int:
    """Bytes on disk of a run's output: its rows, and per file the static datasets, the
    bookkeeping (done flags, checksums) and an allowance for HDF5's metadata and the sidecar."""
    r0, r1 = layout.rows_of(chunk_range, spec.chunk_size, spec.n_samples)
    static = sum(int(np.asarray(sd.data).nbytes) for sd in gen.static_datasets().values())
    n = chunk_range[1] - chunk_range[0]
    bookkeeping = n * (1 + 4 * len(gen.fields()))
    per_file = static + space.METADATA_ALLOWANCE
    return sample_bytes(spec, gen) * (r1 - r0) + bookkeeping + n_files * per_file


def resolve_route(io: str, comm_size: int) -> str:
    """ "mpio" (one shared file) or "shards" (per-rank files + VDS)."""
    if io == "auto":
        return "mpio" if (mpio_available() or comm_size == 1) else "shards"
    if io == "mpio" and comm_size > 1 and not mpio_available():
        raise UserError(
            "--io mpio: this h5py has no MPI support (h5py.get_config().mpi is False); "
            "use --io shards or rebuild h5py against parallel HDF5 (scripts/setup.sh)"
        )
    return io


class _StopSignal:
    """SIGTERM sets a flag (the next round's allreduce tells every rank) instead of killing the
    process between two collective calls. Installed for the duration of a run."""

    def __init__(self) -> None:
        self.hit = False
        self.previous: Any = None
        self.installed = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _StopSignal:
        if self.installed:
            self.previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        self.hit = True

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous)


# --- before anything is written -----------------------------------------------------------------


def _check_space(out: Path, need: int, freed: int) -> None:
    """Refuse a run whose output cannot fit (``freed``: bytes of old files the run replaces or
    reuses). ``--yes`` does not skip this: it only answers the size question."""
    free = space.free_bytes(out.parent)
    if need - freed > free:
        raise UserError(space.no_space_message(out, need - freed, free))


def _prepare_output(
    spec: RunSpec,
    opts: RunOptions,
    route: str,
    chunk_range: tuple[int, int],
    n_ranks: int,
    gen: Generator,
    data_hash: str,
    inputs: dict[str, str],
) -> dict[str, Any]:
    """Rank 0, holding the output's lock: decide what to do with the output path. Never
    overwrites unless asked, and only after every check passed."""
    out = Path(spec.output)
    spec.check_output_dir()
    if out.is_dir():
        raise UserError(f"{out} is a directory; --out must name a file")
    target = out.with_name(out.name + ".partial") if opts.atomic else out
    n_files = n_ranks + 1 if route == "shards" else 1
    need = estimate_bytes(spec, gen, chunk_range, n_files)
    if opts.atomic:
        if out.exists():
            if _is_complete(out, data_hash, chunk_range):
                return {"skip": "already complete"}
            if not opts.overwrite:
                raise OutputExistsError(
                    f"{out} exists and is not this job's complete output; "
                    "use --overwrite to replace it"
                )
        _check_space(out, need, space.allocated_bytes(out) + space.allocated_bytes(target))
        out.unlink(missing_ok=True)
        target.unlink(missing_ok=True)  # half-written temporary of a killed attempt: discard
        _fill_hook(out, 0)
        return {"mode": "create", "target": str(target)}
    sdir = shard_dir(out)
    exists = out.exists() or (route == "shards" and sdir.exists())
    reused = space.allocated_bytes(out) + space.allocated_bytes(sdir)
    if exists and not opts.resume:
        if not opts.overwrite:
            raise OutputExistsError(
                f"{out} exists; use --resume to finish it or --overwrite to replace it"
            )
        _check_space(out, need, reused)
        out.unlink(missing_ok=True)
        if sdir.exists():
            shutil.rmtree(sdir)
        exists = False
    else:
        if exists and route == "mpio":
            check_resumable(out, spec, chunk_range, data_hash=data_hash, inputs=inputs)
        _check_space(out, need, reused if exists else 0)
    if route == "shards":
        sdir.mkdir(exist_ok=True)
        expected = {
            shard_name(cr) for cr in partition.contiguous(*chunk_range, n_ranks) if cr[0] < cr[1]
        }
        found = {p.name for p in sdir.glob("chunks-*.h5")}
        if found - expected:
            raise UserError(
                f"cannot resume {out}: its shards were written by a different rank "
                f"count ({len(found)} shard files in {sdir}); resume with the same -n"
            )
        out.unlink(missing_ok=True)  # the VDS file is rebuilt at the end
    _fill_hook(out, 0)
    return {"mode": "open" if exists and route == "mpio" else "create", "target": str(target)}


def _fill_hook(out: Path, rounds: int) -> None:
    if os.environ.get(FILL_ENV) == str(rounds):
        space.fill_disk(out.with_name(out.name + ".fill"))


def _is_complete(path: Path, data_hash: str, chunk_range: tuple[int, int]) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return (
                f.attrs.get(layout.ATTR_DATA_HASH) == data_hash
                and tuple(int(x) for x in f.attrs[layout.ATTR_CHUNK_RANGE]) == chunk_range
                and bool(f[layout.DONE][...].all())
            )
    except (OSError, KeyError):
        return False


# --- the run ------------------------------------------------------------------------------------


def run(spec: RunSpec, opts: RunOptions, comm: Any = None) -> RunResult:
    comm = comm if comm is not None else world()
    n_chunks = spec.n_chunks
    chunk_range = opts.chunks or (0, n_chunks)
    if not (0 <= chunk_range[0] < chunk_range[1] <= n_chunks):
        raise UserError(
            f"--chunks {chunk_range[0]}:{chunk_range[1]} is outside the plan's chunks 0:{n_chunks}"
        )
    # the same answer on every rank: no communication needed to stop together
    why = space.check_chunk_count(spec.n_samples, spec.chunk_size, chunk_range[1] - chunk_range[0])
    if why:
        raise UserError(why)
    with _StopSignal() as stop:
        return _run(spec, opts, comm, chunk_range, stop)


def _run(
    spec: RunSpec, opts: RunOptions, comm: Any, chunk_range: tuple[int, int], stop: _StopSignal
) -> RunResult:
    t_start = time.monotonic()
    started = now_iso()
    route = resolve_route(spec.io, comm.size)
    if opts.atomic and route == "shards":
        route = "mpio"  # a job's shard is one file; --io shards splits a file per rank instead

    # --- validate everything before the output is looked at ----------------------------------
    gen: Generator = agree(comm, spec.make_generator)
    agree(comm, gen.check_n_samples, spec.n_samples)
    device = agree(comm, select_device, spec.device, gen)
    agree(comm, check_layout, gen, spec, chunk_range)  # static data, attributes: inputs read
    inputs = bcast_result(comm, lambda: hash_inputs(gen.input_files()))
    data_hash = spec.data_hash(inputs)

    ctx = _Ctx(spec, opts, comm, chunk_range, stop, gen, device, inputs, data_hash, route)
    ctx.t_start, ctx.started = t_start, started
    lock = OutputLock(spec.output) if comm.rank == 0 else None

    def take_lock() -> None:
        spec.check_output_dir()  # the lock file goes there
        lock.acquire()

    bcast_result(comm, take_lock)
    try:
        return _run_locked(ctx)
    finally:
        if lock is not None:
            lock.release()


@dataclass
class _Ctx:
    """What a run has settled before it takes the output's lock."""

    spec: RunSpec
    opts: RunOptions
    comm: Any
    chunk_range: tuple[int, int]
    stop: _StopSignal
    gen: Generator
    device: Any
    inputs: dict[str, str]
    data_hash: str
    route: str
    t_start: float = 0.0
    started: str = ""


def _run_locked(c: _Ctx) -> RunResult:
    spec, opts, comm, gen, chunk_range = c.spec, c.opts, c.comm, c.gen, c.chunk_range
    decision = bcast_result(
        comm,
        _prepare_output,
        spec,
        opts,
        c.route,
        chunk_range,
        comm.size,
        gen,
        c.data_hash,
        c.inputs,
    )
    out = Path(spec.output)
    if "skip" in decision:
        return RunResult(out, 0, 0, time.monotonic() - c.t_start, skipped=decision["skip"])

    provenance = bcast_result(
        comm,
        lambda: base_record(
            spec.to_dict(), [], comm.size, c.device.kind, c.route, input_sha256=c.inputs
        ),
    )
    provenance["start_time"] = c.started
    provenance["chunk_range"] = list(chunk_range)
    identity = {"data_hash": c.data_hash, "inputs": c.inputs}

    # --- create (one process), reserve the blocks, open on every rank ------------------------
    if c.route == "mpio":
        path: Path | None = Path(decision["target"])
        created = decision["mode"] == "create"

        def ready() -> None:
            if created:
                create_file(path, spec, gen, chunk_range, provenance, **identity)
            else:
                reserve_file(path)  # the holes of a killed run get their blocks now

        bcast_result(comm, ready)
        owned = path if comm.rank == 0 else None
        writer = _open_writer(
            comm, owned, created, lambda: FileWriter(path, spec, gen, chunk_range, comm)
        )
        plan = bcast_result(
            comm,
            lambda: partition.make_plan(
                spec.n_samples, spec.chunk_size, spec.seed, comm.size, writer.pending()
            ),
        )
        my_chunks = plan.chunks_of(comm.rank)
    else:
        block = partition.contiguous(*chunk_range, comm.size)[comm.rank]
        path = shard_dir(out) / shard_name(block) if block[0] < block[1] else None
        created = path is not None and not path.exists()

        def open_shard() -> FileWriter | None:
            if path is None:
                return None
            if created:
                create_file(path, spec, gen, block, provenance, **identity)
            else:
                check_resumable(path, spec, block, **identity)
                reserve_file(path)
            return FileWriter(path, spec, gen, block, SerialComm())

        writer = _open_writer(comm, path, created, open_shard)
        my_chunks = writer.pending() if writer is not None else []
        plan = partition.Plan(spec.n_samples, spec.chunk_size, spec.seed, comm.size, [])

    # --- the loop ------------------------------------------------------------------------------
    try:
        t, written = _loop(c, writer, plan, my_chunks)
    except CollectiveError:
        _close_quietly(writer)  # every rank is here: the error was agreed
        raise

    # --- close, then the final metadata, by one process ----------------------------------------
    t["wall_s"] = time.monotonic() - c.t_start
    t["chunks"] = float(len(my_chunks))
    timings = comm.allgather(t)
    provenance["end_time"] = now_iso()
    provenance["timings_per_rank"] = timings
    if c.route == "mpio":
        bcast_result(comm, finalize_file, path, provenance)
        if opts.atomic:
            bcast_result(comm, lambda: os.replace(path, out))
    else:
        agree(comm, lambda: finalize_file(path, provenance) if path is not None else None)
        shards = [
            (shard_dir(out) / shard_name(cr), cr)
            for cr in partition.contiguous(*chunk_range, comm.size)
            if cr[0] < cr[1]
        ]
        bcast_result(comm, build_vds, out, spec, gen, shards, provenance)
    bcast_result(comm, write_sidecar, out, spec, gen, provenance, c.data_hash)
    return RunResult(
        out,
        comm.allreduce(len(my_chunks)),
        comm.allreduce(written),
        time.monotonic() - c.t_start,
        timings=timings,
    )


def _open_writer(comm: Any, path: Path | None, created: bool, make: Any) -> FileWriter | None:
    """Open (and for a shard, create) the file on every rank, agreed: if any rank fails, the
    others close what they opened, a file this run created is removed (``path``: given by the
    rank that owns the file), and all raise."""
    box: list[FileWriter | None] = [None]

    def step() -> None:
        box[0] = make()

    try:
        agree(comm, step)
    except CollectiveError:
        _close_quietly(box[0])
        if created and path is not None:
            path.unlink(missing_ok=True)
        raise
    return box[0]


def _close_quietly(writer: FileWriter | None) -> None:
    """Close after an agreed error (every rank calls this). Nothing was written to HDF5's
    metadata since the file was created, so the file on disk stays consistent."""
    if writer is None:
        return
    try:
        writer.close()
    except Exception:  # the error being reported matters more than a failed close
        pass


def _loop(
    c: _Ctx, writer: FileWriter | None, plan: partition.Plan, my_chunks: list[int]
) -> tuple[dict[str, float], int]:
    """Every round: compute, write, then OR the ranks' flags (error, SIGTERM, checkpoint due)
    so that all ranks act on the same flags. Returns (timings, rows written)."""
    spec, comm, gen = c.spec, c.comm, c.gen
    n_rounds = comm.allreduce(len(my_chunks), op=max_op())
    r0, r1 = layout.rows_of(c.chunk_range, spec.chunk_size, spec.n_samples)
    rows_left = comm.allreduce(sum(plan.chunk(k).count for k in my_chunks))
    chunks_left = comm.allreduce(len(my_chunks))
    total = c.chunk_range[1] - c.chunk_range[0]
    hosts = comm.allgather(socket.gethostname())
    progress = Progress(
        total=r1 - r0,
        done=(r1 - r0) - rows_left,
        enabled=(comm.rank == 0 and not c.opts.quiet),
        interval=c.opts.log_interval,
        chunks_total=total,
        chunks_done=total - chunks_left,
        ranks=comm.size,
        header=describe_run(
            gen.name,
            spec.n_samples,
            spec.n_chunks,
            str(spec.output),
            comm.size,
            hosts,
            c.device.kind,
            chunk_range=c.chunk_range,
            rows=r1 - r0,
            chunks_done=total - chunks_left,
        ),
    )
    crash_after = int(os.environ.get(CRASH_ENV, "0"))
    out = Path(spec.output)
    t = {"sample_s": 0.0, "compute_s": 0.0, "write_s": 0.0}
    written_rows = 0
    written_chunks = 0
    last_checkpoint = time.monotonic()
    try:
        for rnd in range(n_rounds):
            k = my_chunks[rnd] if rnd < len(my_chunks) else None
            data = None
            err: str | None = None
            if k is not None:
                chunk = plan.chunk(k)
                t0 = time.perf_counter()
                try:
                    inputs = gen.sample(chunk)
                    t1 = time.perf_counter()
                    outputs = gen.compute(inputs, chunk, c.device)
                    data = {**inputs, **outputs}
                except UserError as e:  # still join this round's collective write, empty-handed
                    err, k, t1 = str(e), None, time.perf_counter()
                t2 = time.perf_counter()
                t["sample_s"] += t1 - t0
                t["compute_s"] += t2 - t1
            t2 = time.perf_counter()
            if writer is not None:
                try:
                    writer.write(k, data)
                except OSError as e:
                    err = err or _write_error(e, writer.path)
                    k = None
            due = comm.rank == 0 and time.monotonic() - last_checkpoint >= c.opts.checkpoint_s
            flags = comm.allreduce(
                (_ERROR if err else 0) | (_STOP if c.stop.hit else 0) | (_CHECKPOINT if due else 0),
                op=bor_op(),
            )
            if flags & _ERROR:
                errs = comm.allgather(err)
                raise CollectiveError(next(e for e in errs if e is not None))
            if flags & (_CHECKPOINT | _STOP):
                agree(comm, _checkpoint, writer)
                last_checkpoint = time.monotonic()
            t["write_s"] += time.perf_counter() - t2
            if k is not None:
                written_rows += plan.chunk(k).count
                written_chunks += 1
            rows_done, chunks_done = comm.allreduce(np.array([written_rows, written_chunks]))
            progress.update(
                (r1 - r0) - rows_left + int(rows_done), total - chunks_left + int(chunks_done)
            )
            if crash_after and rnd + 1 >= crash_after and comm.rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            if comm.rank == 0:
                _fill_hook(out, rnd + 1)
            if flags & _STOP:
                agree(comm, _close, writer)
                raise RunInterrupted(total - chunks_left + int(chunks_done), total)
    finally:
        progress.close()  # also on an error: the redraws stop
    agree(comm, _checkpoint, writer)
    agree(comm, _close, writer)
    return t, written_rows


def _checkpoint(writer: FileWriter | None) -> None:
    if writer is not None:
        try:
            writer.checkpoint()
        except OSError as e:
            raise UserError(_write_error(e, writer.path)) from None


def _close(writer: FileWriter | None) -> None:
    if writer is not None:
        try:
            writer.close()
        except OSError as e:
            raise UserError(_write_error(e, writer.path)) from None


def _write_error(e: OSError, path: Path) -> str:
    if space.is_enospc(e):
        return space.no_space_message(path, space.METADATA_ALLOWANCE)
    return f"writing {path}: {str(e).splitlines()[0]}"


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.stem + ".metadata.json")


def write_sidecar(
    out: Path,
    spec: RunSpec,
    gen: Generator,
    provenance: dict[str, Any],
    data_hash: str | None = None,
) -> None:
    """metadata.json beside the file: provenance + the fields, readable without HDF5. Written
    to a temporary name and renamed: a full disk leaves no half file."""
    meta = {
        "file": out.name,
        "provenance": provenance,
        "data_hash": data_hash or spec.data_hash(),
        "fields": [
            {
                "name": f.name,
                "shape": [spec.n_samples, *f.shape],
                "dtype": str(f.resolved_dtype(spec.dtype)),
                "units": f.units,
                "description": f.description,
            }
            for f in gen.fields()
        ],
    }
    path = sidecar_path(out)
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if space.is_enospc(e):
            raise UserError(space.no_space_message(path, space.METADATA_ALLOWANCE)) from None
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
