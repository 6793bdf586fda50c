"""What ``hpcgen plan`` measures: a rank's peak memory and, with ``--calibrate``, the run's time.

Memory is measured, not guessed from the fields' sizes alone: most of a rank's peak is the
interpreter, the imported libraries (numpy, h5py, MPI, numba and its compiled kernels) and the
generator's inputs (a field map, a satellite model, a base dataset), which no formula over the
output's bytes can see. So the plan builds the generator in its own process, with the modules
``hpcgen run`` imports, and computes two small probe chunks (n and 2n samples) as the run computes
a chunk: ``sample``, ``compute``, and the writer's copies (the rows in the dtype on disk and their
checksums). Then

    resident   = this process's resident memory after the probes (kernels compiled, inputs loaded)
    per chunk  = fixed + per_sample x samples in the largest chunk, from the peak of the numpy
                 memory each probe allocated (``tracemalloc``), fitted on n and 2n samples
    peak       = max(start-up peak, resident + per chunk)

Memory that numpy does not allocate (numba's own arrays, HDF5's buffers, GPU memory) is outside
``per chunk``; ``resident`` holds what of it stays. On a GPU the estimate is host memory only.

Time (``calibrate``): whole chunks of the spec computed after the probes (a warm-up: compiled
kernels, loaded inputs), timed, for at least ``seconds`` or ``max_chunks`` chunks, whichever
comes first, and at least one. The estimate assumes every rank computes at the measured rate
(one core or device each, as here), the ranks' largest share of chunks sets the compute time, and
the write runs at the rate a temporary file of one chunk's bytes was written and synced at in the
output's directory (one stream: the file system's share of a rank; the run writes between
rounds, so the write time adds to the compute time).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.base import Chunk, Device, Generator
from hpcgen.spec import RunSpec

#: the probe's first chunk holds about this many bytes of output (at most a chunk, at least 1
#: sample): small enough to take well under a second for the cheap generators
PROBE_BYTES = 4 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """A rank's memory in bytes (host memory)."""

    #: resident memory after the generator's set-up and the probes (interpreter, libraries,
    #: compiled kernels, inputs)
    resident_bytes: int
    #: the largest resident memory before the chunk loop (a kernel's compilation can peak higher
    #: than the steady state)
    startup_peak_bytes: int
    #: numpy memory of one chunk in flight: fixed + per_sample x samples (fitted on the probes)
    chunk_fixed_bytes: int
    chunk_per_sample_bytes: float
    #: samples in the largest chunk of the spec: min(chunk_size, n_samples)
    chunk_samples: int
    #: samples in the two probe chunks
    probe_samples: tuple[int, int]

    @property
    def chunk_bytes(self) -> int:
        return int(self.chunk_fixed_bytes + self.chunk_per_sample_bytes * self.chunk_samples)

    @property
    def peak_bytes(self) -> int:
        """The estimated peak resident memory of a rank (what ``/usr/bin/time`` calls maximum
        resident set size)."""
        return max(self.startup_peak_bytes, self.resident_bytes + self.chunk_bytes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["probe_samples"] = list(self.probe_samples)
        d["chunk_bytes"] = self.chunk_bytes
        d["peak_bytes"] = self.peak_bytes
        return d


@dataclass(frozen=True)
class Calibration:
    """Measured rates and the run's estimated wall time for ``ranks`` ranks."""

    chunks_timed: int
    samples_timed: int
    compute_s: float  # seconds the timed chunks took (sample + compute + the writer's copies)
    samples_per_s_per_rank: float
    write_bytes_per_s: float  # a temporary file of one chunk, written and synced
    ranks: int
    max_chunks_per_rank: int
    est_compute_s: float
    est_write_s: float

    @property
    def est_wall_s(self) -> float:
        return self.est_compute_s + self.est_write_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["est_wall_s"] = self.est_wall_s
        d["assumptions"] = ASSUMPTIONS
        return d


ASSUMPTIONS = (
    "each rank computes at the measured rate (one core or device per rank); the largest share "
    "of chunks sets the compute time; writes go at the measured rate of one stream to the "
    "output's directory and add to the compute time; start-up (imports, inputs, compilation) "
    "excluded"
)


def memory_now() -> tuple[int, int]:
    """(resident, peak resident) bytes of this process: VmRSS and VmHWM from /proc (Linux), else
    getrusage's maximum for both."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    if len(values) == 2:
        return values["VmRSS"], values["VmHWM"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return peak, peak


def one_chunk(spec: RunSpec, gen: Generator, device: Device, chunk: Chunk) -> dict[str, np.ndarray]:
    """What a rank does to a chunk before HDF5 sees it: sample, compute, then the writer's
    copies (each field in its dtype on disk, C order) and their checksums. Returns the copies."""
    from hpcgen.io import checksums

    inputs = gen.sample(chunk)
    outputs = gen.compute(inputs, chunk, device)
    data = {**inputs, **outputs}
    bufs = {
        fs.name: np.ascontiguousarray(data[fs.name], dtype=fs.resolved_dtype(spec.dtype))
        for fs in gen.fields()
    }
    for b in bufs.values():
        checksums.digest(b)
    return bufs


def _traced_peak(fn: Any) -> int:
    """Peak bytes of numpy (and Python) memory ``fn()`` allocates while it runs."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return max(0, tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()


def probe_sizes(spec: RunSpec, sample_bytes: int) -> tuple[int, int, int]:
    """(n, 2n, samples of the largest chunk): n about PROBE_BYTES of output, 2n at most the
    largest chunk."""
    largest = min(spec.chunk_size, spec.n_samples)
    n = max(1, min(largest // 2, PROBE_BYTES // max(1, sample_bytes)))
    return n, min(2 * n, largest), largest


def estimate_memory(spec: RunSpec, gen: Generator, device: Device) -> MemoryEstimate:
    """Build-up as ``hpcgen run`` does it (inputs checked and loaded), then the two probes."""
    from hpcgen.engine.run import sample_bytes

    gen.check_n_samples(spec.n_samples)
    gen.input_files()  # loads and checks the inputs, as the run does before the output
    gen.static_datasets()
    n1, n2, largest = probe_sizes(spec, sample_bytes(spec, gen))
    # a first, untraced chunk: kernels compiled, caches filled, lazy imports done
    one_chunk(spec, gen, device, Chunk(index=0, start=0, count=n1, seed=spec.seed))
    peaks = []
    for n in (n1, n2):
        chunk = Chunk(index=0, start=0, count=n, seed=spec.seed)
        peaks.append(_traced_peak(lambda c=chunk: one_chunk(spec, gen, device, c)))
    if n2 > n1:
        per_sample = max(0.0, (peaks[1] - peaks[0]) / (n2 - n1))
    else:
        per_sample = peaks[1] / n2
    fixed = max(0, int(peaks[1] - per_sample * n2))
    resident, hwm = memory_now()
    return MemoryEstimate(
        resident_bytes=resident,
        startup_peak_bytes=hwm,
        chunk_fixed_bytes=fixed,
        chunk_per_sample_bytes=per_sample,
        chunk_samples=largest,
        probe_samples=(n1, n2),
    )


def write_rate(directory: Path, nbytes: int) -> float:
    """Bytes per second of writing and syncing a temporary file of ``nbytes`` (at least 1 MiB,
    at most 256 MiB) in ``directory``; the file is removed."""
    nbytes = int(min(max(nbytes, 2**20), 256 * 2**20))
    block = np.random.default_rng(0).integers(0, 255, size=min(nbytes, 16 * 2**20), dtype=np.uint8)
    try:
        fd, name = tempfile.mkstemp(prefix=".hpcgen-plan-", suffix=".tmp", dir=directory)
        try:
            t0 = time.perf_counter()
            left = nbytes
            while left > 0:
                left -= os.write(fd, block[: min(left, block.size)].tobytes())
            os.fsync(fd)
            dt = time.perf_counter() - t0
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as e:  # not writable, full, missing: the user's to fix, one line
        raise UserError(
            f"plan --calibrate: cannot measure the write rate in {directory}: {e.strerror or e}"
        ) from None
    return nbytes / dt if dt > 0 else float("inf")


def calibrate(
    spec: RunSpec,
    gen: Generator,
    device: Device,
    ranks: int,
    chunks_per_rank: list[int],
    seconds: float = 10.0,
    max_chunks: int = 3,
) -> Calibration:
    """Time whole chunks of the spec (chunks 0, 1, ... as the run draws them) after a warm-up
    chunk (call after :func:`estimate_memory`, whose probes are that warm-up), and scale."""
    from hpcgen.engine import partition
    from hpcgen.engine.run import sample_bytes

    plan = partition.make_plan(spec.n_samples, spec.chunk_size, spec.seed, 1, [])
    done = samples = 0
    t0 = time.perf_counter()
    while done < min(max_chunks, spec.n_chunks):
        chunk = plan.chunk(done)
        one_chunk(spec, gen, device, chunk)
        done += 1
        samples += chunk.count
        if time.perf_counter() - t0 >= seconds:
            break
    elapsed = max(time.perf_counter() - t0, 1e-9)
    rate = samples / elapsed
    per_sample = sample_bytes(spec, gen)
    directory = Path(spec.output).parent
    if not directory.is_dir():
        directory = Path(tempfile.gettempdir())
    w_rate = write_rate(directory, per_sample * min(spec.chunk_size, spec.n_samples))
    most = max(chunks_per_rank) if chunks_per_rank else 0
    # the rank with the most chunks sets the time; its samples at the measured rate
    est_compute = most * min(spec.chunk_size, spec.n_samples) / rate
    est_write = per_sample * spec.n_samples / w_rate
    return Calibration(
        chunks_timed=done,
        samples_timed=samples,
        compute_s=elapsed,
        samples_per_s_per_rank=rate,
        write_bytes_per_s=w_rate,
        ranks=ranks,
        max_chunks_per_rank=most,
        est_compute_s=est_compute,
        est_write_s=est_write,
    )
