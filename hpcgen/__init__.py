"""hpcgen: physics-based training data for ML surrogate models, at cluster scale.

One SPMD program (mpi4py): rank 0 plans, every rank computes its chunks of the sample space and
writes them in parallel into one HDF5 file. See README.md and docs/.

From Python (docs/python_api.md), without MPI:

- ``hpcgen.generate(generator, n, seed=0, chunk_size=None, dtype="float64", **params)``: a dict
  of numpy arrays, the rows ``hpcgen run`` writes for the same spec;
- ``hpcgen.iter_chunks(...)``: the same rows chunk by chunk, (first row, dict) pairs;
- ``hpcgen.open(path)``: read a file (spec, provenance, fields, rows, blocks, verify);
- ``hpcgen.torch_data.HpcgenDataset``: a PyTorch IterableDataset over files (needs torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "generate", "iter_chunks", "open"]

if TYPE_CHECKING:
    from hpcgen.api import generate, iter_chunks, open


def __getattr__(name: str) -> Any:
    # imported on first use: `import hpcgen` (and so the CLI's start) stays free of numpy, h5py,
    # the generators and torch
    if name in ("generate", "iter_chunks", "open"):
        from hpcgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpcgen' has no attribute {name!r}")
