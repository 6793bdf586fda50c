"""Bad input: one clear line on stderr, exit code 2, and nothing already written is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_hpcgen

BAD = [
    ('generator = "nope"\nn_samples = 10\n', "unknown generator 'nope'"),
    ('generator = "tracks"\nn_samples = 0\n', "n_samples must be > 0"),
    ('generator = "tracks"\nn_samples = -5\n', "n_samples must be > 0"),
    ('generator = "tracks"\nn_samples = 10\nseed = -1\n', "seed must be >= 0"),
    ('generator = "tracks"\nn_samples = 10\ncolour = 3\n', "unknown key 'colour'"),
    (
        'generator = "tracks"\nn_samples = 10\n[params]\nwidth = 3\n',
        "unknown parameter params.width",
    ),
    (
        'generator = "tracks"\nn_samples = 10\n[params]\np_min = 50.0\np_max = 10.0\n',
        "params.p_min 50.0 > p_max 10.0",
    ),
    (
        'generator = "tracks"\nn_samples = 10\n[params]\nx_range = [10.0, -10.0]\n',
        "params.x_range: low 10.0 > high -10.0",
    ),
    (
        'generator = "tracks"\nn_samples = 10\n[params]\nstep = "big"\n',
        "params.step must be a number",
    ),
    (
        'generator = "tracks"\nn_samples = 10\n[params]\nfield = "dipole"\n',
        "params.field must be one of",
    ),
    ('generator = "tracks"\nn_samples = 10\ndtype = "float16"\n', "dtype must be one of"),
    (
        'generator = "tracks"\nn_samples = 10\noutput = "/nonexistent/dir/x.h5"\n',
        "output directory does not exist",
    ),
    ("this is = not [toml\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_spec_one_line_exit_2(tmp_path: Path, text: str, message: str):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    (tmp_path / "afile").write_text("")  # a directory below a file cannot be made, even by root
    proc = run_hpcgen(
        "run",
        spec,
        "--out",
        tmp_path / "x.h5" if "output" not in text else tmp_path / "afile" / "dir" / "x.h5",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert not (tmp_path / "x.h5").exists()


def test_unwritable_output_directory(tmp_path: Path, toy_spec: Path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    import os

    if os.access(ro, os.W_OK):  # root ignores permissions: make it a file path instead
        ro.chmod(0o755)
        (tmp_path / "afile").write_text("")
        target = tmp_path / "afile" / "x.h5"
        expected = "output directory does not exist"
    else:
        target = ro / "x.h5"
        expected = "not writable"
    proc = run_hpcgen("run", toy_spec, "--out", target)
    assert proc.returncode == 2 and expected in proc.stderr


def test_missing_spec_file(tmp_path: Path):
    proc = run_hpcgen("run", tmp_path / "missing.toml")
    assert proc.returncode == 2
    assert "spec file not found" in proc.stderr


def test_existing_output_is_not_touched(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "exists.h5"
    out.write_bytes(b"precious data")
    proc = run_hpcgen("run", toy_spec, "--out", out)
    assert proc.returncode == 2
    assert "exists; use --resume" in proc.stderr
    assert out.read_bytes() == b"precious data"


def test_bad_set_override_and_device(tmp_path: Path, toy_spec: Path):
    proc = run_hpcgen("run", toy_spec, "--out", tmp_path / "a.h5", "--set", "scale=-1")
    assert proc.returncode == 2 and "params.scale must be > 0" in proc.stderr
    proc = run_hpcgen("run", toy_spec, "--out", tmp_path / "a.h5", "--n", "0")
    assert proc.returncode == 2 and "n_samples must be > 0" in proc.stderr


def test_gpu_requested_without_gpu(tmp_path: Path, toy_spec: Path):
    from hpcgen.engine.device import gpu_available

    if gpu_available():
        pytest.skip("a GPU is present")
    proc = run_hpcgen("run", toy_spec, "--out", tmp_path / "g.h5", "--device", "gpu")
    assert proc.returncode == 2
    assert "no usable CUDA GPU" in proc.stderr
    assert not (tmp_path / "g.h5").exists()


def test_bad_input_under_mpi_exits_2_on_every_rank(tmp_path: Path):
    spec = tmp_path / "bad.toml"
    spec.write_text('generator = "tracks"\nn_samples = 0\n')
    proc = run_hpcgen("run", spec, "--out", tmp_path / "x.h5", ranks=2)
    assert proc.returncode == 2
    assert proc.stderr.count("n_samples must be > 0") == 1  # printed once, by rank 0


# --- engine-side inputs that used to give a traceback (exit 1) or pass as nonsense --------------


def one_line_exit_2(proc) -> str:
    """The error line of a refused run: exit 2, one line on stderr, no traceback."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hpcgen: error: "), lines[0]
    return lines[0]


