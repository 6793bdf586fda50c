"""The engine end to end, through the real CLI under MPICH: determinism, invariance across rank
counts and I/O routes, crash + resume, overwrite protection, provenance, verify, export. The data
come from the toy generator (tests/toy_generator.py): these tests are about the engine."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_same_data, data_fields, run_hpcgen
from toy_generator import SPEC_NAME

from hpcgen.engine.run import CRASH_ENV
from hpcgen.generators.base import Chunk
from hpcgen.spec import RunSpec


def run_ok(*args, ranks=0, **kw):
    return run_hpcgen(*args, "--quiet", ranks=ranks, check=True, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """A toy spec of 2,500 samples in 7 chunks (the last one short) run on one plain process:
    the file every other route must reproduce."""
    d = tmp_path_factory.mktemp("ref")
    spec = d / "tiny.toml"
    spec.write_text(
        f'generator = "{SPEC_NAME}"\nn_samples = 2500\nseed = 7\nchunk_size = 400\n'
        'output = "tiny.h5"\n\n[params]\nscale = 1.5\n'
    )
    out = d / "ref.h5"
    run_ok("run", spec, "--out", out)
    return spec, out


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_same_bytes_for_1_2_3_ranks_mpio(tmp_path, reference, ranks):
    spec, ref = reference
    out = tmp_path / f"r{ranks}.h5"
    run_ok("run", spec, "--out", out, "--io", "mpio", ranks=ranks)
    assert_same_data(ref, out)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_shards_route_gives_the_same_data(tmp_path, reference, ranks):
    spec, ref = reference
    out = tmp_path / f"s{ranks}.h5"
    run_ok("run", spec, "--out", out, "--io", "shards", ranks=ranks)
    with h5py.File(out) as f:
        assert f["x"].is_virtual
    assert_same_data(ref, out)
    assert run_hpcgen("verify", out).returncode == 0


def test_data_matches_the_generator_called_directly(reference):
    """The file holds exactly chunk k = generator(seed, k): no rank- or route-dependent state."""
    spec_path, ref = reference
    spec = RunSpec.load(spec_path)
    gen = spec.make_generator()
    from hpcgen.engine.device import select_device

    dev = select_device("cpu", gen)
    data = data_fields(ref)
    for k in (0, 3, 6):
        start = k * spec.chunk_size
        chunk = Chunk(k, start, min(spec.chunk_size, spec.n_samples - start), spec.seed)
        inputs = gen.sample(chunk)
        outputs = gen.compute(inputs, chunk, dev)
        for name, arr in {**inputs, **outputs}.items():
            np.testing.assert_array_equal(data[name][start : start + chunk.count], arr)


def test_seed_changes_data(tmp_path, reference):
    spec, ref = reference
    out = tmp_path / "seed8.h5"
    run_ok("run", spec, "--out", out, "--seed", "8")
    assert not np.array_equal(data_fields(ref)["x"], data_fields(out)["x"])


@pytest.mark.parametrize("ranks", [1, 2])
def test_killed_run_resumes_to_identical_file(tmp_path, reference, ranks):
    spec, ref = reference
    out = tmp_path / "crash.h5"
    proc = run_hpcgen(
        "run",
        spec,
        "--out",
        out,
        "--quiet",
        "--checkpoint-every",
        "0",
        ranks=ranks,
        env={CRASH_ENV: "2"},
    )
    assert proc.returncode != 0  # SIGKILLed mid-run
    with h5py.File(out) as f:
        done = f["_hpcgen/done"][...]
    assert 0 < done.sum() < done.size  # some chunks done, not all
    # without --resume the partial file is protected
    again = run_hpcgen("run", spec, "--out", out)
    assert again.returncode == 2 and "--resume" in again.stderr
    run_ok("run", spec, "--out", out, "--resume", ranks=ranks)
    assert_same_data(ref, out)
    with h5py.File(out) as f:
        assert f["_hpcgen/done"][...].all()


def test_shards_resume_after_crash(tmp_path, reference):
    spec, ref = reference
    out = tmp_path / "crash_s.h5"
    proc = run_hpcgen(
        "run",
        spec,
        "--out",
        out,
        "--io",
        "shards",
        "--quiet",
        "--checkpoint-every",
        "0",
        ranks=2,
        env={CRASH_ENV: "1"},
    )
    assert proc.returncode != 0
    assert not out.exists()
    # the shards are per rank: another rank count cannot finish them (a complete output, on the
    # other hand, is "already complete" for any rank count)
    bad = run_hpcgen("run", spec, "--out", out, "--io", "shards", "--resume", ranks=3)
    assert bad.returncode == 2 and "different rank count" in bad.stderr
    run_ok("run", spec, "--out", out, "--io", "shards", "--resume", ranks=2)
    assert_same_data(ref, out)


def test_resume_refuses_a_different_spec(tmp_path, reference):
    spec, _ = reference
    out = tmp_path / "a.h5"
    run_ok("run", spec, "--out", out)
    proc = run_hpcgen("run", spec, "--out", out, "--resume", "--seed", "99")
    assert proc.returncode == 2 and "different spec: seed is 7 there, 99 here" in proc.stderr


def test_overwrite_replaces_and_complete_resume_is_a_no_op(tmp_path, reference):
    spec, ref = reference
    out = tmp_path / "o.h5"
    out.write_bytes(b"old")
    run_ok("run", spec, "--out", out, "--overwrite", ranks=2)
    assert_same_data(ref, out)
    before = data_fields(out)
    run_ok("run", spec, "--out", out, "--resume")
    after = data_fields(out)
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)


def test_float32_inputs_and_outputs(tmp_path, reference):
    spec, ref = reference
    out = tmp_path / "f32.h5"
    run_ok("run", spec, "--out", out, "--dtype", "float32")
    d32, d64 = data_fields(out), data_fields(ref)
    assert d32["x"].dtype == np.float32 and d32["y"].dtype == np.float32
    assert d32["n"].dtype == np.int32
    np.testing.assert_array_equal(d32["x"], d64["x"].astype(np.float32))  # same draws, rounded
    np.testing.assert_allclose(d32["y"], d64["y"], rtol=1e-6)


def test_provenance_attributes_and_sidecar(tmp_path, reference):
    spec, _ = reference
    out = tmp_path / "p.h5"
    run_ok("run", spec, "--out", out, ranks=2)
    with h5py.File(out) as f:
        prov = json.loads(f.attrs["hpcgen_provenance"])
        assert f["x"].attrs["units"] == "1" and f["x"].attrs["description"]
        assert list(f["x"].attrs["columns"]) == ["a", "b", "c"]
    assert prov["n_ranks"] == 2
    assert prov["spec"]["seed"] == 7 and prov["seed"] == 7
    assert len(prov["timings_per_rank"]) == 2
    for key in ("python", "numpy", "h5py", "mpi4py", "mpi_library", "hpcgen"):
        assert prov["versions"][key]
    assert "MPICH" in prov["versions"]["mpi_library"]
    assert prov["start_time"] <= prov["end_time"]
    side = json.loads((tmp_path / "p.metadata.json").read_text())
    assert side["provenance"]["n_ranks"] == 2
    assert {f["name"] for f in side["fields"]} == {"x", "y", "n"}


def test_verify_passes_and_catches_corruption(tmp_path, reference):
    spec, _ = reference
    out = tmp_path / "v.h5"
    run_ok("run", spec, "--out", out)
    proc = run_hpcgen("verify", out, "--report", tmp_path / "v.json")
    assert proc.returncode == 0, proc.stdout
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] and report["n_rows"] == 2500
    with h5py.File(out, "r+") as f:
        f["x"][10, 0] = np.nan
        f["y"][11] = -1.0
    proc = run_hpcgen("verify", out, "--report", tmp_path / "v2.json")
    assert proc.returncode == 1
    failed = {
        c["name"]
        for c in json.loads((tmp_path / "v2.json").read_text())["checks"]
        if not c["passed"]
    }
    # the generator's checks see the bad values; the stored checksums see that bytes changed
    assert failed == {"all values finite", "y > 0", "y and n agree with x", "checksums match"}


def test_verify_flags_an_unfinished_file(tmp_path, reference):
    spec, _ = reference
    out = tmp_path / "u.h5"
    run_hpcgen(
        "run", spec, "--out", out, "--quiet", "--checkpoint-every", "0", env={CRASH_ENV: "1"}
    )
    proc = run_hpcgen("verify", out, "--report", tmp_path / "u.json")
    assert proc.returncode == 1
    assert "FAIL  every chunk written" in proc.stdout
    # only the unwritten chunks fail: the generator's checks ran on the chunks marked done
    report = json.loads((tmp_path / "u.json").read_text())
    assert [c["name"] for c in report["checks"] if not c["passed"]] == [
        "every chunk written (done bitmap)"
    ]


def test_export_npz_streams_the_seed_format(tmp_path, reference):
    _, ref = reference
    npz = tmp_path / "t.npz"
    run_hpcgen("export", ref, "--format", "npz", "--out", npz, check=True)
    with np.load(npz) as z:
        assert sorted(z.files) == ["n", "x", "y"]
        d = data_fields(ref)
        for k in z.files:
            np.testing.assert_array_equal(z[k], d[k])
    proc = run_hpcgen("export", ref, "--format", "npz", "--out", npz)
    assert proc.returncode == 2 and "exists" in proc.stderr
    proc = run_hpcgen("export", ref, "--format", "xls", "--out", tmp_path / "t.xls")
    assert proc.returncode == 2 and "unknown export format" in proc.stderr


def test_plan_reports_size_chunks_and_memory(reference):
    spec, _ = reference
    proc = run_hpcgen("plan", spec, "--ranks", "3", "--json", check=True)
    info = json.loads(proc.stdout)
    assert info["chunks"] == 7 and info["samples"] == 2500
    per_sample = (3 + 1) * 8 + 4  # x, y float64; n int32
    assert info["bytes_on_disk"] == 2500 * per_sample
    assert info["chunks_per_rank"] == [3, 2, 2]
    # measured (tests/test_plan.py): libraries and inputs besides the chunk, never 3 chunks
    assert info["memory_per_rank_bytes"] == info["memory"]["peak_bytes"] > 3 * 400 * per_sample
