"""Render the batch templates (slurm/, condor/, merge/ at the project root) into a job directory.

A rendered directory is self-contained: the spec is frozen in it (``spec.toml``, its output set to
a path inside the directory), the job split is written down (``ranges.txt``: ``JOB FIRST STOP`` per
line), and every script names the spec, the shards, the logs and the hpcgen executable by absolute
path, so the jobs run the same from any working directory and whatever later happens to the
original spec file. The jobs change to the directory ``hpcgen jobs`` ran in, so that relative
input-file paths in the spec (a field map, a base dataset) mean what they meant there (making them
absolute would change the spec's data identity). Layout (docs/batch.md)::

    DIR/spec.toml  ranges.txt  jobs-*.json  merge.sh  shards/  logs/
        submit.sbatch  array.sbatch  merge.sbatch  mpi.sbatch           (hpcgen jobs slurm)
        generate.sub   node.sub  wrapper.sh  merge.sub  run.dag         (hpcgen jobs condor)

Templates use ``{{NAME}}`` placeholders (bash's ``${...}`` never clashes with them); a template
with a placeholder that has no value is an internal error, never a silently broken script.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpcgen import __version__
from hpcgen.errors import UserError
from hpcgen.jobs.plan import (
    Resources,
    job_ranges,
    split_arrays,
)
from hpcgen.spec import RunSpec

#: where the slurm/, condor/ and merge/ template folders live (default: the project checkout)
TEMPLATES_ENV = "HPCGEN_TEMPLATES"

_PLACEHOLDER = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
# Paths go unquoted into #SBATCH lines and submit descriptions: no spaces, no '%' (a SLURM
# filename pattern), no '$' (a condor macro), no shell metacharacters.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+,=@-]*$")
#: DAG PARENT lines list this many nodes each (one long line works too; these stay readable)
PARENTS_PER_LINE = 100


@dataclass
class Rendered:
    """What ``render_slurm`` / ``render_condor`` wrote."""

    directory: Path
    spec: RunSpec  # the frozen spec (output inside directory)
    ranges: list[tuple[int, int]]  # job i runs chunks ranges[i]
    files: list[Path] = field(default_factory=list)
    arrays: list[tuple[int, int]] = field(default_factory=list)  # SLURM: (offset, count)


def template_root() -> Path:
    """The folder holding slurm/, condor/ and merge/ ($HPCGEN_TEMPLATES, else the checkout)."""
    env = os.environ.get(TEMPLATES_ENV)
    root = Path(env) if env else Path(__file__).resolve().parents[2]
    if not (root / "slurm" / "array.sbatch").is_file():
        raise UserError(
            f"batch templates not found in {root} (slurm/, condor/, merge/): set "
            f"{TEMPLATES_ENV} to the hpcgen project checkout"
        )
    return root


def render(text: str, values: Mapping[str, Any], name: str = "template") -> str:
    """Replace every ``{{NAME}}`` in text; a placeholder without a value raises ValueError."""
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise ValueError(f"{name}: no value for placeholder(s) {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def hpcgen_command(explicit: str | None = None) -> list[str]:
    """The absolute command the jobs run hpcgen with: ``explicit`` (e.g. a venv on the cluster's
    shared file system), else this interpreter's ``hpcgen`` script, else ``python -m hpcgen``."""
    if explicit:
        words = shlex.split(explicit)
        if not words or not os.path.isabs(words[0]):
            raise UserError(f"--hpcgen must start with an absolute path, got {explicit!r}")
        if not os.access(words[0], os.X_OK):
            raise UserError(f"--hpcgen: {words[0]} is not an executable file")
        return words
    exe = Path(os.path.abspath(sys.executable))  # not resolved: keep the venv's python
    script = exe.with_name("hpcgen")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(exe), "-m", "hpcgen"]


def job_name(spec: RunSpec) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(spec.output).stem) or spec.generator
    return f"hpcgen-{stem}"


def ranges_text(ranges: list[tuple[int, int]]) -> str:
    lines = ["# job first_chunk stop_chunk: job i runs chunks [first_chunk, stop_chunk)"]
    lines += [f"{i} {a} {b}" for i, (a, b) in enumerate(ranges)]
    return "\n".join(lines) + "\n"


def read_ranges(path: Path) -> list[tuple[int, int]]:
    """ranges.txt -> [(first, stop), ...] in job order."""
    out: list[tuple[int, int]] = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            i, a, b = (int(x) for x in line.split())
            if i != len(out):
                raise UserError(f"{path}: job {i} out of order")
            out.append((a, b))
    return out


# --- the job directory ---------------------------------------------------------------------------


def _check_path(path: Path, what: str) -> None:
    if not _SAFE_PATH.match(str(path)):
        raise UserError(
            f"{what} {path}: batch scripts need a path of letters, digits and "
            "_ . / + , = @ - only (no spaces, '%' or '$')"
        )


