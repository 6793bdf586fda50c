"""hpcgen: physics-based training data for ML surrogate models, at cluster scale.

One SPMD program (mpi4py): rank 0 plans, every rank computes its chunks of the sample space and
writes them in parallel into one HDF5 file. See README.md and docs/.
"""

__version__ = "0.1.0"
