"""The ``_metadata`` entry of an exported NPZ, in the form PtychoPINN's MetadataManager reads.

PtychoPINN's ``ptycho/metadata.py`` (``MetadataManager``) keeps a dataset's metadata as one
JSON document in the NPZ key ``_metadata``: ``load_with_metadata`` opens the file with
``allow_pickle=True`` and parses ``json.loads(str(data["_metadata"].item()))``; the sections it
and its callers read are ``physics_parameters`` (``nphotons``, ``N``, ``gridsize``: checked by
``validate_parameters``, ``get_nphotons``, ``load_config_from_metadata``),
``training_parameters`` (``n_images``) and ``data_transformations`` (a list of records).

``save_with_metadata`` stores the string in a 0-d *object* array, which numpy can only read back
with ``allow_pickle=True``; ``np.load(f)`` followed by ``dict(...)`` or ``data["_metadata"]``
then raises. We store the same JSON text as a 0-d *unicode* array (what ``np.savez`` makes of a
``str``, and what the fly64 study's own overlap step writes): ``.item()`` returns the same
string, so MetadataManager parses it unchanged, and every reader opens the file without pickle.

The export is a pure function of the HDF5 file: no clock or host name is read here, so
exporting the same file twice gives the same bytes (timestamps are the run's own).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

METADATA_KEY = "_metadata"
#: MetadataManager.CURRENT_SCHEMA_VERSION
SCHEMA_VERSION = "1.0.0"


def metadata_array(metadata: Mapping[str, Any]) -> np.ndarray:
    """The JSON document as a 0-d unicode array (ASCII JSON: ``ensure_ascii``)."""
    return np.array(json.dumps(metadata, indent=2, sort_keys=True, default=_json_default))


def parse_metadata(value: np.ndarray) -> dict[str, Any]:
    """Parse a ``_metadata`` array exactly as MetadataManager.load_with_metadata does."""
    return json.loads(str(value.item()))


def build_metadata(
    *,
    dose: float,
    n_pixels: int,
    split: str,
    n_patterns: int,
    split_record: Mapping[str, Any],
    photon_statistics: Mapping[str, Any],
    scales: Mapping[str, float],
    run: Mapping[str, Any],
) -> dict[str, Any]:
    """The metadata of one exported file.

    ``dose``: mean photons per pattern (PtychoPINN's ``nphotons``); ``n_pixels``: N;
    ``split``: "train" or "test"; ``split_record``: parameters of the y split (fraction, axis,
    split point, counts, parent file); ``photon_statistics``: detected photons of this file's
    patterns; ``scales``: amplitude_scale s (diffraction = sqrt(counts) / s) and friends;
    ``run``: seed, streams, params and provenance of the HDF5 run.

    ``physics_parameters`` holds only properties of the data (nphotons, N): the patterns are
    single positions, the grouping (``gridsize``) is the trainer's choice, so it is left out
    and ``load_config_from_metadata`` falls back to its default of 1.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "creation_info": {
            "timestamp": run.get("end_time"),
            "script": "hpcgen run + hpcgen export --format data001",
            "hpcgen_version": run.get("hpcgen_version"),
        },
        "physics_parameters": {"nphotons": float(dose), "N": int(n_pixels)},
        "training_parameters": {"n_images": int(n_patterns)},
        "data_transformations": [
            {
                "tool": "hpcgen export",
                "operation": "train_test_split",
                "parameters": dict(split_record),
            }
        ],
        "additional_parameters": {
            "dose": float(dose),
            "split": split,
            "diffraction": "normalised amplitude sqrt(counts) / amplitude_scale, float32; "
            "diff3d holds the same values; counts = (diffraction * amplitude_scale)**2",
            **dict(scales),
            "photon_statistics": dict(photon_statistics),
            **dict(run),
        },
    }


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, bytes):
        return v.decode()
    raise TypeError(f"not JSON serialisable: {type(v)}")
