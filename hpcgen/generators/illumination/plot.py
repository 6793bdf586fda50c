"""``hpcgen plot FILE --face NAME --out PNG`` for illumination files: the lit fraction of one face
over the sky of sun directions (Mollweide map of the body frame).

``sky_map`` streams the file block by block (``FileView.iter_rows``), so a 10M-row file is never
held in memory; ``figure`` draws the map; ``plot_sky`` does both and writes the PNG. Face names
come from the file's own ``face_names`` attribute, so they always match the columns on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.base import FileView
from hpcgen.generators.illumination.export import _require_complete, face_names

#: sky-map bins at most: azimuth x sin(elevation), so every bin covers the same solid angle
SKY_BINS = (72, 36)
#: fewer bins for small files: about this many samples per bin on average
SAMPLES_PER_BIN = 5


def sky_bins(n_samples: int) -> tuple[int, int]:
    """(azimuth, elevation) bins for a file of ``n_samples`` sun directions: 2:1, at most
    SKY_BINS, at least 12 x 6, about SAMPLES_PER_BIN samples per bin (else the map is mostly
    empty bins)."""
    n_el = int(np.sqrt(max(n_samples, 1) / (2 * SAMPLES_PER_BIN)))
    n_el = min(SKY_BINS[1], max(6, n_el))
    return 2 * n_el, n_el


def sky_map(
    view: FileView, face: str, bins: tuple[int, int] = SKY_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean lit fraction of ``face`` per sky bin: (mean (n_el, n_az), azimuth edges in rad
    [-pi, pi], sin(elevation) edges [-1, 1]); NaN in bins without a sample. ``bins``: (n_az,
    n_el)."""
    names = face_names(view)
    if face not in names:
        raise UserError(f"no face {face!r} in {view.path} (faces: {', '.join(names)})")
    j = names.index(face)
    n_az, n_el = bins
    total = np.zeros((n_el, n_az))
    count = np.zeros((n_el, n_az))
    rng = [[-1.0, 1.0], [-np.pi, np.pi]]
    for _, block in view.iter_rows(["sun_vectors", "lit_fractions"]):
        s = np.asarray(block["sun_vectors"], dtype=np.float64)
        az = np.arctan2(s[:, 1], s[:, 0])
        sin_el = np.clip(s[:, 2] / np.linalg.norm(s, axis=1), -1, 1)
        lit = np.asarray(block["lit_fractions"][:, j], dtype=np.float64)
        total += np.histogram2d(sin_el, az, bins=(n_el, n_az), range=rng, weights=lit)[0]
        count += np.histogram2d(sin_el, az, bins=(n_el, n_az), range=rng)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return mean, np.linspace(-np.pi, np.pi, n_az + 1), np.linspace(-1, 1, n_el + 1)


def face_normal(view: FileView, face: str) -> np.ndarray | None:
    """Area-weighted outward unit normal of ``face`` in the body frame at rest (from the file's
    model_triangles, counter-clockwise = outward); None when the file has no triangles, the face
    turns with the sun (sun_tracking: no fixed normal) or is not planar enough to have one."""
    if view.node("model_triangles") is None or view.node("model_triangle_face") is None:
        return None
    if bool(view.dataset_attrs("lit_fractions").get("sun_tracking", False)):
        return None
    j = face_names(view).index(face)
    tri = view.static("model_triangles")[view.static("model_triangle_face") == j]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).sum(axis=0)
    norm = float(np.linalg.norm(n))
    return n / norm if norm > 0 else None


def figure(
    mean: np.ndarray,
    az_edges: np.ndarray,
    sin_edges: np.ndarray,
    title: str,
    normal: np.ndarray | None = None,
) -> Any:
    """The Mollweide sky map (matplotlib Figure, Agg). Longitude labels sit on the map, so they
    get a white outline to stay readable over dark and bright bins alike."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patheffects

    fig = plt.figure(figsize=(10, 6.6), layout="constrained")
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
    empty = np.isnan(mean)
    if empty.any():  # bins without a sample in grey, unlike any lit fraction
        ax.pcolormesh(
            az_edges,
            np.arcsin(sin_edges),
            np.ma.masked_where(~empty, np.ones_like(mean)),
            cmap=matplotlib.colors.ListedColormap(["0.7"]),
            shading="flat",
        )
    ax.grid(True, alpha=0.35, color="0.6")
    outline = [patheffects.withStroke(linewidth=3, foreground="white")]
    for t in ax.get_xticklabels():
        t.set_path_effects(outline)
        t.set_fontsize(9)
    if normal is not None:
        ax.plot(
            np.arctan2(normal[1], normal[0]),
            np.arcsin(np.clip(normal[2], -1, 1)),
            marker="*",
            ms=16,
            color="tab:cyan",
            mec="k",
            ls="none",
            label="face normal (sun overhead)",
        )
        ax.legend(loc="lower right", bbox_to_anchor=(1.02, -0.04), fontsize=9)
    ax.set_xlabel("sun azimuth atan2(y, x) in the body frame [deg]")
    ax.set_ylabel("sun elevation asin(z) [deg]")
    fig.colorbar(
        mesh,
        ax=ax,
        orientation="horizontal",
        fraction=0.05,
        shrink=0.6,
        label="mean lit fraction per bin (lit area / face area)",
    )
    fig.suptitle(title)  # constrained layout makes room for it (an axes title meets 75°)
    return fig


def plot_sky(view: FileView, out: Path, options: Mapping[str, Any]) -> None:
    """Lit fraction of ``options["face"]`` over the sky of sun directions (Mollweide map)."""
    face = options.get("face")
    if not face:
        raise UserError(f"plot needs --face NAME (faces: {', '.join(face_names(view))})")
    _require_complete(view)
    n_az, n_el = sky_bins(view.n_rows)
    mean, az_edges, sin_edges = sky_map(view, face, (n_az, n_el))
    model = str(view.attrs.get("illumination_model", "model"))
    title = (
        f"{model}, face {face}: lit fraction over sun directions\n"
        f"{view.n_rows:,} samples in {n_az} x {n_el} equal-area bins; grey: no sample"
    )
    fig = figure(mean, az_edges, sin_edges, title, face_normal(view, face))
    import matplotlib.pyplot as plt

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
