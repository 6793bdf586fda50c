"""The command line's small promises: usage without a command, -V, the export formats in --help,
verify --json, an output directory made on demand, "already complete", and input paths relative
to the spec file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import run_hpcgen

from hpcgen.errors import SpecError
from hpcgen.generators import REGISTRY, get_generator_class
from hpcgen.spec import RunSpec

# --- hpcgen, hpcgen -V -----------------------------------------------------------------------


def test_bare_hpcgen_prints_usage_and_the_commands_and_exits_2() -> None:
    proc = run_hpcgen()
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("usage: hpcgen")
    for command in ("run", "plan", "verify", "export", "merge", "jobs"):
        assert f"    {command} " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_short_version_flag_is_the_long_one() -> None:
    long, short = run_hpcgen("--version"), run_hpcgen("-V")
    assert long.returncode == short.returncode == 0
    assert short.stdout == long.stdout and short.stdout.startswith("hpcgen ")


# --- export --help ---------------------------------------------------------------------------


def test_export_help_lists_every_generators_formats() -> None:
    proc = run_hpcgen("export", "--help", check=True)
    lines = proc.stdout.splitlines()
    expected = [("*", "npz")]
    for name in REGISTRY:
        cls = get_generator_class(name)
        expected += [(name, fmt) for fmt in cls(cls.Params()).exporters()]
    assert len(expected) > len(REGISTRY)  # every generator has at least one format of its own
    for name, fmt in expected:
        line = next((x for x in lines if x.split()[:2] == [name, fmt]), None)
        assert line is not None, f"{name} {fmt} missing from export --help"
        assert len(line.split()) > 3, f"{name} {fmt}: no description"


# --- verify --json, --report -----------------------------------------------------------------


@pytest.fixture
def tiny_file(tmp_path: Path, toy_spec: Path) -> Path:
    """toy_spec's run (verify's options are the CLI's, not a generator's)."""
    out = tmp_path / "tiny.h5"
    run_hpcgen("run", toy_spec, "--out", out, "--quiet", check=True)
    return out


def test_verify_json_prints_the_report_on_stdout(tmp_path: Path, tiny_file: Path) -> None:
    proc = run_hpcgen("verify", tiny_file, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # nothing but the JSON on stdout
    assert report["passed"] is True and report["n_rows"] == 2500
    default = tmp_path / "tiny.verify.json"
    assert json.loads(default.read_text()) == report  # the report file, as before
    assert f"report: {default}" in proc.stderr


def test_verify_report_names_the_file_and_json_exit_status_follows_the_checks(
    tmp_path: Path, tiny_file: Path
) -> None:
    proc = run_hpcgen("verify", tiny_file, "--report", tmp_path / "r.json")
    assert proc.returncode == 0 and "RESULT: PASS" in proc.stdout
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    assert not (tmp_path / "tiny.verify.json").exists()
    with h5py.File(tiny_file, "r+") as f:  # a changed row fails its chunk's checksum
        f["x"][5, 0] += 1.0
    proc = run_hpcgen("verify", tiny_file, "--json", "--report", tmp_path / "bad.json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["passed"] is False


# --- run: the output's directory, an output already complete ---------------------------------


def test_run_creates_the_missing_output_directory_and_its_parents(
    tmp_path: Path, toy_spec: Path
) -> None:
    out = tmp_path / "a" / "b" / "c" / "t.h5"
    proc = run_hpcgen("run", toy_spec, "--out", out, "--quiet", ranks=2)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


def test_a_spec_that_cannot_run_creates_no_directory(tmp_path: Path, tiny_spec: Path) -> None:
    out = tmp_path / "new" / "t.h5"
    proc = run_hpcgen(
        "run", tiny_spec, "--out", out, "--set", "field=map", "--set", "field_map=nope.txt"
    )
    assert proc.returncode == 2 and "nope.txt" in proc.stderr
    assert not (tmp_path / "new").exists()


def test_an_output_directory_that_cannot_be_made_is_one_line(tmp_path: Path, toy_spec) -> None:
    (tmp_path / "afile").write_text("")
    proc = run_hpcgen("run", toy_spec, "--out", tmp_path / "afile" / "d" / "t.h5")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "output directory does not exist and cannot be created" in proc.stderr


def test_a_complete_output_is_already_complete(tmp_path: Path, toy_spec: Path) -> None:
    out = tmp_path / "t.h5"
    run_hpcgen("run", toy_spec, "--out", out, "--quiet", check=True)
    before = out.stat().st_mtime_ns
    for extra in ([], ["--resume"], ["--atomic"]):
        proc = run_hpcgen("run", toy_spec, "--out", out, *extra)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == f"hpcgen: {out}: already complete, nothing to do\n"
    assert out.stat().st_mtime_ns == before
    # another spec's data: the file is not this run's, so the usual refusal
    proc = run_hpcgen("run", toy_spec, "--out", out, "--seed", "8")
    assert proc.returncode == 2 and "exists; use --resume" in proc.stderr
    # an unfinished file is not complete: --resume finishes it
    with h5py.File(out, "r+") as f:
        f["_hpcgen/done"][3] = 0
    proc = run_hpcgen("run", toy_spec, "--out", out, "--resume")
    assert proc.returncode == 0 and "wrote 400 samples (1 chunks)" in proc.stderr


# --- input paths relative to the spec file ---------------------------------------------------

LIT = """generator = "illumination"
n_samples = 20
seed = 1
chunk_size = 10
output = "lit.h5"

