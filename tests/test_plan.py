"""``hpcgen plan``: the memory it promises is the memory a run takes (within 1.5x of the measured
peak of a real ``hpcgen run``: one spec per generator in jobs/, every spec there with
``HPCGEN_TEST_EVERY_SPEC=1``), and ``--calibrate``'s time estimate follows from the rates it
measured."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import ROOT, run_hpcgen

#: one spec per generator, its largest chunks whose inputs ship with the checkout (the other
#: demos and the energy domains' specs differ from these in sizes only; ptycho's fly64 study
#: needs the study's NPZ); the suite's time goes to a real run per spec
MEASURED_SPECS = (
    "atoms_10M",
    "energy_production",
    "illumination_1M",
    "ptycho_demo",
    "tracks_10M",
    "tracks_10M_map",
)
JOB_SPECS = sorted(
    p
    for p in (ROOT / "jobs").glob("*.toml")
    if os.environ.get("HPCGEN_TEST_EVERY_SPEC") == "1" or p.stem in MEASURED_SPECS
)

#: a child's peak resident memory, measured by a fresh process (RUSAGE_CHILDREN of the pytest
#: process would hold the largest child of the whole session)
PEAK = """
import json, os, resource, subprocess, sys
env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"}
p = subprocess.run(sys.argv[1:], capture_output=True, text=True, env=env)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
peak *= 1 if sys.platform == "darwin" else 1024
print(json.dumps({"rc": p.returncode, "peak": peak, "stdout": p.stdout, "stderr": p.stderr}))
"""


def peak_of(args: list, cwd: Path) -> dict:
    cmd = [sys.executable, "-c", PEAK, sys.executable, "-m", "hpcgen", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600, check=True)
    return json.loads(out.stdout)


def small_args(spec: Path, synth_path: Path) -> list[str]:
    """One chunk of the spec (at most 100,000 samples), its inputs where the checkout has none."""
    d = tomllib.loads(spec.read_text())
    n = min(d["n_samples"], d.get("chunk_size", 10_000), 100_000)
    args = ["--n", str(n)]
    params = d.get("params", {})
    if params.get("field") == "map":  # the map specs name fieldmaps/synth.txt: made by make demo
        args += ["--set", f"field_map={synth_path}"]
    for key in ("base_npz", "model", "articulation", "sun_file"):
        value = params.get(key)
        if value and not (spec.parent / value).is_file():
            pytest.skip(f"{spec.name}: input {value} is not in this checkout")
    return args


@pytest.mark.slow
@pytest.mark.parametrize("spec", JOB_SPECS, ids=[p.stem for p in JOB_SPECS])
def test_plan_memory_is_within_1_5x_of_a_runs_peak(
    tmp_path: Path, spec: Path, synth_path: Path
) -> None:
    args = small_args(spec, synth_path)
    out = tmp_path / "out.h5"
    plan = peak_of(["plan", spec, "--json", "--out", out, *args], tmp_path)
    assert plan["rc"] == 0, plan["stderr"]
    info = json.loads(plan["stdout"])
    estimate = info["memory_per_rank_bytes"]
    run = peak_of(["run", spec, "--out", out, "--quiet", *args], tmp_path)
    assert run["rc"] == 0, run["stderr"]
    ratio = estimate / run["peak"]
    assert 1 / 1.5 <= ratio <= 1.5, (
        f"{spec.name}: plan says {estimate / 2**20:.1f} MiB, the run peaked at "
        f"{run['peak'] / 2**20:.1f} MiB ({info['memory']})"
    )


def test_the_measured_specs_cover_every_generator_of_jobs() -> None:
    """Every generator's memory is measured by default, and none of the measured specs can skip
    for an input missing from the checkout."""
    specs = {p.stem: tomllib.loads(p.read_text()) for p in ROOT.glob("jobs/*.toml")}
    assert set(MEASURED_SPECS) <= set(specs)
    assert {specs[s]["generator"] for s in MEASURED_SPECS} == {
        d["generator"] for d in specs.values()
    }
    for name in MEASURED_SPECS:
        params = specs[name].get("params", {})
        for key in ("base_npz", "model", "articulation", "sun_file"):
            if params.get(key):
                assert (ROOT / "jobs" / params[key]).is_file(), (name, key)


def test_plan_memory_parts(tiny_spec: Path) -> None:
    info = json.loads(run_hpcgen("plan", tiny_spec, "--json", check=True).stdout)
    m = info["memory"]
    assert info["memory_per_rank_bytes"] == m["peak_bytes"]
    assert m["peak_bytes"] == max(m["startup_peak_bytes"], m["resident_bytes"] + m["chunk_bytes"])
    assert m["chunk_samples"] == 400  # the spec's chunk size (below its sample count)
    assert m["chunk_bytes"] == int(m["chunk_fixed_bytes"] + m["chunk_per_sample_bytes"] * 400)
    # a chunk in flight holds at least its rows as they go to disk
    assert m["chunk_per_sample_bytes"] >= info["bytes_per_sample"]
    # the interpreter and its libraries alone are tens of MiB: never the old "3 x one chunk"
    assert m["resident_bytes"] > 20 * 2**20
    assert info["memory_per_rank_bytes"] > 3 * 400 * info["bytes_per_sample"]


def test_plan_memory_follows_the_largest_chunk(tmp_path: Path, tiny_spec: Path) -> None:
    """--n below the chunk size: the run's only chunk is --n samples, and so is the plan's."""
    info = json.loads(run_hpcgen("plan", tiny_spec, "--json", "--n", "100", check=True).stdout)
    assert info["memory"]["chunk_samples"] == 100


def test_calibrate_estimate_follows_from_the_measured_rates(tmp_path: Path, tiny_spec: Path):
    out = tmp_path / "runs" / "t.h5"
    out.parent.mkdir()
    proc = run_hpcgen(
        "plan", tiny_spec, "--json", "--calibrate", "--calibrate-seconds", "600",
        "--ranks", "3", "--out", out, check=True,
    )  # fmt: skip
    info = json.loads(proc.stdout)
    c = info["calibration"]
    assert c["chunks_timed"] == 3  # the most it times, well within the 600 s allowed
    assert c["samples_timed"] == 400 * c["chunks_timed"]
    assert c["compute_s"] > 0 and c["write_bytes_per_s"] > 0
    assert c["samples_per_s_per_rank"] == pytest.approx(c["samples_timed"] / c["compute_s"])
    assert c["ranks"] == 3 and c["max_chunks_per_rank"] == max(info["chunks_per_rank"]) == 3
    assert c["est_compute_s"] == pytest.approx(3 * 400 / c["samples_per_s_per_rank"])
    assert c["est_write_s"] == pytest.approx(info["bytes_on_disk"] / c["write_bytes_per_s"])
    assert c["est_wall_s"] == pytest.approx(c["est_compute_s"] + c["est_write_s"])
    assert c["est_wall_s"] > 0 and math.isfinite(c["est_wall_s"])
    assert "write" in c["assumptions"] and "rank" in c["assumptions"]
    assert list(out.parent.iterdir()) == []  # nothing written: the write probe is removed


def test_calibrate_text_names_the_rate_and_the_time(tiny_spec: Path) -> None:
    proc = run_hpcgen("plan", tiny_spec, "--calibrate", "--ranks", "2", check=True)
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "samples/s per rank" in lines["measured"]
    assert "with 2 rank(s): compute" in lines["time"] and "+ write" in lines["time"]
    assert "MiB peak" in lines["memory"]


def test_plan_refuses_zero_ranks(tiny_spec: Path) -> None:
    proc = run_hpcgen("plan", tiny_spec, "--ranks", "0")
    assert proc.returncode == 2 and "--ranks must be >= 1" in proc.stderr
