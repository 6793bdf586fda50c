"""The communicator: mpi4py's COMM_WORLD, or a one-rank stand-in where mpi4py is not installed.

Only the few collectives the engine uses are wrapped, so that the rest of the engine reads the same
on one core and on thousands.
"""

from __future__ import annotations

from typing import Any


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
    from hpcgen.errors import UserError

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
