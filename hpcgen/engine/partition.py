"""Cut the sample space into fixed-size chunks and deal them out to ranks.

Chunk k holds samples [k*chunk_size, min((k+1)*chunk_size, n_samples)). Which rank computes a chunk
never changes its data (its random stream depends only on (seed, k)), so any assignment is valid:

- ``round_robin`` (mpio route): in round r, rank i writes the i-th of the next ``size`` pending
  chunks, so every collective write covers one contiguous stretch of the file;
- ``contiguous`` (shard route and batch jobs): rank i takes one block of consecutive chunks,
  so its shard file holds one contiguous range.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcgen.generators.base import Chunk


@dataclass(frozen=True)
class Plan:
    """Who does what. ``rounds[r][i]`` is the chunk rank i writes in round r (None: nothing)."""

    n_samples: int
    chunk_size: int
    seed: int
    n_ranks: int
    rounds: list[list[int | None]]

    def chunk(self, k: int) -> Chunk:
        start = k * self.chunk_size
        return Chunk(
            index=k, start=start, count=min(self.chunk_size, self.n_samples - start), seed=self.seed
        )

    def chunks_of(self, rank: int) -> list[int]:
        return [k for r in self.rounds if (k := r[rank]) is not None]


def round_robin(pending: list[int], n_ranks: int) -> list[list[int | None]]:
    """Deal pending chunks out in rounds of ``n_ranks``; the last round is padded with None."""
    rounds: list[list[int | None]] = []
    for i in range(0, len(pending), n_ranks):
        row: list[int | None] = list(pending[i : i + n_ranks])
        rounds.append(row + [None] * (n_ranks - len(row)))
    return rounds


def contiguous(first: int, stop: int, n_ranks: int) -> list[tuple[int, int]]:
    """Split chunks [first, stop) into n_ranks consecutive blocks, sizes differing by at most 1."""
    total = stop - first
    base, extra = divmod(total, n_ranks)
    out, a = [], first
    for i in range(n_ranks):
        b = a + base + (1 if i < extra else 0)
        out.append((a, b))
        a = b
    return out


def make_plan(n_samples: int, chunk_size: int, seed: int, n_ranks: int, pending: list[int]) -> Plan:
    return Plan(
        n_samples=n_samples,
        chunk_size=chunk_size,
        seed=seed,
        n_ranks=n_ranks,
        rounds=round_robin(pending, n_ranks),
    )
