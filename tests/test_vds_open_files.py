"""A virtual file with more sources than the open-file limit must never read as fill values:
HDF5 keeps every source open and silently returns zeros past the soft RLIMIT_NOFILE."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import data_fields, hpcgen_env, run_hpcgen
from toy_generator import SPEC_NAME

from hpcgen.engine.comm import SerialComm
from hpcgen.engine.device import select_device
from hpcgen.engine.provenance import base_record
from hpcgen.io.writer import FileWriter, build_vds, shard_name
from hpcgen.spec import RunSpec

N_SHARDS = 120


@pytest.fixture(scope="module")
def many_sources(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("vds")
    spec = RunSpec.from_dict(
        {
            "generator": SPEC_NAME,
            "n_samples": N_SHARDS * 5,
            "seed": 1,
            "chunk_size": 5,
            "output": str(d / "v.h5"),
        }
    )
    gen = spec.make_generator()
    dev = select_device("cpu", gen)
    prov = base_record(spec.to_dict(), [], 1, "cpu", "shards")
    shards = []
    for k in range(N_SHARDS):  # one shard per chunk, as a 120-job array would leave them
        path = d / shard_name((k, k + 1))
        w = FileWriter(path, spec, gen, (k, k + 1), SerialComm(), "create", prov)
        chunk = spec_chunk(spec, k)
        inputs = gen.sample(chunk)
        w.write(k, {**inputs, **gen.compute(inputs, chunk, dev)})
        w.finish(prov)
        shards.append((path, (k, k + 1)))
    build_vds(spec_path := Path(spec.output), spec, gen, shards, prov)
    return spec_path


def spec_chunk(spec: RunSpec, k: int):
    from hpcgen.generators.base import Chunk

    return Chunk(k, k * spec.chunk_size, spec.chunk_size, spec.seed)


def limited(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def verify_with_limit(path: Path, soft: int, hard: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hpcgen", "verify", str(path)],
        preexec_fn=limited(soft, hard),
        env=hpcgen_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_limit_is_raised_when_the_hard_limit_allows(many_sources: Path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < N_SHARDS + 64:
        pytest.skip("hard open-file limit too low on this machine")
    proc = verify_with_limit(many_sources, 40, hard)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = data_fields(many_sources)
    assert np.all(data["y"] > 0)  # no row read as fill values (zeros: verify's "y > 0" fails)


def test_refused_when_the_hard_limit_is_too_low(many_sources: Path):
    proc = verify_with_limit(many_sources, 40, 40)
    assert proc.returncode == 2
    assert f"have {N_SHARDS} source files but only 40 files may be open" in proc.stderr


def test_normal_files_are_unaffected(tmp_path: Path):
    spec = tmp_path / "plain.toml"
    spec.write_text(f'generator = "{SPEC_NAME}"\nn_samples = 2500\nchunk_size = 400\n')
    out = tmp_path / "plain.h5"
    run_hpcgen("run", spec, "--out", out, "--quiet", check=True)
    assert verify_with_limit(out, 40, 40).returncode == 0
