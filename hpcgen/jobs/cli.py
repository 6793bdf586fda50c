"""``hpcgen jobs slurm|condor SPEC --jobs N --out DIR``: render a ready batch directory.

hpcgen jobs slurm  jobs/tracks_10M.toml --jobs 1000 --out runs/t10M --account phys
sbatch runs/t10M/submit.sbatch               # array(s) + merge job (afterok)
hpcgen jobs condor jobs/tracks_10M.toml --jobs 1000 --out runs/t10M_c [--no-shared-fs]
condor_submit_dag runs/t10M_c/run.dag        # N generation nodes -> merge node

``--n N`` sets the run's size like ``hpcgen run --n`` and names the output after it
(tracks_10M.h5 -> tracks_2M.h5 for --n 2000000; see render.sized_output).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpcgen.jobs.plan import (
    DEFAULT_MAX_ARRAY_SIZE,
    Resources,
    default_disk_kb,
    default_memory_mb,
    parse_memory_mb,
)
from hpcgen.jobs.site import CondorSite, SlurmSite


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "jobs",
        help="render batch jobs for a spec: SLURM arrays + merge job, or an HTCondor DAG",
        description="Render a ready-to-submit directory: the spec frozen in it, one job per chunk "
        "range, each writing its own shard atomically, then merge + verify. See docs/batch.md.",
    )
    sub = p.add_subparsers(dest="system", required=True)
    for system, text in (
        ("slurm", "SLURM: submit.sbatch (job arrays, then the merge job afterok) and mpi.sbatch"),
        ("condor", "HTCondor: generate.sub (queue N) and run.dag (N nodes -> merge node)"),
    ):
        s = sub.add_parser(system, help=text, description=text)
        s.add_argument("spec", help="run spec (TOML); it is frozen into DIR/spec.toml")
        s.add_argument(
            "--jobs",
            "-j",
            type=int,
            required=True,
            help="number of generation jobs (each runs a block of whole chunks)",
        )
        s.add_argument("--out", "-o", required=True, metavar="DIR", help="directory to render into")
        s.add_argument(
            "--n",
            "--n-samples",
            dest="n_samples",
            type=int,
            help="number of samples (as hpcgen run --n); the output is named after it: "
            "tracks_10M.h5 -> tracks_2M.h5 for --n 2000000, tracks_demo.h5 -> "
            "tracks_demo_2M.h5",
        )
        s.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a spec key or generator parameter before freezing",
        )
        s.add_argument("--cpus", type=int, default=1, help="CPUs per job (and per MPI rank)")
        s.add_argument(
            "--mem",
            help="memory per job (and per MPI rank), e.g. 4G (default: 3 x "
            "one chunk + 1 GiB, rounded up to 256 MiB)",
        )
        s.add_argument(
            "--gpus",
            type=int,
            help='GPUs per job and per MPI rank (default: 1 if the spec says device = "gpu")',
        )
        s.add_argument(
            "--retries",
            type=int,
            default=2,
            help="extra attempts of a failed job (default 2; never after exit 2)",
        )
        s.add_argument(
            "--virtual",
            action="store_true",
            help="merge into a virtual-dataset file over the shards instead of a copy",
        )
        s.add_argument(
            "--overwrite",
            action="store_true",
            help="re-render a directory that holds jobs of another spec (no shards)",
        )
        s.add_argument(
            "--hpcgen",
            metavar="CMD",
            help="absolute command the jobs run hpcgen with (default: this venv's)",
        )
        if system == "slurm":
            s.add_argument("--partition", help="SLURM partition (default: the cluster's)")
            s.add_argument(
                "--time",
                default="01:00:00",
                help="time limit of one array task and of the merge job (default 01:00:00)",
            )
            s.add_argument("--mpi-time", help="time limit of mpi.sbatch (default: --time)")
            s.add_argument("--ranks", type=int, default=2, help="MPI ranks of mpi.sbatch")
            s.add_argument(
                "--max-array-size",
                type=int,
                default=DEFAULT_MAX_ARRAY_SIZE,
                help="the cluster's MaxArraySize (default 1001, see `scontrol show "
                "config`): more jobs are split into several arrays",
            )
            site = s.add_argument_group("site options (#SBATCH lines of every rendered script)")
            site.add_argument("--account", help="SLURM account to charge (#SBATCH --account)")
            site.add_argument("--qos", help="quality of service (#SBATCH --qos)")
            site.add_argument(
                "--constraint", help="node features, e.g. 'cpu&ib' (#SBATCH --constraint)"
            )
            site.add_argument("--reservation", help="reservation name (#SBATCH --reservation)")
            site.add_argument(
                "--sbatch-extra",
                action="append",
                default=[],
                metavar="OPTION",
                help="an extra #SBATCH line, e.g. --sbatch-extra=--mail-type=END (repeatable)",
            )
        else:
            s.add_argument(
                "--no-shared-fs",
                "--transfer",
                dest="transfer",
                action="store_true",
                help="a pool without a shared file system: HTCondor transfers the spec and its "
                "input files to each job and the shards back to DIR/shards (should_transfer_files "
                "= YES); the merge node runs on the access point (universe = local)",
            )
            site = s.add_argument_group("site options (submit commands of the jobs)")
            site.add_argument(
                "--accounting-group",
                metavar="GROUP",
                help="accounting_group, e.g. group_physics.alice",
            )
            site.add_argument(
                "--requirements",
                metavar="EXPR",
                help="requirements (a ClassAd expression), e.g. 'OpSysMajorVer == 9'",
            )
            site.add_argument(
                "--condor-extra",
                action="append",
                default=[],
                metavar="LINE",
                help="an extra submit command, e.g. '+ProjectName = \"physics\"' (repeatable)",
            )
        s.set_defaults(func=cmd_jobs)


def _spec_file_n(path: str) -> int | None:
    """n_samples as the spec file itself says it (before --n and --set), or None."""
    with open(path, "rb") as f:
        n = tomllib.load(f).get("n_samples")
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def cmd_jobs(args: argparse.Namespace) -> int:
    from hpcgen.engine.run import sample_bytes
    from hpcgen.jobs import render
    from hpcgen.jobs.plan import job_ranges
    from hpcgen.spec import RunSpec, parse_set

    overrides = parse_set(args.set)
    if args.n_samples is not None:
        overrides["n_samples"] = args.n_samples
    spec = RunSpec.load(args.spec, overrides)
    renamed = ""
    if "output" not in overrides:  # an output set explicitly keeps its name
        named = render.sized_output(spec.output, _spec_file_n(args.spec), spec.n_samples)
        if named != spec.output:
            renamed = f"{Path(spec.output).name} -> {Path(named).name}"
            spec = replace(spec, output=named)
    ranges = job_ranges(spec.n_chunks, args.jobs)  # validates --jobs before anything is written
    per_sample = sample_bytes(spec, spec.make_generator())
    chunk_bytes = per_sample * spec.chunk_size
    max_chunks = max(b - a for a, b in ranges)
    mem_mb = parse_memory_mb(args.mem) if args.mem else default_memory_mb(chunk_bytes)
    slurm = args.system == "slurm"
    transfer = not slurm and args.transfer
    # without a shared file system the job's scratch directory holds the inputs too
    input_bytes = (
        sum(Path(f).stat().st_size for f in render.transfer_inputs(spec)) if transfer else 0
    )
    site: SlurmSite | CondorSite = (
        SlurmSite(args.account, args.qos, args.constraint, args.reservation, args.sbatch_extra)
        if slurm
        else CondorSite(args.accounting_group, args.requirements, args.condor_extra)
    )
    res = Resources(
        cpus=args.cpus,
        gpus=args.gpus if args.gpus is not None else int(spec.device == "gpu"),
        mem_mb=mem_mb,
        retries=args.retries,
        disk_kb=default_disk_kb(max_chunks * chunk_bytes + input_bytes),
        **(
            {
                "time": args.time,
                "mpi_time": args.mpi_time or args.time,
                "ranks": args.ranks,
                "partition": args.partition,
            }
            if slurm
            else {}
        ),
    )
    hpcgen = render.hpcgen_command(args.hpcgen, local=not transfer)
    if slurm:
        r = render.render_slurm(
            spec,
            args.out,
            args.jobs,
            res,
            args.max_array_size,
            virtual=args.virtual,
            overwrite=args.overwrite,
            hpcgen=hpcgen,
            site=site,
        )
    else:
        r = render.render_condor(
            spec,
            args.out,
            args.jobs,
            res,
            virtual=args.virtual,
            overwrite=args.overwrite,
            hpcgen=hpcgen,
            site=site,
            transfer=transfer,
        )
    d = r.directory
    lo, hi = min(b - a for a, b in ranges), max(b - a for a, b in ranges)
    print(
        f"hpcgen jobs {args.system}: {d}: {len(ranges)} jobs x {lo}"
        f"{f'-{hi}' if hi != lo else ''} chunk(s) of {spec.chunk_size:,} samples "
        f"({spec.n_samples:,} samples, {spec.n_chunks} chunks), {res.mem_mb} MiB and "
        f"{res.cpus} CPU(s) per job",
        file=sys.stderr,
    )
    if renamed:
        print(f"  output:    named after --n: {renamed}", file=sys.stderr)
    if slurm:
        arrays = ", ".join(f"--array=0-{c - 1} (jobs {o}-{o + c - 1})" for o, c in r.arrays)
        print(
            f"  {len(r.arrays)} array(s): {arrays}\n"
            f"  submit:    sbatch {d}/submit.sbatch     (arrays, then merge + verify afterok)\n"
            f"  or MPI:    sbatch {d}/mpi.sbatch        ({res.ranks} ranks, srun --mpi=pmi2)",
            file=sys.stderr,
        )
    else:
        print(
            f"  submit:    condor_submit_dag {d}/run.dag  (then the merge node)\n"
            f"  or plain:  condor_submit {d}/generate.sub, then {d}/merge.sh",
            file=sys.stderr,
        )
        if transfer:
            inputs = ", ".join(["spec.toml", *(r.transfer_inputs or [])])
            print(
                f"  files:     no shared file system: each job gets {inputs}; shards come back "
                f"to {d}/shards\n"
                f"  hpcgen:    the jobs run {shlex.join(hpcgen)} on the execute machines: it "
                "must exist there (--hpcgen)",
                file=sys.stderr,
            )
    print(f"  result:    {r.spec.output} (shards in {d}/shards, logs in {d}/logs)", file=sys.stderr)
    return 0
