"""Shared test helpers: run the real CLI (optionally under mpiexec), compare data in files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
BIN = Path(sys.executable).parent


def mpiexec() -> str:
    """MPICH's launcher (pinned: an Open MPI mpiexec would run N separate singletons)."""
    exe = shutil.which("mpiexec.mpich") or shutil.which("mpiexec")
    assert exe, "mpiexec not found: run scripts/setup.sh"
    return exe


def hpcgen_env(extra: dict | None = None) -> dict[str, str]:
    """The environment of an ``hpcgen`` subprocess: this one's, HDF5 file locking off, and
    tests/ on PYTHONPATH so that specs may name ``toy_generator:ToyGenerator`` (MPICH's mpiexec
    passes the whole environment on to its ranks)."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE", "PYTHONPATH": path, **(extra or {})}


def run_hpcgen(
    *args: str,
    ranks: int = 0,
    cwd: str | Path | None = None,
    env: dict | None = None,
    timeout: float = 300,
    check: bool = False,
    subprocess_: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``hpcgen ARGS`` as users do: ranks=0 plain, ranks=N under ``mpiexec -n N``.

    A plain call without ``env`` runs ``hpcgen.cli.main`` in this process (what ``python -m
    hpcgen`` runs, after its start-up: a second of the suite's time per call), its stdout and
    stderr captured and its working directory ``cwd``; a crash is exit 1 with the traceback on
    stderr, as from the interpreter. ``subprocess_=True`` forces a new process, for what only a
    process shows (its start-up, imports, signals, what it leaves in the environment)."""
    if not ranks and env is None and not subprocess_:
        return _in_process([str(a) for a in args], cwd, check)
    cmd = [sys.executable, "-m", "hpcgen", *map(str, args)]
    if ranks:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    proc = subprocess.run(
        cmd, cwd=cwd, env=hpcgen_env(env), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def _in_process(
    argv: list[str], cwd: str | Path | None, check: bool
) -> subprocess.CompletedProcess:
    """``hpcgen ARGV`` through hpcgen.cli.main in this process (see run_hpcgen)."""
    import contextlib
    import io
    import traceback

    from hpcgen.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    locking = os.environ.get("HDF5_USE_FILE_LOCKING")
    os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:  # argparse's usage errors and --help, --version
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if e.code is not None and not isinstance(e.code, int):
                    print(e.code, file=sys.stderr)
            except BaseException:  # the interpreter would print it and exit 1
                traceback.print_exc()
                rc = 1
    finally:
        os.chdir(here)
        if locking is None:
            os.environ.pop("HDF5_USE_FILE_LOCKING")
        else:
            os.environ["HDF5_USE_FILE_LOCKING"] = locking
    proc = subprocess.CompletedProcess(["hpcgen", *argv], rc, out.getvalue(), err.getvalue())
    if check and rc != 0:
        raise AssertionError(
            f"hpcgen {' '.join(argv)} exited {rc}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def data_fields(path: str | Path) -> dict[str, np.ndarray]:
    """Every dataset with a sample axis (attribute sample_axis) in an hpcgen file."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and "sample_axis" in obj.attrs:
                out[name] = obj[...]

        f.visititems(visit)
    return out


def assert_same_data(a: str | Path, b: str | Path) -> None:
    """The same bytes in every data dataset of two hpcgen files."""
    da, db = data_fields(a), data_fields(b)
    assert da, f"{a} holds no data datasets"
    assert sorted(da) == sorted(db), (sorted(da), sorted(db))
    for name in da:
        assert da[name].dtype == db[name].dtype, name
        assert da[name].shape == db[name].shape, name
        assert da[name].tobytes() == db[name].tobytes(), f"{name} differs between {a} and {b}"
