"""The Python API: hpcgen.generate / iter_chunks give the bytes `hpcgen run` writes, without MPI;
hpcgen.open reads a file's spec, provenance, fields, rows, blocks and verify report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import ROOT, data_fields, run_hpcgen

import hpcgen
from hpcgen.errors import SpecError, UserError

# chunk_size 60 does not divide n = 250: four full chunks and a short one of 10 rows
CASES = {
    "atoms": dict(generator="atoms", n=250, seed=3, chunk_size=60, dtype="float64", params={}),
    "tracks": dict(
        generator="tracks",
        n=250,
        seed=5,
        chunk_size=60,
        dtype="float32",
        params={"field": "gaussian", "step": 20.0, "dz_range": [-2000.0, 6000.0]},
    ),
}


def write_spec(path: Path, case: dict) -> Path:
    lines = [
        f'generator = "{case["generator"]}"',
        f"n_samples = {case['n']}",
        f"seed = {case['seed']}",
        f"chunk_size = {case['chunk_size']}",
        f'dtype = "{case["dtype"]}"',
        'output = "out.h5"',
        "",
        "[params]",
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in case["params"].items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def gen_kwargs(case: dict) -> dict:
    return dict(
        n=case["n"],
        seed=case["seed"],
        chunk_size=case["chunk_size"],
        dtype=case["dtype"],
        **case["params"],
    )


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory) -> dict[str, Path]:
    """Each case written by the real CLI: atoms on one process, tracks under mpiexec -n 2."""
    d = tmp_path_factory.mktemp("api")
    out = {}
    for name, case in CASES.items():
        spec = write_spec(d / f"{name}.toml", case)
        out[name] = d / f"{name}.h5"
        ranks = 2 if name == "tracks" else 0
        run_hpcgen("run", spec, "--out", out[name], "--quiet", ranks=ranks, check=True)
    return out


# --- generate / iter_chunks -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_generate_gives_the_bytes_hpcgen_run_writes(cli_files, name):
    case = CASES[name]
    got = hpcgen.generate(case["generator"], **gen_kwargs(case))
    want = data_fields(cli_files[name])
    assert sorted(got) == sorted(want)
    for field, arr in want.items():
        assert got[field].dtype == arr.dtype, field
        assert got[field].shape == arr.shape == (case["n"], *arr.shape[1:]), field
        assert got[field].tobytes() == arr.tobytes(), f"{field} differs from the CLI's file"


def test_iter_chunks_yields_the_plan_chunk_by_chunk():
    case = CASES["atoms"]
    blocks = list(hpcgen.iter_chunks(case["generator"], **gen_kwargs(case)))
    assert [start for start, _ in blocks] == [0, 60, 120, 180, 240]
    assert [len(b["images"]) for _, b in blocks] == [60, 60, 60, 60, 10]
    whole = hpcgen.generate(case["generator"], **gen_kwargs(case))
    for field, arr in whole.items():
        joined = np.concatenate([b[field] for _, b in blocks])
        assert joined.dtype == arr.dtype
        assert joined.tobytes() == arr.tobytes(), field


def test_float32_casts_only_the_float_fields():
    d = hpcgen.generate("tracks", n=7, seed=1, chunk_size=4, dtype="float32", field="gaussian")
    assert d["X"].dtype == np.float32 and d["P"].dtype == np.float32
    assert d["status"].dtype == np.uint8 and d["n_steps"].dtype == np.int32


def test_generate_accepts_numpy_integers():
    a = hpcgen.generate("atoms", n=np.int64(5), seed=np.uint32(2), chunk_size=np.int32(3))
    b = hpcgen.generate("atoms", n=5, seed=2, chunk_size=3)
    assert a["images"].tobytes() == b["images"].tobytes()


def test_generate_neither_imports_mpi4py_nor_torch():
    code = (
        "import sys, hpcgen\n"
        "assert 'torch' not in sys.modules, 'import hpcgen imported torch'\n"
        "d = hpcgen.generate('atoms', 20, seed=1, chunk_size=8)\n"
        "assert d['images'].shape == (20, 16, 16)\n"
        "assert 'mpi4py' not in sys.modules, 'generate imported mpi4py'\n"
        "assert 'torch' not in sys.modules, 'generate imported torch'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_unknown_parameter_is_a_spec_error_naming_it():
    with pytest.raises(SpecError) as e:
        hpcgen.generate("atoms", n=5, grid_sise=16)
    msg = str(e.value)
    assert "'grid_sise'" in msg and "atoms" in msg and "grid_size" in msg
    assert "chunk_size" in msg  # generate's own arguments are listed too
    # iter_chunks refuses at the call, before any chunk is computed
    with pytest.raises(SpecError, match="'n_samples'"):
        hpcgen.iter_chunks("atoms", n=5, n_samples=5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(generator="atom", n=5), "unknown generator 'atom'"),
        (dict(generator="atoms", n=0), "n_samples must be > 0"),
        (dict(generator="atoms", n=2.5), "n must be an integer"),
        (dict(generator="atoms", n=True), "n must be an integer"),
        (dict(generator="atoms", n=5, seed=-1), "seed must be >= 0"),
        (dict(generator="atoms", n=5, dtype="float16"), "dtype must be one of"),
        (dict(generator="atoms", n=5, grid_size="big"), "grid_size must be an integer"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        hpcgen.generate(**kwargs)


# --- open -----------------------------------------------------------------------------------------


def test_open_exposes_spec_provenance_and_fields(cli_files):
    with hpcgen.open(cli_files["tracks"]) as f, h5py.File(cli_files["tracks"], "r") as h:
        assert f.spec.generator == "tracks" and f.spec.n_samples == 250
        assert f.spec.seed == 5 and f.spec.chunk_size == 60 and f.spec.dtype == "float32"
        assert f.spec.params["field"] == "gaussian"
        assert f.provenance["n_ranks"] == 2
        assert len(f) == 250 and f.row_range == (0, 250) and f.complete
        assert f.names == ["X", "Y", "P", "Z", "status", "n_steps"]
        for info in f.fields:
            ds = h[info.name]
            assert info.shape == ds.shape and info.dtype == ds.dtype
            assert info.units == ds.attrs["units"]
            assert info.description == ds.attrs["description"]
            assert info.sample_shape == ds.shape[1:]
        assert f.field("X").shape == (250, 6) and f.field("X").dtype == np.float32
        assert "X" in f and "nope" not in f


def test_open_reads_rows_as_numpy(cli_files):
    with hpcgen.open(cli_files["tracks"]) as f, h5py.File(cli_files["tracks"], "r") as h:
        x = h["X"][...]
        view = f["X"]
        assert view.shape == (250, 6) and len(view) == 250 and view.dtype == np.float32
        got = view[10:70]
        assert isinstance(got, np.ndarray) and got.tobytes() == x[10:70].tobytes()
        assert f.read("X", slice(200, None)).tobytes() == x[200:].tobytes()
        assert f.read("X", 7).tobytes() == x[7].tobytes()
        assert f.read("X", [9, 3, 3, -1]).tobytes() == x[[9, 3, 3, 249]].tobytes()
        assert np.asarray(f["P"]).tobytes() == h["P"][...].tobytes()
        with pytest.raises(IndexError):
            f.read("X", [250])
        with pytest.raises(UserError, match="no field 'x'"):
            f["x"]


def test_open_iterates_in_blocks_of_the_chunk_size(cli_files):
    with hpcgen.open(cli_files["atoms"]) as f:
        blocks = list(f)
        assert [s for s, _ in blocks] == [0, 60, 120, 180, 240]
        assert [len(b["labels"]) for _, b in blocks] == [60, 60, 60, 60, 10]
        assert sorted(blocks[0][1]) == sorted(f.names)
        small = list(f.blocks(["labels"], block=100))
        assert [(s, sorted(b), len(b["labels"])) for s, b in small] == [
            (0, ["labels"], 100),
            (100, ["labels"], 100),
            (200, ["labels"], 50),
        ]
        joined = np.concatenate([b["images"] for _, b in blocks])
        assert joined.tobytes() == f["images"][:].tobytes()
        with pytest.raises(UserError, match="no static dataset"):
            f.static("grid")


def test_open_verify_returns_the_verify_report(cli_files):
    with hpcgen.open(cli_files["atoms"]) as f:
        report = f.verify()
    assert report["passed"] is True and report["generator"] == "atoms" and report["n_rows"] == 250
    names = [c["name"] for c in report["checks"]]
    assert "every chunk written (done bitmap)" in names
    assert all(set(c) == {"name", "passed", "value", "detail"} for c in report["checks"])


def test_open_closes_on_exit(cli_files):
    with hpcgen.open(cli_files["atoms"]) as f:
        pass
    assert not f.h5.id.valid


def test_open_batch_job_file_holds_its_slice_of_the_run(tmp_path):
    """A `--chunks 1:3` file: local rows 0.. are the run's rows 60..180."""
    case = CASES["atoms"]
    spec = write_spec(tmp_path / "a.toml", case)
    out = tmp_path / "part.h5"
    run_hpcgen("run", spec, "--out", out, "--chunks", "1:3", "--quiet", check=True)
    whole = hpcgen.generate(case["generator"], **gen_kwargs(case))
    with hpcgen.open(out) as f:
        assert f.row_range == (60, 180) and len(f) == 120
        assert f["images"][:].tobytes() == whole["images"][60:180].tobytes()


def test_open_refuses_what_is_not_an_hpcgen_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        hpcgen.open(tmp_path / "missing.h5")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as h:
        h["X"] = np.zeros(3)
    with pytest.raises(UserError, match="not an hpcgen file"):
        hpcgen.open(plain)
