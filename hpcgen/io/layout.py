"""Names and attributes of the hpcgen HDF5 layout (see docs/file_format.md).

Every hpcgen file -- a full run, a per-job shard or a merged file -- has the same shape:

- one dataset per generator field, shape (rows, *per-sample shape), with attributes
  ``units``, ``description`` and ``sample_axis = 0``;
- the generator's static datasets (no sample axis) and root attributes;
- ``/_hpcgen/done`` uint8 (n_chunks_in_file,): 1 once the chunk's rows are on disk (flushed);
- ``/_hpcgen/checksums`` uint64 (n_chunks_in_file, n_fields, 2): the checksum pair of each
  chunk's rows of each field (hpcgen/io/checksums.py), valid where the done flag is 1;
- root attributes ``hpcgen_spec`` (JSON run spec), ``hpcgen_data_hash`` (SHA-256 of the data
  identity and of the input files' contents), ``hpcgen_input_sha256`` (JSON {input file: SHA-256}),
  ``hpcgen_chunk_range`` [a, b): the global chunks this file holds (rows
  [a*chunk_size, min(b*chunk_size, n_samples))), ``hpcgen_version``, ``hpcgen_provenance`` (JSON).
"""

from __future__ import annotations

ATTR_SPEC = "hpcgen_spec"
ATTR_DATA_HASH = "hpcgen_data_hash"
ATTR_CHUNK_RANGE = "hpcgen_chunk_range"
ATTR_VERSION = "hpcgen_version"
ATTR_PROVENANCE = "hpcgen_provenance"
ATTR_MISSING = "hpcgen_missing_chunk_ranges"
ATTR_INPUTS = "hpcgen_input_sha256"
GROUP = "_hpcgen"
DONE = "_hpcgen/done"
CHECKSUMS = "_hpcgen/checksums"


def rows_of(chunk_range: tuple[int, int], chunk_size: int, n_samples: int) -> tuple[int, int]:
    """Global rows [r0, r1) held by chunks [a, b)."""
    a, b = chunk_range
    return a * chunk_size, min(b * chunk_size, n_samples)
