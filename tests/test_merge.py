"""Per-job shards (--chunks A:B --atomic) and `hpcgen merge`: byte-identical joins, and refusal
of every defect with a report naming the chunk ranges."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from helpers import assert_same_data, run_hpcgen
from toy_generator import SPEC_NAME

from hpcgen.engine.run import CRASH_ENV
from hpcgen.io.writer import shard_name

SPEC = (
    f'generator = "{SPEC_NAME}"\nn_samples = 2300\nseed = 11\nchunk_size = 250\n'
    'output = "m.h5"\n\n[params]\nscale = 0.5\n'
)  # 10 chunks, the last one short
N_CHUNKS = 10


def job(spec: Path, d: Path, a: int, b: int, env: dict | None = None, check: bool = True):
    return run_hpcgen(
        "run",
        spec,
        "--chunks",
        f"{a}:{b}",
        "--atomic",
        "--quiet",
        "--out",
        d / shard_name((a, b)),
        env=env,
        check=check,
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("merge")
    spec = d / "spec.toml"
    spec.write_text(SPEC)
    single = d / "single.h5"
    run_hpcgen("run", spec, "--out", single, "--quiet", ranks=2, check=True)
    shards = d / "shards"
    shards.mkdir()
    for a, b in [(0, 3), (3, 4), (4, 8), (8, 10)]:
        job(spec, shards, a, b)
    return spec, single, shards


def fresh_copy(shards: Path, tmp_path: Path) -> Path:
    d = tmp_path / "shards"
    shutil.copytree(shards, d)
    return d


def merge(*args):
    return run_hpcgen("merge", *args)


def test_merge_equals_single_run(setup, tmp_path):
    _, single, shards = setup
    out = tmp_path / "merged.h5"
    proc = merge(shards, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert_same_data(single, out)
    assert run_hpcgen("verify", out).returncode == 0
    # OUT.metadata.json, as a run writes it: the merged file's own provenance and identity
    meta = json.loads((tmp_path / "merged.metadata.json").read_text())
    with h5py.File(out) as f:
        assert meta["provenance"] == json.loads(f.attrs["hpcgen_provenance"])
        assert meta["data_hash"] == f.attrs["hpcgen_data_hash"]
    assert meta["file"] == "merged.h5" and len(meta["provenance"]["merged_from"]) == 4
    with h5py.File(single) as f:
        assert meta["data_hash"] == f.attrs["hpcgen_data_hash"]
    assert [m["name"] for m in meta["fields"]] == [
        m["name"] for m in json.loads((single.with_suffix(".metadata.json")).read_text())["fields"]
    ]


def test_virtual_merge_equals_single_run_and_detects_a_lost_source(setup, tmp_path):
    _, single, shards = setup
    d = fresh_copy(shards, tmp_path)
    out = tmp_path / "virtual.h5"
    assert merge(d, "--out", out, "--virtual").returncode == 0
    with h5py.File(out) as f:
        assert f["x"].is_virtual
    assert_same_data(single, out)
    (d / shard_name((3, 4))).unlink()  # HDF5 would silently read fill values here
    proc = run_hpcgen("verify", out)
    assert proc.returncode == 1
    assert "FAIL  virtual sources present" in proc.stdout
    npz = tmp_path / "v.npz"
    proc = run_hpcgen("export", out, "--format", "npz", "--out", npz)
    assert proc.returncode == 2, proc.stderr
    assert "source file(s) of its virtual datasets are missing" in proc.stderr
    assert shard_name((3, 4)) in proc.stderr and "Traceback" not in proc.stderr
    assert not npz.exists() and not list(tmp_path.glob("v.npz*"))


def test_gap_is_refused_with_the_range(setup, tmp_path):
    _, _, shards = setup
    d = fresh_copy(shards, tmp_path)
    (d / shard_name((4, 8))).unlink()
    proc = merge(d, "--out", tmp_path / "x.h5")
    assert proc.returncode == 2
    assert "gap: chunks [4,8) missing" in proc.stderr
    assert not (tmp_path / "x.h5").exists()


def test_allow_partial_records_missing_ranges(setup, tmp_path):
    _, single, shards = setup
    d = fresh_copy(shards, tmp_path)
    (d / shard_name((3, 4))).unlink()
    (d / shard_name((8, 10))).unlink()
    out = tmp_path / "partial.h5"
    proc = merge(d, "--out", out, "--allow-partial")
    assert proc.returncode == 0, proc.stderr
    assert "[3,4), [8,10)" in proc.stderr
    with h5py.File(out) as f, h5py.File(single) as s:
        assert f.attrs["hpcgen_missing_chunk_ranges"].tolist() == [[3, 4], [8, 10]]
        assert f["_hpcgen/done"][...].tolist() == [1, 1, 1, 0, 1, 1, 1, 1, 0, 0]
        assert (f["y"][: 3 * 250] == s["y"][: 3 * 250]).all()
    verify = run_hpcgen("verify", out)
    assert verify.returncode == 1 and "merged without missing ranges" in verify.stdout
    npz = tmp_path / "p.npz"
    proc = run_hpcgen("export", out, "--format", "npz", "--out", npz)
    assert proc.returncode == 2 and "chunks [3,4), [8,10) are not written (3 of 10)" in proc.stderr
    assert not npz.exists()


def test_overlap_is_refused(setup, tmp_path):
    spec, _, shards = setup
    d = fresh_copy(shards, tmp_path)
    job(spec, d, 2, 5)
    proc = merge(d, "--out", tmp_path / "x.h5")
    assert proc.returncode == 2
    assert "overlap: chunks [2,3)" in proc.stderr


def test_duplicate_is_refused(setup, tmp_path):
    _, _, shards = setup
    d = fresh_copy(shards, tmp_path)
    shutil.copy(d / shard_name((4, 8)), d / "copy-of-4-8.h5")
    proc = merge(d, "--out", tmp_path / "x.h5")
    assert proc.returncode == 2
    assert "duplicate: chunks [4,8)" in proc.stderr


def test_corrupt_and_truncated_shards_are_refused(setup, tmp_path):
    _, _, shards = setup
    d = fresh_copy(shards, tmp_path)
    p = d / shard_name((4, 8))
    p.write_bytes(p.read_bytes()[:5000])  # truncated on disk
    (d / "garbage.h5").write_bytes(b"not hdf5 at all")
    proc = merge(d, "--out", tmp_path / "x.h5")
    assert proc.returncode == 2
    assert f"{shard_name((4, 8))}: unreadable" in proc.stderr
    assert "garbage.h5: unreadable" in proc.stderr
    assert "gap: chunks [4,8) missing" in proc.stderr


def test_shard_of_another_spec_is_refused_even_with_allow_partial(setup, tmp_path):
    _spec, _, shards = setup
    d = fresh_copy(shards, tmp_path)
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("seed = 11", "seed = 12"))
    (d / shard_name((8, 10))).unlink()
    job(other, d, 8, 10)
    for extra in ([], ["--allow-partial"]):
        proc = merge(d, "--out", tmp_path / "x.h5", *extra)
        assert proc.returncode == 2
        assert "another spec" in proc.stderr


def test_killed_job_leaves_no_partial_and_retry_completes(setup, tmp_path):
    spec, single, shards = setup
    d = fresh_copy(shards, tmp_path)
    target = d / shard_name((4, 8))
    target.unlink()
    proc = job(spec, d, 4, 8, env={CRASH_ENV: "1"}, check=False)
    assert proc.returncode != 0
    assert not target.exists()  # never renamed into place
    assert (d / (target.name + ".partial")).exists()
    job(spec, d, 4, 8)  # the retry discards the half-written temporary
    assert target.exists() and not (d / (target.name + ".partial")).exists()
    mtime = target.stat().st_mtime_ns
    proc = job(spec, d, 4, 8)  # a retry of a complete job: exit 0 at once, file untouched
    assert target.stat().st_mtime_ns == mtime
    out = tmp_path / "m.h5"
    assert merge(d, "--out", out).returncode == 0
    assert_same_data(single, out)


def test_merge_never_overwrites(setup, tmp_path):
    _, _, shards = setup
    out = tmp_path / "exists.h5"
    out.write_bytes(b"keep")
    proc = merge(shards, "--out", out)
    assert proc.returncode == 2 and "exists" in proc.stderr
    assert out.read_bytes() == b"keep"


def test_chunks_outside_the_plan(setup, tmp_path):
    spec, _, _ = setup
    proc = run_hpcgen("run", spec, "--chunks", f"8:{N_CHUNKS + 1}", "--out", tmp_path / "s.h5")
    assert proc.returncode == 2 and "outside the plan's chunks 0:10" in proc.stderr


def test_export_of_several_files_needs_a_format_that_joins_them(setup, tmp_path):
    _, single, _ = setup
    out = tmp_path / "two.npz"
    proc = run_hpcgen("export", single, single, "--format", "npz", "--out", out)
    assert proc.returncode == 2
    assert "export --format npz takes one file, got 2" in proc.stderr
    assert not out.exists()


def test_coverage_names_a_negative_chunk_range():
    # a damaged hpcgen_chunk_range attribute: refused as out of range, not an internal error
    from hpcgen.io.merge import coverage

    problems, gaps = coverage([(-2, 3, "bad.h5"), (3, 5, "good.h5")], 5)
    assert problems == ["out of range: bad.h5 holds chunks [-2,3) of a 5-chunk plan"]
    assert gaps == []
