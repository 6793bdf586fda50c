"""Where a file came from: spec, software versions, machine, timings, input-file hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import hpcgen
from hpcgen.engine.comm import mpi_library_version


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def sha256_file(path: str | Path, bufsize: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(bufsize):
            h.update(block)
    return h.hexdigest()


def hash_inputs(input_files: list[Path]) -> dict[str, str]:
    """{path: SHA-256 of its contents} of a generator's input files. A file that cannot be read
    is a UserError (checked before the output is touched)."""
    from hpcgen.errors import UserError

    out: dict[str, str] = {}
    for p in input_files:
        try:
            out[str(p)] = sha256_file(p)
        except OSError as e:
            raise UserError(f"input file {p}: {e.strerror or e}") from None
    return out


def git_commit() -> str | None:
    """The hpcgen source tree's commit (with "-dirty" if modified), when it is a git checkout."""
    src = Path(hpcgen.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    import h5py

    out = {
        "hpcgen": hpcgen.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "h5py_mpi": str(bool(h5py.get_config().mpi)),
        "mpi_library": mpi_library_version(),
    }
    try:
        import mpi4py

        out["mpi4py"] = mpi4py.__version__
    except ImportError:
        out["mpi4py"] = "none"
    return out


def base_record(
    spec_dict: dict[str, Any],
    input_files: list[Path],
    n_ranks: int,
    device: str,
    io_route: str,
    input_sha256: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The provenance of a run. ``input_sha256`` ({path: SHA-256}) where the caller has hashed
    ``input_files`` already."""
    return {
        "spec": spec_dict,
        "seed": spec_dict["seed"],
        "versions": versions(),
        "git_commit": git_commit(),
        "n_ranks": n_ranks,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "command": sys.argv,
        "device": device,
        "io": io_route,
        "input_files": (
            dict(input_sha256)
            if input_sha256 is not None
            else {str(p): sha256_file(p) for p in input_files}
        ),
    }
