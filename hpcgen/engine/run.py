"""A run, in three phases; every rank runs the same code.

    open     validate: generator, parameters, input files read and hashed, layout, chunk count
             rank 0 takes OUT.lock, checks free space, decides create / resume / replace  --bcast-->
             the route (mpio: one shared file; shards: a file per rank) creates its file(s) by
             one process, reserves their blocks, and opens them on every rank
    loop     round after round: sample, compute, write, agree on flags (hpcgen.engine.loop)
    finish   close; rank 0 writes the final provenance (shards: and the VDS file joining them)
             and a sidecar metadata.json

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
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.engine import space
from hpcgen.engine.comm import CollectiveError, agree, bcast_result, world
from hpcgen.engine.device import select_device
from hpcgen.engine.lock import OutputLock
from hpcgen.engine.loop import RunInterrupted, StopSignal, run_rounds
from hpcgen.engine.provenance import base_record, hash_inputs, now_iso
from hpcgen.engine.routes import Route, close_quietly, make_route
from hpcgen.errors import OutputExistsError, UserError
from hpcgen.generators.base import Device, Generator
from hpcgen.io import layout
from hpcgen.io.sidecar import sidecar_path, write_sidecar
from hpcgen.io.writer import check_layout, mpio_available, shard_dir
from hpcgen.spec import RunSpec

__all__ = [
    "CRASH_ENV",
    "FILL_ENV",
    "RoundHook",
    "RunInterrupted",
    "RunOptions",
    "RunResult",
    "estimate_bytes",
    "hooks_from_env",
    "resolve_route",
    "run",
    "sample_bytes",
    "sidecar_path",
    "write_sidecar",
]

#: testing hook: rank 0 kills its own process (SIGKILL) after this many rounds: a real crash
CRASH_ENV = "HPCGEN_TEST_CRASH_AFTER_ROUNDS"
#: testing hook: rank 0 fills the output's file system (another job filling the disk) after this
#: many rounds; 0: right after the free-space check, before the output is created. The filler
#: file is OUT.fill; removing it frees the space.
FILL_ENV = "HPCGEN_TEST_FILL_DISK_AFTER_ROUNDS"

#: ``after_round(rounds, output)``: called by rank 0 with the number of rounds done and the
#: output path: with 0 once the output is prepared (free space checked, old files replaced)
#: and before any file is created, then after every round, once the round's flags are agreed
#: and its checkpoint (if one was due) taken
RoundHook = Callable[[int, Path], None]


def hooks_from_env(environ: Mapping[str, str] | None = None) -> RoundHook | None:
    """The ``after_round`` hook the test variables ask for (``CRASH_ENV``, ``FILL_ENV``; for
    tests that run the CLI in a subprocess), or None when neither is set. Read once, when the
    options are built (``RunOptions``'s default)."""
    env = os.environ if environ is None else environ
    crash_after = int(env.get(CRASH_ENV, "0") or 0)
    fill_at = env.get(FILL_ENV)
    if not crash_after and fill_at is None:
        return None

    def hook(rounds: int, out: Path) -> None:
        if crash_after and rounds >= crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if fill_at == str(rounds):
            space.fill_disk(out.with_name(out.name + ".fill"))

    return hook


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
    #: sample and compute chunk i+1 in a worker thread while chunk i is written (same bytes;
    #: two chunks in memory); off: one after the other
    overlap: bool = False
    #: see ``RoundHook``; by default what the test variables ask for (``hooks_from_env``)
    after_round: RoundHook | None = field(default_factory=hooks_from_env)


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


@dataclass
class Run:
    """What a run has settled before it takes the output's lock (the open phase's validation)."""

    spec: RunSpec
    opts: RunOptions
    comm: Any
    chunk_range: tuple[int, int]
    gen: Generator
    device: Device
    inputs: dict[str, str]
    data_hash: str
    route: str
    t_start: float
    started: str
    #: the file's provenance record, from the open phase on (the finish phase completes it)
    provenance: dict[str, Any] = field(default_factory=dict)


# --- the run ------------------------------------------------------------------------------------


def run(spec: RunSpec, opts: RunOptions, comm: Any = None) -> RunResult:
    """Write chunks ``opts.chunks`` (default: all) of ``spec`` to ``spec.output``, on every rank
    of ``comm`` (default: MPI's world, or one process). Raises UserError (every rank, the same
    message) or RunInterrupted (SIGTERM)."""
    comm = comm if comm is not None else world()
    chunk_range = _chunk_range(spec, opts)
    with StopSignal() as stop:
        t_start, started = time.monotonic(), now_iso()
        r = _validate(spec, opts, comm, chunk_range, t_start, started)
        with _output_lock(comm, spec):
            route = _open(r)
            if route is None:
                wall = time.monotonic() - r.t_start
                return RunResult(Path(spec.output), 0, 0, wall, skipped="already complete")
            try:
                t, written = run_rounds(r, route, stop)
            except CollectiveError:
                close_quietly(route.writer)  # every rank is here: the error was agreed
                raise
            return _finish(r, route, t, written)


def _chunk_range(spec: RunSpec, opts: RunOptions) -> tuple[int, int]:
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
    return chunk_range


# --- open ---------------------------------------------------------------------------------------


def _validate(
    spec: RunSpec,
    opts: RunOptions,
    comm: Any,
    chunk_range: tuple[int, int],
    t_start: float,
    started: str,
) -> Run:
    """Everything checked before the output is looked at, agreed by every rank."""
    route = resolve_route(spec.io, comm.size)
    if opts.atomic and route == "shards":
        route = "mpio"  # a job's shard is one file; --io shards splits a file per rank instead
    gen: Generator = agree(comm, spec.make_generator)
    agree(comm, gen.check_n_samples, spec.n_samples)
    device = agree(comm, select_device, spec.device, gen)
    agree(comm, check_layout, gen, spec, chunk_range)  # static data, attributes: inputs read
    inputs = bcast_result(comm, lambda: hash_inputs(gen.input_files()))
    data_hash = spec.data_hash(inputs)
    return Run(
        spec, opts, comm, chunk_range, gen, device, inputs, data_hash, route, t_start, started
    )


@contextmanager
def _output_lock(comm: Any, spec: RunSpec) -> Iterator[None]:
    """Rank 0 holds OUT.lock for the body (a second run on the same output is refused)."""
    lock = OutputLock(spec.output) if comm.rank == 0 else None

    def take_lock() -> None:  # rank 0
        spec.check_output_dir()  # the lock file goes there
        assert lock is not None
        lock.acquire()

    bcast_result(comm, take_lock)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _open(r: Run) -> Route | None:
    """Holding the lock: prepare the output (rank 0), then create or reopen the route's files
    and open the writer on every rank. None: nothing to do (an atomic job's complete output)."""
    comm, spec = r.comm, r.spec
    identity = {"data_hash": r.data_hash, "inputs": r.inputs}
    route = make_route(r.route, spec, r.gen, r.chunk_range, comm, identity)
    decision = bcast_result(comm, _prepare_output, r, route)
    if "skip" in decision:
        return None
    r.provenance = bcast_result(
        comm,
        lambda: base_record(
            spec.to_dict(), [], comm.size, r.device.kind, r.route, input_sha256=r.inputs
        ),
    )
    r.provenance["start_time"] = r.started
    r.provenance["chunk_range"] = list(r.chunk_range)
    route.open(decision, r.provenance)
    return route


def _check_space(out: Path, need: int, freed: int) -> None:
    """Refuse a run whose output cannot fit (``freed``: bytes of old files the run replaces or
    reuses). ``--yes`` does not skip this: it only answers the size question."""
    free = space.free_bytes(out.parent)
    if need - freed > free:
        raise UserError(space.no_space_message(out, need - freed, free))


def _prepare_output(r: Run, route: Route) -> dict[str, Any]:
    """Rank 0, holding the output's lock: decide what to do with the output path. Never
    overwrites unless asked, and only after every check passed."""
    spec, opts = r.spec, r.opts
    out = Path(spec.output)
    spec.check_output_dir()
    if out.is_dir():
        raise UserError(f"{out} is a directory; --out must name a file")
    target = out.with_name(out.name + ".partial") if opts.atomic else out
    need = estimate_bytes(spec, r.gen, r.chunk_range, route.n_files())
    if opts.atomic:
        if out.exists():
            if _is_complete(out, r.data_hash, r.chunk_range):
                return _skip_complete(r, out)
            if not opts.overwrite:
                raise OutputExistsError(
                    f"{out} exists and is not this job's complete output; "
                    "use --overwrite to replace it"
                )
        _check_space(out, need, space.allocated_bytes(out) + space.allocated_bytes(target))
        out.unlink(missing_ok=True)
        sidecar_path(out).unlink(missing_ok=True)
        target.unlink(missing_ok=True)  # half-written temporary of a killed attempt: discard
        _after_prepare(opts, out)
        return {"mode": "create", "target": str(target)}
    sdir = shard_dir(out)
    exists = route.found()
    reused = space.allocated_bytes(out) + space.allocated_bytes(sdir)
    if exists and not opts.overwrite and _is_complete(out, r.data_hash, r.chunk_range):
        return _skip_complete(r, out)  # with or without --resume: nothing left to write
    if exists and not opts.resume:
        if not opts.overwrite:
            raise OutputExistsError(
                f"{out} exists; use --resume to finish it or --overwrite to replace it"
            )
        _check_space(out, need, reused)
        out.unlink(missing_ok=True)
        sidecar_path(out).unlink(missing_ok=True)  # it described the file being replaced
        if sdir.exists():
            shutil.rmtree(sdir)
        exists = False
    else:
        if exists:
            route.check_resumable()
        _check_space(out, need, reused if exists else 0)
    route.make_ready()
    _after_prepare(opts, out)
    return {"mode": route.mode(exists), "target": str(target)}


def _skip_complete(r: Run, out: Path) -> dict[str, Any]:
    """Nothing to write: the output is complete. Its sidecar is written last, after the final
    provenance: a run stopped between the two (a full disk) left the file without it, so it is
    written now from the file's own provenance."""
    if not sidecar_path(out).exists():
        import h5py

        with h5py.File(out, "r") as f:
            provenance = json.loads(f.attrs[layout.ATTR_PROVENANCE])
        write_sidecar(out, r.spec, r.gen, provenance, r.data_hash)
    return {"skip": "already complete"}


def _after_prepare(opts: RunOptions, out: Path) -> None:
    if opts.after_round is not None:
        opts.after_round(0, out)


def _is_complete(path: Path, data_hash: str, chunk_range: tuple[int, int]) -> bool:
    """Whether ``path`` holds this run's data, every chunk done and the run finished (its final
    provenance, with an end time, written): then there is nothing left to do."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            provenance = json.loads(f.attrs.get(layout.ATTR_PROVENANCE, "{}"))
            return (
                f.attrs.get(layout.ATTR_DATA_HASH) == data_hash
                and tuple(int(x) for x in f.attrs[layout.ATTR_CHUNK_RANGE]) == chunk_range
                and bool(f[layout.DONE][...].all())
                and bool(provenance.get("end_time"))
            )
    except (OSError, KeyError, TypeError, ValueError):
        return False


# --- finish -------------------------------------------------------------------------------------


def _finish(r: Run, route: Route, t: dict[str, float], written: int) -> RunResult:
    """After the loop closed the writer: the final provenance by one process (shards: and the
    VDS file), then the sidecar."""
    comm = r.comm
    t["wall_s"] = time.monotonic() - r.t_start
    t["chunks"] = float(len(route.my_chunks))
    timings = comm.allgather(t)
    provenance = r.provenance
    provenance["end_time"] = now_iso()
    provenance["timings_per_rank"] = timings
    route.finish(provenance, r.opts.atomic)
    out = Path(r.spec.output)
    bcast_result(comm, write_sidecar, out, r.spec, r.gen, provenance, r.data_hash)
    return RunResult(
        out,
        comm.allreduce(len(route.my_chunks)),
        comm.allreduce(written),
        time.monotonic() - r.t_start,
        timings=timings,
    )
