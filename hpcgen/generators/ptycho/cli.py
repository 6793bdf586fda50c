"""``hpcgen data001-check PATH...``: check NPZ files against what PtychoPINN's readers need.

    hpcgen data001-check DIR              # every NPZ under DIR, and each <p>train/<p>test pair
    hpcgen data001-check a.npz b.npz      # single files

Per file: the keys of all four readers (DATA-001's diffraction, objectGuess, probeGuess,
xcoords, ycoords; diff3d, xcoords_start, ycoords_start for RawData.from_file and load_data; Y,
scan_index, _metadata), dtypes, shapes, equal first-axis lengths, finite values, non-negative
amplitudes, duplicated keys equal, _metadata parseable by MetadataManager. Per train/test pair in
one folder (patched_train.npz + patched_test.npz, or any <prefix>train.npz + <prefix>test.npz):
no scan position in both, train strictly below test in y, the same objectGuess and probeGuess.
Exit status 0 when everything passes, 1 if not. Works on any NPZ (written by hpcgen or not);
the arrays are streamed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hpcgen.errors import UserError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "data001-check",
        help="check ptychography NPZ files against what PtychoPINN's readers need",
        description="Check NPZ files (or folders of patched_train.npz/patched_test.npz pairs, "
        "searched recursively) against DATA-001 and the keys of RawData.from_file and "
        "load_data: keys, dtypes, shapes, lengths, finite, non-negative amplitudes, "
        "diff3d = diffraction, _metadata, and train/test separation in y.",
    )
    p.add_argument("paths", nargs="+", help="NPZ files or folders")
    p.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    from hpcgen.generators.ptycho.export import validate_data001, validate_split

    files: list[Path] = []
    for raw in args.paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.rglob("*.npz"))
            if not found:
                raise UserError(f"no .npz files under {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"no such file or folder: {path}")
    failed = 0
    for f in files:
        problems = validate_data001(f)
        failed += bool(problems)
        print(f"{'FAIL' if problems else 'PASS'}  {f}" + "".join(f"\n      {p}" for p in problems))
    for train, test in split_pairs(files):
        problems = validate_split(train, test)
        failed += bool(problems)
        status = "FAIL" if problems else "PASS"
        print(
            f"{status}  {train.parent}: {train.name}/{test.name} split"
            + "".join(f"\n      {p}" for p in problems)
        )
    print(f"RESULT: {'FAIL' if failed else 'PASS'} ({len(files)} files)", file=sys.stderr)
    return 1 if failed else 0


def split_pairs(files: list[Path]) -> list[tuple[Path, Path]]:
    """Pairs (<prefix>train.npz, <prefix>test.npz) from one folder, among ``files``."""
    present = set(files)
    pairs = []
    for f in sorted(present):
        if f.name.endswith("train.npz"):
            partner = f.with_name(f.name[: -len("train.npz")] + "test.npz")
            if partner in present:
                pairs.append((f, partner))
    return pairs