def test_resume_onto_a_text_file(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "notes.h5"
    out.write_text("not hdf5\n")
    line = one_line_exit_2(run_hpcgen("run", toy_spec, "--out", out, "--resume", "--quiet"))
    assert f"cannot resume {out}" in line and "not an HDF5 file" in line
    assert out.read_text() == "not hdf5\n"


def test_resume_onto_a_truncated_hpcgen_file(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "t.h5"
    run_hpcgen("run", toy_spec, "--out", out, "--quiet", check=True)
    blob = out.read_bytes()
    out.write_bytes(blob[: len(blob) // 2])
    line = one_line_exit_2(run_hpcgen("run", toy_spec, "--out", out, "--resume", "--quiet"))
    assert f"cannot resume {out}" in line and "truncated" in line and "--overwrite" in line
    assert out.stat().st_size == len(blob) // 2


def test_resume_onto_an_hdf5_file_that_is_not_hpcgen(tmp_path: Path, toy_spec: Path):
    import h5py

    out = tmp_path / "other.h5"
    with h5py.File(out, "w") as f:
        f["x"] = [1, 2, 3]
    line = one_line_exit_2(run_hpcgen("run", toy_spec, "--out", out, "--resume", "--quiet"))
    assert "not an hpcgen file" in line


@pytest.mark.parametrize(
    "args",
    [
        ("--n", "1e15"),
        ("--n", "1000000000000000", "--chunk-size", "1000"),
        ("--n", "100000000000", "--chunk-size", "1"),
    ],
)
def test_absurd_sample_counts_are_refused_before_allocating(tmp_path, toy_spec, args):
    out = tmp_path / "huge.h5"
    line = one_line_exit_2(run_hpcgen("run", toy_spec, "--out", out, "--yes", *args, timeout=60))
    assert "chunks" in line and "memory" in line and "chunk_size" in line
    assert not out.exists()


def test_n_in_scientific_notation_is_a_count(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "sci.h5"
    run_hpcgen("run", toy_spec, "--out", out, "--n", "1.2e3", "--quiet", check=True)
    import h5py

    with h5py.File(out) as f:
        assert f["x"].shape[0] == 1200
    line = one_line_exit_2(run_hpcgen("run", toy_spec, "--out", out, "--n", "1.5"))
    assert "--n" in line and "whole number" in line


def test_overwrite_refuses_a_directory(tmp_path: Path, toy_spec: Path):
    out = tmp_path / "adir"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    for extra in ((), ("--overwrite",), ("--resume",)):
        line = one_line_exit_2(run_hpcgen("run", toy_spec, "--out", out, "--quiet", *extra))
        assert f"{out} is a directory" in line
    assert (out / "keep.txt").read_text() == "keep"


@pytest.mark.parametrize("value", ["0", "-5"])
def test_non_positive_chunk_size_is_refused(tmp_path: Path, toy_spec: Path, value: str):
    out = tmp_path / "c.h5"
    line = one_line_exit_2(run_hpcgen("run", toy_spec, "--out", out, "--chunk-size", value))
    assert f"chunk_size must be > 0, got {value}" in line
    assert not out.exists()
    spec = tmp_path / "c.toml"
    spec.write_text(f'generator = "tracks"\nn_samples = 10\nchunk_size = {value}\n')
    line = one_line_exit_2(run_hpcgen("run", spec, "--out", out))
    assert f"chunk_size must be > 0, got {value}" in line
