"""Progress on rank 0: a live bar when the user watches a terminal, also through mpiexec (whose
ranks see only pipes), and periodic lines in batch logs."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import pytest
from helpers import mpiexec

from hpcgen.engine.progress import PROGRESS_ENV, Progress, watched_terminal

SPEC = 'generator = "atoms"\nn_samples = 4000\nseed = 1\nchunk_size = 500\noutput = "a.h5"\n'


def in_terminal(command: list[str], cwd) -> str:
    """Run ``command`` on a pseudo-terminal (util-linux ``script``), return what it showed."""
    script = shutil.which("script")
    if script is None:
        pytest.skip("util-linux script not installed")
    typescript = cwd / "typescript"
    env = {k: v for k, v in os.environ.items() if k != PROGRESS_ENV}
    subprocess.run(
        [script, "-qec", " ".join(command), str(typescript)],
        cwd=cwd,
        env={**env, "HDF5_USE_FILE_LOCKING": "FALSE"},
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=240,
    )
    return typescript.read_bytes().decode(errors="replace")  # keeps the \r of redraws


@pytest.mark.parametrize("ranks", [0, 2])
def test_a_live_bar_on_the_terminal_also_through_mpiexec(tmp_path, ranks):
    (tmp_path / "s.toml").write_text(SPEC)
    cmd = [sys.executable, "-m", "hpcgen", "run", "s.toml", "--yes"]
    if ranks:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    shown = in_terminal(cmd, tmp_path)
    assert "4.00k/4.00k" in shown and "samples/s" in shown, shown
    assert "\r" in shown  # redrawn in place, not one line per update


def test_batch_logs_get_lines_not_a_bar(tmp_path):
    stream = io.StringIO()
    p = Progress(1000, stream=stream, interval=0.0)
    p.update(500)
    p.update(1000)
    p.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[hpcgen] 500/1000 samples ( 50.0%)")
    assert lines[-1].startswith("[hpcgen] 1000/1000 samples (100.0%)")
    assert "\r" not in stream.getvalue()


def test_the_environment_decides_by_hand(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "bar")
    assert watched_terminal(io.StringIO())
    monkeypatch.setenv(PROGRESS_ENV, "log")
    assert not watched_terminal(sys.__stderr__)
    monkeypatch.delenv(PROGRESS_ENV)
    monkeypatch.setenv("SLURM_PTY_PORT", "40123")  # srun --pty
    assert watched_terminal(io.StringIO())
