"""``hpcgen``: the command line. User errors: one line on stderr, exit 2. Internal errors:
traceback, exit 1 (under MPI the job is aborted so that no rank waits forever)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any

from hpcgen import __version__
from hpcgen.engine.space import human_bytes
from hpcgen.errors import UserError
from hpcgen.io.paths import make_parent, remove_empty_dirs

#: ``hpcgen run`` asks on a terminal before writing more than this (bytes); HPCGEN_CONFIRM_BYTES
CONFIRM_BYTES = int(os.environ.get("HPCGEN_CONFIRM_BYTES", str(20 * 2**30)))


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors follow the project's rule: one line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


# --- spec loading shared by run / plan / jobs -----------------------------------------------------


def add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="run spec (TOML)")
    p.add_argument("--out", "-o", help="output file (overrides the spec's 'output')")
    p.add_argument(
        "--n",
        "--n-samples",
        dest="n_samples",
        type=parse_count,
        help="number of samples (1000000, 1_000_000 or 1e6)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--chunk-size", type=int)
    p.add_argument("--dtype", choices=("float64", "float32"))
    p.add_argument("--device", choices=("auto", "cpu", "gpu"))
    p.add_argument("--io", choices=("auto", "mpio", "shards"))
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key or generator parameter (VALUE as TOML), repeatable",
    )


def parse_count(text: str) -> int:
    """``--n``: a whole number, also written as 1e6 or 1_000_000 (refused: 1.5, 1e-3, abc)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--n expects a whole number of samples, got {text!r}") from None
    if not value.is_integer():
        raise UserError(f"--n expects a whole number of samples, got {text!r}")
    return int(value)


