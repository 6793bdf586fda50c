"""In-process SPMD tests, run by pytest-mpi under `mpiexec -n 2` and `-n 3` (make test-mpi).

Every rank runs the engine in this process with COMM_WORLD and the collective MPI-IO writer,
including rounds where a rank has no chunk and must join the collective write empty-handed. The
generator is the toy one (tests/toy_generator.py): what is tested is the engine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.mpi(min_size=2)


@pytest.fixture
def shared_dir():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    d = tempfile.mkdtemp(prefix="hpcgen-mpi-") if comm.rank == 0 else None
    d = comm.bcast(d, root=0)
    yield Path(d)
    comm.Barrier()
    if comm.rank == 0:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def expected(spec):
    """Each chunk computed directly, on one process, without the engine."""
    from hpcgen.engine.device import select_device
    from hpcgen.generators.base import Chunk

    gen = spec.make_generator()
    dev = select_device("cpu", gen)
    parts: dict[str, list] = {}
    for k in range(spec.n_chunks):
        start = k * spec.chunk_size
        chunk = Chunk(k, start, min(spec.chunk_size, spec.n_samples - start), spec.seed)
        inputs = gen.sample(chunk)
        for name, arr in {**inputs, **gen.compute(inputs, chunk, dev)}.items():
            parts.setdefault(name, []).append(arr)
    return {k: np.concatenate(v) for k, v in parts.items()}


@pytest.mark.parametrize("n_samples,chunk_size", [(1000, 150), (100, 60), (10, 100)])
def test_collective_write_equals_direct_computation(shared_dir, n_samples, chunk_size):
    """Uneven chunk counts: 7 chunks, 2 chunks (fewer than 3 ranks), 1 chunk."""
    import h5py
    from mpi4py import MPI

    from hpcgen.engine.run import RunOptions, run
    from hpcgen.spec import RunSpec

    comm = MPI.COMM_WORLD
    out = shared_dir / f"c{n_samples}_{chunk_size}.h5"
    spec = RunSpec.from_dict(
        {
            "generator": "toy_generator:ToyGenerator",
            "n_samples": n_samples,
            "seed": 3,
            "chunk_size": chunk_size,
            "output": str(out),
            "io": "mpio",
        }
    )
    res = run(spec, RunOptions(quiet=True), comm)
    assert res.samples_written == n_samples
    comm.Barrier()
    if comm.rank == 0:
        want = expected(spec)
        with h5py.File(out, "r") as f:
            assert f["_hpcgen/done"][...].all()
            for name, arr in want.items():
                np.testing.assert_array_equal(f[name][...], arr)


def test_shards_route_in_process(shared_dir):
    import h5py
    from mpi4py import MPI

    from hpcgen.engine.run import RunOptions, run
    from hpcgen.spec import RunSpec

    comm = MPI.COMM_WORLD
    out = shared_dir / "shards.h5"
    spec = RunSpec.from_dict(
        {
            "generator": "toy_generator:ToyGenerator",
            "n_samples": 700,
            "seed": 5,
            "chunk_size": 100,
            "output": str(out),
            "io": "shards",
        }
    )
    run(spec, RunOptions(quiet=True), comm)
    comm.Barrier()
    if comm.rank == 0:
        want = expected(spec)
        with h5py.File(out, "r") as f:
            assert f["y"].is_virtual
            for name, arr in want.items():
                np.testing.assert_array_equal(f[name][...], arr)
