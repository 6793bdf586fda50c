"""``hpcgen export FILE --format csv`` and ``hpcgen plot FILE --face NAME`` for illumination files.

Both stream the file block by block (``Reader.iter_rows``): a 10M-row file is never held in
memory. Face names come from the file's own ``lit_fractions`` attribute, so they always match the
columns on disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError

CSV_FORMAT = "%.6f"
#: sky-map bins: azimuth x sin(elevation), so every bin covers the same solid angle
SKY_BINS = (72, 36)


def face_names(reader: Any) -> list[str]:
    names = reader.h5["lit_fractions"].attrs["face_names"]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _require_complete(reader: Any) -> None:
    done = reader.done
    if not done.all():
        raise UserError(
            f"{reader.path}: {int((~done).sum())} of {len(done)} chunks are not "
            "written yet: finish the run (hpcgen run --resume) first"
        )


def export_csv(reader: Any, out: Path, options: Mapping[str, Any]) -> None:
    """The seed workflow's CSV: header ``sun_vec_x,sun_vec_y,sun_vec_z,<faces>``, ``%.6f``."""
    out = Path(out)  # hpcgen.io.export.export has checked the output path already
    _require_complete(reader)
    header = ",".join(["sun_vec_x", "sun_vec_y", "sun_vec_z", *face_names(reader)])
    tmp = out.with_name(f".{out.name}.part")
    try:
        with open(tmp, "w") as fh:
            fh.write(header + "\n")
            for _, block in reader.iter_rows(["sun_vectors", "lit_fractions"]):
                rows = np.hstack([block["sun_vectors"], block["lit_fractions"]])
                np.savetxt(fh, rows, fmt=CSV_FORMAT, delimiter=",")
        os.replace(tmp, out)  # no half-written CSV under the final name
    finally:
        tmp.unlink(missing_ok=True)


def sky_map(reader: Any, face: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean lit fraction of ``face`` per sky bin: (mean (n_el, n_az), az edges, sin(el) edges)."""
    names = face_names(reader)
    if face not in names:
        raise UserError(f"no face {face!r} in {reader.path} (faces: {', '.join(names)})")
    j = names.index(face)
    n_az, n_el = SKY_BINS
    total = np.zeros((n_el, n_az))
    count = np.zeros((n_el, n_az))
    rng = [[-1.0, 1.0], [-np.pi, np.pi]]
    for _, block in reader.iter_rows(["sun_vectors", "lit_fractions"]):
        s = np.asarray(block["sun_vectors"], dtype=np.float64)
        az = np.arctan2(s[:, 1], s[:, 0])
        sin_el = np.clip(s[:, 2] / np.linalg.norm(s, axis=1), -1, 1)
        lit = np.asarray(block["lit_fractions"][:, j], dtype=np.float64)
        total += np.histogram2d(sin_el, az, bins=(n_el, n_az), range=rng, weights=lit)[0]
        count += np.histogram2d(sin_el, az, bins=(n_el, n_az), range=rng)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return mean, np.linspace(-np.pi, np.pi, n_az + 1), np.linspace(-1, 1, n_el + 1)


def plot_sky(reader: Any, out: Path, options: Mapping[str, Any]) -> None:
    """Lit fraction of ``options["face"]`` over the sky of sun directions (Mollweide map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    face = options.get("face")
    if not face:
        raise UserError(f"plot needs --face NAME (faces: {', '.join(face_names(reader))})")
    _require_complete(reader)
    mean, az_edges, sin_edges = sky_map(reader, face)
    fig = plt.figure(figsize=(9, 5))
    ax = fig.add_subplot(projection="mollweide")
    mesh = ax.pcolormesh(
        az_edges,
        np.arcsin(sin_edges),
        np.ma.masked_invalid(mean),
        vmin=0,
        vmax=1,
        cmap="inferno",
        shading="flat",
    )
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("sun azimuth atan2(y, x) in the body frame")
    ax.set_ylabel("sun elevation asin(z)")
    fig.colorbar(
        mesh,
        ax=ax,
        orientation="horizontal",
        pad=0.08,
        fraction=0.05,
        label="mean lit fraction per bin",
    )
    ax.set_title(f"{face}: lit fraction over sun directions ({reader.n_rows} samples)")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
