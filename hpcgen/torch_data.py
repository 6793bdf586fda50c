"""A PyTorch ``IterableDataset`` that streams hpcgen files: ``pip install hpcgen[torch]``.

::

    from torch.utils.data import DataLoader
    from hpcgen.torch_data import HpcgenDataset

    ds = HpcgenDataset(["tracks_a.h5", "tracks_b.h5"], fields=("X", "Y"), seed=0)
    loader = DataLoader(ds, batch_size=256, num_workers=4)
    for epoch in range(10):
        ds.set_epoch(epoch)                 # before the loop: workers copy the dataset
        for batch in loader:                # {"X": (256, 6) tensor, "Y": (256, 4) tensor}
            ...

How rows flow, per epoch:

1. Every file is cut into *blocks* of its run's chunk size (the last block of a file may be
   shorter). Blocks are the unit of reading and of sharding: a whole file is never read at once.
2. With ``shuffle``, the list of all blocks (every file) is permuted by a generator seeded with
   (seed, epoch): the same permutation on every rank and worker.
3. Consumer c of C = world_size x num_workers (c = rank x num_workers + worker id) takes blocks
   c, c + C, c + 2C ... of that list: every row goes to exactly one consumer, once per epoch.
   Ranks may differ by a block's worth of rows (no padding, no dropping).
4. With ``shuffle``, each consumer passes its rows through a shuffle buffer of ``buffer_size``
   rows (seeded with (seed, epoch, c)): at most ``buffer_size`` rows plus one block are held.
5. Each row is yielded as {field: torch tensor} (the file's dtype, per-sample shape; a scalar
   field gives a 0-d tensor), passed through ``transform`` if given.

The order is a function of (files, fields, seed, epoch, shuffle, buffer_size, block size, world
size, num_workers): rerunning with the same values gives the same rows in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as e:  # torch is an optional extra
    raise ImportError(
        "hpcgen.torch_data needs PyTorch: pip install 'hpcgen[torch]' (or install torch)"
    ) from e

#: rows held by the shuffle buffer when none is given (a few MB for most generators' samples)
DEFAULT_BUFFER_SIZE = 8192


class _FileInfo:
    """What iteration needs of one file, read once in the main process."""

    def __init__(self, path: Path, n_rows: int, block: int) -> None:
        self.path, self.n_rows, self.block = path, n_rows, block


class HpcgenDataset(IterableDataset):
    """Stream rows of one or more complete hpcgen files as dicts of torch tensors.

    - ``paths``: a file or a sequence of files (runs, merged or virtual files). Each must be
      complete (every chunk written, every virtual source present) and hold every field in
      ``fields`` with the same per-sample shape and dtype in every file; else UserError.
    - ``fields``: the fields to read (None: every field of the first file).
    - ``shuffle``: permute block order per epoch and pass rows through the shuffle buffer;
      False gives the files' rows in order (still sharded between
      consumers, see the module docstring).
    - ``buffer_size``: rows in the shuffle buffer (>= 0; 0: only the block order is shuffled).
    - ``seed``, ``set_epoch(e)``: the order is deterministic in (seed, epoch).
    - ``transform``: called on each sample dict; what it returns is yielded.
    - ``row_filter``: called on each block read, {field: rows} of ``fields`` and
      ``filter_fields``; returns a boolean mask of the rows to keep (e.g. tracks'
      ``lambda b: b["status"] == 0`` with ``filter_fields=("status",)``). Dropped rows are
      never yielded; the rest still go to exactly one consumer.
    - ``rank``, ``world_size``: this process's share under data parallelism; default: from
      torch.distributed if initialised, else 0 and 1.
    - ``block_size``: rows per read (default: each file's chunk size).
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        fields: Sequence[str] | None = ("X", "Y"),
        shuffle: bool = True,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        seed: int = 0,
        transform: Callable[[dict[str, torch.Tensor]], Any] | None = None,
        *,
        row_filter: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None,
        filter_fields: Sequence[str] = (),
        rank: int | None = None,
        world_size: int | None = None,
        block_size: int | None = None,
    ) -> None:
        super().__init__()
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not paths:
            raise UserError("HpcgenDataset: no files given")
        if isinstance(fields, str):
            fields = [fields]
        if isinstance(filter_fields, str):
            filter_fields = [filter_fields]
        if fields is not None and len(fields) == 0:
            raise UserError("HpcgenDataset: no fields given (None reads every field)")
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 0:
            raise UserError(f"buffer_size must be an integer >= 0, got {buffer_size!r}")
        if block_size is not None and (not isinstance(block_size, int) or block_size <= 0):
            raise UserError(f"block_size must be a positive integer, got {block_size!r}")
        if (rank is None) != (world_size is None):
            raise UserError("give both rank and world_size, or neither")
        if world_size is not None and not (0 <= rank < world_size):
            raise UserError(f"rank must be in [0, world_size), got {rank} of {world_size}")
        self.shuffle = bool(shuffle)
        self.buffer_size = buffer_size
        self.seed = int(seed)
        self.transform = transform
        self.row_filter = row_filter
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.files: list[_FileInfo] = []
        self.fields: list[str] = []
        #: per field: (per-sample shape, numpy dtype), the same in every file
        self.sample_specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for p in paths:
            self._add_file(Path(p), fields, filter_fields, block_size)
        #: what each block read holds: the yielded fields, then those only the filter reads
        self.read_fields = self.fields + [f for f in filter_fields if f not in self.fields]

    def _add_file(
        self,
        path: Path,
        fields: Sequence[str] | None,
        filter_fields: Sequence[str],
        block_size: int | None,
    ) -> None:
        # Reader and the export check are used here, in the main process, then closed: worker
        # processes open their own handles (an h5py handle must not cross a fork)
        from hpcgen.io.export import check_exportable
        from hpcgen.io.reader import Reader

        with Reader(path) as r:
            check_exportable(r)
            names = [f.name for f in r.fields]
            if not self.fields:
                self.fields = list(fields) if fields is not None else names
            for name in [*self.fields, *filter_fields]:
                if name not in names:
                    raise UserError(f"{path}: no field {name!r} (fields: {', '.join(names)})")
            for name in self.fields:
                ds = r.h5[name]
                got = (tuple(ds.shape[1:]), ds.dtype)
                want = self.sample_specs.setdefault(name, got)
                if got != want:
                    raise UserError(
                        f"{path}: field {name!r} has per-sample shape {got[0]} {got[1]}, "
                        f"the first file's is {want[0]} {want[1]}"
                    )
            self.files.append(_FileInfo(path, r.n_rows, block_size or r.spec.chunk_size))

    # --- public --------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Rows in all files together (one epoch over every rank and worker)."""
        return sum(f.n_rows for f in self.files)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order. Call before iterating (before creating the DataLoader
        iterator: workers copy the dataset when the ``for`` loop starts; with
        ``persistent_workers=True`` they keep the copy they made first)."""
        self.epoch = int(epoch)

    def blocks(self) -> list[tuple[int, int, int]]:
        """Every (file index, first row, stop row) block, in file order."""
        out = []
        for i, f in enumerate(self.files):
            out += [(i, a, min(a + f.block, f.n_rows)) for a in range(0, f.n_rows, f.block)]
        return out

    def consumer(self) -> tuple[int, int]:
        """(this consumer's index, number of consumers) for the calling process and worker."""
        rank, world = self.rank, self.world_size
        if rank is None:
            rank, world = 0, 1
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank, world = dist.get_rank(), dist.get_world_size()
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * n_workers + worker, world * n_workers

    def my_blocks(self) -> list[tuple[int, int, int]]:
        """The blocks this consumer reads this epoch, in reading order."""
        blocks = self.blocks()
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(blocks))
            blocks = [blocks[i] for i in order]
        c, n = self.consumer()
        return blocks[c::n]

    def __iter__(self) -> Iterator[Any]:
        c, _ = self.consumer()
        rows = self._rows(self.my_blocks())
        if self.shuffle and self.buffer_size > 0:
            rng = np.random.default_rng([self.seed, self.epoch, c])
            rows = self._shuffled(rows, rng)
        for row in rows:
            sample = {name: torch.from_numpy(np.array(row[name])) for name in self.fields}
            yield self.transform(sample) if self.transform is not None else sample

    # --- reading -------------------------------------------------------------------------------
    def _read_block(self, h5: Any, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows [start, stop) of the fields read from an open file (the one place data is
        read)."""
        return {name: h5[name][start:stop] for name in self.read_fields}

    def _rows(self, blocks: list[tuple[int, int, int]]) -> Iterator[dict[str, Any]]:
        """Rows of the blocks in order, one block read at a time, each file opened once."""
        import h5py

        handles: dict[int, Any] = {}
        try:
            for i, start, stop in blocks:
                if i not in handles:
                    handles[i] = h5py.File(self.files[i].path, "r")
                block = self._read_block(handles[i], start, stop)
                keep = range(stop - start)
                if self.row_filter is not None:
                    mask = np.asarray(self.row_filter(block), dtype=bool)
                    if mask.shape != (stop - start,):
                        raise UserError(
                            f"row_filter returned shape {mask.shape} for a block of "
                            f"{stop - start} rows; it must return one bool per row"
                        )
                    keep = np.flatnonzero(mask)
                for j in keep:
                    yield {name: block[name][j] for name in self.fields}
                del block  # drop the block before the next read: one block in memory
        finally:
            for h in handles.values():
                h.close()

    def _shuffled(
        self, rows: Iterator[dict[str, Any]], rng: np.random.Generator
    ) -> Iterator[dict[str, Any]]:
        """A shuffle buffer: fill ``buffer_size`` slots, then for each new row yield a random
        slot's row and put the new one there; at the end, yield what is left in random order.
        Slots are preallocated arrays, so a yielded row never keeps its whole block alive."""
        size = self.buffer_size
        buf = {
            name: np.empty((size, *shape), dtype=dtype)
            for name, (shape, dtype) in self.sample_specs.items()
        }
        filled = 0
        for row in rows:
            if filled < size:
                slot = filled
                filled += 1
            else:
                slot = int(rng.integers(size))
                yield {name: buf[name][slot].copy() for name in self.fields}
            for name in self.fields:
                buf[name][slot] = row[name]
        for slot in rng.permutation(filled):
            yield {name: buf[name][slot] for name in self.fields}
