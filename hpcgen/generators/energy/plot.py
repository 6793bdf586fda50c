"""Image strips of energy sequences: one row per domain, one column per frame.

Each row is titled with its domain's parameters (pattern, rotation, noise, blur, translation,
scaling), read from the file's root attributes: two domains with the same base pattern look alike
in a picture, and the row says how their presets differ. Energy is dimensionless (frame 0 has mean
1 per pixel); each row has one colour scale, 0 to the 99.5th percentile of its frames, with its
colour bar. Frames are drawn with x (field axis 2) across and y (axis 3) up, in pixels.
"""

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
    """One row of the figure: a trajectory's frames (T, H, W), per-frame entropy (T,) in nats,
    and the row's title (domain, trajectory, parameters)."""

    label: str
    frames: np.ndarray
    entropy: np.ndarray
    params: str = ""


def params_line(attrs: Mapping[str, Any]) -> str:
    """The domain's parameters as one line, from an energy file's root attributes."""

    def num(key: str) -> str:
        v = attrs.get(key)
        return "?" if v is None else f"{float(v):g}"

    def bound(key: str, text: str) -> str:  # "+-v unit", or "off" where the preset has 0
        v = num(key)
        return f"{text} off" if v == "0" else f"{text} ±{v}"

    parts = [
        f"pattern {attrs.get('pattern', '?')}",
        bound("rotation_max_deg", "rotation") + ("°" if num("rotation_max_deg") != "0" else ""),
        f"noise σ {num('noise_sigma')} × mean",
        f"blur σ {num('blur_sigma')} px",
        bound("translation_max_px", "shift") + (" px" if num("translation_max_px") != "0" else ""),
        bound("scaling_max", "scaling"),
    ]
    return ", ".join(parts)


def read_strip(src: well.Source, trajectory: int = 0) -> Strip:
    """Trajectory ``trajectory`` of an energy file (The Well layout: an open HDF5 file or a
    hook's FileView) as a Strip."""
    energy = well.node_of(src, well.ENERGY)
    if energy is None or energy.kind != "dataset":
        raise UserError(f"{well.source_name(src)}: no {well.ENERGY} dataset (not an energy file)")
    n = energy.shape[0]
    if not 0 <= trajectory < n:
        raise UserError(f"trajectory {trajectory} out of range: the file holds 0..{n - 1}")
    frames = well.read_row(src, well.ENERGY, trajectory)
    ent = (
        well.read_row(src, "scalars/entropy", trajectory)
        if well.node_of(src, "scalars/entropy") is not None
        else np.full(len(frames), np.nan)
    )
    attrs = _root_attrs(src)
    domain = str(attrs.get("domain", attrs.get("dataset_name", "?")))
    t, hgt, wid = frames.shape
    label = f"{domain}, trajectory {trajectory} of {n} ({t} frames of {wid} x {hgt} px)"
    return Strip(label, frames, ent, params_line(attrs))


def _root_attrs(src: well.Source) -> Mapping[str, Any]:
    root = well.node_of(src, "")
    return root.attrs if root is not None else {}


def figure(strips: Sequence[Strip], max_frames: int = 10) -> Any:
    """The figure (matplotlib Figure, Agg): each strip a row of at most ``max_frames`` frames
    (evenly spaced), titled with its domain and parameters, each frame with its index and
    entropy S (nats); one colour scale and colour bar per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not strips:
        raise UserError("nothing to plot")
    n_cols = min(max_frames, max(len(s.frames) for s in strips))
    fig = plt.figure(figsize=(1.6 * n_cols + 1.4, 3.0 * len(strips)), layout="constrained")
    rows = np.atleast_1d(fig.subfigures(len(strips), 1))
    for sub, strip in zip(rows, strips):
        sub.suptitle(f"{strip.label}\n{strip.params}", fontsize=10)
        axes = np.atleast_1d(sub.subplots(1, n_cols, sharex=True, sharey=True))
        idx = np.unique(np.linspace(0, len(strip.frames) - 1, n_cols).round().astype(int))
        vmax = float(np.percentile(strip.frames[idx], 99.5)) or 1.0
        im = None
        for col, ax in enumerate(axes):
            if col >= len(idx):
                ax.axis("off")
                continue
            t = idx[col]
            # stored [x, y]: transpose so x runs across and y up
            im = ax.imshow(strip.frames[t].T, cmap="inferno", vmin=0.0, vmax=vmax, origin="lower")
            ax.set_title(f"t = {t}\nS = {strip.entropy[t]:.3f} nats", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("x [pixel]", fontsize=8)
            if col == 0:
                ax.set_ylabel("y [pixel]", fontsize=8)
        # beside the last frame, as tall as it (a colour bar of the whole row floats apart from
        # the square frames)
        cax = axes[len(idx) - 1].inset_axes((1.08, 0.0, 0.08, 1.0))
        sub.colorbar(im, cax=cax, extend="max", label="energy per pixel\n(1; frame-0 mean = 1)")
    return fig


def plot_strips(strips: Sequence[Strip], out: Path, max_frames: int = 10) -> None:
    """Write the PNG of ``figure(strips, max_frames)``."""
    import matplotlib.pyplot as plt

    fig = figure(strips, max_frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, bbox_inches="tight", pad_inches=0.1)  # the colour bars are insets
    plt.close(fig)


def plot_file(src: well.Source, out: Path, options: Mapping[str, Any]) -> None:
    """``hpcgen plot FILE``: a file holds one domain, so the figure is that domain's sequence
    (trajectory ``options["sample"]``, default 0). ``--domain`` must name the file's domain.
    ``src``: the hook's FileView (or an open HDF5 energy file)."""
    domain = options.get("domain")
    held = _root_attrs(src).get("domain")
    if domain and domain != held:
        raise UserError(
            f"{well.source_name(src)} holds domain {held!r}, not {domain!r} "
            "(one file per domain; `hpcgen catalog DIR --plot PNG` draws every domain)"
        )
    trajectory = int(options.get("sample") or 0)
    plot_strips([read_strip(src, trajectory)], out)


def plot_domains(paths: Sequence[Path], out: Path) -> None:
    """One row per domain: trajectory 0 of the first file of each domain found in ``paths``."""
    strips: dict[str, Strip] = {}
    for p in paths:
        with h5py.File(p, "r") as h5:
            domain = h5.attrs.get("domain")
            if domain is not None and str(domain) not in strips and well.ENERGY in h5:
                strips[str(domain)] = read_strip(h5, 0)
    plot_strips([strips[d] for d in sorted(strips)], out)
