"""The communicator: mpi4py's COMM_WORLD, or a one-rank stand-in where mpi4py is not installed.

Only the few collectives the engine uses are wrapped, so that the rest of the engine reads the same
on one core and on thousands.
"""

from __future__ import annotations

from typing import Any

from hpcgen.errors import UserError


class SerialComm:
    """A one-rank communicator with the mpi4py method names the engine uses."""

    rank = 0
    size = 1

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def gather(self, obj: Any, root: int = 0) -> list[Any]:
        return [obj]

    def allreduce(self, obj: Any, op: Any = None) -> Any:
        return obj

    def Barrier(self) -> None:
        pass

    def Abort(self, code: int = 1) -> None:
        raise SystemExit(code)


def world() -> Any:
    """COMM_WORLD if mpi4py imports (plain `python` is a 1-rank MPI job), else a serial stand-in."""
    try:
        from mpi4py import MPI
    except ImportError:
        return SerialComm()
    return MPI.COMM_WORLD


def max_op() -> Any:
    """MPI.MAX for allreduce (None with the serial stand-in, which ignores the op)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.MAX


def bor_op() -> Any:
    """MPI.BOR (bitwise or) for allreduce of flag bits (None with the serial stand-in)."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.BOR


def mpi_library_version() -> str:
    try:
        from mpi4py import MPI
    except ImportError:
        return "none"
    return MPI.Get_library_version().splitlines()[0].strip()


def bcast_result(comm: Any, fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` on rank 0 and broadcast its result, or its UserError, to every rank.

    Every rank then raises the same error: no rank is left waiting in a collective.
    """
    result: tuple[str, Any] = ("ok", None)
    if comm.rank == 0:
        try:
            result = ("ok", fn(*args))
        except UserError as e:
            result = ("error", e)
    result = comm.bcast(result, root=0)
    if result[0] == "error":
        raise result[1]
    return result[1]


def agree(comm: Any, fn: Any, *args: Any) -> Any:
    """Run ``fn(*args)`` on every rank; if it raises a UserError on any rank, every rank raises
    it (the first rank's message), as a ``CollectiveError``.

    This is the step before every collective call that may fail on some ranks only (opening a
    file, a checkpoint): the ranks learn of the error together and stop together, instead of
    some of them waiting for ever in the next collective call. Other exceptions (bugs) are not
    caught: the CLI aborts the MPI job on them.
    """
    err: str | None = None
    out = None
    try:
        out = fn(*args)
    except UserError as e:
        err = str(e) or type(e).__name__
    errs = comm.allgather(err)
    first = next((e for e in errs if e is not None), None)
    if first is not None:
        raise CollectiveError(first)
    return out


class CollectiveError(UserError):
    """A UserError raised on every rank at once (``agree``, the engine's error flags): every rank
    may still take part in collective clean-up, such as closing a shared file."""
