"""atoms: metadata.json against the large-scale dataset spec (seed 001, "Metadata JSON Structure").

The spec's consumer reads ``metadata.json`` by the names of its "Required Fields" example:
``version``, ``timestamp`` (``datetime.now().isoformat()``), ``generation_params``
{num_images, seed, grid_size, splits}, ``dataset_info`` {train_count, val_count, test_count,
total_count}, ``memory_info`` {bytes_per_image, total_bytes, readable}, ``file_format``
{dtype "uint8", compression "npz"}; and ``train.npz`` by the keys ``images`` and ``labels``
(the spec's ``validate_dataset``). hpcgen's own information lives under keys of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcgen.cli import build_parser
from hpcgen.generators.atoms.dataset import memory_info
from hpcgen.generators.atoms.params import AtomsParams

SPEC_TOP = ("version", "timestamp", "generation_params", "dataset_info", "memory_info")
SPEC_KEYS = {
    "generation_params": {"num_images", "seed", "grid_size", "splits"},
    "dataset_info": {"train_count", "val_count", "test_count", "total_count"},
    "memory_info": {"bytes_per_image", "total_bytes", "readable"},
    "file_format": {"dtype", "compression"},
}


def spec_estimate_memory(num_images: int, grid_size: int = 16) -> dict:
    """Transcription of the spec's ``estimate_memory`` (its readable string and byte counts)."""
    bytes_per_image = grid_size * grid_size
    total_bytes = num_images * bytes_per_image
    if total_bytes < 1024:
        readable = f"{total_bytes} bytes"
    elif total_bytes < 1024**2:
        readable = f"{total_bytes / 1024:.2f} KB"
    elif total_bytes < 1024**3:
        readable = f"{total_bytes / (1024**2):.2f} MB"
    else:
        readable = f"{total_bytes / (1024**3):.2f} GB"
    return {"bytes_per_image": bytes_per_image, "total_bytes": total_bytes, "readable": readable}


class NoTerminal:
    def isatty(self) -> bool:
        return False


class Terminal:
    def isatty(self) -> bool:
        return True


def dataset(*args: str) -> int:
    ns = build_parser().parse_args(["dataset", "atoms", *args])
    return ns.func(ns)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dt.datetime]:
    """One small dataset (437 images, seed 5) and the local time just before it was written."""
    out = tmp_path_factory.mktemp("atoms_clients") / "ds"
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "stdin", NoTerminal())
    try:
        before = dt.datetime.now()
        assert dataset("--num-images", "437", "--seed", "5", "--output-dir", str(out)) == 0
    finally:
        mp.undo()
    return out, json.loads((out / "metadata.json").read_text()), before


def test_metadata_spec_objects_hold_exactly_the_spec_fields(written) -> None:
    _, meta, _ = written
    assert list(meta)[: len(SPEC_TOP)] == list(SPEC_TOP)
    for key, fields in SPEC_KEYS.items():
        assert set(meta[key]) == fields, key
    assert meta["version"] == "1.0.0"
    assert meta["file_format"] == {"dtype": "uint8", "compression": "npz"}
    g = meta["generation_params"]
    assert (g["num_images"], g["seed"], g["grid_size"]) == (437, 5, 16)
    assert g["splits"] == {"train": 0.8, "val": 0.1, "test": 0.1}
    # hpcgen's own information is still there, under keys of its own
    for extra in ("name", "timestamp_utc", "generator_info", "arrays", "storage_info"):
        assert extra in meta, extra
    assert meta["generator_info"]["generator"] == "atoms"
    assert meta["storage_info"]["bytes_per_sample"] == 525
    assert set(meta["arrays"]["file_bytes"]) == {"train.npz", "val.npz", "test.npz"}


def test_dataset_info_counts_are_the_npz_lengths(written) -> None:
    out, meta, _ = written
    info = meta["dataset_info"]
    lengths = {}
    for split in ("train", "val", "test"):
        with np.load(out / f"{split}.npz") as z:  # the spec's validate_dataset keys
            images, labels = z["images"], z["labels"]
        assert images.dtype == np.dtype(meta["file_format"]["dtype"])
        assert labels.dtype == np.uint8
        assert images.shape[1:] == (16, 16) and len(labels) == len(images)
        lengths[split] = len(images)
        assert info[f"{split}_count"] == len(images)
    assert info["total_count"] == sum(lengths.values()) == 437


def test_memory_info_is_the_spec_estimate(written) -> None:
    _, meta, _ = written
    # 437 uint8 16x16 images: 111,872 bytes = 109.25 * 1024
    assert meta["memory_info"] == {
        "bytes_per_image": 256,
        "total_bytes": 111_872,
        "readable": "109.25 KB",
    }
    assert meta["memory_info"] == spec_estimate_memory(437)


@pytest.mark.parametrize(
    ("n", "readable"),
    [
        (3, "768 bytes"),
        (4, "1.00 KB"),
        (4095, "1023.75 KB"),
        (4096, "1.00 MB"),
        (100_000, "24.41 MB"),
        (10_000_000, "2.38 GB"),
    ],
)
def test_readable_is_the_spec_style(n: int, readable: str) -> None:
    mem = memory_info(AtomsParams(), n)
    assert mem["readable"] == readable
    assert mem == spec_estimate_memory(n)


def test_timestamp_is_datetime_isoformat_local_time(written) -> None:
    _, meta, before = written
    ts = meta["timestamp"]
    parsed = dt.datetime.fromisoformat(ts)
    assert parsed.tzinfo is None  # datetime.now().isoformat(): no offset
    assert parsed.isoformat() == ts
    assert before <= parsed <= dt.datetime.now()
    utc = dt.datetime.fromisoformat(meta["timestamp_utc"])
    assert utc.utcoffset() == dt.timedelta(0)
    assert utc.astimezone().replace(tzinfo=None) == parsed  # the same instant


def test_the_plan_shows_the_spec_memory_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    assert dataset("--num-images", "100000") == 1  # answered no: nothing generated
    shown = capsys.readouterr().out
    assert "Dataset Generation Plan:" in shown
    assert "  Memory: 24.41 MB" in shown
    assert "  Images: 100,000" in shown
    assert not (tmp_path / "datasets").exists()
