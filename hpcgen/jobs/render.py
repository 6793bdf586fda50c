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
with a placeholder that has no value is an internal error, never a silently broken script. They
ship inside the package (``hpcgen/_templates/{slurm,condor,merge}`` are symlinks to the folders at
the project root, and a wheel carries their files), so an installed hpcgen renders jobs without a
checkout.

HTCondor pools without a shared file system (``transfer=True``): HTCondor copies the frozen spec
and the generator's input files into each job's scratch directory, keeping their relative paths,
so the spec's own (relative) paths resolve there; the job writes its shard in the scratch
directory, and HTCondor copies it back into DIR/shards/ when the job exits 0. The merge node then
runs on the access point (``universe = local``), where the shards landed.
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

import hpcgen
from hpcgen import __version__
from hpcgen.errors import UserError
from hpcgen.jobs.plan import (
    Resources,
    job_ranges,
    split_arrays,
)
from hpcgen.jobs.site import CondorSite, SlurmSite, block
from hpcgen.spec import RunSpec

#: a folder holding slurm/, condor/ and merge/ to use instead of the package's own templates
TEMPLATES_ENV = "HPCGEN_TEMPLATES"
#: the templates shipped in the package (symlinks to the project root's folders in a checkout)
PACKAGE_TEMPLATES = Path(__file__).resolve().parents[1] / "_templates"

_PLACEHOLDER = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
# Paths go unquoted into #SBATCH lines and submit descriptions: no spaces, no '%' (a SLURM
# filename pattern), no '$' (a condor macro), no shell metacharacters.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+,=@-]*$")
# transfer_input_files is a comma-separated list: its entries must not hold ',' either
_SAFE_TRANSFER = re.compile(r"^[A-Za-z0-9_./+=@-]+$")
#: the line that marks the frozen spec of jobs rendered with --no-shared-fs (its input paths are
#: relative to the jobs' scratch directory, not to the spec's own folder)
_TRANSFER_MARK = "# --no-shared-fs: input paths are relative to the job's scratch directory"
# sizes in output names: 2000000 -> 2M (the largest unit dividing n exactly), 1500 -> 1500
_SIZE_UNITS = (("G", 10**9), ("M", 10**6), ("k", 10**3))
_SIZE_TOKEN = re.compile(r"^(\d+)([kKmMgG]?)$")
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
    transfer_inputs: list[str] | None = None  # HTCondor without a shared file system


def template_root() -> Path:
    """The folder holding slurm/, condor/ and merge/: $HPCGEN_TEMPLATES, else the package's."""
    env = os.environ.get(TEMPLATES_ENV)
    root = Path(env) if env else PACKAGE_TEMPLATES
    if not (root / "slurm" / "array.sbatch").is_file():
        fix = (
            f"point {TEMPLATES_ENV} at a folder holding them"
            if env
            else f"reinstall hpcgen, or set {TEMPLATES_ENV} to a folder holding them"
        )
        raise UserError(f"batch templates not found in {root} (slurm/, condor/, merge/): {fix}")
    return root


