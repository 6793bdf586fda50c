"""The SLURM route through a real one-node SLURM (tests/slurm_cluster.py starts munged, slurmctld
and slurmd; skipped with the reason when slurm-wlm/munge are not installed):

- ``sbatch submit.sbatch``: the driver submits two arrays (MaxArraySize 2 for three jobs) and the
  merge job with afterok; the merged file equals a single plain run, byte for byte;
- ``sbatch mpi.sbatch``: one allocation, ``srun --mpi=pmi2`` with 2 ranks, the same data;
- a task killed mid-run (SIGKILL) fails, leaving its .partial; resubmitted, it completes and no
  .partial remains.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import h5py
import pytest
from helpers import assert_same_data
from jobs_common import jobs, leftovers, shard_is_complete, single_run, write_spec
from slurm_cluster import SlurmCluster, slurm_fixture  # noqa: F401 (the fixture `slurm`)

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("small")
    spec = write_spec(folder)
    return spec, single_run(spec, folder / "ref.h5")


def render(kind: str, spec: Path, out: Path, *args: object) -> None:
    res = jobs(kind, spec, "--out", out, *args)
    assert res.returncode == 0, res.stderr


def log_text(out: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((out / "logs").glob("*.out"))
    )


def test_sbatch_submit_runs_arrays_then_merge_afterok(
    slurm: SlurmCluster, small: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, ref = small
    out = tmp_path / "run"
    render("slurm", spec, out, "--jobs", 3, "--max-array-size", 2, "--mem", "512M", "--time", 5)
    driver = slurm.sbatch(str(out / "submit.sbatch"))
    assert slurm.wait([driver], timeout=60) == {driver: "COMPLETED"}, log_text(out)
    submitted = (out / "logs" / "submitted.txt").read_text()
    m = re.search(r"in 2 array\(s\): (\d+) (\d+); merge job (\d+) \(afterok\)", submitted)
    assert m, submitted
    arrays, merge_id = [m.group(1), m.group(2)], m.group(3)
    states = slurm.wait([*arrays, merge_id], timeout=150)
    assert set(states.values()) == {"COMPLETED"}, (states, log_text(out))
    assert len(states) == 4  # tasks 0,1 of the first array, task 0 of the second, the merge
    # afterok: the merge job started only once every generation task had ended
    ends = [t for a in arrays for t in slurm.times(a, "EndTime")]
    assert len(ends) == 3
    assert slurm.times(merge_id, "StartTime")[0] >= max(ends)
    merge_log = next((out / "logs").glob(f"merge-{merge_id}.out")).read_text()
    assert "RESULT: PASS" in merge_log, merge_log
    assert_same_data(out / "small.h5", ref)
    for gen_log in (out / "logs").glob("gen-*.out"):  # array tasks log their progress
        assert re.search(r"\[hpcgen\] (\d+)/\1 samples \(100\.0%\)", gen_log.read_text()), gen_log
    assert not leftovers(out)


def test_mpi_job_through_srun_pmi2(
    slurm: SlurmCluster, small: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, ref = small
    out = tmp_path / "mpi"
    render("slurm", spec, out, "--jobs", 2, "--ranks", 2, "--mem", "512M")
    job = slurm.sbatch(str(out / "mpi.sbatch"))
    assert slurm.wait([job], timeout=120) == {job: "COMPLETED"}, log_text(out)
    log = (out / "logs" / f"mpi-{job}.out").read_text()
    assert "2 ranks" in log and "RESULT: PASS" in log, log
    # the engine itself saw one 2-rank communicator (not two singletons), each rank 4 chunks
    with h5py.File(out / "small.h5", "r") as f:
        prov = json.loads(f.attrs["hpcgen_provenance"])
    assert prov["n_ranks"] == 2
    assert [t["chunks"] for t in prov["timings_per_rank"]] == [4, 4]
    assert_same_data(out / "small.h5", ref)


def test_killed_task_leaves_no_partial_after_its_resubmission(
    slurm: SlurmCluster, small: tuple[Path, Path], tmp_path: Path
) -> None:
    spec = small[0]
    out = tmp_path / "crash"
    render("slurm", spec, out, "--jobs", 2, "--retries", 0, "--mem", "512M")
    shard = out / "shards" / "chunks-000000000-000000004.h5"
    # rank 0 SIGKILLs itself after one of its four chunks: a real crash, not an exception
    crashed = slurm.sbatch(
        "--array=0", str(out / "array.sbatch"), "0", env={"HPCGEN_TEST_CRASH_AFTER_ROUNDS": "1"}
    )
    assert slurm.wait([crashed], timeout=60) == {f"{crashed}_0": "FAILED"}, log_text(out)
    assert leftovers(out) == [shard.with_name(shard.name + ".partial")]
    assert not shard.exists()
    t0 = time.monotonic()
    retried = slurm.sbatch("--array=0", str(out / "array.sbatch"), "0")
    assert slurm.wait([retried], timeout=60) == {f"{retried}_0": "COMPLETED"}, log_text(out)
    assert time.monotonic() - t0 < 60
    assert not leftovers(out)
    assert shard_is_complete(shard, (0, 4))
