"""The SPMD loop: every rank runs this same function.

    rank 0 checks the output and plans  --bcast-->  every rank, round after round:
        inputs  = generator.sample(chunk)              # CPU, stream (seed, chunk)
        outputs = generator.compute(inputs, device)    # numpy / numba / cupy
        writer.write(chunk, inputs | outputs)          # collective; then the done flag
    --> provenance (with per-rank timings) in the file and in a sidecar metadata.json

A run covers chunks [a, b) of the spec's plan: all of them for ``hpcgen run``, a slice for a batch
job (``--chunks a:b``), so a job array reproduces exactly the rows an ``mpiexec`` run writes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.engine import partition
from hpcgen.engine.comm import SerialComm, bcast_result, max_op, world
from hpcgen.engine.device import select_device
from hpcgen.engine.progress import Progress
from hpcgen.engine.provenance import base_record, now_iso
from hpcgen.errors import OutputExistsError, UserError
from hpcgen.generators.base import Generator
from hpcgen.io import layout
from hpcgen.io.writer import FileWriter, build_vds, mpio_available, shard_dir, shard_name
from hpcgen.spec import RunSpec

#: testing hook: rank 0 kills its own process (SIGKILL) after this many rounds: a real crash
CRASH_ENV = "HPCGEN_TEST_CRASH_AFTER_ROUNDS"


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


def _collective_call(comm: Any, fn: Any) -> Any:
    """Call fn on every rank; if any rank raises a UserError, every rank raises the first one."""
    err: Exception | None = None
    out = None
    try:
        out = fn()
    except UserError as e:
        err = e
    errs = comm.allgather(None if err is None else str(err))
    first = next((e for e in errs if e is not None), None)
    if first is not None:
        raise err if err is not None else UserError(first)
    return out


def _prepare_output(
    spec: RunSpec, opts: RunOptions, route: str, chunk_range: tuple[int, int], n_ranks: int
) -> dict[str, Any]:
    """Rank 0: decide what to do with the output path. Never overwrites unless asked."""
    out = Path(spec.output)
    spec.check_output_dir()
    target = out.with_name(out.name + ".partial") if opts.atomic else out
    if opts.atomic:
        if out.exists():
            if _is_complete(out, spec, chunk_range):
                return {"skip": "already complete"}
            if not opts.overwrite:
                raise OutputExistsError(
                    f"{out} exists and is not this job's complete output; "
                    "use --overwrite to replace it"
                )
            out.unlink()
        if target.exists():  # half-written temporary of a killed attempt: discard
            target.unlink()
        return {"mode": "create", "target": str(target)}
    sdir = shard_dir(out)
    exists = out.exists() or (route == "shards" and sdir.exists())
    if exists and not opts.resume:
        if not opts.overwrite:
            raise OutputExistsError(
                f"{out} exists; use --resume to finish it or --overwrite to replace it"
            )
        if out.exists():
            out.unlink()
        if sdir.exists():
            shutil.rmtree(sdir)
        exists = False
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
        if out.exists():
            out.unlink()  # the VDS file is rebuilt at the end
    return {"mode": "open" if exists else "create", "target": str(target)}


def _is_complete(path: Path, spec: RunSpec, chunk_range: tuple[int, int]) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return (
                f.attrs.get(layout.ATTR_DATA_HASH) == spec.data_hash()
                and tuple(int(x) for x in f.attrs[layout.ATTR_CHUNK_RANGE]) == chunk_range
                and bool(f[layout.DONE][...].all())
            )
    except (OSError, KeyError):
        return False


def run(spec: RunSpec, opts: RunOptions, comm: Any = None) -> RunResult:
    comm = comm if comm is not None else world()
    t_start = time.monotonic()
    started = now_iso()
    n_chunks = spec.n_chunks
    chunk_range = opts.chunks or (0, n_chunks)
    if not (0 <= chunk_range[0] < chunk_range[1] <= n_chunks):
        raise UserError(
            f"--chunks {chunk_range[0]}:{chunk_range[1]} is outside the plan's chunks 0:{n_chunks}"
        )
    route = resolve_route(spec.io, comm.size)
    if opts.atomic and route == "shards":
        route = "mpio"  # a job's shard is one file; --io shards splits a file per rank instead

    gen: Generator = _collective_call(comm, spec.make_generator)
    _collective_call(comm, lambda: gen.check_n_samples(spec.n_samples))
    device = _collective_call(comm, lambda: select_device(spec.device, gen))
    decision = bcast_result(comm, _prepare_output, spec, opts, route, chunk_range, comm.size)
    out = Path(spec.output)
    if "skip" in decision:
        return RunResult(out, 0, 0, time.monotonic() - t_start, skipped=decision["skip"])

    provenance = bcast_result(
        comm, lambda: base_record(spec.to_dict(), gen.input_files(), comm.size, device.kind, route)
    )
    provenance["start_time"] = started
    provenance["chunk_range"] = list(chunk_range)

    # --- open the writer(s) and plan -----------------------------------------------------------
    if route == "mpio":
        target = Path(decision["target"])
        writer = FileWriter(target, spec, gen, chunk_range, comm, decision["mode"], provenance)
        plan = bcast_result(
            comm,
            lambda: partition.make_plan(
                spec.n_samples, spec.chunk_size, spec.seed, comm.size, writer.pending()
            ),
        )
        my_chunks = plan.chunks_of(comm.rank)
    else:
        block = partition.contiguous(*chunk_range, comm.size)[comm.rank]
        writer = None
        my_chunks = []
        if block[0] < block[1]:
            path = shard_dir(out) / shard_name(block)
            mode = "open" if path.exists() else "create"
            writer = _collective_call(
                comm, lambda: FileWriter(path, spec, gen, block, SerialComm(), mode, provenance)
            )
            my_chunks = writer.pending()
        else:
            _collective_call(comm, lambda: None)
        plan = partition.Plan(spec.n_samples, spec.chunk_size, spec.seed, comm.size, [])
    n_rounds = comm.allreduce(len(my_chunks), op=max_op())

    # --- the loop ------------------------------------------------------------------------------
    r0, r1 = layout.rows_of(chunk_range, spec.chunk_size, spec.n_samples)
    rows_left = comm.allreduce(sum(plan.chunk(k).count for k in my_chunks))
    progress = Progress(
        total=r1 - r0,
        done=(r1 - r0) - rows_left,
        enabled=(comm.rank == 0 and not opts.quiet),
        interval=opts.log_interval,
    )
    crash_after = int(os.environ.get(CRASH_ENV, "0"))
    t = {"sample_s": 0.0, "compute_s": 0.0, "write_s": 0.0}
    written_rows = 0
    last_checkpoint = time.monotonic()
    for rnd in range(n_rounds):
        k = my_chunks[rnd] if rnd < len(my_chunks) else None
        data = None
        if k is not None:
            chunk = plan.chunk(k)
            t0 = time.perf_counter()
            inputs = gen.sample(chunk)
            t1 = time.perf_counter()
            outputs = gen.compute(inputs, chunk, device)
            t2 = time.perf_counter()
            t["sample_s"] += t1 - t0
            t["compute_s"] += t2 - t1
            data = {**inputs, **outputs}
        t2 = time.perf_counter()
        if writer is not None:
            writer.write(k, data)
        # rank 0 decides for everyone: a checkpoint is collective
        if comm.bcast(time.monotonic() - last_checkpoint >= opts.checkpoint_s, root=0):
            if writer is not None:
                writer.checkpoint()
            last_checkpoint = time.monotonic()
        t["write_s"] += time.perf_counter() - t2
        if k is not None:
            written_rows += plan.chunk(k).count
        progress.update((r1 - r0) - rows_left + comm.allreduce(written_rows))
        if crash_after and rnd + 1 >= crash_after and comm.rank == 0:
            os.kill(os.getpid(), signal.SIGKILL)
    progress.close()

    # --- provenance and close ------------------------------------------------------------------
    t["wall_s"] = time.monotonic() - t_start
    t["chunks"] = float(len(my_chunks))
    timings = comm.allgather(t)
    provenance["end_time"] = now_iso()
    provenance["timings_per_rank"] = timings
    if route == "mpio":
        writer.finish(provenance)
        if comm.rank == 0 and opts.atomic:
            os.replace(target, out)
    else:
        if writer is not None:
            writer.finish(provenance)
        comm.Barrier()
        if comm.rank == 0:
            shards = [
                (shard_dir(out) / shard_name(cr), cr)
                for cr in partition.contiguous(*chunk_range, comm.size)
                if cr[0] < cr[1]
            ]
            build_vds(out, spec, gen, shards, provenance)
    if comm.rank == 0:
        write_sidecar(out, spec, gen, provenance)
    comm.Barrier()
    return RunResult(
        out,
        comm.allreduce(len(my_chunks)),
        comm.allreduce(written_rows),
        time.monotonic() - t_start,
        timings=timings,
    )


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.stem + ".metadata.json")


def write_sidecar(out: Path, spec: RunSpec, gen: Generator, provenance: dict[str, Any]) -> None:
    """metadata.json beside the file: provenance + the fields, readable without HDF5."""
    meta = {
        "file": out.name,
        "provenance": provenance,
        "data_hash": spec.data_hash(),
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
    sidecar_path(out).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
