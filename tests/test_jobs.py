"""``hpcgen jobs``: the job split, SLURM array splitting, the rendered scripts, the HTCondor submit
descriptions and DAG (parsed with the HTCondor bindings), and the scripts run for real without a
batch system: every DAG node by hand, array tasks with a killed first attempt; ``--n`` and the
output's name; site options (#SBATCH lines, submit commands; sbatch --test-only on a real
slurmctld, marker ``slurm``). (tests/test_jobs_slurm.py runs the SLURM route through a real
slurmctld/slurmd; tests/test_jobs_condor_transfer.py the HTCondor route without a shared file
system; tests/test_jobs_packaging.py the templates in a wheel.)"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import stat
import subprocess
from pathlib import Path

import h5py
import pytest
from helpers import assert_same_data, data_fields
from jobs_common import (
    N_CHUNKS,
    SMALL_SPEC,
    jobs,
    leftovers,
    shard_is_complete,
    single_run,
    write_spec,
)
from slurm_cluster import SlurmCluster, slurm_fixture  # noqa: F401 (the fixture `slurm`)

from hpcgen.engine import partition
from hpcgen.errors import UserError
from hpcgen.jobs import render
from hpcgen.jobs.plan import (
    Resources,
    check_time,
    default_memory_mb,
    job_ranges,
    parse_memory_mb,
    split_arrays,
)
from hpcgen.spec import RunSpec

htcondor2 = pytest.importorskip("htcondor2", reason="pip install htcondor (setup.cfg dev extra)")

SCRIPT_ENV = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE", "HPCGEN_RETRY_DELAY": "0"}


def big_spec(folder: Path, n_chunks: int) -> Path:
    """A spec with many tiny chunks: only rendered, never run."""
    return write_spec(
        folder,
        "big.toml",
        f'generator = "tracks"\nn_samples = {n_chunks * 10}\n'
        'seed = 1\nchunk_size = 10\noutput = "big.h5"\n',
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the small spec, the file a single plain run of it writes)."""
    folder = tmp_path_factory.mktemp("small")
    spec = write_spec(folder)
    return spec, single_run(spec, folder / "ref.h5")


def covered_once(ranges: list[tuple[int, int]], n_chunks: int) -> bool:
    """Consecutive, non-empty ranges tiling [0, n_chunks) exactly."""
    return (
        ranges[0][0] == 0
        and ranges[-1][1] == n_chunks
        and all(a < b for a, b in ranges)
        and all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))
    )


