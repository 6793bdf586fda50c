"""Progress on rank 0: a live bar when the user watches a terminal, also through mpiexec (whose
ranks see only pipes), and periodic lines in batch logs."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest
from helpers import mpiexec, run_hpcgen

from hpcgen.engine.progress import PROGRESS_ENV, Progress, describe_run, watched_terminal
from hpcgen.engine.run import CRASH_ENV

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
    n = ranks or 1
    start = f"[hpcgen] atoms: 4,000 samples in 8 chunks -> a.h5, {n} rank{'s' * (n > 1)} on host "
    assert shown.count(start) == 1, shown  # rank 0 only
    assert f"chunks 8/8, {n} rank" in shown, shown  # the bar's postfix
    # the bar is drawn before the first round ends: at 0 samples, after the start line
    first_bar = shown.index("| 0.00/4.00k")
    assert "chunks 0/8" in shown[first_bar:], shown
    assert shown.index(start) < first_bar < shown.index("4.00k/4.00k"), shown


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


HOST = socket.gethostname()


def test_the_start_line_says_what_runs_where():
    assert describe_run("tracks", 1_000_000, 100, "out.h5", 2, [HOST, HOST], "cpu") == [
        f"[hpcgen] tracks: 1,000,000 samples in 100 chunks -> out.h5, 2 ranks on host {HOST} (cpu)"
    ]
    assert describe_run("atoms", 500, 1, "a.h5", 1, ["n1"], "gpu") == [
        "[hpcgen] atoms: 500 samples in 1 chunk -> a.h5, 1 rank on host n1 (gpu)"
    ]


def test_the_start_line_of_a_resumed_slice_on_several_hosts():
    hosts = ["n3", "n1", "n2", "n1", "n4"]
    lines = describe_run(
        "ptycho", 10_000, 100, "p.h5", 5, hosts, "gpu",
        chunk_range=(20, 40), rows=2000, chunks_done=7,
    )  # fmt: skip
    assert lines == [
        "[hpcgen] ptycho: 2,000 samples in chunks 20:40 of 100 -> p.h5, "
        "5 ranks on 4 hosts (n1, n2, n3, ...) (gpu)",
        "[hpcgen] resuming: 7/20 chunks done",
    ]


def test_the_header_comes_first_in_log_mode_and_not_when_quiet():
    stream = io.StringIO()
    p = Progress(1000, stream=stream, header=["[hpcgen] start"], chunks_total=2)
    assert stream.getvalue() == "[hpcgen] start\n"  # before any round
    p.update(1000, 2)
    p.close()
    assert stream.getvalue().splitlines()[1].startswith("[hpcgen] 1000/1000 samples")
    quiet = io.StringIO()
    Progress(1000, stream=quiet, enabled=False, header=["[hpcgen] start"]).close()
    assert quiet.getvalue() == ""


def test_log_lines_give_chunks_done():
    stream = io.StringIO()
    p = Progress(1000, 250, stream=stream, interval=0.0, chunks_total=4, chunks_done=1)
    p.update(500, 2)
    p.close()
    assert stream.getvalue().startswith("[hpcgen] 500/1000 samples ( 50.0%) chunks 2/4 ")


def test_the_bar_is_drawn_at_once_with_chunks_and_ranks(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "bar")
    stream = io.StringIO()
    p = Progress(
        1000, 250, stream=stream, chunks_total=4, chunks_done=1, ranks=2, header=["[hpcgen] go"]
    )
    shown = stream.getvalue()
    assert shown.startswith("[hpcgen] go\n"), shown
    assert "250/1.00k" in shown and "chunks 1/4, 2 ranks" in shown, shown
    p.update(750, 3)
    p.close()
    shown = stream.getvalue()
    assert "750/1.00k" in shown and "chunks 3/4, 2 ranks" in shown, shown


def test_the_bar_is_redrawn_while_a_round_runs(monkeypatch):
    """No update for a long round: the bar still redraws (its elapsed time moves on)."""
    monkeypatch.setenv(PROGRESS_ENV, "bar")
    monkeypatch.setattr(Progress, "TICK_S", 0.01)
    redrawn = threading.Event()

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            if self.getvalue():  # a draw after the first
                redrawn.set()
            return super().write(text)

    p = Progress(1000, stream=Stream(), chunks_total=4)
    try:
        assert redrawn.wait(60)
    finally:
        p.close()
    assert p.bar is None and p._ticker is None  # closed: nothing draws any more


def test_log_mode_under_mpiexec_prints_the_start_line_once_on_rank_0(tmp_path):
    (tmp_path / "s.toml").write_text(SPEC)
    env = {PROGRESS_ENV: "log"}
    proc = run_hpcgen("run", "s.toml", "--yes", ranks=2, cwd=tmp_path, env=env, check=True)
    lines = [x for x in proc.stderr.splitlines() if x.startswith("[hpcgen]")]
    assert lines[0] == (
        f"[hpcgen] atoms: 4,000 samples in 8 chunks -> a.h5, 2 ranks on host {HOST} (cpu)"
    ), proc.stderr
    assert len(lines) == 2 and lines[1].startswith("[hpcgen] 4000/4000 samples (100.0%) chunks 8/8")
    quiet = run_hpcgen(
        "run", "s.toml", "--yes", "--overwrite", "-q", ranks=2, cwd=tmp_path, env=env, check=True
    )
    assert "[hpcgen]" not in quiet.stderr


def test_a_resumed_run_says_how_much_was_done(tmp_path):
    (tmp_path / "s.toml").write_text(SPEC)
    crashed = run_hpcgen(
        "run", "s.toml", "--yes", "-q", "--checkpoint-every", "0",
        cwd=tmp_path, env={CRASH_ENV: "3"},
    )  # fmt: skip
    assert crashed.returncode != 0
    proc = run_hpcgen(
        "run", "s.toml", "--resume", cwd=tmp_path, env={PROGRESS_ENV: "log"}, check=True
    )
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("[hpcgen] atoms: 4,000 samples in 8 chunks -> a.h5, 1 rank on")
    assert lines[1] == "[hpcgen] resuming: 3/8 chunks done", proc.stderr
    assert lines[2].startswith("[hpcgen] 4000/4000 samples (100.0%) chunks 8/8 "), proc.stderr
