"""How a run is cut into batch jobs: chunk ranges per job, SLURM arrays, resource requests.

A batch job runs chunks [a, b) of the same plan an ``mpiexec`` run uses (chunk k holds samples
[k*chunk_size, min((k+1)*chunk_size, n_samples)) and draws from the stream (seed, k)), so the jobs
together write exactly the rows of one ``mpiexec`` run, whatever their number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from hpcgen.engine import partition
from hpcgen.errors import UserError

MiB = 2**20

#: SLURM's default MaxArraySize: array indices 0 .. 1000
DEFAULT_MAX_ARRAY_SIZE = 1001

#: what a job needs besides its chunk buffers: Python, numpy, numba, h5py, mpi4py (MiB)
RUNTIME_MB = 1024

_UNITS_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
# SLURM --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
_TIME_RE = re.compile(r"^(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2})$")


def job_ranges(n_chunks: int, n_jobs: int) -> list[tuple[int, int]]:
    """Chunk range [a, b) of each of ``n_jobs`` jobs: consecutive blocks covering [0, n_chunks)
    once, sizes differing by at most one (the first n_chunks % n_jobs jobs take one more)."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise UserError(f"--jobs must be a positive integer, got {n_jobs!r}")
    if n_jobs > n_chunks:
        raise UserError(
            f"--jobs {n_jobs} is more than the plan's {n_chunks} chunks (a job runs "
            f"whole chunks): use --jobs <= {n_chunks} or a smaller chunk_size"
        )
    return partition.contiguous(0, n_chunks, n_jobs)


def split_arrays(
    n_jobs: int, max_array_size: int = DEFAULT_MAX_ARRAY_SIZE
) -> list[tuple[int, int]]:
    """SLURM job arrays for ``n_jobs`` jobs: (offset, count) pairs, each array submitted as
    ``--array=0-(count-1)`` whose task T runs job offset+T. SLURM refuses array indices
    >= MaxArraySize, so every array holds at most ``max_array_size`` tasks."""
    if max_array_size < 1:
        raise UserError(f"--max-array-size must be >= 1, got {max_array_size}")
    if n_jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {n_jobs}")
    return [(off, min(max_array_size, n_jobs - off)) for off in range(0, n_jobs, max_array_size)]


def parse_memory_mb(text: str) -> int:
    """``4G``, ``4GB``, ``4GiB``, ``512M``, ``2048`` (MiB when no unit) -> MiB, rounded up."""
    m = _MEM_RE.match(str(text))
    if not m:
        raise UserError(f"--mem: expected a size like 4G, 512M or 2048 (MiB), got {text!r}")
    value = float(m.group(1)) * _UNITS_MB[(m.group(2) or "M").upper()]
    mb = math.ceil(value)
    if mb < 1:
        raise UserError(f"--mem must be at least 1 MiB, got {text!r}")
    return mb


def check_time(text: str) -> str:
    """A SLURM time limit (minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S); returned unchanged."""
    if not _TIME_RE.match(str(text)):
        raise UserError(
            f"--time: expected a SLURM time limit like 01:30:00, 90 or 1-00:00:00, got {text!r}"
        )
    return str(text)


def default_memory_mb(chunk_bytes: int) -> int:
    """Memory for one job or rank: inputs, outputs and temporaries of one chunk (3 x its bytes,
    the engine works chunk by chunk) plus the runtime, rounded up to 256 MiB."""
    need = 3 * chunk_bytes / MiB + RUNTIME_MB
    return math.ceil(need / 256) * 256


def default_disk_kb(shard_bytes: int) -> int:
    """request_disk for a generation job: its largest shard plus 10% and 100 MiB of slack (KiB).
    With a shared file system the shard is written in place, so this is an upper bound."""
    return math.ceil((1.1 * shard_bytes + 100 * MiB) / 1024)


@dataclass(frozen=True)
class Resources:
    """What each job asks the batch system for."""

    cpus: int = 1  # per job (array task / condor job) and per MPI rank
    mem_mb: int = 2048  # per job, and per MPI rank
    time: str = "01:00:00"  # SLURM limit of one array task and of the merge job
    mpi_time: str = "01:00:00"  # SLURM limit of the single-allocation MPI job
    ranks: int = 2  # MPI ranks of mpi.sbatch
    gpus: int = 0  # per job and per MPI rank (specs with device = "gpu")
    partition: str | None = None
    retries: int = 2  # extra attempts of a failed job (SLURM: in the task; condor: max_retries)
    retry_delay_s: int = 10
    disk_kb: int = 1024 * 1024  # condor request_disk of a generation job
    merge_disk_kb: int = 1024 * 1024  # condor request_disk of the merge job (scratch only)

    def __post_init__(self) -> None:
        for key in ("cpus", "mem_mb", "ranks", "disk_kb", "merge_disk_kb"):
            if getattr(self, key) < 1:
                raise UserError(
                    f"--{key.replace('_mb', '').replace('_', '-')} must be >= 1, "
                    f"got {getattr(self, key)}"
                )
        if self.gpus < 0:
            raise UserError(f"--gpus must be >= 0, got {self.gpus}")
        if self.retries < 0:
            raise UserError(f"--retries must be >= 0, got {self.retries}")
        check_time(self.time)
        check_time(self.mpi_time)
        if self.partition is not None and not re.match(r"^[A-Za-z0-9_.,-]+$", self.partition):
            raise UserError(f"--partition: not a partition name: {self.partition!r}")
