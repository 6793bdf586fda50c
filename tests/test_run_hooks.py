"""The run's hooks, injected in this process: ``RunOptions.after_round`` is called by rank 0 once
the output is prepared and after every round; the test variables (CRASH_ENV, FILL_ENV) only build
such a hook when the options are built. A stop asked between rounds interrupts both routes
cleanly and ``resume`` finishes the same bytes."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import pytest
from helpers import assert_same_data
from toy_generator import SPEC_NAME

from hpcgen.engine import space
from hpcgen.engine.comm import SerialComm
from hpcgen.engine.run import (
    CRASH_ENV,
    FILL_ENV,
    RunInterrupted,
    RunOptions,
    hooks_from_env,
    run,
)
from hpcgen.spec import RunSpec


def toy_spec(out: Path, io: str = "auto") -> RunSpec:
    """2,000 samples of the toy generator (the hooks are the engine's) in 7 chunks of 300 (the
    last one short)."""
    return RunSpec.from_dict(
        {
            "generator": SPEC_NAME,
            "n_samples": 2000,
            "seed": 3,
            "chunk_size": 300,
            "output": str(out),
            "io": io,
        }
    )


@pytest.mark.parametrize("io", ["mpio", "shards"])
def test_the_hook_runs_once_the_output_is_prepared_then_after_every_round(tmp_path, io):
    calls: list[tuple[int, Path, bool]] = []
    out = tmp_path / "o.h5"

    def record(rounds: int, output: Path) -> None:
        mine = output if io == "mpio" else output.with_name("o.h5.shards")
        files = list(mine.glob("*.h5")) if mine.is_dir() else [mine] if mine.exists() else []
        calls.append((rounds, output, bool(files)))

    run(toy_spec(out, io), RunOptions(quiet=True, after_round=record), SerialComm())
    # round 0: before any file of the run exists
    assert calls == [(0, out, False)] + [(k, out, True) for k in range(1, 8)]


@pytest.mark.parametrize("io", ["mpio", "shards"])
def test_a_stop_between_rounds_interrupts_and_resume_gives_the_same_bytes(tmp_path, io):
    ref = tmp_path / "ref.h5"
    run(toy_spec(ref, io), RunOptions(quiet=True, after_round=None), SerialComm())

    def term_after_3(rounds: int, output: Path) -> None:
        if rounds == 3:  # seen by the next round's flags, as a batch system's SIGTERM is
            signal.raise_signal(signal.SIGTERM)

    part = tmp_path / "part.h5"
    handler = signal.getsignal(signal.SIGTERM)
    opts = RunOptions(quiet=True, checkpoint_s=1e9, after_round=term_after_3)
    with pytest.raises(RunInterrupted) as stopped:
        run(toy_spec(part, io), opts, SerialComm())
    assert (stopped.value.done, stopped.value.total) == (4, 7)
    assert signal.getsignal(signal.SIGTERM) == handler  # the run's own handler is gone
    res = run(toy_spec(part, io), RunOptions(quiet=True, resume=True), SerialComm())
    assert (res.chunks_written, res.samples_written) == (3, 2000 - 4 * 300)
    assert_same_data(ref, part)


def test_the_test_variables_build_the_hook_when_the_options_are_built(monkeypatch, tmp_path):
    monkeypatch.delenv(CRASH_ENV, raising=False)
    monkeypatch.delenv(FILL_ENV, raising=False)
    assert hooks_from_env() is None and RunOptions().after_round is None
    filled: list[Path] = []
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(space, "fill_disk", filled.append)
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append((pid, sig)))
    out = tmp_path / "o.h5"

    monkeypatch.setenv(FILL_ENV, "2")
    opts = RunOptions()
    monkeypatch.delenv(FILL_ENV)  # read when the options were built, not later
    for rounds in range(5):
        opts.after_round(rounds, out)
    assert filled == [tmp_path / "o.h5.fill"] and killed == []

    hook = hooks_from_env({CRASH_ENV: "3", FILL_ENV: "0"})
    hook(0, out)
    assert len(filled) == 2 and killed == []
    hook(2, out)
    assert killed == []
    hook(3, out)
    assert killed == [(os.getpid(), signal.SIGKILL)]


@pytest.mark.mpi(min_size=2)
def test_only_rank_0_calls_the_hook():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    d = comm.bcast(tempfile.mkdtemp(prefix="hpcgen-hooks-") if comm.rank == 0 else None)
    calls: list[int] = []
    spec = toy_spec(Path(d) / "o.h5", "mpio")
    run(spec, RunOptions(quiet=True, after_round=lambda n, out: calls.append(n)), comm)
    n_rounds = -(-7 // comm.size)
    assert calls == (list(range(n_rounds + 1)) if comm.rank == 0 else [])
    comm.Barrier()
    if comm.rank == 0:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