[params]
level = 0
sun_file = "{sun}"
"""


@pytest.fixture
def spec_with_input(tmp_path: Path) -> Path:
    """specs/lit.toml naming specs/inputs/sun.npy as inputs/sun.npy."""
    (tmp_path / "specs" / "inputs").mkdir(parents=True)
    np.save(tmp_path / "specs" / "inputs" / "sun.npy", np.eye(3)[np.arange(20) % 3])
    spec = tmp_path / "specs" / "lit.toml"
    spec.write_text(LIT.format(sun="inputs/sun.npy"))
    return spec


def test_input_paths_are_relative_to_the_spec_file(
    tmp_path: Path, spec_with_input: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert RunSpec.load("specs/lit.toml").params["sun_file"] == "specs/inputs/sun.npy"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert RunSpec.load("../specs/lit.toml").params["sun_file"] == "../specs/inputs/sun.npy"
    assert RunSpec.load(spec_with_input).params["sun_file"] == "../specs/inputs/sun.npy"
    # the spec's own directory: the path as written
    monkeypatch.chdir(tmp_path / "specs")
    assert RunSpec.load("lit.toml").params["sun_file"] == "inputs/sun.npy"
    # the output stays relative to the working directory
    assert RunSpec.load("lit.toml").output == "lit.h5"


def test_absolute_and_set_paths_are_not_moved(
    tmp_path: Path, spec_with_input: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sun = str(tmp_path / "specs" / "inputs" / "sun.npy")
    spec_with_input.write_text(LIT.format(sun=sun))
    monkeypatch.chdir(tmp_path)
    assert RunSpec.load("specs/lit.toml").params["sun_file"] == sun
    # --set: relative to the working directory, not to the spec
    (tmp_path / "mine").mkdir()
    np.save(tmp_path / "mine" / "sun.npy", np.eye(3)[np.arange(20) % 3])
    spec = RunSpec.load("specs/lit.toml", {"sun_file": "mine/sun.npy"})
    assert spec.params["sun_file"] == "mine/sun.npy"
    (tmp_path / "specs" / "only_here.npy").write_bytes(b"")
    with pytest.raises(SpecError, match="sun_file not found"):
        RunSpec.load("specs/lit.toml", {"params.sun_file": "only_here.npy"})


def test_cli_run_from_another_directory_reads_the_specs_input(
    tmp_path: Path, spec_with_input: Path
) -> None:
    (tmp_path / "work").mkdir()
    proc = run_hpcgen("run", "../specs/lit.toml", "--quiet", cwd=tmp_path / "work")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "work" / "lit.h5").is_file()  # output: relative to the working directory


def test_resume_from_another_directory_names_the_path_that_differs(
    tmp_path: Path, spec_with_input: Path
) -> None:
    out = str(tmp_path / "lit.h5")
    run_hpcgen("run", "specs/lit.toml", "--out", out, "--quiet", cwd=tmp_path, check=True)
    (tmp_path / "work").mkdir()
    proc = run_hpcgen(
        "run", "../specs/lit.toml", "--out", out, "--resume", "--seed", "2", cwd=tmp_path / "work"
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "different spec" in lines[0], lines
    assert (
        "params.sun_file is 'specs/inputs/sun.npy' there, '../specs/inputs/sun.npy' here"
        in (lines[0])
    )
    assert "seed is 1 there, 2 here" in lines[0]
    assert "run from the directory the run started in" in lines[0]
    # from where it started, the same spec is this file's: nothing left to do
    done = run_hpcgen("run", "specs/lit.toml", "--out", out, "--resume", cwd=tmp_path)
    assert done.returncode == 0 and "nothing to do" in done.stderr, done.stderr
    # a spec changed and an input file changed: both named
    sun = tmp_path / "specs" / "inputs" / "sun.npy"
    np.save(sun, np.eye(3)[np.arange(20) % 3][::-1].copy())
    both = run_hpcgen(
        "run", "specs/lit.toml", "--out", out, "--resume", "--seed", "2", cwd=tmp_path
    )
    assert both.returncode == 2 and "seed is 1 there, 2 here" in both.stderr, both.stderr
    assert "input file specs/inputs/sun.npy changed since the run started" in both.stderr


def test_to_toml_relative_to_another_directory_round_trips(
    tmp_path: Path, spec_with_input: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = RunSpec.load("specs/lit.toml")
    frozen = tmp_path / "runs" / "deep"
    frozen.mkdir(parents=True)
    (frozen / "spec.toml").write_text(spec.to_toml(relative_to=frozen))
    assert 'sun_file = "../../specs/inputs/sun.npy"' in (frozen / "spec.toml").read_text()
    back = RunSpec.load(frozen / "spec.toml")
    assert back.params == spec.params and back.data_hash() == spec.data_hash()
    # read from the working directory instead of its own
    (frozen / "here.toml").write_text(spec.to_toml(relative_to=os.curdir))
    back = RunSpec.load(frozen / "here.toml", relative_to=os.curdir)
    assert back.data_hash() == spec.data_hash()


@pytest.mark.parametrize("transfer", [False, True])
def test_frozen_batch_spec_names_the_inputs_where_the_jobs_read_it(
    tmp_path: Path, spec_with_input: Path, monkeypatch: pytest.MonkeyPatch, transfer: bool
) -> None:
    """``hpcgen jobs`` freezes the spec in DIR: its jobs (run from the directory ``hpcgen jobs``
    ran in) read the same input and get the same data identity; with --no-shared-fs the spec
    lands beside the inputs in the job's scratch directory, so it names them as from here."""
    from hpcgen.jobs import render

    monkeypatch.chdir(tmp_path)
    spec = RunSpec.load("specs/lit.toml")
    directory, frozen, _ = render.prepare(spec, tmp_path / "runs" / "j", 2, transfer=transfer)
    text = (directory / "spec.toml").read_text()
    if transfer:
        assert 'sun_file = "specs/inputs/sun.npy"' in text
        back = RunSpec.load(directory / "spec.toml", relative_to=os.curdir)
    else:
        assert 'sun_file = "../../specs/inputs/sun.npy"' in text
        back = RunSpec.load(directory / "spec.toml")
    assert back.params["sun_file"] == "specs/inputs/sun.npy"
    assert back.data_hash() == frozen.data_hash() == spec.data_hash()


def test_identity_difference_sees_what_the_data_hash_sees() -> None:
    from hpcgen.spec import identity_difference

    base = {"generator": "tracks", "n_samples": 10, "seed": 1, "chunk_size": 5, "dtype": "float64"}
    same = {**base, "params": {"z_range": [0.0, 1.0], "rel_tolerance": 0.0}}
    assert identity_difference(same, json.loads(json.dumps(same))) is None
    negzero = {**base, "params": {"z_range": [0.0, 1.0], "rel_tolerance": -0.0}}
    assert identity_difference(same, negzero) == "params.rel_tolerance is 0.0 there, -0.0 here"
    assert identity_difference({**same, "seed": 1}, {**same, "seed": 1.0}) == (
        "seed is 1 there, 1.0 here"
    )
