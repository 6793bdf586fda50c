"""Whether this process prints the kernels' compile notices (hpcgen.kernel_cache reads it).

Apart from hpcgen.kernel_cache so that ``hpcgen run --quiet`` can turn them off without importing
numba, which a generator without compiled kernels never needs."""

from __future__ import annotations

enabled = True


def set_notices(on: bool) -> None:
    """Turn this process's compile notices on or off (``hpcgen run --quiet`` turns them off)."""
    global enabled
    enabled = bool(on)
