"""One global progress report on rank 0 for the samples of all ranks.

Rank 0 learns the global count after each collective round (the engine all-reduces it anyway to
mark chunks done), so no extra communication is spent on progress. On a terminal: a tqdm bar with
rate and ETA; otherwise (batch logs): one line every ``interval`` seconds; ``quiet``: nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


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
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=done,
                unit=" " + label,
                unit_scale=True,
                file=self.stream,
                dynamic_ncols=True,
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
