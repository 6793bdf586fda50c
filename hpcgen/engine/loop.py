"""The rounds of a run: every rank runs this same loop over its pending chunks.

    every round:
        inputs  = generator.sample(chunk)              # CPU, stream (seed, chunk)
        outputs = generator.compute(inputs, device)    # numpy / numba / cupy
        writer.write(chunk, inputs | outputs)          # collective: rows and their checksums
        flags   = allreduce(error | SIGTERM | checkpoint due)   # every rank acts on the same flags

A rank with fewer chunks than the others still joins every round's collective calls, empty-handed.
With ``RunOptions.overlap`` a worker thread samples and computes chunk i+1 while chunk i is
written (:class:`_Ahead`); the file's bytes are the same either way.
Rank 0 calls the run's ``after_round`` hook (RunOptions) after each round, once the round's
flags are agreed and its checkpoint taken.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcgen.engine import partition
from hpcgen.engine.comm import CollectiveError, agree, bor_op, max_op
from hpcgen.engine.progress import Progress, describe_run
from hpcgen.engine.routes import Route, checkpoint, close, write_error
from hpcgen.errors import UserError
from hpcgen.io import layout

if TYPE_CHECKING:
    from hpcgen.engine.run import Run

# the flag bits all ranks OR together after every round
_ERROR, _STOP, _CHECKPOINT = 1, 2, 4


class RunInterrupted(Exception):
    """SIGTERM (SLURM's time limit) stopped the run cleanly on every rank: the chunks written so
    far are flushed and flagged done; ``--resume`` finishes the file."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"interrupted: {done} of {total} chunks done, --resume to finish")
        self.done, self.total = done, total


class StopSignal:
    """SIGTERM sets a flag (the next round's allreduce tells every rank) instead of killing the
    process between two collective calls. Installed for the duration of a run."""

    def __init__(self) -> None:
        self.hit = False
        self.previous: Any = None
        self.installed = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> StopSignal:
        if self.installed:
            self.previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        self.hit = True

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous)


def run_rounds(r: Run, route: Route, stop: StopSignal) -> tuple[dict[str, float], int]:
    """Every round: compute, write, then OR the ranks' flags (error, SIGTERM, checkpoint due)
    so that all ranks act on the same flags; then the last checkpoint and close. Returns this
    rank's timings (seconds in sample, compute, write) and the rows it wrote. Raises
    CollectiveError (every rank) or RunInterrupted (every rank, the writer closed)."""
    spec, comm, opts = r.spec, r.comm, r.opts
    writer, plan, my_chunks = route.writer, route.plan, route.my_chunks
    n_rounds = comm.allreduce(len(my_chunks), op=max_op())
    r0, r1 = layout.rows_of(r.chunk_range, spec.chunk_size, spec.n_samples)
    rows_left = comm.allreduce(sum(plan.chunk(k).count for k in my_chunks))
    chunks_left = comm.allreduce(len(my_chunks))
    total = r.chunk_range[1] - r.chunk_range[0]
    progress = _progress(r, rows=r1 - r0, rows_left=rows_left, chunks_left=chunks_left)
    out = Path(spec.output)
    t = {"sample_s": 0.0, "compute_s": 0.0, "write_s": 0.0}
    written_rows = 0
    written_chunks = 0
    last_checkpoint = time.monotonic()
    ahead = _Ahead(r, plan, my_chunks, t) if opts.overlap else None
    t_loop = time.perf_counter()
    try:
        for rnd in range(n_rounds):
            k = my_chunks[rnd] if rnd < len(my_chunks) else None
            if ahead is not None:
                data, err, k = ahead.take(rnd)  # and starts the next chunk
            else:
                data, err, k = _make_chunk(r, plan, k, t)
            t2 = time.perf_counter()
            if writer is not None:
                try:
                    writer.write(k, data)
                except OSError as e:
                    err = err or write_error(e, writer.path)
                    k = None
            due = comm.rank == 0 and time.monotonic() - last_checkpoint >= opts.checkpoint_s
            flags = comm.allreduce(
                (_ERROR if err else 0) | (_STOP if stop.hit else 0) | (_CHECKPOINT if due else 0),
                op=bor_op(),
            )
            if flags & _ERROR:
                errs = comm.allgather(err)
                raise CollectiveError(next(e for e in errs if e is not None))
            if flags & (_CHECKPOINT | _STOP):
                agree(comm, checkpoint, writer)
                last_checkpoint = time.monotonic()
            t["write_s"] += time.perf_counter() - t2
            if k is not None:
                written_rows += plan.chunk(k).count
                written_chunks += 1
            rows_done, chunks_done = comm.allreduce(np.array([written_rows, written_chunks]))
            progress.update(
                (r1 - r0) - rows_left + int(rows_done), total - chunks_left + int(chunks_done)
            )
            if comm.rank == 0 and opts.after_round is not None:
                opts.after_round(rnd + 1, out)
            if flags & _STOP:
                agree(comm, close, writer)
                raise RunInterrupted(total - chunks_left + int(chunks_done), total)
    finally:
        progress.close()  # also on an error: the redraws stop
    agree(comm, checkpoint, writer)
    agree(comm, close, writer)
    t["loop_s"] = time.perf_counter() - t_loop
    return t, written_rows


