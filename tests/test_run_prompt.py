"""`hpcgen run` asks before a large output on a terminal, never waits elsewhere; progress goes to
log lines when stderr is not a terminal."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import hpcgen_env, run_hpcgen

BIG = {"HPCGEN_CONFIRM_BYTES": "1"}  # every output counts as "large"


def start_at_prompt(
    args: list[str], env: dict, deadline: float
) -> tuple[subprocess.Popen, int, bytes]:
    """Start hpcgen with stdin/stdout/stderr on a pseudo-terminal and read until its [y/N]
    prompt (or the deadline). Returns the process, the terminal's master end and what it
    printed so far."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpcgen", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=hpcgen_env(env),
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(master, 1024)
        except OSError:
            break
    return proc, master, seen


def read_to_end(master: int) -> bytes:
    """What the terminal's master side still holds, until the process's side is closed."""
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the process ended and closed its side
            break
        if not chunk:
            break
        out += chunk
    return out


def run_on_terminal(args: list[str], answer: bytes, env: dict, timeout: float = 120):
    """Run hpcgen on a pseudo-terminal, type ``answer`` at the prompt."""
    proc, master, seen = start_at_prompt(args, env, time.monotonic() + timeout)
    os.write(master, answer)
    out = read_to_end(master)
    proc.wait(timeout=timeout)
    os.close(master)
    return proc.returncode, (seen + out).decode(errors="replace")


def test_terminal_no_writes_nothing(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "big.h5"
    code, text = run_on_terminal(["run", str(toy_spec), "--out", str(out)], b"n\n", BIG)
    assert "[y/N]" in text and "write" in text
    assert code == 1
    assert not out.exists()


def test_terminal_yes_writes(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "big.h5"
    code, text = run_on_terminal(["run", str(toy_spec), "--out", str(out)], b"y\n", BIG)
    assert code == 0, text
    assert out.exists()


def test_yes_flag_skips_the_question(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "big.h5"
    code, text = run_on_terminal(
        ["run", str(toy_spec), "--out", str(out), "--yes"], b"", BIG, timeout=120
    )
    assert code == 0 and "[y/N]" not in text
    assert out.exists()


def test_not_a_terminal_never_waits_and_logs_progress(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "big.h5"
    # stdin is an open pipe nobody writes to: a prompt would hang until the timeout
    proc = subprocess.run(
        [sys.executable, "-m", "hpcgen", "run", str(toy_spec), "--out", str(out)],
        stdin=subprocess.PIPE,
        capture_output=True,
        text=True,
        env=hpcgen_env(BIG),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[y/N]" not in proc.stderr
    assert "[hpcgen] 2500/2500 samples (100.0%)" in proc.stderr  # the final log line
    assert out.exists()


def test_quiet_prints_nothing(tmp_path: Path, toy_spec: Path):
    proc = run_hpcgen("run", toy_spec, "--out", tmp_path / "q.h5", "--quiet")
    assert proc.returncode == 0 and proc.stderr == ""


def test_terminal_end_of_input_cancels_cleanly(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "big.h5"
    # Ctrl-D at the start of a line: the terminal ends the input, input() raises EOFError
    code, text = run_on_terminal(["run", str(toy_spec), "--out", str(out)], b"\x04", BIG)
    assert code == 1, text
    assert "hpcgen: aborted, nothing written" in text
    assert "Traceback" not in text and "EOFError" not in text
    assert not out.exists()


#: the read system call's number, by machine (/proc/PID/syscall names the one a process is in)
READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}


def in_read(pid: int) -> bool | None:
    """Whether the process waits in read() now; None where /proc cannot tell."""
    number = READ_SYSCALL.get(os.uname().machine)
    if number is None:
        return None
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] == number
    except (OSError, IndexError):
        return None


def wait_in_read(pid: int, deadline: float) -> None:
    """Until the process waits in read(): a signal sent between the prompt's write and the read
    would find no read to interrupt (as a key pressed before the prompt would), and the process
    would wait for input for ever."""
    while time.monotonic() < deadline:
        now = in_read(pid)
        if now is None:
            break
        if now:
            return
        time.sleep(0.05)
    time.sleep(1.0)  # no /proc: a person's reaction time


def interrupt(proc: subprocess.Popen, deadline: float) -> None:
    """Ctrl-C at the prompt, until the process ends. A Ctrl-C that reaches the process just
    before its read() begins is noted by Python but acted on only once a read returns, and the
    read waits for ever (seen on a loaded machine): a process still waiting in read() seconds
    after the signal has handled no Ctrl-C yet, and another one (as a person would press) ends
    it; a process that has handled one is no longer in that read."""
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the terminal's foreground process
    while True:
        try:
            proc.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                raise
            if in_read(proc.pid):
                proc.send_signal(signal.SIGINT)


def test_terminal_interrupt_at_the_prompt_is_one_line(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "big.h5"
    deadline = time.monotonic() + 120
    proc, master, seen = start_at_prompt(["run", str(toy_spec), "--out", str(out)], BIG, deadline)
    wait_in_read(proc.pid, deadline)
    interrupt(proc, time.monotonic() + 120)
    os.set_blocking(master, False)  # the process has ended: read what it left, never wait
    seen += read_to_end(master)
    os.close(master)
    text = seen.decode(errors="replace")
    assert proc.returncode == 130, text
    after = text.split("[y/N]", 1)[1]
    # one line of its own: the prompt's line is ended first
    assert [x.strip() for x in after.splitlines()] == ["", "hpcgen: interrupted"], text
    assert not out.exists()
