"""``OUT.metadata.json`` beside an output file: its provenance and fields, readable without HDF5
(written by ``hpcgen run`` and ``hpcgen merge``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hpcgen.engine import space
from hpcgen.errors import UserError
from hpcgen.generators.base import Generator
from hpcgen.spec import RunSpec


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.stem + ".metadata.json")


def write_sidecar(
    out: Path,
    spec: RunSpec,
    gen: Generator,
    provenance: dict[str, Any],
    data_hash: str | None = None,
) -> None:
    """metadata.json beside the file: provenance + the fields, readable without HDF5. Written
    to a temporary name and renamed: a full disk leaves no half file, and no older sidecar (one
    that described the file this one replaced)."""
    meta = {
        "file": out.name,
        "provenance": provenance,
        "data_hash": data_hash or spec.data_hash(),
        "fields": [
            {
                "name": f.name,
                "shape": [spec.n_samples, *f.shape],
                "dtype": str(f.resolved_dtype(spec.dtype)),
                "units": f.units,
                "description": f.description,
            }
            for f in gen.fields()
        ],
    }
    path = sidecar_path(out)
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        # no sidecar rather than one of the file this one replaced (a merge --overwrite)
        path.unlink(missing_ok=True)
        if space.is_enospc(e):
            raise UserError(space.no_space_message(path, space.METADATA_ALLOWANCE)) from None
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
