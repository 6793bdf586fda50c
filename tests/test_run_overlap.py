"""The overlapped loop (RunOptions.overlap: chunk i+1 sampled and computed in a worker thread
while chunk i is written): the same bytes as the plain loop on both routes, a chunk's UserError
reported the same way, a bug raised in the loop's thread, a stop between rounds resumable."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from helpers import assert_same_data
from toy_generator import SPEC_NAME, ToyGenerator

from hpcgen.engine.comm import SerialComm
from hpcgen.engine.run import RunInterrupted, RunOptions, run
from hpcgen.errors import UserError
from hpcgen.spec import RunSpec


def toy_spec(out: Path, io: str = "auto") -> RunSpec:
    """2,000 samples of the toy generator (the loop is the engine's) in 7 chunks of 300 (the last
    one short)."""
    return RunSpec.from_dict(
        {"generator": SPEC_NAME, "n_samples": 2000, "seed": 3, "chunk_size": 300,
         "output": str(out), "io": io}
    )  # fmt: skip


def opts(**kw) -> RunOptions:
    return RunOptions(quiet=True, after_round=None, **kw)


@pytest.mark.parametrize("io", ["mpio", "shards"])
def test_overlap_writes_the_same_bytes(tmp_path, io, monkeypatch):
    threads: set[str] = set()
    compute = ToyGenerator.compute

    def spy(self, inputs, chunk, device):
        threads.add(threading.current_thread().name)
        return compute(self, inputs, chunk, device)

    plain, overlapped = tmp_path / "plain.h5", tmp_path / "overlap.h5"
    run(toy_spec(plain, io), opts(), SerialComm())
    monkeypatch.setattr(ToyGenerator, "compute", spy)
    res = run(toy_spec(overlapped, io), opts(overlap=True), SerialComm())
    assert threads == {"hpcgen-compute"}  # every chunk computed ahead, in the worker
    assert (res.chunks_written, res.samples_written) == (7, 2000)
    assert_same_data(plain, overlapped)
    timing = res.timings[0]
    assert timing["loop_s"] <= timing["wall_s"]


def failing_at(index: int, error: BaseException):
    compute = ToyGenerator.compute

    def fail(self, inputs, chunk, device):
        if chunk.index == index:
            raise error
        return compute(self, inputs, chunk, device)

    return fail


@pytest.mark.parametrize("overlap", [False, True])
def test_a_chunk_that_fails_stops_the_run_with_its_message(tmp_path, monkeypatch, overlap):
    monkeypatch.setattr(ToyGenerator, "compute", failing_at(4, UserError("chunk 4 is bad")))
    calls: list[int] = []
    o = RunOptions(
        quiet=True, overlap=overlap, checkpoint_s=0.0, after_round=lambda n, out: calls.append(n)
    )
    with pytest.raises(UserError) as e:
        run(toy_spec(tmp_path / "o.h5"), o, SerialComm())
    assert str(e.value) == "chunk 4 is bad"
    assert calls == [0, 1, 2, 3, 4]  # rounds 0-3 done; round 4 met the error
    monkeypatch.undo()
    res = run(toy_spec(tmp_path / "o.h5"), opts(resume=True), SerialComm())
    assert res.chunks_written == 3  # chunks 0-3 were flagged done
    run(toy_spec(tmp_path / "ref.h5"), opts(), SerialComm())
    assert_same_data(tmp_path / "ref.h5", tmp_path / "o.h5")


def test_a_bug_in_the_worker_is_raised_in_the_loop(tmp_path, monkeypatch):
    monkeypatch.setattr(ToyGenerator, "compute", failing_at(2, ZeroDivisionError("bug")))
    with pytest.raises(ZeroDivisionError, match="bug"):
        run(toy_spec(tmp_path / "o.h5"), opts(overlap=True), SerialComm())


def test_a_stop_with_a_chunk_computed_ahead_resumes_to_the_same_bytes(tmp_path):
    def term_after_2(rounds: int, output: Path) -> None:
        if rounds == 2:
            signal.raise_signal(signal.SIGTERM)

    part = tmp_path / "part.h5"
    o = RunOptions(quiet=True, overlap=True, after_round=term_after_2)
    with pytest.raises(RunInterrupted) as stopped:
        run(toy_spec(part), o, SerialComm())
    assert stopped.value.done == 3  # chunk 3, computed ahead, is not written
    res = run(toy_spec(part), opts(resume=True, overlap=True), SerialComm())
    assert res.chunks_written == 4
    run(toy_spec(tmp_path / "ref.h5"), opts(), SerialComm())
    assert_same_data(tmp_path / "ref.h5", part)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("io", ["mpio", "shards"])
def test_overlap_under_mpi_writes_the_same_bytes(io):
    import shutil
    import tempfile

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    d = Path(comm.bcast(tempfile.mkdtemp(prefix="hpcgen-overlap-") if comm.rank == 0 else None))
    run(toy_spec(d / "plain.h5", io), opts(), comm)
    run(toy_spec(d / "overlap.h5", io), opts(overlap=True), comm)
    comm.Barrier()
    if comm.rank == 0:
        try:
            assert_same_data(d / "plain.h5", d / "overlap.h5")
        finally:
            shutil.rmtree(d, ignore_errors=True)


def test_the_generators_kernels_let_go_of_the_gil() -> None:
    """The worker thread overlaps the write only where the compute runs without the GIL (h5py
    holds it while it writes): every compiled kernel a generator calls from Python is ``nogil``
    (the functions inlined into them need not be)."""
    import importlib

    from numba.core.registry import CPUDispatcher

    from hpcgen.generators.tracks import kernels_numba
    from hpcgen.generators.tracks.tableaus import TABLEAUS

    kernels = {f"tracks {s}": kernels_numba.kernel_for(s) for s in TABLEAUS}
    for name in ("atoms.kernel", "illumination.lit", "ptycho.forward", "ptycho.poisson",
                 "energy.kernels", "energy.normal"):  # fmt: skip
        module = importlib.import_module(f"hpcgen.generators.{name}")
        for attr, f in vars(module).items():
            if isinstance(f, CPUDispatcher) and f.targetoptions.get("inline") != "always":
                kernels[f"{name}.{attr}"] = f
    assert len(kernels) > len(TABLEAUS) + 6
    assert [k for k, f in kernels.items() if f.targetoptions.get("nogil") is not True] == []