def load_spec(args: argparse.Namespace):
    from hpcgen.spec import RunSpec, parse_set

    overrides: dict[str, Any] = parse_set(args.set)
    for key in ("n_samples", "seed", "chunk_size", "dtype", "device", "io"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    if getattr(args, "out", None):
        overrides["output"] = args.out
    return RunSpec.load(args.spec, overrides)


def parse_chunks(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise UserError(f"--chunks expects A:B (chunk indices), got {text!r}") from None
    if a < 0 or b <= a:
        raise UserError(f"--chunks {text}: need 0 <= A < B")
    return a, b


# --- commands -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from hpcgen.compile_notices import set_notices
    from hpcgen.engine.comm import bcast_result, world
    from hpcgen.engine.run import RunOptions, run, sample_bytes

    set_notices(not args.quiet)
    comm = world()
    spec = bcast_result(comm, load_spec, args)
    chunks = parse_chunks(args.chunks)

    def confirm() -> bool:
        if args.yes or not sys.stdin.isatty():  # never build the generator just to not ask
            return True
        size = sample_bytes(spec, spec.make_generator()) * spec.n_samples
        if size <= CONFIRM_BYTES:
            return True
        return ask(f"hpcgen: write {human_bytes(size)} to {spec.output}? [y/N] ")

    if not bcast_result(comm, confirm):
        print("hpcgen: aborted, nothing written", file=sys.stderr)
        return 1
    created = bcast_result(comm, make_output_dir, spec)
    opts = RunOptions(
        resume=args.resume,
        overwrite=args.overwrite,
        chunks=chunks,
        atomic=args.atomic,
        quiet=args.quiet,
        checkpoint_s=args.checkpoint_every,
        overlap=args.overlap,
    )
    try:
        res = run(spec, opts, comm)
    except BaseException:
        # refused after the directory was made (no space, another writer holds the output):
        # leave the file system as it was; a partial output keeps its directory for --resume
        if comm.rank == 0:
            remove_empty_dirs(created)
        raise
    if comm.rank == 0 and not args.quiet:
        if res.skipped:  # "already complete": the output holds this spec's data
            print(f"hpcgen: {res.output}: {res.skipped}, nothing to do", file=sys.stderr)
        else:
            rate = res.samples_written / res.wall_s if res.wall_s > 0 else 0.0
            print(
                f"hpcgen: wrote {res.samples_written} samples ({res.chunks_written} chunks) to "
                f"{res.output} ({human_bytes(res.output.stat().st_size)}) in {res.wall_s:.2f} s "
                f"({rate:,.0f} samples/s, {comm.size} "
                f"rank{'s' if comm.size > 1 else ''})",
                file=sys.stderr,
            )
    return 0


def ask(question: str) -> bool:
    """A yes/no question on the terminal; Ctrl-D (end of input) answers no. Ctrl-C raises
    KeyboardInterrupt after ending the prompt's line, so that main's one-line message stands
    on a line of its own."""
    try:
        answer = input(question)
    except EOFError:
        print(file=sys.stderr)
        return False
    except KeyboardInterrupt:
        print(file=sys.stderr)
        raise
    return answer.strip().lower() in ("y", "yes")


def make_output_dir(spec: Any) -> list[Path]:
    """Create the output's directory (and its parents) if missing, once the generator has been
    built and its input files checked, so that a spec that cannot run leaves no directory.
    Returns the directories created (make_parent)."""
    parent = Path(spec.output).parent
    if parent.is_dir():
        return []
    gen = spec.make_generator()
    gen.check_n_samples(spec.n_samples)
    gen.input_files()
    return make_parent(parent / "x")


def cmd_plan(args: argparse.Namespace) -> int:
    from hpcgen.engine import estimate, partition
    from hpcgen.engine.device import select_device
    from hpcgen.engine.run import sample_bytes

    spec = load_spec(args)
    if args.ranks < 1:
        raise UserError(f"--ranks must be >= 1, got {args.ranks}")
    gen = spec.make_generator()
    gen.check_n_samples(spec.n_samples)
    device = select_device(spec.device, gen)
    per_sample = sample_bytes(spec, gen)
    n_chunks = spec.n_chunks
    cpr = [b - a for a, b in partition.contiguous(0, n_chunks, args.ranks)]
    memory = estimate.estimate_memory(spec, gen, device)
    info: dict[str, Any] = {
        "generator": spec.generator,
        "samples": spec.n_samples,
        "chunk_size": spec.chunk_size,
        "chunks": n_chunks,
        "bytes_per_sample": per_sample,
        "bytes_on_disk": per_sample * spec.n_samples,
        # measured: interpreter, libraries, inputs, kernels + one chunk in flight (estimate.py)
        "memory_per_rank_bytes": memory.peak_bytes,
        "memory": memory.to_dict(),
        "device": device.kind,
        "ranks": args.ranks,
        "chunks_per_rank": cpr,
        "output": spec.output,
    }
    if args.calibrate:
        cal = estimate.calibrate(spec, gen, device, args.ranks, cpr, seconds=args.calibrate_seconds)
        info["calibration"] = cal.to_dict()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"generator        {spec.generator} ({device.kind})")
    print(f"samples          {spec.n_samples:,}")
    print(f"chunks           {n_chunks:,} x {spec.chunk_size:,} samples")
    print(f"bytes on disk    {human_bytes(info['bytes_on_disk'])} ({per_sample} B/sample)")
    print(
        f"memory per rank  ~{human_bytes(memory.peak_bytes)} peak (measured here; independent "
        f"of the sample count):\n{'':17}{human_bytes(memory.resident_bytes)} resident "
        f"(interpreter, libraries, inputs) + {human_bytes(memory.chunk_bytes)} per chunk of "
        f"{memory.chunk_samples:,}"
    )
    print(f"chunks per rank  {min(cpr)}-{max(cpr)} with {args.ranks} rank(s)")
    if args.calibrate:
        c = info["calibration"]
        print(
            f"measured         {c['samples_per_s_per_rank']:,.0f} samples/s per rank "
            f"({c['samples_timed']:,} samples in {c['compute_s']:.2f} s, after a warm-up); "
            f"writes {human_bytes(int(c['write_bytes_per_s']))}/s"
        )
        print(
            f"time             ~{_duration(c['est_wall_s'])} with {args.ranks} rank(s): "
            f"compute {_duration(c['est_compute_s'])} + write {_duration(c['est_write_s'])}"
        )
        print(
            textwrap.fill(
                f"assuming {estimate.ASSUMPTIONS}",
                100,
                initial_indent=" " * 17,
                subsequent_indent=" " * 17,
            )
        )
    print(f"output           {spec.output}")
    return 0


def _duration(seconds: float) -> str:
    """3.2 s, 4 min 10 s, 2 h 05 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def cmd_verify(args: argparse.Namespace) -> int:
    from hpcgen.verify import print_table, verify_file, write_report

    passed, report = verify_file(args.file)
    if args.json:  # stdout holds the report alone, for a pipe
        print(json.dumps(report, indent=2, default=_plain))
    else:
        print_table(report, sys.stdout)
    path = Path(args.report) if args.report else Path(args.file).with_suffix(".verify.json")
    try:
        write_report(report, path)
        print(f"report: {path}", file=sys.stderr if args.json else sys.stdout)
    except OSError as e:
        print(f"hpcgen: could not write the JSON report {path}: {e}", file=sys.stderr)
    return 0 if passed else 1


def _plain(v: Any) -> Any:
    # numpy scalars (np.bool_, np.float64) from generator checks, as in the report file
    return v.item() if hasattr(v, "item") else str(v)


def cmd_export(args: argparse.Namespace) -> int:
    from hpcgen.io.export import export

    export([Path(f) for f in args.file], args.format, Path(args.out), vars(args))
    print(f"exported {' '.join(args.file)} -> {args.out} ({args.format})", file=sys.stderr)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from hpcgen.io.merge import MergeError, merge

    try:
        res = merge(
            Path(args.shard_dir),
            Path(args.out),
            virtual=args.virtual,
            allow_partial=args.allow_partial,
            overwrite=args.overwrite,
        )
    except MergeError as e:  # the one-line summary, then the report naming every chunk range
        print(f"hpcgen: error: {e}", file=sys.stderr)
        return 2
    kind = "virtual file" if args.virtual else "file"
    missing = ", ".join(f"[{a},{b})" for a, b in res["missing"]) or "none"
    print(
        f"merged {res['shards']} shard(s) into {kind} {res['output']}; missing chunks: {missing}",
        file=sys.stderr,
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from hpcgen.io.reader import Reader

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} exists; use --overwrite to replace it")
    with Reader(args.file) as r:
        r.generator.plot(r, out, vars(args))
    print(f"plot: {out}", file=sys.stderr)
    return 0


# --- parser ---------------------------------------------------------------------------------------

#: one line per export format where the exporter's docstring does not say it in one line
EXPORT_FORMATS: dict[tuple[str, str], str] = {
    ("*", "npz"): "one array per field, every generator (the default)",
    ("tracks", "npz"): "X, Y, P, Z as the seed trainers read them; --only-ok drops flagged tracks",
    ("illumination", "csv"): "LCAS's CSV: sun vector, then one lit fraction per face",
    ("atoms", "dataset"): "train/val/test NPZ + metadata.json (--dedup drops repeated images)",
    ("ptycho", "data001"): "PtychoPINN's data001 tree: DIR/dose_<d>/patched_{train,test}.npz",
    ("energy", "well"): "The Well's dataset tree (several files join; --split sets the splits)",
}


def export_formats() -> list[tuple[str, str, str]]:
    """(generator, format, one-line description) of every ``hpcgen export`` format: the
    generic npz, then each generator's ``exporters()`` (of a generator with default params)."""
    from hpcgen.generators import REGISTRY, get_generator_class

    rows = [("*", "npz", EXPORT_FORMATS[("*", "npz")])]
    for name in REGISTRY:
        cls = get_generator_class(name)
        try:
            formats = cls(cls.Params()).exporters()
        except Exception:  # a generator that cannot be built with defaults: skip it, never fail
            continue
        for fmt, fn in sorted(formats.items()):
            doc = (fn.__doc__ or "").strip().split("\n")[0].replace("``", "")
            rows.append((name, fmt, EXPORT_FORMATS.get((name, fmt), doc)))
    return rows


class _ExportParser(_Parser):
    """``hpcgen export``: the format list is built only when the help is shown (it imports every
    generator)."""

    def format_help(self) -> str:
        rows = export_formats()
        w = max(len(f"{g} {f}") for g, f, _ in rows)
        lines = ["formats (generator format: description):"]
        lines += [f"  {f'{g} {f}':<{w}}  {d}" for g, f, d in rows]
        self.epilog = "\n".join(lines)
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    from hpcgen.generators import CLI_EXTENSIONS
    from hpcgen.generators.options import add_generator_options

    p = _Parser(
        prog="hpcgen",
        description="Physics-based training data for ML surrogates, "
        "from one core (python) to a cluster (mpiexec, SLURM, HTCondor).",
    )
    p.add_argument("-V", "--version", action="version", version=f"hpcgen {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="generate a file (SPMD: run it under mpiexec for N ranks)")
    add_spec_args(r)
    r.add_argument("--resume", action="store_true", help="finish an interrupted run")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output")
    r.add_argument("--chunks", metavar="A:B", help="only chunks [A, B) of the plan (batch jobs)")
    r.add_argument(
        "--atomic",
        action="store_true",
        help="write OUT.partial and rename when complete; exit 0 at once if OUT is "
        "already complete (batch jobs with retries)",
    )
    r.add_argument(
        "--checkpoint-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="flush and mark chunks done at most this often (default 10 s; a crash "
        "loses at most this much work; 0: after every round)",
    )
    r.add_argument(
        "--overlap",
        action="store_true",
        help="sample and compute the next chunk while this one is written (same bytes; two "
        "chunks in memory)",
    )
    r.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    r.add_argument("--yes", "-y", action="store_true", help="do not ask before large outputs")
    r.set_defaults(func=cmd_run)

    pl = sub.add_parser("plan", help="size, chunks and memory of a spec, before running it")
    add_spec_args(pl)
    pl.add_argument("--ranks", type=int, default=1, help="ranks (or jobs) to plan for")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON on stdout")
    pl.add_argument(
        "--calibrate",
        action="store_true",
        help="time whole chunks here (at least one, at most 3, about --calibrate-seconds) and "
        "estimate the run's wall time on --ranks ranks",
    )
    pl.add_argument(
        "--calibrate-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="stop timing chunks after S seconds (default 10)",
    )
    pl.set_defaults(func=cmd_plan)

    v = sub.add_parser("verify", help="physics sanity checks: table + JSON, exit 1 on failure")
    v.add_argument("file")
    v.add_argument(
        "--json",
        action="store_true",
        help="print the report as JSON on stdout instead of the table (exit status unchanged)",
    )
    v.add_argument(
        "--report",
        metavar="PATH",
        help="where to write the JSON report (default: FILE with .verify.json)",
    )
    v.set_defaults(func=cmd_verify)

    e = sub.add_parser(
        "export",
        help="convert a file for trainers (npz, csv, data001, dataset, well)",
        description="Convert an hpcgen file into what a trainer reads. The formats of every "
        "generator are listed below.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.__class__ = _ExportParser  # add_parser builds every subparser with one class
    e.add_argument("file", nargs="+", help="hpcgen file(s); several only where the format joins")
    e.add_argument("--format", "-f", default="npz")
    e.add_argument("--out", "-o", required=True)
    add_generator_options(e, "export")
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=cmd_export)

    m = sub.add_parser("merge", help="join batch-job shard files into one file (or a VDS)")
    m.add_argument("shard_dir")
    m.add_argument("--out", "-o", required=True)
    m.add_argument(
        "--virtual",
        action="store_true",
        help="write a virtual-dataset file over the shards instead of copying",
    )
    m.add_argument(
        "--allow-partial",
        action="store_true",
        help="merge what exists; record the missing chunk ranges in the file",
    )
    m.add_argument("--overwrite", action="store_true")
    m.set_defaults(func=cmd_merge)

    pt = sub.add_parser("plot", help="draw a picture of a file")
    pt.add_argument("file")
    pt.add_argument("--out", "-o", required=True)
    add_generator_options(pt, "plot")
    pt.add_argument("--overwrite", action="store_true")
    pt.set_defaults(func=cmd_plot)

    for module in CLI_EXTENSIONS:
        importlib.import_module(module).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    rank, size = _rank_size()
    if not (sys.argv[1:] if argv is None else argv):
        # a command is missing: the commands are what helps, on stderr (stdout stays for
        # results); 2, the status of every other usage error
        if rank == 0:
            build_parser().print_help(sys.stderr)
        return 2
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except UserError as e:
        if rank == 0:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(f"hpcgen: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if rank == 0:
            print("hpcgen: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if type(e).__name__ == "RunInterrupted":  # the engine's; not imported for other commands
            # SIGTERM, on every rank: the done chunks are flushed. 143 = 128 + 15, the status of
            # a process ended by SIGTERM, which batch systems read as "killed at the time limit"
            if rank == 0:
                print(f"hpcgen: {e}", file=sys.stderr)
            return 143
        traceback.print_exc()
        if size > 1:  # the other ranks may be waiting in a collective: end the job
            from mpi4py import MPI

            MPI.COMM_WORLD.Abort(1)
        return 1


def _rank_size() -> tuple[int, int]:
    try:
        from mpi4py import MPI
    except ImportError:
        return 0, 1
    return MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size
