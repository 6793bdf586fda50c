"""``hpcgen dataset atoms``: generate a versioned train/val/test dataset directory in-process.

    hpcgen dataset atoms --num-images 100000 [--output-dir DIR] [--seed 42] [--yes]

Runs on one process, chunk by chunk with the same generator code as ``hpcgen run``: for the same
seed, chunk size and params, the rows are those of the HDF5 run (``index`` = row). For corpora
too big for one machine, run ``hpcgen run jobs/atoms_10M.toml`` under MPI and
``hpcgen export FILE --format dataset --out DIR``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from hpcgen.errors import UserError
from hpcgen.generators.atoms.params import DEFAULT_CHUNK_SIZE, SPLIT_NAMES, AtomsParams

# the generator, numba and the writer are imported when the command runs: every ``hpcgen``
# invocation builds this parser, and must not pay for them

#: default root of versioned datasets (relative to the working directory)
DATASETS_ROOT = Path("datasets")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "dataset", help="write a versioned train/val/test dataset directory (npz + metadata)"
    )
    which = p.add_subparsers(dest="dataset_kind", metavar="GENERATOR", required=True)
    a = which.add_parser(
        "atoms",
        help="ARC-like 16x16 object grids",
        description="Generate atoms images into datasets/YYYY-MM-DD-vN/ (train/val/test.npz, "
        "metadata.json, validation_report.png). Never overwrites a dataset.",
    )
    a.add_argument("--num-images", type=int, required=True, help="images to generate (> 0)")
    a.add_argument(
        "--output-dir",
        default=None,
        help="output directory, absent or empty (default: datasets/YYYY-MM-DD-vN, N the next "
        "free version)",
    )
    a.add_argument("--seed", type=int, default=42, help="random seed (>= 0, default 42)")
    a.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help="images per chunk (default %(default)s; equal to the run spec's chunk_size "
        "reproduces an HDF5 run byte for byte)",
    )
    a.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generator parameter (repeatable), e.g. --set separation=1",
    )
    a.add_argument(
        "--dedup",
        action="store_true",
        help="drop val images that also occur in train, and test images that occur in train or "
        "val (counts in metadata.json 'dedup')",
    )
    a.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    a.set_defaults(func=run_dataset)


def _params(items: list[str]) -> AtomsParams:
    from hpcgen.generators.base import build_params
    from hpcgen.spec import parse_set

    values = {k.removeprefix("params."): v for k, v in parse_set(items).items()}
    return build_params(AtomsParams, values)


def _confirm() -> bool:
    """Ask y/n on a terminal only: a pipe, a file or /dev/null never blocks the command."""
    if not sys.stdin.isatty():
        print("stdin is not a terminal: proceeding without confirmation (--yes to be explicit)")
        return True
    try:
        answer = input("Proceed with generation? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run_dataset(args: argparse.Namespace) -> int:
    from hpcgen.generators.atoms.dataset import (
        check_output_dir,
        create_output_dir,
        memory_info,
        next_version_dir,
        storage_info,
    )
    from hpcgen.generators.atoms.split import split_counts

    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.COMM_WORLD.size > 1:
        raise UserError(
            "hpcgen dataset runs on one process; under MPI use hpcgen run, then "
            "hpcgen export FILE --format dataset"
        )
    n, seed, chunk_size = args.num_images, args.seed, args.chunk_size
    if n <= 0:
        raise UserError(f"--num-images must be > 0, got {n}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    if chunk_size <= 0:
        raise UserError(f"--chunk-size must be > 0, got {chunk_size}")
    params = _params(args.set)
    if args.output_dir is not None:
        out = Path(args.output_dir)
        check_output_dir(out)
    else:
        out = next_version_dir(DATASETS_ROOT, dt.date.today())

    counts = split_counts(n, seed, params.split_parts)
    mem, store = memory_info(params, n), storage_info(params, n)
    print("Dataset Generation Plan:")  # the spec's plan: Images, Memory, Output
    print(f"  Images: {n:,} (" + ", ".join(f"{s} {c:,}" for s, c in zip(SPLIT_NAMES, counts)) + ")")
    print(f"  Memory: {mem['readable']} ({mem['bytes_per_image']} bytes per uint8 image)")
    print(
        f"  All keys uncompressed: {store['readable']} ({store['bytes_per_sample']} bytes per "
        "sample: images, labels, masks, kinds, index); the npz files are smaller"
    )
    if args.dedup:
        print("  Dedup: val/test images also found in train (test: or val) will be dropped")
    print(f"  Output: {out}")
    sys.stdout.flush()
    if not args.yes and not _confirm():
        print("Cancelled: nothing written.")
        return 1

    create_output_dir(out)
    meta = write(out, params, n, seed, chunk_size, dedup=args.dedup)
    if args.dedup:
        dropped = meta["dedup"]["dropped"]
        print(f"Dedup dropped {dropped['val']} val and {dropped['test']} test images")
    print(f"Wrote {out}: train.npz, val.npz, test.npz, metadata.json, validation_report.png")
    return 0


def write(
    out: Path, params: AtomsParams, n: int, seed: int, chunk_size: int, dedup: bool = False
) -> dict[str, Any]:
    """Generate n images chunk by chunk (as ``hpcgen run`` would) into the dataset directory
    ``out`` (existing and empty); ``dedup``: see ``DatasetWriter.finish``. Returns the
    metadata."""
    import numpy as np
    from tqdm import tqdm

    from hpcgen.generators.atoms.dataset import DatasetWriter, base_metadata
    from hpcgen.generators.atoms.generator import AtomsGenerator
    from hpcgen.generators.base import Chunk, Device

    gen = AtomsGenerator(params)
    cpu = Device("cpu", np)
    writer = DatasetWriter(out, params)
    try:
        with tqdm(
            total=n, desc="Generating images", unit="img", disable=None, file=sys.stderr
        ) as bar:
            for k in range(-(-n // chunk_size)):
                start = k * chunk_size
                chunk = Chunk(index=k, start=start, count=min(chunk_size, n - start), seed=seed)
                block = gen.sample(chunk)
                block |= gen.compute(block, chunk, cpu)
                writer.add(block, start)
                bar.update(chunk.count)
        meta = base_metadata(params, n, seed, chunk_size, out.name)
        return writer.finish(meta, seed, dedup=dedup)
    except BaseException:
        writer.abort()
        raise