def _make_chunk(
    r: Run, plan: partition.Plan, k: int | None, t: dict[str, float]
) -> tuple[dict[str, Any] | None, str | None, int | None]:
    """Sample and compute chunk ``k`` (None: this rank has none this round), adding the seconds
    to ``t``. Returns (the fields' arrays, the UserError's message, k); a chunk that failed
    comes back as (None, message, None): the rank still joins the round's collective write."""
    if k is None:
        return None, None, None
    chunk = plan.chunk(k)
    t0 = time.perf_counter()
    try:
        inputs = r.gen.sample(chunk)
        t1 = time.perf_counter()
        outputs = r.gen.compute(inputs, chunk, r.device)
        data: dict[str, Any] | None = {**inputs, **outputs}
        err = None
    except UserError as e:
        data, err, k, t1 = None, str(e), None, time.perf_counter()
    t2 = time.perf_counter()
    t["sample_s"] += t1 - t0
    t["compute_s"] += t2 - t1
    return data, err, k


class _Ahead:
    """The overlapped loop (``RunOptions.overlap``): while round i's chunk is written, a worker
    thread samples and computes this rank's next chunk.

    Only ``sample`` and ``compute`` run in the worker; every HDF5 and MPI call stays in the
    loop's thread, so the collective calls keep their order on every rank (parallel HDF5's
    rule) and MPI needs no thread support. The threads run at once only where the work lets go
    of the GIL (numpy's large operations, numba kernels compiled ``nogil``, cupy, MPI waits);
    h5py keeps it while it writes, so the gain depends on the generator and the machine
    (bench/bench_overlap.py), and the option is off by default. Two chunks are in memory at a
    time. A chunk that fails (UserError) is reported in its own round, as without overlap. The
    worker is a daemon: a run stopped between rounds (error, SIGTERM) does not wait for the
    chunk computed ahead."""

    def __init__(
        self, r: Run, plan: partition.Plan, my_chunks: list[int], t: dict[str, float]
    ) -> None:
        self.r, self.plan, self.my_chunks, self.t = r, plan, my_chunks, t
        self.worker: threading.Thread | None = None
        self.result: tuple[dict[str, Any] | None, str | None, int | None] = (None, None, None)
        self.failed: BaseException | None = None
        self._start(0)

    def _start(self, rnd: int) -> None:
        if rnd >= len(self.my_chunks):
            self.worker = None
            return
        k = self.my_chunks[rnd]

        def work() -> None:
            try:
                self.result = _make_chunk(self.r, self.plan, k, self.t)
            except BaseException as e:  # a bug: raised again in the loop's thread
                self.failed = e

        self.worker = threading.Thread(target=work, name="hpcgen-compute", daemon=True)
        self.worker.start()

    def take(self, rnd: int) -> tuple[dict[str, Any] | None, str | None, int | None]:
        """Round ``rnd``'s chunk (None, None, None: this rank has none), once computed; the next
        one starts before this returns."""
        if self.worker is None:
            return None, None, None
        self.worker.join()
        if self.failed is not None:
            raise self.failed
        got, self.result = self.result, (None, None, None)
        self._start(rnd + 1)
        return got


def _progress(r: Run, *, rows: int, rows_left: int, chunks_left: int) -> Progress:
    """Rank 0's report (hpcgen.engine.progress), its start line printed now."""
    comm, spec = r.comm, r.spec
    total = r.chunk_range[1] - r.chunk_range[0]
    hosts = comm.allgather(socket.gethostname())
    return Progress(
        total=rows,
        done=rows - rows_left,
        enabled=(comm.rank == 0 and not r.opts.quiet),
        interval=r.opts.log_interval,
        chunks_total=total,
        chunks_done=total - chunks_left,
        ranks=comm.size,
        header=describe_run(
            r.gen.name,
            spec.n_samples,
            spec.n_chunks,
            str(spec.output),
            comm.size,
            hosts,
            r.device.kind,
            chunk_range=r.chunk_range,
            rows=rows,
            chunks_done=total - chunks_left,
        ),
    )
