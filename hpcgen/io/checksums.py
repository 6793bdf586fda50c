"""Per-chunk, per-field checksums: a flipped byte in a file's data is found, not trained on.

``/_hpcgen/checksums`` is a uint64 dataset of shape (chunks in the file, fields, 2): entry [i, j]
is the pair (A, B) of the bytes of chunk a+i of field j, C order, in the dtype on disk:

    words  = the bytes as little-endian 64-bit unsigned words (the last one zero-padded)
    A      = sum of the words                                            mod 2**64
    B      = sum over 4 KiB blocks b = 0, 1, ... of (b + 1) * (sum of the block's words)  mod 2**64

The field order is the dataset's attribute ``fields``. The writer computes it from the arrays in
memory before they are written, and writes it before the flush that precedes the chunk's done
flag; a chunk whose done flag is 0 has no checksum yet. A checksum is a function of the data
alone, so a file has the same checksums whether 1, 2 or 3 ranks wrote it, through MPI-IO or
shards, merged or virtual.

What it finds: any change confined to one 8-byte word (a flipped bit or byte: A moves by a
nonzero amount mod 2**64); random damage (a torn write, garbage, a zeroed stretch) except with
probability ~2**-64; 4 KiB blocks swapped or misplaced (B weights each block by its position).
What it misses: words exchanged within one 4 KiB block. It guards against accidents, not an
adversary.

Why not CRC-32 or a cryptographic digest: the checksums are computed on the write path, where
numpy's block sums are several times faster than zlib's CRC-32 and blake2b; CRC-32 slowed the
engine's write path, these sums keep its speed (the measurements and their commands:
docs/benchmarks.md, "Checksums on the write path").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import h5py
import numpy as np

from hpcgen.io import layout

DTYPE = np.uint64
ALGORITHM = "sum64-4k"
#: words (8 bytes) per block of the position-weighted sum B: 4 KiB, a file-system block
BLOCK_WORDS = 512
_MASK = (1 << 64) - 1


def digest(rows: np.ndarray) -> tuple[int, int]:
    """(A, B) of the bytes of ``rows`` (C order, their own dtype); see the module docstring."""
    raw = np.ascontiguousarray(rows).reshape(-1).view(np.uint8)
    n_words = raw.size // 8
    words = raw[: n_words * 8].view("<u8")
    n_blocks = n_words // BLOCK_WORDS
    # uint64 sums wrap mod 2**64 (numpy array arithmetic does not check integer overflow)
    sums = words[: n_blocks * BLOCK_WORDS].reshape(n_blocks, BLOCK_WORDS).sum(axis=1, dtype=DTYPE)
    last = np.zeros(1, dtype="<u8")  # the trailing partial word, zero-padded
    last.view(np.uint8)[: raw.size - n_words * 8] = raw[n_words * 8 :]
    rest = int(words[n_blocks * BLOCK_WORDS :].sum(dtype=DTYPE)) + int(last[0])
    weights = np.arange(1, n_blocks + 1, dtype=DTYPE)
    a = int(sums.sum(dtype=DTYPE)) + rest
    b = int((sums * weights).sum(dtype=DTYPE)) + (n_blocks + 1) * rest
    return a & _MASK, b & _MASK


def create(f: h5py.File, names: Sequence[str], n_chunks: int) -> h5py.Dataset:
    """The (empty) checksum dataset of a new file; space allocated up front like the data."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    d = f.create_dataset(
        layout.CHECKSUMS, shape=(n_chunks, len(names), 2), dtype=DTYPE, fillvalue=0, dcpl=dcpl
    )
    d.attrs["fields"] = list(names)
    d.attrs["algorithm"] = ALGORITHM
    d.attrs["description"] = (
        "per chunk and field, of the rows' bytes (C order, dtype as stored) read as "
        "little-endian uint64 words, the last zero-padded: [A, B] with A = sum of the words, "
        "B = sum over 4 KiB blocks of (block index + 1) * block word sum, both mod 2**64; "
        "valid where /_hpcgen/done is 1"
    )
    return d


def stored(f: h5py.File) -> tuple[list[str], np.ndarray] | None:
    """(field names, checksums) of a file; None for a file written without them."""
    if layout.CHECKSUMS not in f:
        return None
    d = f[layout.CHECKSUMS]
    return [str(n) for n in d.attrs["fields"]], d[...]


class Checker:
    """Compares chunks read back with the stored checksums. Feed it every chunk of the file
    (``update``), then read ``mismatches``: (global chunk index, field name) pairs."""

    def __init__(self, f: h5py.File, chunk_range: tuple[int, int]) -> None:
        got = stored(f)
        self.present = got is not None
        self.names, self.table = got if got is not None else ([], np.zeros((0, 0, 2), DTYPE))
        self.first = chunk_range[0]
        self.mismatches: list[tuple[int, str]] = []
        self.checked = 0

    def update(self, local_chunk: int, data: Mapping[str, np.ndarray]) -> None:
        if not self.present:
            return
        for j, name in enumerate(self.names):
            want = tuple(int(x) for x in self.table[local_chunk, j])
            if name in data and digest(data[name]) != want:
                self.mismatches.append((self.first + local_chunk, name))
        self.checked += 1

    def describe(self, limit: int = 3) -> str:
        """``chunk 4 field X, chunk 9 field Y`` (at most ``limit``, then a count)."""
        parts = [f"chunk {k} field {name}" for k, name in self.mismatches[:limit]]
        more = len(self.mismatches) - limit
        return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def check_file(
    f: h5py.File,
    chunk_range: tuple[int, int],
    chunk_size: int,
    n_rows: int,
    done: np.ndarray,
) -> Checker:
    """Read every chunk marked done, one at a time, and compare it with its checksums."""
    c = Checker(f, chunk_range)
    if not c.present:
        return c
    for i in np.flatnonzero(done).tolist():
        a, b = i * chunk_size, min((i + 1) * chunk_size, n_rows)
        c.update(i, {name: f[name][a:b] for name in c.names})
    return c
