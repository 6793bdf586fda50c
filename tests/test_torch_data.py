"""hpcgen.torch_data.HpcgenDataset: sharding by rank and worker (every row once), deterministic
order per (seed, epoch), bounded memory (buffer + one block), several files, a real DataLoader."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from hpcgen.engine.comm import SerialComm
from hpcgen.engine.run import RunOptions, run
from hpcgen.errors import UserError
from hpcgen.io import layout
from hpcgen.spec import RunSpec

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from hpcgen import torch_data  # noqa: E402
from hpcgen.torch_data import HpcgenDataset  # noqa: E402


def write_tracks(path: Path, n: int, chunk_size: int, seed: int, dtype: str = "float64") -> Path:
    """A small tracks file written by the engine in this process (the CLI's code path)."""
    spec = RunSpec.from_dict(
        {
            "generator": "tracks",
            "n_samples": n,
            "seed": seed,
            "chunk_size": chunk_size,
            "dtype": dtype,
            "output": str(path),
            "params": {"field": "gaussian", "step": 20.0},
        }
    )
    run(spec, RunOptions(quiet=True), comm=SerialComm())
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """Two files: 130 rows in blocks of 20 (the last one 10) and 75 rows in blocks of 25."""
    d = tmp_path_factory.mktemp("torchdata")
    return [
        write_tracks(d / "a.h5", 130, 20, seed=1),
        write_tracks(d / "b.h5", 75, 25, seed=2),
    ]


@pytest.fixture(scope="module")
def rows(files) -> dict[bytes, tuple[int, int]]:
    """X row bytes -> (file index, row): every track's inputs are distinct random floats."""
    out = {}
    for i, p in enumerate(files):
        with h5py.File(p, "r") as f:
            for j, x in enumerate(f["X"][...]):
                out[x.tobytes()] = (i, j)
    assert len(out) == 205
    return out


def keys(rows, samples) -> list[tuple[int, int]]:
    """(file, row) of each sample, in the order they came."""
    return [rows[s["X"].numpy().tobytes()] for s in samples]


def as_worker(monkeypatch, worker: int, n_workers: int) -> None:
    """Run the dataset as DataLoader worker ``worker`` of ``n_workers`` (in this process)."""
    info = SimpleNamespace(id=worker, num_workers=n_workers)
    monkeypatch.setattr(torch_data, "get_worker_info", lambda: info)


def test_every_row_once_across_2_workers_and_2_ranks(files, rows, monkeypatch):
    seen = []
    per_consumer = []
    for rank in (0, 1):
        for worker in (0, 1):
            as_worker(monkeypatch, worker, 2)
            ds = HpcgenDataset(files, buffer_size=16, seed=3, rank=rank, world_size=2)
            got = keys(rows, ds)
            per_consumer.append(got)
            seen += got
    assert sorted(seen) == sorted(rows.values())
    assert all(per_consumer), "a consumer got no rows"


def test_rank_and_world_size_come_from_torch_distributed(files, rows, monkeypatch):
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    implicit = HpcgenDataset(files, seed=3)
    explicit = HpcgenDataset(files, seed=3, rank=1, world_size=2)
    assert implicit.consumer() == (1, 2)
    assert keys(rows, implicit) == keys(rows, explicit)


def test_same_order_for_a_seed_and_epoch_another_for_another_epoch(files, rows):
    def order(seed: int, epoch: int) -> list[tuple[int, int]]:
        ds = HpcgenDataset(files, buffer_size=32, seed=seed)
        ds.set_epoch(epoch)
        return keys(rows, ds)

    first = order(0, 0)
    assert sorted(first) == sorted(rows.values())
    assert order(0, 0) == first
    assert order(0, 1) != first
    assert sorted(order(0, 1)) == sorted(first)
    assert order(1, 0) != first
    assert first != sorted(first)  # shuffled at all


def test_no_shuffle_streams_the_files_in_order(files, rows):
    ds = HpcgenDataset(files, fields=("X", "P", "status"), shuffle=False)
    samples = list(ds)
    assert keys(rows, samples) == sorted(rows.values())
    s = samples[0]
    assert sorted(s) == ["P", "X", "status"]
    assert s["X"].dtype == torch.float64 and tuple(s["X"].shape) == (6,)
    assert s["P"].dtype == torch.float64 and s["P"].dim() == 0
    assert s["status"].dtype == torch.uint8
    with h5py.File(files[1], "r") as f:
        assert samples[130]["P"].item() == f["P"][0]


class CountingDataset(HpcgenDataset):
    """Records each block read (its row count)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.reads: list[int] = []

    def _read_block(self, h5, start, stop):
        block = super()._read_block(h5, start, stop)
        self.reads.append(len(block["X"]))
        return block


@pytest.mark.parametrize("buffer_size", [0, 16, 50])
def test_holds_at_most_the_buffer_and_one_block(files, buffer_size):
    ds = CountingDataset(files, buffer_size=buffer_size, seed=5)
    most_held = 0
    n = 0
    for _ in ds:
        n += 1
        held = sum(ds.reads) - n  # rows read and not yet yielded
        most_held = max(most_held, held)
        assert held <= buffer_size + 25, (n, held)
    assert n == 205 and sum(ds.reads) == 205  # every row read once, never a whole file
    assert max(ds.reads) == 25 and sorted(set(ds.reads)) == [10, 20, 25]
    # the buffer is really used: it fills up before rows come out
    assert most_held >= min(buffer_size, 205 - 25)


def test_block_size_sets_the_reads(files, rows):
    ds = CountingDataset(files, block_size=7, buffer_size=0)
    assert sorted(keys(rows, ds)) == sorted(rows.values())
    assert max(ds.reads) == 7


def test_transform_is_applied_to_each_sample(files):
    ds = HpcgenDataset(files, shuffle=False, transform=lambda s: (s["X"][:4], s["Y"]))
    x, y = next(iter(ds))
    with h5py.File(files[0], "r") as f:
        assert x.numpy().tobytes() == f["X"][0, :4].tobytes()
        assert y.numpy().tobytes() == f["Y"][0].tobytes()


def test_row_filter_drops_rows_and_keeps_the_rest_once(files, rows, monkeypatch):
    """Keep the tracks above the median momentum, P read for the filter only."""
    p = {}
    for i, path in enumerate(files):
        with h5py.File(path, "r") as f:
            p.update({(i, j): v for j, v in enumerate(f["P"][...])})
    cut = float(np.median(list(p.values())))
    want = sorted(k for k, v in p.items() if v > cut)
    seen = []
    for worker in (0, 1):
        as_worker(monkeypatch, worker, 2)
        ds = HpcgenDataset(
            files, fields=("X",), row_filter=lambda b: b["P"] > cut, filter_fields="P", seed=1
        )
        samples = list(ds)
        assert all(sorted(s) == ["X"] for s in samples)
        seen += keys(rows, samples)
    assert sorted(seen) == want and 0 < len(want) < len(p)
    bad = HpcgenDataset(files, row_filter=lambda b: b["X"] > 0)  # (rows, 6): not one per row
    with pytest.raises(UserError, match="one bool per row"):
        next(iter(bad))


def test_dataloader_with_two_workers(files, rows):
    ds = HpcgenDataset(files, buffer_size=16, seed=2)
    loader = DataLoader(ds, batch_size=32, num_workers=2)
    batches = list(loader)
    assert batches[0]["X"].shape == (32, 6) and batches[0]["Y"].shape == (32, 4)
    x = torch.cat([b["X"] for b in batches]).numpy()
    assert sorted(rows[r.tobytes()] for r in x) == sorted(rows.values())
    # the same rows in the same order on the next pass; another epoch changes it
    again = torch.cat([b["X"] for b in loader]).numpy()
    assert again.tobytes() == x.tobytes()
    ds.set_epoch(1)
    other = torch.cat([b["X"] for b in loader]).numpy()
    assert other.tobytes() != x.tobytes()


def test_refuses_files_it_cannot_stream_whole(files, tmp_path):
    with pytest.raises(UserError, match="no field 'images'"):
        HpcgenDataset(files, fields=("images",))
    f32 = write_tracks(tmp_path / "f32.h5", 10, 5, seed=1, dtype="float32")
    with pytest.raises(UserError, match="field 'X' has per-sample shape"):
        HpcgenDataset([files[0], f32])
    broken = write_tracks(tmp_path / "broken.h5", 10, 5, seed=1)
    with h5py.File(broken, "r+") as f:
        f[layout.DONE][1] = 0
    with pytest.raises(UserError, match="not written"):
        HpcgenDataset(broken)
    with pytest.raises(UserError, match="rank and world_size"):
        HpcgenDataset(files, rank=0)
    with pytest.raises(UserError, match="buffer_size"):
        HpcgenDataset(files, buffer_size=-1)
    with pytest.raises(UserError, match="no fields"):
        HpcgenDataset(files, fields=())
