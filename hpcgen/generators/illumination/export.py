"""``hpcgen export FILE --format csv`` for illumination files (the sky plot: plot.py).

The export streams the file block by block (``FileView.iter_rows``): a 10M-row file is never held
in memory. Face names come from the file's own ``lit_fractions`` attribute, so they always match
the columns on disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.base import FileView

CSV_FORMAT = "%.6f"


def face_names(view: FileView) -> list[str]:
    names = view.dataset_attrs("lit_fractions")["face_names"]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _require_complete(view: FileView) -> None:
    done = view.done
    if not done.all():
        raise UserError(
            f"{view.path}: {int((~done).sum())} of {len(done)} chunks are not "
            "written yet: finish the run (hpcgen run --resume) first"
        )


def export_csv(view: FileView, out: Path, options: Mapping[str, Any]) -> None:
    """The seed workflow's CSV: header ``sun_vec_x,sun_vec_y,sun_vec_z,<faces>``, ``%.6f``."""
    out = Path(out)  # hpcgen.io.export.export has checked the output path already
    _require_complete(view)
    header = ",".join(["sun_vec_x", "sun_vec_y", "sun_vec_z", *face_names(view)])
    tmp = out.with_name(f".{out.name}.part")
    try:
        with open(tmp, "w") as fh:
            fh.write(header + "\n")
            for _, block in view.iter_rows(["sun_vectors", "lit_fractions"]):
                rows = np.hstack([block["sun_vectors"], block["lit_fractions"]])
                np.savetxt(fh, rows, fmt=CSV_FORMAT, delimiter=",")
        os.replace(tmp, out)  # no half-written CSV under the final name
    finally:
        tmp.unlink(missing_ok=True)
