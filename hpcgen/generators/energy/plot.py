"""Image strips of energy sequences: one row per domain, one column per frame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.energy import well


@dataclass
class Strip:
    """One row of the figure: a trajectory's frames (T, H, W) and per-frame entropy (T,)."""

    label: str
    frames: np.ndarray
    entropy: np.ndarray


def read_strip(h5: h5py.File, trajectory: int = 0) -> Strip:
    """Trajectory ``trajectory`` of an energy file (The Well layout) as a Strip."""
    if well.ENERGY not in h5:
        raise UserError(f"{h5.filename}: no {well.ENERGY} dataset (not an energy file)")
    n = h5[well.ENERGY].shape[0]
    if not 0 <= trajectory < n:
        raise UserError(f"trajectory {trajectory} out of range: the file holds 0..{n - 1}")
    frames = h5[well.ENERGY][trajectory]
    ent = (
        h5["scalars/entropy"][trajectory]
        if "scalars/entropy" in h5
        else np.full(len(frames), np.nan)
    )
    domain = str(h5.attrs.get("domain", h5.attrs.get("dataset_name", "?")))
    return Strip(f"{domain}\ntrajectory {trajectory}", frames, ent)


def plot_strips(strips: Sequence[Strip], out: Path, max_frames: int = 10) -> None:
    """Write a PNG: each strip a row of at most ``max_frames`` frames (evenly spaced), each frame
    titled with its index and entropy; one colour scale per row (0 .. 99.5th percentile)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not strips:
        raise UserError("nothing to plot")
    n_cols = min(max_frames, max(len(s.frames) for s in strips))
    fig, axes = plt.subplots(
        len(strips), n_cols, figsize=(1.9 * n_cols, 2.1 * len(strips)), squeeze=False
    )
    for row, strip in zip(axes, strips):
        idx = np.unique(np.linspace(0, len(strip.frames) - 1, n_cols).round().astype(int))
        vmax = float(np.percentile(strip.frames[idx], 99.5)) or 1.0
        for col, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(idx):
                ax.axis("off")
                continue
            t = idx[col]
            ax.imshow(strip.frames[t], cmap="inferno", vmin=0.0, vmax=vmax)
            ax.set_title(f"t={t}  S={strip.entropy[t]:.3f}", fontsize=8)
        row[0].set_ylabel(strip.label, fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def plot_file(h5: h5py.File, out: Path, options: Mapping[str, Any]) -> None:
    """``hpcgen plot FILE``: a file holds one domain, so the figure is that domain's sequence
    (trajectory ``options["sample"]``, default 0). ``--domain`` must name the file's domain."""
    domain = options.get("domain")
    if domain and domain != h5.attrs.get("domain"):
        raise UserError(
            f"{h5.filename} holds domain {h5.attrs.get('domain')!r}, not {domain!r} "
            "(one file per domain; `hpcgen catalog DIR --plot PNG` draws every domain)"
        )
    trajectory = int(options.get("sample") or 0)
    plot_strips([read_strip(h5, trajectory)], out)


def plot_domains(paths: Sequence[Path], out: Path) -> None:
    """One row per domain: trajectory 0 of the first file of each domain found in ``paths``."""
    strips: dict[str, Strip] = {}
    for p in paths:
        with h5py.File(p, "r") as h5:
            domain = h5.attrs.get("domain")
            if domain is not None and str(domain) not in strips and well.ENERGY in h5:
                strips[str(domain)] = read_strip(h5, 0)
    plot_strips([strips[d] for d in sorted(strips)], out)
