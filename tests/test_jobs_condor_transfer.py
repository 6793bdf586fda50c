"""``hpcgen jobs condor --no-shared-fs``: HTCondor pools without a shared file system.

The submit descriptions are parsed with the HTCondor bindings (``htcondor2.Submit``: queue count,
per-job expansion of the transfer keys); then HTCondor's file transfer is played by hand: every
DAG node gets a scratch directory holding what ``transfer_input_files`` names (relative paths kept,
as ``preserve_relative_paths`` does), runs its executable there while the directory ``hpcgen jobs``
ran in is moved away (a job that read anything but its scratch directory fails), and what
``transfer_output_files`` names is copied back along ``transfer_output_remaps``. The merge node
(``universe = local``) then merges on the submit side: the result equals one plain run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_data
from jobs_common import jobs, leftovers, single_run, write_spec

from hpcgen.jobs.plan import job_ranges
from hpcgen.spec import RunSpec

htcondor2 = pytest.importorskip("htcondor2", reason="pip install htcondor (setup.cfg dev extra)")

MODEL = (
    Path(__file__).resolve().parents[1] / "hpcgen/generators/illumination/models/intelsat901.yaml"
)

#: 240 sun directions from a file on a model from a file, 6 chunks of 40: both are input files
SPEC = """generator = "illumination"
n_samples = 240
seed = 5
chunk_size = 40
output = "lit.h5"

