"""Edges of a run's start: a complete output whose sidecar is missing (the final metadata.json
was stopped by a full disk), --overwrite dropping the old sidecar, a one-file output resumed as
shards, and plan --calibrate in a directory it cannot write to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_same_data, run_hpcgen
from toy_generator import SPEC_NAME

from hpcgen.engine.run import CRASH_ENV

SPEC = f'generator = "{SPEC_NAME}"\nn_samples = 500\nseed = 9\nchunk_size = 100\noutput = "t.h5"\n'


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "toy.toml"
    path.write_text(SPEC)
    return path


def one_line(proc, code=2) -> str:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_complete_output_gets_its_missing_sidecar_back(tmp_path, spec):
    out = tmp_path / "t.h5"
    run_hpcgen("run", spec, "--out", out, "-q", check=True)
    sidecar = tmp_path / "t.metadata.json"
    first = json.loads(sidecar.read_text())
    sidecar.unlink()
    before = out.read_bytes()
    for extra in ((), ("--resume",), ("--atomic",)):
        res = run_hpcgen("run", spec, "--out", out, *extra, check=True)
        assert "already complete, nothing to do" in res.stderr
        assert json.loads(sidecar.read_text()) == first
        assert out.read_bytes() == before
        sidecar.unlink()


def test_overwrite_drops_the_old_sidecar_before_writing(tmp_path, spec):
    out = tmp_path / "t.h5"
    run_hpcgen("run", spec, "--out", out, "-q", check=True)
    sidecar = tmp_path / "t.metadata.json"
    assert sidecar.exists()
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("n_samples = 500", "n_samples = 300"))
    # the replacing run dies after its first round: the old data's sidecar must not stand
    # beside the new, unfinished file
    crashed = run_hpcgen(
        "run", other, "--out", out, "--overwrite", "-q", "--checkpoint-every", "0",
        env={CRASH_ENV: "1"},
    )  # fmt: skip
    assert crashed.returncode != 0
    assert not sidecar.exists()
    run_hpcgen("run", other, "--out", out, "--resume", "-q", check=True)
    assert json.loads(sidecar.read_text())["fields"][0]["shape"][0] == 300


def test_one_file_output_is_not_resumed_as_shards(tmp_path, spec):
    ref, out = tmp_path / "ref.h5", tmp_path / "t.h5"
    run_hpcgen("run", spec, "--out", ref, "-q", check=True)
    crashed = run_hpcgen(
        "run", spec, "--out", out, "-q", "--io", "mpio", "--checkpoint-every", "0",
        env={CRASH_ENV: "2"},
    )  # fmt: skip
    assert crashed.returncode != 0 and out.exists()
    before = out.read_bytes()
    line = one_line(run_hpcgen("run", spec, "--out", out, "--resume", "--io", "shards", "-q"))
    assert "written as one file (--io mpio)" in line
    assert out.read_bytes() == before
    assert not (tmp_path / "t.h5.shards").exists()
    run_hpcgen("run", spec, "--out", out, "--resume", "--io", "mpio", "-q", check=True)
    assert_same_data(ref, out)


def test_calibrate_where_it_cannot_write_is_one_line(tmp_path, spec):
    # /proc exists and is a directory, but no file can be made there, not even by root
    line = one_line(run_hpcgen("plan", spec, "--out", "/proc/x.h5", "--calibrate"))
    assert "cannot measure the write rate in /proc" in line
