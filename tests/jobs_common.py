"""Shared pieces of the batch-job tests: a small spec, its single-run reference, file checks."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import h5py
from helpers import run_hpcgen

from hpcgen.cli import main

#: 3,000 tracks in 8 chunks of 400 (the last one short), 50 mm steps: about a second per job
SMALL_SPEC = """generator = "tracks"
n_samples = 3000
seed = 11
chunk_size = 400
output = "small.h5"

[params]
field = "gaussian"
step = 50.0
p_min = 2.0
p_max = 100.0
z_start = 3000.0
z_end = 9000.0
"""
N_CHUNKS = 8


def write_spec(folder: Path, name: str = "small.toml", text: str = SMALL_SPEC) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def single_run(spec: Path, out: Path) -> Path:
    """The file one plain ``hpcgen run`` writes: what every batch route must reproduce."""
    run_hpcgen("run", spec, "--out", out, "--quiet", check=True)
    return out


def leftovers(folder: Path) -> list[Path]:
    """Half-written temporaries anywhere under folder."""
    return sorted(folder.rglob("*.partial"))


def shard_is_complete(path: Path, chunk_range: tuple[int, int]) -> bool:
    with h5py.File(path, "r") as f:
        return (
            tuple(int(x) for x in f.attrs["hpcgen_chunk_range"]) == chunk_range
            and bool(f["_hpcgen/done"][...].all())
            and len(f["_hpcgen/done"]) == chunk_range[1] - chunk_range[0]
        )


@dataclass
class Result:
    returncode: int
    stderr: str


def jobs(*args: object) -> Result:
    """``hpcgen jobs ARGS`` through the real CLI entry point, in this process (no start-up cost)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["jobs", *map(str, args)])
    return Result(rc, err.getvalue())
