"""Train/val/test assignment: a keyed, exact, stratified split computed from (seed, index) alone.

The sample indices are cut into aligned blocks of B = sum(parts) consecutive indices (B = 10 for
80/10/10). Inside each block a keyed hash orders the B positions; the first parts[0] positions of
that order go to train, the next parts[1] to val, the rest to test. So

- every complete block holds exactly 8 train, 1 val, 1 test samples: the counts of a dataset of
  N samples are exact for the N - N mod B first samples, and off by at most parts[s] (< 10) in
  the last, incomplete block;
- the split of a sample depends only on (seed, index): not on chunk size, rank or job count, and
  any chunk can compute its own rows without knowing N;
- which samples of a block go where looks random (SplitMix64 finaliser of seed and index), so
  the split is uncorrelated with position inside chunks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
#: separates the split's hash stream from any other use of the run seed
_SPLIT_SALT = np.uint64(0x5B1175EED5A17ED5)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (a bijection of uint64), elementwise on a uint64 array."""
    x = np.asarray(x, dtype=np.uint64)
    z = (x ^ (x >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def assign_split(index: np.ndarray, seed: int, parts: Sequence[int] = (8, 1, 1)) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) of each global sample index, as uint8."""
    index = np.asarray(index, dtype=np.int64)
    b = int(sum(parts))
    if index.size == 0:
        return np.zeros(0, np.uint8)
    block = index // b
    lo, hi = int(block.min()), int(block.max())
    if hi - lo < 2 * index.size:  # a chunk: consecutive indices, hash every block in the range
        blocks, where = np.arange(lo, hi + 1), block - lo
    else:  # scattered indices: only the blocks they touch
        blocks, where = np.unique(block, return_inverse=True)
    members = blocks[:, None] * b + np.arange(b)[None, :]  # every index of the touched blocks
    key = mix64(np.full(1, seed, np.uint64) ^ _SPLIT_SALT)
    hashed = mix64(mix64(members.astype(np.uint64) * _GOLDEN) ^ key)
    # rank of each position inside its block: a permutation of 0..b-1 (stable: ties cannot
    # break the exact counts)
    order = np.argsort(hashed, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(b)[None, :].repeat(len(blocks), 0), axis=1)
    r = rank[where.ravel(), index % b]
    return np.searchsorted(np.cumsum(parts), r, side="right").astype(np.uint8)


def split_counts(n: int, seed: int, parts: Sequence[int] = (8, 1, 1)) -> tuple[int, int, int]:
    """Exact (train, val, test) counts of samples 0..n-1, in O(sum(parts)) time."""
    b = int(sum(parts))
    full = n // b
    tail = assign_split(np.arange(full * b, n), seed, parts)
    counts = np.bincount(tail, minlength=3)
    return tuple(int(full * p + c) for p, c in zip(parts, counts))  # type: ignore[return-value]
