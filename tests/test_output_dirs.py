"""Every command that writes a file makes its missing output directory (parents too), after its
other checks: run, export, merge, fieldmap synth. A directory that cannot be made (a file in its
way) is one line, exit 2."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_data, run_hpcgen

from hpcgen.io.writer import shard_name

SPEC = (
    'generator = "toy_generator:ToyGenerator"\nn_samples = 300\nseed = 3\nchunk_size = 100\n'
    'output = "toy.h5"\n'
)


def test_run_export_and_merge_make_missing_directories(tmp_path):
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC)
    single = tmp_path / "a" / "b" / "toy.h5"
    run_hpcgen("run", spec, "--out", single, "-q", check=True)
    npz = tmp_path / "c" / "d" / "toy.npz"
    run_hpcgen("export", single, "--format", "npz", "--out", npz, check=True)
    with np.load(npz) as d:
        assert d["y"].shape == (300,)
    shards = tmp_path / "shards"
    for a, b in ((0, 2), (2, 3)):
        out = shards / shard_name((a, b))  # shards/ is made by the first job
        run_hpcgen("run", spec, "--out", out, "--chunks", f"{a}:{b}", "--atomic", "-q", check=True)
    merged = tmp_path / "e" / "merged.h5"
    run_hpcgen("merge", shards, "--out", merged, check=True)
    assert_same_data(single, merged)


def test_a_file_in_the_way_is_one_line(tmp_path):
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC)
    good = tmp_path / "toy.h5"
    run_hpcgen("run", spec, "--out", good, "-q", check=True)
    (tmp_path / "afile").write_text("")
    proc = run_hpcgen("export", good, "--format", "npz", "--out", tmp_path / "afile" / "x.npz")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be created" in lines[0] and "afile" in lines[0], lines


def test_refused_export_leaves_no_directory(tmp_path):
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC)
    good = tmp_path / "toy.h5"
    run_hpcgen("run", spec, "--out", good, "-q", check=True)
    target = tmp_path / "new" / "x.npz"
    proc = run_hpcgen("export", good, "--format", "nosuchformat", "--out", target)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "new").exists()


def test_fieldmap_synth_makes_its_directory(tmp_path):
    out = tmp_path / "fieldmaps" / "synth.txt"
    run_hpcgen("fieldmap", "synth", "--out", out, check=True)
    assert out.stat().st_size > 0


def test_run_refused_after_making_its_directory_removes_it(tmp_path):
    # the space check comes after the directory is made (it measures the file system there)
    spec = tmp_path / "toy.toml"
    big = SPEC.replace("n_samples = 300", "n_samples = 10_000_000_000_000")
    spec.write_text(big.replace("chunk_size = 100", "chunk_size = 10_000_000"))
    (tmp_path / "keep").mkdir()
    target = tmp_path / "keep" / "new" / "deeper" / "toy.h5"
    proc = run_hpcgen("run", spec, "--out", target, "--yes", "-q")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "not enough space" in proc.stderr
    assert not (tmp_path / "keep" / "new").exists()
    assert (tmp_path / "keep").is_dir()  # it was there before: never removed


def test_output_parent_undoes_only_what_it_made_and_only_while_empty(tmp_path):
    from hpcgen.io.paths import output_parent

    out = tmp_path / "a" / "b" / "c" / "file"
    try:
        with output_parent(out) as made:
            assert made == [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
            raise RuntimeError("late failure")
    except RuntimeError:
        pass
    assert not (tmp_path / "a").exists()
    # a partial output (what --resume needs) keeps its directory and every one above it
    try:
        with output_parent(out):
            (out.parent / "file.partial").write_text("x")
            raise RuntimeError("late failure")
    except RuntimeError:
        pass
    assert (out.parent / "file.partial").exists()
    # success keeps the directories
    with output_parent(tmp_path / "d" / "file") as made:
        pass
    assert made == [tmp_path / "d"] and (tmp_path / "d").is_dir()


def test_make_parent_resolves_dotdot_and_undoes_a_partial_failure(tmp_path):
    from hpcgen.errors import UserError
    from hpcgen.io.paths import make_parent, output_parent

    # a/../b makes b only; a failure afterwards removes it again, and "a" was never made
    try:
        with output_parent(tmp_path / "a" / ".." / "b" / "file") as made:
            assert made == [tmp_path / "b"]
            raise RuntimeError("late failure")
    except RuntimeError:
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a name too long for the file system: the directories made before it are removed
    with pytest.raises(UserError, match="cannot be created"):
        make_parent(tmp_path / "new" / ("x" * 300) / "file")
    assert not (tmp_path / "new").exists()


def test_a_failed_sidecar_leaves_none_of_the_file_it_replaced(tmp_path, monkeypatch):
    from toy_generator import SPEC_NAME

    from hpcgen.errors import UserError
    from hpcgen.io.sidecar import sidecar_path, write_sidecar
    from hpcgen.spec import RunSpec

    spec = RunSpec.from_dict(
        {"generator": SPEC_NAME, "n_samples": 10, "seed": 1, "chunk_size": 5, "output": "t.h5"}
    )
    out = tmp_path / "t.h5"
    write_sidecar(out, spec, spec.make_generator(), {"run": "old"})
    assert json.loads(sidecar_path(out).read_text())["provenance"] == {"run": "old"}
    real_write = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name.endswith(".partial"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(UserError, match="not enough space"):
        write_sidecar(out, spec, spec.make_generator(), {"run": "new"})
    assert not sidecar_path(out).exists()  # no sidecar rather than the old file's
