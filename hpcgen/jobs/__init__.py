"""Batch systems: render SLURM and HTCondor jobs for a run spec (``hpcgen jobs``).

Each generation job runs a block of whole chunks of the spec's plan into its own shard file
(``hpcgen run --chunks A:B --atomic``); the merge step (``hpcgen merge`` + ``hpcgen verify``) joins
them into the file a single ``mpiexec`` run would write. Templates: slurm/, condor/, merge/.
"""