def render(text: str, values: Mapping[str, Any], name: str = "template") -> str:
    """Replace every ``{{NAME}}`` in text; a placeholder without a value raises ValueError."""
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise ValueError(f"{name}: no value for placeholder(s) {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def hpcgen_command(explicit: str | None = None, local: bool = True) -> list[str]:
    """The absolute command the jobs run hpcgen with: ``explicit`` (e.g. a venv on the cluster's
    shared file system), else this interpreter's ``hpcgen`` script, else ``python -m hpcgen``.
    ``local=False``: the command is on the execute machines only (a pool without a shared file
    system), so it is not looked for here."""
    if explicit:
        words = shlex.split(explicit)
        if not words or not os.path.isabs(words[0]):
            raise UserError(f"--hpcgen must start with an absolute path, got {explicit!r}")
        if local and not os.access(words[0], os.X_OK):
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


def size_label(n: int) -> str:
    """A sample count as it reads in a file name: 2000000 -> "2M", 250000 -> "250k", 1500 ->
    "1500" (the largest of k, M, G that divides n exactly, so the label is the exact count)."""
    for suffix, unit in _SIZE_UNITS:
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def _token_count(token: str) -> int | None:
    m = _SIZE_TOKEN.match(token)
    if not m:
        return None
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    return int(m.group(1)) * scale


def sized_output(output: str, spec_n: int | None, n: int) -> str:
    """The output named after the run's size when ``--n`` changes it: the name's token that spells
    the spec file's own count (``10M`` of tracks_10M.h5, whose spec has n_samples = 10_000_000)
    becomes the new count's label (tracks_2M.h5 for --n 2000000); a name without such a token gets
    ``_<label>`` appended (tracks_demo.h5 -> tracks_demo_2M.h5), as does every name when the spec
    file gives no count (``spec_n`` None). Same size: unchanged."""
    if n == spec_n:
        return output
    path = Path(output)
    parts = re.split(r"([_.-])", path.stem)  # keeps the separators
    hits = [
        i
        for i, t in enumerate(parts)
        if i % 2 == 0 and spec_n is not None and _token_count(t) == spec_n
    ]
    if hits:
        parts[hits[-1]] = size_label(n)
        stem = "".join(parts)
    else:
        stem = f"{path.stem}_{size_label(n)}"
    return str(path.with_name(stem + path.suffix))


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


def _check_existing(
    out: Path, frozen: RunSpec, ranges: str, overwrite: bool, relative_to: str | None = None
) -> None:
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
    old_ranges = (out / "ranges.txt").read_text() if (out / "ranges.txt").is_file() else ""
    # the frozen spec's input paths are relative to DIR, or with --no-shared-fs to the job's
    # scratch directory: jobs rendered for the other mode read back as another spec, or not at
    # all (their inputs are not where this mode looks)
    old_transfer = _TRANSFER_MARK in spec_file.read_text().splitlines()
    if old_transfer != (relative_to is not None):
        what = "jobs rendered " + (
            "with --no-shared-fs" if old_transfer else "for a shared file system"
        )
    else:
        try:
            old: RunSpec | None = RunSpec.load(spec_file, relative_to=relative_to)
        except UserError:  # its inputs are gone, say: not this spec's jobs
            old = None
        if old is not None and old.data_hash() == frozen.data_hash() and old_ranges == ranges:
            return
        what = "another spec or job split"
    shards = sorted((out / "shards").glob("*.h5*")) if (out / "shards").is_dir() else []
    if shards:
        raise UserError(
            f"{out} holds {len(shards)} shard file(s) of {what}: "
            f"remove {out / 'shards'} or choose a new --out"
        )
    if not overwrite:
        raise UserError(f"{out} holds {what}; use --overwrite to replace them")


def prepare(
    spec: RunSpec,
    out: str | os.PathLike,
    n_jobs: int,
    overwrite: bool = False,
    transfer: bool = False,
) -> tuple[Path, RunSpec, list[tuple[int, int]]]:
    """Create DIR with the frozen spec, ranges.txt, shards/ and logs/. Returns (DIR, frozen spec,
    chunk range per job). The frozen spec's input paths are relative to DIR (where the jobs read
    it), or with ``transfer`` to the current directory (in a job's scratch directory the spec
    lies beside the inputs, which keep their paths relative to the current directory)."""
    directory = Path(os.path.abspath(out))
    _check_path(directory, "--out")
    ranges = job_ranges(spec.n_chunks, n_jobs)
    frozen = replace(spec, output=str(directory / Path(spec.output).name))
    _check_path(Path(frozen.output), "output")
    text = ranges_text(ranges)
    _check_existing(directory, frozen, text, overwrite, os.curdir if transfer else None)
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    (directory / "shards").mkdir(exist_ok=True)
    (directory / "spec.toml").write_text(
        f"# Frozen by hpcgen {__version__} `hpcgen jobs`: the batch jobs in this folder read only "
        "this file.\n"
        + (_TRANSFER_MARK + "\n" if transfer else "")
        + frozen.to_toml(relative_to=os.curdir if transfer else directory)
    )
    (directory / "ranges.txt").write_text(text)
    back = RunSpec.load(directory / "spec.toml", relative_to=os.curdir if transfer else None)
    if back.data_hash() != frozen.data_hash():  # to_toml must round-trip the data identity
        raise RuntimeError(f"{directory / 'spec.toml'} does not reproduce the spec's data hash")
    return directory, frozen, ranges


def transfer_inputs(spec: RunSpec) -> list[str]:
    """The generator's input files (``input_files()`` of the generator the spec builds) as entries
    of ``transfer_input_files``: paths relative to the current directory (the jobs'
    ``initialdir``), which ``preserve_relative_paths`` keeps in the job's scratch directory, so
    that the spec's own paths resolve there unchanged (rewriting them would change the spec's
    data identity). Files inside the hpcgen package (the bundled default model) are skipped: the
    execute machines' hpcgen has its own copy. Refused, one line each: an absolute path or one
    leaving the current directory (the scratch directory has no such place), or a name the
    comma-separated list cannot hold."""
    package = Path(hpcgen.__file__).resolve().parent
    out: list[str] = []
    for path in spec.make_generator().input_files():
        if path.resolve().is_relative_to(package):
            continue
        what = f"--no-shared-fs: input file {path}"
        if path.is_absolute() or ".." in path.parts:
            raise UserError(
                f"{what} must be named relative to the directory you run `hpcgen jobs` in "
                f"({os.getcwd()}), below it: HTCondor puts it at that relative path in the job's "
                "scratch directory (or render for a shared file system, without --no-shared-fs)"
            )
        if not _SAFE_TRANSFER.match(str(path)):
            raise UserError(
                f"{what}: transfer_input_files needs a path of letters, digits and "
                "_ . / + = @ - only (no spaces, ',', '%' or '$')"
            )
        if not path.is_file():
            raise UserError(f"{what} not found in {os.getcwd()}")
        if str(path) not in out:
            out.append(str(path))
    return out


def _condor_files(directory: Path, inputs: list[str] | None) -> str:
    """The file-transfer lines of a generation job: none with a shared file system; else the
    spec and the inputs in, the shard and its metadata out (to DIR/shards/, only on exit 0)."""
    if inputs is None:
        return (
            "# Shards are written in place on the shared file system (atomically: .partial, then\n"
            "# rename); HTCondor matches the jobs to machines of the submit machine's "
            "FileSystemDomain.\n"
            "should_transfer_files   = NO"
        )
    shards = directory / "shards"
    files = ("$(shard).h5", "$(shard).metadata.json")
    return "\n".join(
        [
            "# No shared file system (hpcgen jobs condor --no-shared-fs): HTCondor copies the",
            "# frozen spec and the spec's input files into the job's scratch directory, relative",
            "# paths kept (so the spec's paths resolve there), and copies the shard and its",
            f"# metadata back into {shards}/ when the job exits 0. A failed job returns",
            "# nothing (ON_SUCCESS: under ON_EXIT its missing shard would put it on hold instead",
            "# of a retry).",
            "shard                   = chunks-$INT(chunk_a,%09d)-$INT(chunk_b,%09d)",
            "should_transfer_files   = YES",
            "when_to_transfer_output = ON_SUCCESS",
            "success_exit_code       = 0",
            "preserve_relative_paths = true",
            f"transfer_input_files    = {', '.join([str(directory / 'spec.toml'), *inputs])}",
            f"transfer_output_files   = {', '.join(files)}",
            "transfer_output_remaps  = "
            f'"{"; ".join(f"{name} = {shards}/{name}" for name in files)}"',
        ]
    )


def _common_values(
    directory: Path,
    spec: RunSpec,
    ranges: list[tuple[int, int]],
    res: Resources,
    hpcgen: list[str],
    virtual: bool,
    site: SlurmSite | CondorSite,
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
            f"request_gpus            = {res.gpus}" if res.gpus else "# (no request_gpus: --gpus 0)"
        ),
        "SLURM_SITE_LINES": block(
            site.lines() if isinstance(site, SlurmSite) else [],
            "no --account, --qos, --constraint, --reservation or --sbatch-extra",
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
    r: Rendered,
    system: str,
    res: Resources,
    hpcgen: list[str],
    virtual: bool,
    site: SlurmSite | CondorSite,
    extra: Mapping[str, Any] | None = None,
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
        "site": site.as_dict(),
        **(extra or {}),
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
    site: SlurmSite | None = None,
) -> Rendered:
    """DIR/submit.sbatch (driver: arrays, then the merge job afterok), array.sbatch, merge.sbatch,
    mpi.sbatch (the single-allocation alternative) and merge.sh. ``site``: #SBATCH lines (account,
    QOS, ...) in all four scripts."""
    site = site or SlurmSite()
    arrays = split_arrays(n_jobs, max_array_size)
    root = template_root()  # before prepare(): no half-rendered DIR without templates
    directory, frozen, ranges = prepare(spec, out, n_jobs, overwrite)
    cmd = hpcgen or hpcgen_command()
    values = _common_values(directory, frozen, ranges, res, cmd, virtual, site)
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
    r.files.append(_write_summary(r, "slurm", res, cmd, virtual, site))
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
    site: CondorSite | None = None,
    transfer: bool = False,
) -> Rendered:
    """DIR/generate.sub (``queue N``, $(Process) -> chunk range), node.sub + run.dag (one node per
    job, the merge node the child of all), merge.sub, wrapper.sh and merge.sh. ``site``: submit
    commands (accounting group, requirements, extra lines). ``transfer``: a pool without a shared
    file system (see the module docstring)."""
    site = site or CondorSite()
    root = template_root()  # before prepare(): no half-rendered DIR without templates
    inputs = None
    if transfer:  # before prepare(): refused inputs leave nothing behind
        _check_path(Path(os.getcwd()), "the current directory (the jobs' initialdir)")
        inputs = transfer_inputs(spec)
    directory, frozen, ranges = prepare(spec, out, n_jobs, overwrite, transfer=transfer)
    cmd = hpcgen or hpcgen_command()
    values = _common_values(directory, frozen, ranges, res, cmd, virtual, site)
    values["CONDOR_FILES"] = _condor_files(directory, inputs)
    values["CONDOR_SITE_LINES"] = block(
        site.lines(), "no --accounting-group, --requirements or --condor-extra"
    )
    values["CONDOR_MERGE_SITE_LINES"] = block(
        site.lines(requirements=not transfer),
        "no --accounting-group or --condor-extra"
        + (", and no requirements: it runs on the access point" if transfer else ""),
    )
    if transfer:
        values["INITIALDIR"] = os.getcwd()  # relative input paths are relative to it
        values["MERGE_WHERE"] = (
            "# No shared file system: the shards come back to the access point, so the merge runs\n"
            "# there (the machine you submit from, which holds DIR and hpcgen).\n"
            "universe                = local"
        )
        values["WRAPPER_WHERE"] = (
            "# No shared file system: HTCondor started this job in its scratch directory, which\n"
            "# holds spec.toml and the spec's input files at their relative paths.\n"
            'cd "${_CONDOR_SCRATCH_DIR:-.}"'
        )
        values["JOB_SPEC"] = "spec.toml"
        values["SHARD_DIR"] = ""
        values["SHARD_NOTE"] = (
            f"in the scratch directory; HTCondor copies it to {directory}/shards/"
        )
    else:
        values["INITIALDIR"] = str(directory)
        values["MERGE_WHERE"] = "universe                = vanilla\nshould_transfer_files   = NO"
        values["WRAPPER_WHERE"] = (
            "# Relative paths in the spec (input files) mean what they meant where `hpcgen jobs` "
            f"ran.\ncd {values['WORKDIR']}"
        )
        values["JOB_SPEC"] = f"{directory}/spec.toml"
        values["SHARD_DIR"] = f"{directory}/shards/"
        values["SHARD_NOTE"] = f"in {directory}/shards/"
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
    r = Rendered(directory, frozen, ranges, transfer_inputs=inputs)
    r.files.append(_write(root, directory, "condor/generate.sub", "generate.sub", values, False))
    r.files.append(_write(root, directory, "condor/node.sub", "node.sub", values, False))
    merge_values = {**values, "DISK_KB": res.merge_disk_kb}
    r.files.append(_write(root, directory, "condor/merge.sub", "merge.sub", merge_values, False))
    r.files.append(_write(root, directory, "condor/run.dag", "run.dag", values, False))
    r.files.append(_write(root, directory, "condor/wrapper.sh", "wrapper.sh", values, True))
    r.files.append(_write(root, directory, "merge/merge_verify.sh", "merge.sh", values, True))
    transfer_info = {"shared_file_system": not transfer, "transfer_input_files": inputs}
    r.files.append(_write_summary(r, "condor", res, cmd, virtual, site, transfer_info))
    return r