def run_script(*cmd: object, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env={**SCRIPT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def parse_dag(text: str) -> dict:
    """The DAGMan commands the rendered run.dag uses; anything else fails the test."""
    dag: dict = {"jobs": {}, "vars": {}, "retry": {}, "edges": []}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        kw = words[0]
        if kw == "JOB":
            assert words[1] not in dag["jobs"], f"node {words[1]} declared twice"
            dag["jobs"][words[1]] = words[2]
        elif kw == "VARS":
            dag["vars"][words[1]] = dict(re.findall(r'(\w+)="([^"]*)"', line))
        elif kw == "RETRY":
            dag["retry"][words[1]] = words[2:]
        elif kw == "PARENT":
            i = words.index("CHILD")
            dag["edges"].append((words[1:i], words[i + 1 :]))
        elif kw != "NODE_STATUS_FILE":
            raise AssertionError(f"unexpected DAG line {line!r}")
    return dag


def submit_description(path: Path, **macros: str):
    sub = htcondor2.Submit(path.read_text())
    for k, v in macros.items():
        sub[k] = v
    return sub


def arguments(sub) -> list[str]:
    return sub.expand("arguments").strip('"').split()


# --- the split ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_chunks", "n_jobs"), [(8, 3), (8, 8), (100, 7), (2503, 1000), (5, 1)])
def test_job_ranges_tile_the_plan_once_with_balanced_sizes(n_chunks: int, n_jobs: int) -> None:
    ranges = job_ranges(n_chunks, n_jobs)
    assert len(ranges) == n_jobs
    assert covered_once(ranges, n_chunks)
    sizes = [b - a for a, b in ranges]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n_chunks


def test_more_jobs_than_chunks_is_refused() -> None:
    with pytest.raises(UserError, match="more than the plan's 8 chunks"):
        job_ranges(8, 9)
    with pytest.raises(UserError, match="positive"):
        job_ranges(8, 0)


def test_2500_jobs_with_max_array_size_1001_make_three_arrays_covering_each_job_once() -> None:
    arrays = split_arrays(2500, 1001)
    assert arrays == [(0, 1001), (1001, 1001), (2002, 498)]
    jobs_run = [off + t for off, count in arrays for t in range(count)]
    assert jobs_run == list(range(2500))
    assert split_arrays(1001, 1001) == [(0, 1001)]
    assert split_arrays(3, 1) == [(0, 1), (1, 1), (2, 1)]
    with pytest.raises(UserError, match="max-array-size"):
        split_arrays(10, 0)


def test_memory_and_time_parsing() -> None:
    assert parse_memory_mb("4G") == parse_memory_mb("4GB") == parse_memory_mb("4GiB") == 4096
    assert parse_memory_mb("512M") == parse_memory_mb("512") == 512
    assert parse_memory_mb("1.5G") == 1536
    assert parse_memory_mb("100K") == 1  # rounded up, never 0
    for bad in ("lots", "4X", "-1G", ""):
        with pytest.raises(UserError, match="--mem"):
            parse_memory_mb(bad)
    for ok in ("90", "01:30:00", "1-00:00:00", "2-12", "30:00"):
        assert check_time(ok) == ok
    for bad in ("1h", "01:30:00:00", "tomorrow"):
        with pytest.raises(UserError, match="--time"):
            check_time(bad)
    # one chunk of 100 MiB: 3 x 100 MiB + 1 GiB of runtime = 1324 MiB -> 1536 (256 MiB steps)
    assert default_memory_mb(100 * 2**20) == 1536
    with pytest.raises(UserError, match="--retries"):
        Resources(retries=-1)


# --- SLURM rendering ------------------------------------------------------------------------------


def test_slurm_directory_is_self_contained_and_frozen(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "runs" / "t"
    proc = jobs(
        "slurm",
        spec,
        "--jobs",
        3,
        "--out",
        out,
        "--partition",
        "short",
        "--mem",
        "3G",
        "--time",
        "00:20:00",
        "--ranks",
        4,
    )
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    assert {
        "spec.toml",
        "ranges.txt",
        "submit.sbatch",
        "array.sbatch",
        "merge.sbatch",
        "mpi.sbatch",
        "merge.sh",
        "shards",
        "logs",
        "jobs-slurm.json",
    } <= names
    original = RunSpec.load(spec)
    frozen = RunSpec.load(out / "spec.toml")
    assert frozen.data_hash() == original.data_hash()
    assert frozen.output == str(out / "small.h5")
    # the jobs must not depend on the spec file changing later
    spec.write_text(spec.read_text().replace("seed = 11", "seed = 12"))
    assert RunSpec.load(out / "spec.toml").data_hash() == original.data_hash()
    assert render.read_ranges(out / "ranges.txt") == job_ranges(N_CHUNKS, 3)
    for name in ("submit.sbatch", "array.sbatch", "merge.sbatch", "mpi.sbatch", "merge.sh"):
        text = (out / name).read_text()
        assert "{{" not in text and "}}" not in text.replace("}}}", "")
        assert (out / name).stat().st_mode & stat.S_IXUSR
        assert subprocess.run(["bash", "-n", str(out / name)]).returncode == 0, name
        # every file it names is absolute (it runs from any cwd); no relative spec or shard path
        assert "spec.toml" not in text or f"{out}/spec.toml" in text
    array = (out / "array.sbatch").read_text()
    assert "#SBATCH --partition=short" in array and "#SBATCH --mem=3072M" in array
    assert "#SBATCH --time=00:20:00" in array and f"#SBATCH --output={out}/logs/" in array
    mpi = (out / "mpi.sbatch").read_text()
    assert "#SBATCH --ntasks=4" in mpi and "srun --mpi=pmi2 " in mpi
    assert f"run {out}/spec.toml --resume" in mpi
    merge = (out / "merge.sbatch").read_text()
    assert f"exec {out}/merge.sh" in merge


def test_submit_driver_splits_2500_jobs_into_arrays_and_makes_merge_wait_for_all(
    tmp_path: Path,
) -> None:
    """submit.sbatch run with a stand-in sbatch that records its arguments: three arrays within
    MaxArraySize, then the merge job with afterok on all three."""
    out = tmp_path / "t"
    proc = jobs(
        "slurm", big_spec(tmp_path, 2600), "--jobs", 2500, "--out", out, "--max-array-size", 1001
    )
    assert proc.returncode == 0, proc.stderr
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "calls.txt"
    sbatch = fake_bin / "sbatch"
    seen_env = tmp_path / "env.txt"
    sbatch.write_text(
        f'#!/bin/bash\necho "$*" >> {calls}\nn=$(wc -l < {calls})\necho "$((100 + n));cluster"\n'
        f'echo "${{SLURM_JOB_ID:-}}|${{SLURM_MEM_PER_NODE:-}}|$SLURM_CONF|$SBATCH_ACCOUNT" '
        f">> {seen_env}\n"
    )
    sbatch.chmod(0o755)
    # as a batch job: the driver's own job variables must not reach the jobs it submits, the
    # user's SBATCH_* defaults and SLURM_CONF must
    env = {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "7",
        "SLURM_CONF": "/x",
        "SLURM_MEM_PER_NODE": "256",
        "SBATCH_ACCOUNT": "physics",
    }
    res = run_script("bash", out / "submit.sbatch", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert set(seen_env.read_text().splitlines()) == {"||/x|physics"}
    lines = calls.read_text().splitlines()
    assert len(lines) == 4
    arrays = [
        re.fullmatch(rf"--parsable --array=0-(\d+) {out}/array.sbatch (\d+)", x) for x in lines[:3]
    ]
    assert all(arrays), lines
    spans = [(int(m.group(2)), int(m.group(1)) + 1) for m in arrays]
    assert spans == [(0, 1001), (1001, 1001), (2002, 498)]
    assert lines[3] == (
        f"--parsable --dependency=afterok:101:102:103 --kill-on-invalid-dep=yes {out}/merge.sbatch"
    )
    assert "merge job 104" in (out / "logs" / "submitted.txt").read_text()


def test_array_task_index_maps_to_its_chunk_range_across_array_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """array.sbatch run as tasks of the 2nd and 3rd array, with a stand-in hpcgen printing its
    arguments: task T of the array at OFFSET runs exactly the chunks of job OFFSET+T, in the
    directory `hpcgen jobs` ran in (relative input paths in the spec keep their meaning)."""
    echo = tmp_path / "echo_hpcgen"
    echo.write_text('#!/bin/bash\necho "ARGS $*"\necho "CWD $PWD"\n')
    echo.chmod(0o755)
    origin = tmp_path / "origin"
    origin.mkdir()
    monkeypatch.chdir(origin)
    out = tmp_path / "t"
    proc = jobs(
        "slurm",
        big_spec(tmp_path, 2600),
        "--jobs",
        2500,
        "--out",
        out,
        "--max-array-size",
        1001,
        "--hpcgen",
        echo,
    )
    assert proc.returncode == 0, proc.stderr
    ranges = job_ranges(2600, 2500)
    for offset, task in ((0, 0), (0, 1000), (1001, 0), (1001, 1000), (2002, 497)):
        res = run_script(
            "bash",
            out / "array.sbatch",
            offset,
            cwd=tmp_path,
            env={"SLURM_ARRAY_TASK_ID": str(task)},
        )
        assert res.returncode == 0, res.stderr
        a, b = ranges[offset + task]
        args = next(x for x in res.stdout.splitlines() if x.startswith("ARGS")).split()[1:]
        assert args[args.index("--chunks") + 1] == f"{a}:{b}"
        assert args[args.index("--out") + 1] == f"{out}/shards/chunks-{a:09d}-{b:09d}.h5"
        assert "--atomic" in args and args[1] == f"{out}/spec.toml"
        assert f"CWD {origin}" in res.stdout.splitlines()
    res = run_script(
        "bash", out / "array.sbatch", 2002, cwd=tmp_path, env={"SLURM_ARRAY_TASK_ID": "498"}
    )
    assert res.returncode == 2 and "no such job" in res.stderr


def test_rendering_refuses_to_mix_with_another_specs_jobs(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "t"
    assert jobs("slurm", spec, "--jobs", 3, "--out", out).returncode == 0
    # same data and split: re-rendering (say, with another time limit) is fine
    assert jobs("slurm", spec, "--jobs", 3, "--out", out, "--time", "5").returncode == 0
    other = jobs("slurm", spec, "--jobs", 3, "--out", out, "--set", "seed=12")
    assert other.returncode == 2
    assert "another spec or job split; use --overwrite" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    (out / "shards" / "chunks-000000000-000000003.h5").write_bytes(b"not really")
    split = jobs("slurm", spec, "--jobs", 4, "--out", out, "--overwrite")
    assert split.returncode == 2 and "holds 1 shard file(s)" in split.stderr
    assert RunSpec.load(out / "spec.toml").seed == 11  # nothing was replaced


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--jobs", 9), "more than the plan's 8 chunks"),
        (("--jobs", 2, "--mem", "lots"), "--mem"),
        (("--jobs", 2, "--time", "1h"), "--time"),
        (("--jobs", 2, "--hpcgen", "hpcgen"), "absolute path"),
    ],
)
def test_bad_options_are_one_line_user_errors(tmp_path: Path, args: tuple, message: str) -> None:
    proc = jobs("slurm", write_spec(tmp_path), "--out", tmp_path / "t", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()  # refused before writing anything


def test_output_folder_with_a_space_is_refused(tmp_path: Path) -> None:
    proc = jobs("condor", write_spec(tmp_path), "--jobs", 2, "--out", tmp_path / "my runs")
    assert proc.returncode == 2 and "no spaces" in proc.stderr


def test_gpu_specs_ask_for_a_gpu_per_job(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    assert jobs("slurm", spec, "--jobs", 2, "--out", cpu).returncode == 0
    assert "--gres" not in (cpu / "array.sbatch").read_text()
    assert "--gpus-per-task" not in (cpu / "mpi.sbatch").read_text()
    assert jobs("condor", spec, "--jobs", 2, "--out", gpu, "--set", 'device="gpu"').returncode == 0
    assert jobs("slurm", spec, "--jobs", 2, "--out", gpu, "--set", 'device="gpu"').returncode == 0
    assert "#SBATCH --gres=gpu:1" in (gpu / "array.sbatch").read_text()
    assert "#SBATCH --gpus-per-task=1" in (gpu / "mpi.sbatch").read_text()
    for name in ("generate.sub", "node.sub"):
        assert submit_description(gpu / name)["request_gpus"] == "1"
    assert "request_gpus" not in submit_description(gpu / "merge.sub")


# --- HTCondor rendering ---------------------------------------------------------------------------


def test_condor_submit_description_queues_n_jobs_covering_every_chunk_once(tmp_path: Path) -> None:
    out = tmp_path / "c"
    proc = jobs(
        "condor",
        big_spec(tmp_path, 2503),
        "--jobs",
        1000,
        "--out",
        out,
        "--cpus",
        2,
        "--mem",
        "3G",
        "--retries",
        4,
    )
    assert proc.returncode == 0, proc.stderr
    sub = submit_description(out / "generate.sub")
    assert sub.getQArgs().strip() == "1000"
    assert sub["executable"] == f"{out}/wrapper.sh"
    assert os.access(sub["executable"], os.X_OK)
    assert sub["request_cpus"] == "2" and sub["request_memory"] == "3072"
    assert int(sub["request_disk"]) > 0 and sub["max_retries"] == "4"
    assert sub["retry_until"] == "2" and sub["should_transfer_files"] == "NO"
    ranges = []
    for p in range(1000):
        sub["Process"] = str(p)
        a, b = (int(x) for x in arguments(sub))
        ranges.append((a, b))
    assert ranges == partition.contiguous(0, 2503, 1000)
    assert covered_once(ranges, 2503)
    assert render.read_ranges(out / "ranges.txt") == ranges


def test_dag_has_a_node_per_job_and_the_merge_node_as_child_of_all(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert jobs("condor", big_spec(tmp_path, 300), "--jobs", 250, "--out", out).returncode == 0
    dag = parse_dag((out / "run.dag").read_text())
    gen = [n for n in dag["jobs"] if n != "merge"]
    assert len(gen) == 250 and dag["jobs"]["merge"] == f"{out}/merge.sub"
    ranges = []
    for node in gen:
        assert dag["jobs"][node] == f"{out}/node.sub"
        assert dag["retry"][node] == ["2", "UNLESS-EXIT", "2"]
        sub = submit_description(out / "node.sub", **dag["vars"][node])
        ranges.append(tuple(int(x) for x in arguments(sub)))
    assert "merge" in dag["retry"]
    assert ranges == job_ranges(300, 250)
    parents = [p for ps, cs in dag["edges"] for p in ps]
    children = {c for ps, cs in dag["edges"] for c in cs}
    assert sorted(parents) == sorted(gen) and children == {"merge"}
    merge = submit_description(out / "merge.sub")
    assert merge["executable"] == f"{out}/merge.sh" and merge.getQArgs().strip() == "1"
    assert submit_description(out / "node.sub").getQArgs().strip() == "1"


def test_condor_dag_run_by_hand_reproduces_the_single_run(
    tmp_path: Path, small: tuple[Path, Path]
) -> None:
    """Each DAG node's submit description expanded with the bindings and its executable run
    (from an unrelated cwd), then the merge node: the merged file equals one plain run."""
    spec, ref = small
    out = tmp_path / "c"
    assert jobs("condor", spec, "--jobs", 2, "--out", out).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dag = parse_dag((out / "run.dag").read_text())
    for node, sub_file in dag["jobs"].items():
        if node == "merge":
            continue
        sub = submit_description(Path(sub_file), **dag["vars"][node])
        res = run_script(sub["executable"], *arguments(sub), cwd=elsewhere)
        assert res.returncode == 0, res.stdout + res.stderr
    merge = submit_description(Path(dag["jobs"]["merge"]))
    res = run_script(merge["executable"], cwd=elsewhere)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "RESULT: PASS" in res.stdout
    assert_same_data(out / "small.h5", ref)
    assert len(list((out / "shards").glob("chunks-*.h5"))) == 2
    assert not leftovers(out)
    # re-rendered with --virtual (same spec and split: allowed), the merge step writes a VDS
    assert jobs("condor", spec, "--jobs", 2, "--out", out, "--virtual").returncode == 0
    res = run_script(merge["executable"], cwd=elsewhere)
    assert res.returncode == 0, res.stdout + res.stderr
    with h5py.File(out / "small.h5", "r") as f:
        assert all(f[name].is_virtual for name in data_fields(ref))
    assert_same_data(out / "small.h5", ref)


# --- retries --------------------------------------------------------------------------------------


def flaky_hpcgen(tmp_path: Path, shards: Path, first_exit: str = "crash") -> Path:
    """A stand-in for hpcgen: the first call is the real one SIGKILLed after one round (the
    engine's crash hook) or a plain ``exit N``; later calls are the real hpcgen. Each call notes
    the .partial files it found."""
    real = shlex.join(render.hpcgen_command())
    first = (
        f'HPCGEN_TEST_CRASH_AFTER_ROUNDS=1 exec {real} "$@"'
        if first_exit == "crash"
        else f"exit {first_exit}"
    )
    script = tmp_path / "flaky_hpcgen"
    script.write_text(f"""#!/bin/bash
n=$(cat {tmp_path}/calls 2>/dev/null || echo 0)
echo $((n + 1)) > {tmp_path}/calls
echo "call $((n + 1)): $(cd {shards} && ls *.partial 2>/dev/null | tr '\\n' ' ')" >> {tmp_path}/seen
if ((n == 0)); then {first}; fi
exec {real} "$@"
""")
    script.chmod(0o755)
    return script


def test_killed_attempt_is_retried_in_the_task_and_leaves_no_partial(
    tmp_path: Path, small: tuple[Path, Path]
) -> None:
    spec, ref = small
    out = tmp_path / "t"
    flaky = flaky_hpcgen(tmp_path, out / "shards")
    assert (
        jobs("slurm", spec, "--jobs", 2, "--out", out, "--retries", 1, "--hpcgen", flaky).returncode
        == 0
    )
    res = run_script(
        "bash", out / "array.sbatch", 0, cwd=tmp_path, env={"SLURM_ARRAY_TASK_ID": "0"}
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "attempt 1 failed with exit 137" in res.stderr  # SIGKILL
    seen = (tmp_path / "seen").read_text().splitlines()
    # the second attempt found the killed attempt's temporary, and discarded it
    assert seen == ["call 1: ", "call 2: chunks-000000000-000000004.h5.partial "]
    shard = out / "shards" / "chunks-000000000-000000004.h5"
    assert shard_is_complete(shard, (0, 4))
    assert not leftovers(out)
    # the retried shard holds exactly rows [0, 4 x 400) of the single run
    whole = data_fields(ref)
    with h5py.File(shard, "r") as f:
        for name, rows in whole.items():
            assert f[name][...].tobytes() == rows[:1600].tobytes(), name
    # a rerun of a complete job does nothing and succeeds
    before = shard.stat().st_mtime_ns
    res = run_script(
        "bash", out / "array.sbatch", 0, cwd=tmp_path, env={"SLURM_ARRAY_TASK_ID": "0"}
    )
    assert res.returncode == 0 and shard.stat().st_mtime_ns == before


def test_user_error_exit_2_is_not_retried(tmp_path: Path, small: tuple[Path, Path]) -> None:
    spec = small[0]
    out = tmp_path / "t"
    flaky = flaky_hpcgen(tmp_path, out / "shards", first_exit="2")
    assert (
        jobs("slurm", spec, "--jobs", 2, "--out", out, "--retries", 3, "--hpcgen", flaky).returncode
        == 0
    )
    res = run_script(
        "bash", out / "array.sbatch", 0, cwd=tmp_path, env={"SLURM_ARRAY_TASK_ID": "0"}
    )
    assert res.returncode == 2
    assert (tmp_path / "calls").read_text().strip() == "1"
    assert "failed with exit 2 after 1 attempt(s)" in res.stderr


def test_merge_step_raises_the_open_file_limit_for_virtual_datasets(tmp_path: Path) -> None:
    """HDF5 keeps every VDS source open and reads sources past the soft open-file limit as fill
    values without an error: merge.sh lifts the soft limit to the hard one for merge and verify."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 64:
        pytest.skip(f"hard open-file limit {hard} leaves nothing to raise")
    probe = tmp_path / "probe_hpcgen"
    probe.write_text('#!/bin/bash\necho "$1 soft=$(ulimit -Sn)"\n')
    probe.chmod(0o755)
    out = tmp_path / "t"
    spec = write_spec(tmp_path)
    assert jobs("condor", spec, "--jobs", 2, "--out", out, "--hpcgen", probe).returncode == 0
    res = run_script("bash", "-c", f"ulimit -Sn 64 && exec {out}/merge.sh", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    want = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert [x for x in res.stdout.splitlines() if "soft=" in x] == [
        f"merge soft={want}",
        f"verify soft={want}",
    ]


# --- --n and the output's name --------------------------------------------------------------------


def test_size_labels_and_sized_names() -> None:
    assert [render.size_label(n) for n in (2_000_000, 10_000_000, 250_000, 1500, 3 * 10**9)] == [
        "2M",
        "10M",
        "250k",
        "1500",
        "3G",
    ]
    # the token that spells the spec's own count becomes the new count's label
    assert render.sized_output("tracks_10M.h5", 10_000_000, 2_000_000) == "tracks_2M.h5"
    assert render.sized_output("tracks_10M_map.h5", 10_000_000, 2_500) == "tracks_2500_map.h5"
    assert render.sized_output("runs/atoms-100k.h5", 100_000, 10**6) == "runs/atoms-1M.h5"
    # no such token (or the spec gives no count): the label is appended
    assert render.sized_output("tracks_demo.h5", 100_000, 2_000_000) == "tracks_demo_2M.h5"
    assert render.sized_output("tracks_1M.h5", 10_000_000, 2_000_000) == "tracks_1M_2M.h5"
    assert render.sized_output("x.h5", None, 40) == "x_40.h5"
    assert render.sized_output("tracks_10M.h5", 10_000_000, 10_000_000) == "tracks_10M.h5"


def test_n_sets_the_size_and_names_the_output_after_it(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "t3k.toml", SMALL_SPEC.replace('"small.h5"', '"tracks_3k.h5"'))
    out = tmp_path / "t"
    proc = jobs("slurm", spec, "--jobs", 2, "--out", out, "--n", 2000)
    assert proc.returncode == 0, proc.stderr
    assert "named after --n: tracks_3k.h5 -> tracks_2k.h5" in proc.stderr
    frozen = RunSpec.load(out / "spec.toml")
    assert frozen.n_samples == 2000 and frozen.output == str(out / "tracks_2k.h5")
    assert frozen.data_hash() == RunSpec.load(spec, {"n_samples": 2000}).data_hash()
    assert render.read_ranges(out / "ranges.txt") == job_ranges(5, 2)  # 2000 / 400
    assert f"merge {out}/shards --out {out}/tracks_2k.h5" in (out / "merge.sh").read_text()
    assert "#SBATCH --job-name=hpcgen-tracks_2k-gen" in (out / "array.sbatch").read_text()
    # --n-samples is the same option; an output set explicitly keeps its name
    named = tmp_path / "named"
    proc = jobs(
        "condor", spec, "--jobs", 2, "--out", named, "--n-samples", 2000, "--set", 'output="a.h5"'
    )
    assert proc.returncode == 0, proc.stderr
    assert RunSpec.load(named / "spec.toml").output == str(named / "a.h5")
    assert "named after" not in proc.stderr


# --- site options ---------------------------------------------------------------------------------


def sbatch_header(path: Path) -> list[str]:
    """The #SBATCH options as sbatch reads them: up to the first line that is not a comment."""
    options = []
    for line in path.read_text().splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        if line.startswith("#SBATCH "):
            options.append(line.removeprefix("#SBATCH ").strip())
    return options


SLURM_SCRIPTS = ("submit.sbatch", "array.sbatch", "merge.sbatch", "mpi.sbatch")


def test_slurm_site_options_reach_every_script(tmp_path: Path) -> None:
    out = tmp_path / "t"
    proc = jobs(
        "slurm",
        write_spec(tmp_path),
        "--jobs",
        2,
        "--out",
        out,
        "--account",
        "phys-123",
        "--qos",
        "long",
        "--constraint",
        "cpu&[ib1|ib2]",
        "--reservation",
        "maint",
        "--sbatch-extra=--mail-type=END",
        "--sbatch-extra",
        "#SBATCH --comment=hpcgen",
    )
    assert proc.returncode == 0, proc.stderr
    site = [
        "--account=phys-123",
        "--qos=long",
        "--constraint=cpu&[ib1|ib2]",
        "--reservation=maint",
        "--mail-type=END",
        "--comment=hpcgen",
    ]
    for name in SLURM_SCRIPTS:
        header = sbatch_header(out / name)
        assert header[-len(site) :] == site, (name, header)
        assert subprocess.run(["bash", "-n", str(out / name)]).returncode == 0, name
    info = json.loads((out / "jobs-slurm.json").read_text())
    assert info["site"] == {
        "account": "phys-123",
        "qos": "long",
        "constraint": "cpu&[ib1|ib2]",
        "reservation": "maint",
        "sbatch_extra": ["#SBATCH --mail-type=END", "#SBATCH --comment=hpcgen"],
    }
    # without site options no such line is rendered
    plain = tmp_path / "plain"
    assert jobs("slurm", write_spec(tmp_path), "--jobs", 2, "--out", plain).returncode == 0
    for name in SLURM_SCRIPTS:
        assert not any(
            x.startswith(("--account", "--qos", "--constraint", "--reservation", "--mail"))
            for x in sbatch_header(plain / name)
        )


def test_condor_site_options_reach_every_submit_description(tmp_path: Path) -> None:
    out = tmp_path / "c"
    proc = jobs(
        "condor",
        write_spec(tmp_path),
        "--jobs",
        2,
        "--out",
        out,
        "--accounting-group",
        "group_physics.alice",
        "--requirements",
        '(OpSysMajorVer == 9) && (Arch == "X86_64")',
        "--condor-extra",
        '+ProjectName = "hpcgen"',
        "--condor-extra",
        "rank=Mips",
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("generate.sub", "node.sub", "merge.sub"):
        sub = submit_description(out / name)
        assert sub["accounting_group"] == "group_physics.alice", name
        assert sub["requirements"] == '(OpSysMajorVer == 9) && (Arch == "X86_64")', name
        assert sub["MY.ProjectName"] == '"hpcgen"' and sub["rank"] == "Mips", name
        assert sub["should_transfer_files"] == "NO", name
    info = json.loads((out / "jobs-condor.json").read_text())
    assert info["site"]["accounting_group"] == "group_physics.alice"
    assert info["shared_file_system"] is True and info["transfer_input_files"] is None


@pytest.mark.parametrize(
    ("system", "args", "message"),
    [
        ("slurm", ("--sbatch-extra=--time=5",), "use its option --time"),
        ("slurm", ("--sbatch-extra=-A other",), "use its option --account"),
        ("slurm", ("--sbatch-extra=--array=0-3",), "the jobs rely on it"),
        ("slurm", ("--sbatch-extra", "mail-type=END"), "expected an sbatch option"),
        ("slurm", ("--sbatch-extra=--comment=a\n#SBATCH --array=1",), "one non-empty line"),
        ("slurm", ("--account", "a b"), "not a SLURM account"),
        ("slurm", ("--constraint", "x;rm"), "not a SLURM constraint"),
        ("condor", ("--condor-extra", "executable = /bin/true"), "the jobs rely on it"),
        ("condor", ("--condor-extra", "Request_Memory = 9"), "use its option --mem"),
        ("condor", ("--condor-extra", "no equals sign"), "expected a submit command"),
        ("condor", ("--accounting-group", "a b"), "not an accounting group"),
        ("condor", ("--requirements", "a\nqueue 9"), "one non-empty line"),
    ],
)
def test_bad_site_options_are_one_line_user_errors(
    tmp_path: Path, system: str, args: tuple, message: str
) -> None:
    proc = jobs(system, write_spec(tmp_path), "--jobs", 2, "--out", tmp_path / "t", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "t").exists()


@pytest.mark.slurm
def test_sbatch_reads_the_site_lines_of_every_script(slurm: SlurmCluster, tmp_path: Path) -> None:
    """A real slurmctld: ``sbatch --test-only`` accepts all four scripts with site options; an
    unknown reservation or feature in the rendered lines makes sbatch refuse each script (so the
    lines are read, not ignored); a held submission carries the account and the extra line."""
    spec = write_spec(tmp_path)

    def sbatch_test_only(out: Path) -> list[subprocess.CompletedProcess]:
        return [
            slurm.run("sbatch", "--test-only", *args, check=False)
            for args in (
                [str(out / "submit.sbatch")],
                ["--array=0-1", str(out / "array.sbatch"), "0"],
                [str(out / "merge.sbatch")],
                [str(out / "mpi.sbatch")],
            )
        ]

    good = tmp_path / "good"
    site = ("--account", "phys", "--qos", "normal", "--sbatch-extra=--comment=hpcgen-site")
    assert jobs("slurm", spec, "--jobs", 2, "--out", good, "--mem", "256M", *site).returncode == 0
    for proc in sbatch_test_only(good):
        assert proc.returncode == 0 and "to start at" in proc.stderr, proc.stderr
    for args, refusal in (
        (("--reservation", "nosuch"), "reservation is invalid"),
        (("--constraint", "nosuchfeature"), "Invalid feature"),
    ):
        out = tmp_path / args[1]
        assert jobs("slurm", spec, "--jobs", 2, "--out", out, *args).returncode == 0
        for proc in sbatch_test_only(out):
            assert proc.returncode != 0 and refusal in proc.stderr, proc.stderr
    job = slurm.sbatch("--hold", str(good / "merge.sbatch"))
    shown = slurm.run("scontrol", "show", "job", "-o", job).stdout
    slurm.run("scancel", job, check=False)
    assert "Account=phys" in shown and "Comment=hpcgen-site" in shown, shown
