"""``hpcgen data001-check PATH...``: check NPZ files against PtychoPINN's DATA-001 contract.

    hpcgen data001-check DIR              # every */train.npz + */test.npz pair under DIR
    hpcgen data001-check a.npz b.npz      # single files

Per file: keys, dtypes, shapes, equal first-axis lengths, finite values, non-negative
amplitudes. Per train/test pair in one folder: no scan position in both, train strictly below
test in y, the same objectGuess and probeGuess. Exit status 0 when everything passes, 1 if not.
Works on any DATA-001 NPZ (written by hpcgen or not); the arrays are streamed.
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
        help="check ptychography NPZ files against PtychoPINN's DATA-001 contract",
        description="Check NPZ files (or folders of train.npz/test.npz pairs, searched "
        "recursively) against DATA-001: keys, dtypes, shapes, lengths, finite, non-negative "
        "amplitudes, and train/test separation in y.",
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
    for folder in sorted({f.parent for f in files}):
        train, test = folder / "train.npz", folder / "test.npz"
        if train in files and test in files:
            problems = validate_split(train, test)
            failed += bool(problems)
            status = "FAIL" if problems else "PASS"
            print(
                f"{status}  {folder}: train/test split" + "".join(f"\n      {p}" for p in problems)
            )
    print(f"RESULT: {'FAIL' if failed else 'PASS'} ({len(files)} files)", file=sys.stderr)
    return 1 if failed else 0
