"""One global progress report on rank 0 for the samples of all ranks.

Rank 0 learns the global count after each collective round (the engine all-reduces it anyway to
mark chunks done), so no extra communication is spent on progress. Before the first round, one
line says what runs (generator, samples, chunks, output), where (hosts, device), on how many ranks,
and, for a resumed run, how many chunks were already done. Then, on a terminal: a tqdm bar with
rate, ETA, chunks done and ranks, drawn at once and redrawn every second while a round runs;
otherwise (batch logs): one line every ``interval`` seconds; ``quiet``: nothing.

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
import threading
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


def describe_run(
    generator: str,
    n_samples: int,
    n_chunks: int,
    output: str,
    ranks: int,
    hosts: list[str],
    device: str,
    *,
    chunk_range: tuple[int, int] | None = None,
    rows: int | None = None,
    chunks_done: int = 0,
) -> list[str]:
    """The lines rank 0 prints before the first round: what runs (generator, samples, chunks,
    output), where (hosts, device), on how many ranks, and how much a resumed run finds done.

    ``chunk_range``: the slice of the plan's ``n_chunks`` a batch job writes (None: all of them);
    ``rows``: the samples of that slice; ``hosts``: the host name of every rank."""
    first, stop = chunk_range or (0, n_chunks)
    count = stop - first
    if (first, stop) == (0, n_chunks):
        what = f"{n_samples:,} samples in {n_chunks:,} chunk{_s(n_chunks)}"
    else:
        what = (
            f"{rows if rows is not None else n_samples:,} samples in chunks {first}:{stop} "
            f"of {n_chunks:,}"
        )
    distinct = sorted(set(hosts))
    if len(distinct) == 1:
        where = f"host {distinct[0]}"
    else:
        shown = ", ".join(distinct[:3]) + (", ..." if len(distinct) > 3 else "")
        where = f"{len(distinct)} hosts ({shown})"
    lines = [
        f"[hpcgen] {generator}: {what} -> {output}, {ranks} rank{_s(ranks)} on {where} ({device})"
    ]
    if chunks_done:
        lines.append(f"[hpcgen] resuming: {chunks_done:,}/{count:,} chunks done")
    return lines


def _s(n: int) -> str:
    return "" if n == 1 else "s"


class Progress:
    """Rank 0's report. ``chunks_total``/``chunks_done`` and ``ranks`` add "chunks n/N, R ranks"
    to the bar's postfix and to the log lines; ``header``: lines printed at once (in both modes),
    before the bar is drawn."""

    #: seconds between redraws of the bar while a round runs (elapsed time and rate move on)
    TICK_S = 1.0

    def __init__(
        self,
        total: int,
        done: int = 0,
        *,
        enabled: bool = True,
        interval: float = 30.0,
        stream: TextIO | None = None,
        label: str = "samples",
        chunks_total: int = 0,
        chunks_done: int = 0,
        ranks: int = 0,
        header: list[str] | None = None,
    ) -> None:
        self.total, self.done, self.label = total, done, label
        self.chunks_total, self.chunks_done, self.ranks = chunks_total, chunks_done, ranks
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.t0 = time.monotonic()
        self.start_done = done
        self.last_log = self.t0
        self.bar = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if not enabled:
            return
        for line in header or []:
            print(line, file=self.stream, flush=True)
        if watched_terminal(self.stream):
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
                # every update may redraw (tqdm's adaptive miniters skips the updates of a run
                # whose rounds are fast at first, e.g. a kernel compiled in the first round)
                miniters=1,
                postfix=self.postfix(),
            )  # drawn now, before the first round
            self._ticker = threading.Thread(target=self._tick, name="hpcgen-progress", daemon=True)
            self._ticker.start()

    def postfix(self) -> str:
        """ "chunks 12/150, 2 ranks" (the parts that are known)."""
        parts = []
        if self.chunks_total:
            parts.append(f"chunks {self.chunks_done}/{self.chunks_total}")
        if self.ranks:
            parts.append(f"{self.ranks} rank{_s(self.ranks)}")
        return ", ".join(parts)

    def _tick(self) -> None:
        # a round can take minutes (a first-round compile, a big chunk): redraw meanwhile so
        # that the elapsed time moves and the user sees the run is alive
        while not self._stop.wait(self.TICK_S):
            bar = self.bar
            if bar is not None:
                bar.refresh()

    def update(self, done: int, chunks_done: int | None = None) -> None:
        """Set the global number of finished samples (and chunks)."""
        if not self.enabled:
            return
        if chunks_done is not None:
            self.chunks_done = chunks_done
        if self.bar is not None:
            self.bar.set_postfix_str(self.postfix(), refresh=False)
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
        chunks = f" chunks {self.chunks_done}/{self.chunks_total}" if self.chunks_total else ""
        return (
            f"[hpcgen] {self.done}/{self.total} {self.label} ({pct:5.1f}%){chunks} "
            f"{rate:,.0f}/s elapsed {elapsed:,.0f}s eta {eta:,.0f}s"
        )

    def close(self) -> None:
        """Stop the redraws and leave the bar on the screen; safe to call twice."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.enabled = False