def _check_existing(out: Path, frozen: RunSpec, ranges: str, overwrite: bool) -> None:
    """Re-rendering a directory is fine for the same data and job split (new resources, say);
    anything else must not mix with shards already there."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    spec_file = out / "spec.toml"
    if not spec_file.is_file():
        raise UserError(
            f"--out {out} is not empty and holds no hpcgen jobs (no spec.toml): "
            "choose a new directory"
        )
    old = RunSpec.load(spec_file)
    old_ranges = (out / "ranges.txt").read_text() if (out / "ranges.txt").is_file() else ""
    if old.data_hash() == frozen.data_hash() and old_ranges == ranges:
        return
    shards = sorted((out / "shards").glob("*.h5*")) if (out / "shards").is_dir() else []
    if shards:
        raise UserError(
            f"{out} holds {len(shards)} shard file(s) of another spec or job split: "
            f"remove {out / 'shards'} or choose a new --out"
        )
    if not overwrite:
        raise UserError(
            f"{out} holds jobs of another spec or job split; use --overwrite to replace them"
        )


def prepare(
    spec: RunSpec,
    out: str | os.PathLike,
    n_jobs: int,
    overwrite: bool = False,
) -> tuple[Path, RunSpec, list[tuple[int, int]]]:
    """Create DIR with the frozen spec, ranges.txt, shards/ and logs/. Returns (DIR, frozen spec,
    chunk range per job)."""
    directory = Path(os.path.abspath(out))
    _check_path(directory, "--out")
    ranges = job_ranges(spec.n_chunks, n_jobs)
    frozen = replace(spec, output=str(directory / Path(spec.output).name))
    _check_path(Path(frozen.output), "output")
    text = ranges_text(ranges)
    _check_existing(directory, frozen, text, overwrite)
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    (directory / "shards").mkdir(exist_ok=True)
    (directory / "spec.toml").write_text(
        f"# Frozen by hpcgen {__version__} `hpcgen jobs`: the batch jobs in this folder read only "
        "this file.\n" + frozen.to_toml()
    )
    (directory / "ranges.txt").write_text(text)
    back = RunSpec.load(directory / "spec.toml")
    if back.data_hash() != frozen.data_hash():  # to_toml must round-trip the data identity
        raise RuntimeError(f"{directory / 'spec.toml'} does not reproduce the spec's data hash")
    return directory, frozen, ranges


def _common_values(
    directory: Path,
    spec: RunSpec,
    ranges: list[tuple[int, int]],
    res: Resources,
    hpcgen: list[str],
    virtual: bool,
) -> dict[str, Any]:
    return {
        "DIR": str(directory),
        "OUTPUT": spec.output,
        "WORKDIR": shlex.quote(os.getcwd()),
        "NAME": job_name(spec),
        "HPCGEN": shlex.join(hpcgen),
        "N_JOBS": len(ranges),
        "N_CHUNKS": spec.n_chunks,
        "CPUS": res.cpus,
        "MEM_MB": res.mem_mb,
        "MEM_PER_CPU_MB": math.ceil(res.mem_mb / res.cpus),
        "TIME": res.time,
        "MPI_TIME": res.mpi_time,
        "RANKS": res.ranks,
        "RETRIES": res.retries,
        "RETRY_DELAY": res.retry_delay_s,
        "DISK_KB": res.disk_kb,
        "PARTITION_LINE": (
            f"#SBATCH --partition={res.partition}"
            if res.partition
            else "# (no --partition: the cluster's default partition)"
        ),
        "SLURM_GPU_LINE": (
            f"#SBATCH --gres=gpu:{res.gpus}" if res.gpus else "# (no GPUs: --gpus 0)"
        ),
        "SLURM_MPI_GPU_LINE": (
            f"#SBATCH --gpus-per-task={res.gpus}" if res.gpus else "# (no GPUs: --gpus 0)"
        ),
        "CONDOR_GPU_LINE": (
            f"request_gpus          = {res.gpus}" if res.gpus else "# (no request_gpus: --gpus 0)"
        ),
        "MERGE_FLAGS": " --virtual" if virtual else "",
        "MERGE_NOTE": (
            ",\n#      a virtual-dataset file over the shards (keep the shards beside it)"
            if virtual
            else ", one self-contained file"
        ),
    }


def _write(
    root: Path,
    directory: Path,
    rel_template: str,
    name: str,
    values: Mapping[str, Any],
    executable: bool,
) -> Path:
    src = root / rel_template
    path = directory / name
    path.write_text(render(src.read_text(), values, rel_template))
    path.chmod(0o755 if executable else 0o644)
    return path


def _write_summary(
    r: Rendered, system: str, res: Resources, hpcgen: list[str], virtual: bool
) -> Path:
    info = {
        "system": system,
        "hpcgen_version": __version__,
        "hpcgen": hpcgen,
        "workdir": os.getcwd(),
        "spec": str(r.directory / "spec.toml"),
        "data_hash": r.spec.data_hash(),
        "output": r.spec.output,
        "n_samples": r.spec.n_samples,
        "chunk_size": r.spec.chunk_size,
        "n_chunks": r.spec.n_chunks,
        "n_jobs": len(r.ranges),
        "chunks_per_job": [min(b - a for a, b in r.ranges), max(b - a for a, b in r.ranges)],
        "slurm_arrays": [{"offset": o, "count": c} for o, c in r.arrays],
        "merge": "virtual" if virtual else "copy",
        "resources": res.__dict__,
        "files": sorted(p.name for p in r.files),
    }
    path = r.directory / f"jobs-{system}.json"
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def render_slurm(
    spec: RunSpec,
    out: str | os.PathLike,
    n_jobs: int,
    res: Resources,
    max_array_size: int,
    virtual: bool = False,
    overwrite: bool = False,
    hpcgen: list[str] | None = None,
) -> Rendered:
    """DIR/submit.sbatch (driver: arrays, then the merge job afterok), array.sbatch, merge.sbatch,
    mpi.sbatch (the single-allocation alternative) and merge.sh."""
    arrays = split_arrays(n_jobs, max_array_size)
    root = template_root()  # before prepare(): no half-rendered DIR without templates
    directory, frozen, ranges = prepare(spec, out, n_jobs, overwrite)
    cmd = hpcgen or hpcgen_command()
    values = _common_values(directory, frozen, ranges, res, cmd, virtual)
    submits = []
    for offset, count in arrays:
        submits.append(f"id=$(submit --array=0-{count - 1} {directory}/array.sbatch {offset})")
        submits.append('ids+=("$id")')
    values["ARRAY_SUBMITS"] = "\n".join(submits)
    r = Rendered(directory, frozen, ranges, arrays=arrays)
    for tpl, name in (
        ("slurm/submit.sbatch", "submit.sbatch"),
        ("slurm/array.sbatch", "array.sbatch"),
        ("slurm/merge.sbatch", "merge.sbatch"),
        ("slurm/mpi.sbatch", "mpi.sbatch"),
        ("merge/merge_verify.sh", "merge.sh"),
    ):
        r.files.append(_write(root, directory, tpl, name, values, executable=True))
    r.files.append(_write_summary(r, "slurm", res, cmd, virtual))
    return r


def dag_node_name(i: int, n_jobs: int) -> str:
    return f"gen{i:0{max(6, len(str(n_jobs - 1)))}d}"


def render_condor(
    spec: RunSpec,
    out: str | os.PathLike,
    n_jobs: int,
    res: Resources,
    virtual: bool = False,
    overwrite: bool = False,
    hpcgen: list[str] | None = None,
) -> Rendered:
    """DIR/generate.sub (``queue N``, $(Process) -> chunk range), node.sub + run.dag (one node per
    job, the merge node the child of all), merge.sub, wrapper.sh and merge.sh."""
    root = template_root()  # before prepare(): no half-rendered DIR without templates
    directory, frozen, ranges = prepare(spec, out, n_jobs, overwrite)
    cmd = hpcgen or hpcgen_command()
    values = _common_values(directory, frozen, ranges, res, cmd, virtual)
    nodes, names = [], []
    for i, (a, b) in enumerate(ranges):
        name = dag_node_name(i, len(ranges))
        names.append(name)
        nodes.append(f"JOB {name} {directory}/node.sub")
        nodes.append(f'VARS {name} chunk_a="{a}" chunk_b="{b}"')
        if res.retries:
            nodes.append(f"RETRY {name} {res.retries} UNLESS-EXIT 2")
    values["GEN_NODES"] = "\n".join(nodes)
    values["PARENT_LINES"] = "\n".join(
        f"PARENT {' '.join(names[i : i + PARENTS_PER_LINE])} CHILD merge"
        for i in range(0, len(names), PARENTS_PER_LINE)
    )
    r = Rendered(directory, frozen, ranges)
    r.files.append(_write(root, directory, "condor/generate.sub", "generate.sub", values, False))
    r.files.append(_write(root, directory, "condor/node.sub", "node.sub", values, False))
    merge_values = {**values, "DISK_KB": res.merge_disk_kb}
    r.files.append(_write(root, directory, "condor/merge.sub", "merge.sub", merge_values, False))
    r.files.append(_write(root, directory, "condor/run.dag", "run.dag", values, False))
    r.files.append(_write(root, directory, "condor/wrapper.sh", "wrapper.sh", values, True))
    r.files.append(_write(root, directory, "merge/merge_verify.sh", "merge.sh", values, True))
    r.files.append(_write_summary(r, "condor", res, cmd, virtual))
    return r
