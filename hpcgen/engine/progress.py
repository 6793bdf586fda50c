"""One global progress report on rank 0 for the samples of all ranks.

Rank 0 learns the global count after each collective round (the engine all-reduces it anyway to
mark chunks done), so no extra communication is spent on progress. On a terminal: a tqdm bar with
rate and ETA; otherwise (batch logs): one line every ``interval`` seconds; ``quiet``: nothing.

Under a launcher no rank's stderr is a terminal, even when the user watches one: MPICH's hydra
and Open MPI forward the ranks' output through pipes, and hydra starts each rank in a session of
its own, so it has no controlling terminal either. What the user watches is the launcher's own
stderr, so :func:`watched_terminal` also looks at the launcher among the process's ancestors
(mpiexec, mpirun, srun, ...) and at ``srun --pty``. ``HPCGEN_PROGRESS=bar|log`` decides by hand.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterator
from typing import TextIO

#: process names of launchers whose stderr is what the user sees
LAUNCHERS = ("mpiexec", "mpirun", "orterun", "prterun", "srun", "hydra_pmi_proxy", "prte")
PROGRESS_ENV = "HPCGEN_PROGRESS"


def _ancestors(pid: int) -> Iterator[tuple[int, str]]:
    """(pid, command name) of the parents of ``pid``, nearest first (Linux /proc)."""
    seen = 0
    while pid > 1 and seen < 64:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            return
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if seen:
            yield pid, name
        pid, seen = parent, seen + 1


def _is_terminal_path(path: str) -> bool:
    return path.startswith(("/dev/pts/", "/dev/tty")) and path != "/dev/tty"


def launcher_terminal(pid: int | None = None) -> bool:
    """Whether a launcher above this process writes its stderr to a terminal."""
    for ancestor, name in _ancestors(pid or os.getpid()):
        if not name.startswith(LAUNCHERS):
            continue
        try:
            if _is_terminal_path(os.readlink(f"/proc/{ancestor}/fd/2")):
                return True
        except OSError:
            continue
    return False


def _terminal_columns(stream: TextIO) -> int:
    """Width of the terminal ``stream`` writes to; 0 for one that reports none, -1 for no
    terminal (a pipe to a launcher)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return -1


def watched_terminal(stream: TextIO) -> bool:
    """Whether a person watches ``stream``: it is a terminal, or it reaches one through a
    launcher (module docstring). ``HPCGEN_PROGRESS`` = "bar" or "log" overrides."""
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced in ("bar", "log"):
        return forced == "bar"
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):
        return False
    if "SLURM_PTY_PORT" in os.environ:  # srun --pty
        return True
    return launcher_terminal()


class Progress:
    def __init__(
        self,
        total: int,
        done: int = 0,
        *,
        enabled: bool = True,
        interval: float = 30.0,
        stream: TextIO | None = None,
        label: str = "samples",
    ) -> None:
        self.total, self.done, self.label = total, done, label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.t0 = time.monotonic()
        self.start_done = done
        self.last_log = self.t0
        self.bar = None
        if enabled and watched_terminal(self.stream):
            from tqdm import tqdm

            cols = _terminal_columns(self.stream)
            self.bar = tqdm(
                total=total,
                initial=done,
                unit=" " + label,
                unit_scale=True,
                file=self.stream,
                # a terminal reporting no size (a bare pty) would hide the bar
                dynamic_ncols=cols > 0,
                ncols=None if cols != 0 else 100,
                nrows=None if cols != 0 else 24,
                smoothing=0.1,
            )

    def update(self, done: int) -> None:
        """Set the global number of finished samples."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        now = time.monotonic()
        if self.bar is None and (now - self.last_log >= self.interval or done >= self.total):
            self.last_log = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        elapsed = now - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total
        return (
            f"[hpcgen] {self.done}/{self.total} {self.label} ({pct:5.1f}%) "
            f"{rate:,.0f}/s elapsed {elapsed:,.0f}s eta {eta:,.0f}s"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