[params]
model = "inputs/model/sat.yaml"
sun_file = "inputs/sun.npy"
level = 1
"""
INPUTS = ["inputs/model/sat.yaml", "inputs/sun.npy"]


def make_origin(folder: Path) -> Path:
    """The directory `hpcgen jobs` runs in: the spec and its two input files (relative paths)."""
    (folder / "inputs" / "model").mkdir(parents=True)
    shutil.copy(MODEL, folder / "inputs" / "model" / "sat.yaml")
    np.save(folder / "inputs" / "sun.npy", np.random.default_rng(3).normal(size=(240, 3)))
    return write_spec(folder, "lit.toml", SPEC)


@pytest.fixture
def origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "origin"
    folder.mkdir()
    make_origin(folder)
    monkeypatch.chdir(folder)
    return folder


def listed(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


def remaps(value: str) -> dict[str, str]:
    pairs = (x.split("=") for x in value.strip('"').split(";") if x.strip())
    return {a.strip(): b.strip() for a, b in pairs}


def shard_name(a: int, b: int) -> str:
    return f"chunks-{a:09d}-{b:09d}"


def test_transfer_keys_of_every_job(origin: Path) -> None:
    out = origin / "jobs"
    proc = jobs(
        "condor",
        "lit.toml",
        "--jobs",
        4,
        "--out",
        out,
        "--no-shared-fs",
        "--accounting-group",
        "group_physics.alice",
        "--requirements",
        "HasDocker",
        # the command exists on the execute machines only: not looked for here
        "--hpcgen",
        "/opt/hpcgen/bin/hpcgen",
    )
    assert proc.returncode == 0, proc.stderr
    ranges = job_ranges(6, 4)
    sub = htcondor2.Submit((out / "generate.sub").read_text())
    assert sub.getQArgs().strip() == "4" and not list(sub.itemdata() or [])
    assert sub["should_transfer_files"] == "YES"
    assert sub["when_to_transfer_output"] == "ON_SUCCESS" and sub["success_exit_code"] == "0"
    assert sub["preserve_relative_paths"] == "true"
    # relative input paths are relative to initialdir: the directory `hpcgen jobs` ran in
    assert sub["initialdir"] == str(origin)
    assert listed(sub["transfer_input_files"]) == [str(out / "spec.toml"), *INPUTS]
    assert sub["accounting_group"] == "group_physics.alice" and sub["requirements"] == "HasDocker"
    for p, (a, b) in enumerate(ranges):
        sub["Process"] = str(p)
        name = shard_name(a, b)
        assert sub.expand("arguments").strip('"').split() == [str(a), str(b)]
        assert listed(sub.expand("transfer_output_files")) == [
            f"{name}.h5",
            f"{name}.metadata.json",
        ]
        assert remaps(sub.expand("transfer_output_remaps")) == {
            f"{name}.h5": f"{out}/shards/{name}.h5",
            f"{name}.metadata.json": f"{out}/shards/{name}.metadata.json",
        }
    # DAG nodes: the same keys, chunk range from VARS
    node = htcondor2.Submit((out / "node.sub").read_text())
    node["chunk_a"], node["chunk_b"] = "4", "6"
    assert node.getQArgs().strip() == "1"
    assert listed(node.expand("transfer_output_files"))[0] == f"{shard_name(4, 6)}.h5"
    assert listed(node["transfer_input_files"]) == listed(sub["transfer_input_files"])
    # the merge runs where the shards land, with the accounting group but no requirements
    merge = htcondor2.Submit((out / "merge.sub").read_text())
    assert merge["universe"] == "local" and merge["executable"] == f"{out}/merge.sh"
    assert merge["accounting_group"] == "group_physics.alice" and "requirements" not in merge
    wrapper = (out / "wrapper.sh").read_text()
    assert "/opt/hpcgen/bin/hpcgen" in wrapper and f"cd {origin}" not in wrapper
    info = json.loads((out / "jobs-condor.json").read_text())
    assert info["shared_file_system"] is False and info["transfer_input_files"] == INPUTS
    # request_disk covers the inputs too
    inputs_kb = sum((origin / f).stat().st_size for f in INPUTS) / 1024
    shared = origin / "shared"
    assert jobs("condor", "lit.toml", "--jobs", 4, "--out", shared).returncode == 0
    disk = int(htcondor2.Submit((shared / "generate.sub").read_text())["request_disk"])
    assert int(sub["request_disk"]) >= disk + int(inputs_kb)


def transfer_in(sub, scratch: Path) -> list[str]:
    """What HTCondor does before a job starts: the executable and the transfer_input_files into
    the scratch directory, relative entries (relative to initialdir) at their relative path
    (preserve_relative_paths), absolute ones at the top. Returns the job's command line."""
    assert sub["preserve_relative_paths"] == "true"
    initialdir = Path(sub["initialdir"])
    for entry in listed(sub["transfer_input_files"]):
        rel = Path(entry).name if os.path.isabs(entry) else entry
        (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(initialdir / entry, scratch / rel)  # initialdir / "/abs" is "/abs"
    exe = scratch / Path(sub["executable"]).name
    shutil.copy(sub["executable"], exe)
    return [str(exe), *sub.expand("arguments").strip('"').split()]


def transfer_out(sub, scratch: Path) -> None:
    """After exit 0: each transfer_output_files entry to its remapped place (a missing one would
    put the job on hold)."""
    table = remaps(sub.expand("transfer_output_remaps"))
    for name in listed(sub.expand("transfer_output_files")):
        assert (scratch / name).is_file(), f"{name} missing: HTCondor would hold the job"
        shutil.copy(scratch / name, table[name])


def test_rerendering_in_the_other_transfer_mode_says_so(origin: Path) -> None:
    out = origin / "jobs"
    assert jobs("condor", "lit.toml", "--jobs", 3, "--out", out).returncode == 0
    xfer = jobs("condor", "lit.toml", "--jobs", 3, "--out", out, "--no-shared-fs")
    assert xfer.returncode == 2
    assert xfer.stderr.strip().endswith(
        "holds jobs rendered for a shared file system; use --overwrite to replace them"
    ), xfer.stderr
    assert (
        jobs(
            "condor", "lit.toml", "--jobs", 3, "--out", out, "--no-shared-fs", "--overwrite"
        ).returncode
        == 0
    )
    back = jobs("condor", "lit.toml", "--jobs", 3, "--out", out)
    assert back.returncode == 2 and "holds jobs rendered with --no-shared-fs" in back.stderr
    other = jobs("condor", "lit.toml", "--jobs", 2, "--out", out, "--no-shared-fs")
    assert other.returncode == 2 and "another spec or job split" in other.stderr
    # the mode is the frozen spec's, not read from submit files an earlier render left behind
    assert jobs("slurm", "lit.toml", "--jobs", 3, "--out", out, "--overwrite").returncode == 0
    assert (out / "node.sub").is_file()  # HTCondor's files stay beside SLURM's
    assert jobs("slurm", "lit.toml", "--jobs", 3, "--out", out).returncode == 0


@pytest.mark.slow  # five hpcgen processes: a reference run, three jobs, the merge
def test_dag_run_in_scratch_directories_reproduces_the_single_run(origin: Path) -> None:
    ref = single_run(origin / "lit.toml", origin.parent / "ref.h5")
    out = origin / "jobs"
    assert jobs("condor", "lit.toml", "--jobs", 3, "--out", out, "--no-shared-fs").returncode == 0
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"}
    dag = [line.split() for line in (out / "run.dag").read_text().splitlines()]
    node_vars = {
        w[1]: re.findall(r'(\w+)="([^"]*)"', " ".join(w)) for w in dag if w[:1] == ["VARS"]
    }
    assert len(node_vars) == 3
    jobs_in, subs = {}, {}
    for node, pairs in node_vars.items():
        subs[node] = htcondor2.Submit((out / "node.sub").read_text())
        for k, v in pairs:
            subs[node][k] = v
        scratch = origin.parent / "execute" / node
        scratch.mkdir(parents=True)
        jobs_in[node] = (scratch, transfer_in(subs[node], scratch))
    # the jobs run with nothing of the submit side: the directory `hpcgen jobs` ran in (the spec,
    # its inputs, the job directory) is moved away meanwhile
    os.chdir(origin.parent)
    origin.rename(origin.parent / "hidden")
    try:
        results = {
            node: subprocess.run(
                cmd,
                cwd=scratch,
                env={**env, "_CONDOR_SCRATCH_DIR": str(scratch)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            for node, (scratch, cmd) in jobs_in.items()
        }
    finally:
        (origin.parent / "hidden").rename(origin)
    for node, res in results.items():
        assert res.returncode == 0, res.stdout + res.stderr
        transfer_out(subs[node], jobs_in[node][0])
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(
        f"{shard_name(a, b)}{ext}" for a, b in job_ranges(6, 3) for ext in (".h5", ".metadata.json")
    )
    # the merge node (universe = local) on the submit side, from any directory
    merge = htcondor2.Submit((out / "merge.sub").read_text())
    assert merge["universe"] == "local"
    res = subprocess.run(
        [merge["executable"]], cwd=origin.parent, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "RESULT: PASS" in res.stdout
    assert_same_data(out / "lit.h5", ref)
    assert not leftovers(out)


def test_bundled_model_is_not_transferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_spec(
        tmp_path,
        "b.toml",
        SPEC.replace("inputs/model/sat.yaml", "").replace('sun_file = "inputs/sun.npy"\n', ""),
    )
    assert (
        jobs("condor", spec, "--jobs", 2, "--out", tmp_path / "c", "--no-shared-fs").returncode == 0
    )
    sub = htcondor2.Submit((tmp_path / "c" / "generate.sub").read_text())
    assert listed(sub["transfer_input_files"]) == [str(tmp_path / "c" / "spec.toml")]


@pytest.mark.parametrize("where", ["absolute", "outside"])
def test_inputs_outside_the_run_directory_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A scratch directory has no place for /abs/x or ../x: one line, exit 2, nothing written;
    with a shared file system the same spec renders."""
    make_origin(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)
    model = (
        str(tmp_path / "inputs/model/sat.yaml")
        if where == "absolute"
        else "../inputs/model/sat.yaml"
    )
    text = SPEC.replace('"inputs/model/sat.yaml"', f'"{model}"').replace(
        'sun_file = "inputs/sun.npy"\n', ""
    )
    spec = write_spec(run_dir, "x.toml", text)
    proc = jobs("condor", spec, "--jobs", 2, "--out", run_dir / "c", "--no-shared-fs")
    assert proc.returncode == 2
    assert "must be named relative to the directory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (run_dir / "c").exists()
    assert jobs("condor", spec, "--jobs", 2, "--out", run_dir / "c").returncode == 0
    assert RunSpec.load(run_dir / "c" / "spec.toml").params["model"] == model
