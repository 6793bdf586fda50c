"""The crash-safety order, observed in the engine's own calls: a chunk's rows and its checksums
are written, then flushed, and only then is its done flag written. A done flag set before the
flush would let a crash leave a chunk marked done whose rows never reached the disk."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
from toy_generator import SPEC_NAME

from hpcgen.engine.comm import SerialComm
from hpcgen.engine.run import RunOptions, run
from hpcgen.io import writer
from hpcgen.spec import RunSpec

CHUNK = 100
FIELDS = {"/x", "/y", "/n"}


def recorded_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint_s: float) -> list:
    """Run 5 chunks in this process; return the writer's calls in order: ("rows", field, chunk),
    ("checksums", chunk) and ("done", chunk) for each row of those calls, ("flush",)."""
    events: list[tuple] = []
    real_write_rows = writer.write_rows
    real_flush = h5py.File.flush

    def write_rows(dset, start, data, collective):
        if data is not None:
            assert dset.name in FIELDS, dset.name  # bookkeeping goes through write_row_set
            events.append(("rows", dset.name, start // CHUNK))
        return real_write_rows(dset, start, data, collective)

    def flush(self):
        events.append(("flush",))
        return real_flush(self)

    real_write_row_set = writer.write_row_set

    def write_row_set(dset, rows, data, collective):
        kind = {"/_hpcgen/done": "done", "/_hpcgen/checksums": "checksums"}[dset.name]
        events.extend((kind, r) for r in rows)
        return real_write_row_set(dset, rows, data, collective)

    monkeypatch.setattr(writer, "write_rows", write_rows)
    monkeypatch.setattr(writer, "write_row_set", write_row_set)
    monkeypatch.setattr(h5py.File, "flush", flush)
    spec = RunSpec.from_dict(
        {
            "generator": SPEC_NAME,
            "n_samples": 5 * CHUNK - 30,
            "seed": 2,
            "chunk_size": CHUNK,
            "output": str(tmp_path / "o.h5"),
            "io": "mpio",
        }
    )
    run(spec, RunOptions(quiet=True, checkpoint_s=checkpoint_s), SerialComm())
    return events


@pytest.mark.parametrize("checkpoint_s", [0.0, 1e9])
def test_done_flag_only_after_rows_and_checksums_are_flushed(tmp_path, monkeypatch, checkpoint_s):
    events = recorded_run(tmp_path, monkeypatch, checkpoint_s)
    done_at = {e[1]: i for i, e in enumerate(events) if e[0] == "done"}
    assert sorted(done_at) == [0, 1, 2, 3, 4]
    for k, i in done_at.items():
        mine = [
            j
            for j, e in enumerate(events)
            if (e[0] == "rows" and e[2] == k) or (e[0] == "checksums" and e[1] == k)
        ]
        assert {events[j][1] for j in mine if events[j][0] == "rows"} == FIELDS
        assert sum(events[j][0] == "checksums" for j in mine) == 1
        last = max(mine)
        assert last < i, f"chunk {k}: done flag before its rows"
        assert any(events[j] == ("flush",) for j in range(last + 1, i)), (
            f"chunk {k}: no flush between its rows and its done flag: {events[last : i + 1]}"
        )


def test_checkpoint_every_round_flags_each_chunk_after_its_own_flush(tmp_path, monkeypatch):
    """--checkpoint-every 0: one flush per round, each chunk flagged right after it."""
    events = recorded_run(tmp_path, monkeypatch, 0.0)
    kinds = [e[0] for e in events if e[0] != "rows"]
    assert kinds == ["checksums", "flush", "done"] * 5 + ["flush"]
