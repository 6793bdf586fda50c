"""``hpcgen plot FILE --out PNG [--sample K]`` for ptycho files: the object with the scan
positions, its phase, the probe, the ground-truth patch of pattern K, and pattern K at every dose
in detected photons.

Photons: the stored diffraction is sqrt(counts) / amplitude_scale (PtychoPINN's normalisation), so
counts = (diffraction * amplitude_scale)**2, with the dose's amplitude_scale attribute; patterns
are drawn as log10(photons), 0-photon pixels in black. Complex arrays (probe, patch) are drawn with
hue = phase and brightness = amplitude, read with the colour wheel beside them. Pixel axes: the
object and probe share one pixel size (object pixels); detector axes count pixels from the zero
frequency (at [N/2, N/2]).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.base import FileView
from hpcgen.generators.ptycho.params import dose_tag

#: scan positions drawn at most (a denser cloud says nothing more)
N_POSITIONS = 20_000


def photons(diffraction: np.ndarray, amplitude_scale: float) -> np.ndarray:
    """Detected photons per pixel of stored patterns: (diffraction * amplitude_scale)**2, rounded
    to the integer counts they were made from."""
    d = np.asarray(diffraction, dtype=np.float64)
    return np.rint((d * amplitude_scale) ** 2)


def complex_rgb(z: np.ndarray) -> np.ndarray:
    """RGB image (..., 3) of complex values: hue = phase (red at 0 rad, turning with the phase),
    brightness = |z| / max |z|."""
    from matplotlib.colors import hsv_to_rgb

    amp = np.abs(z)
    top = float(amp.max()) or 1.0
    hue = np.mod(np.angle(z), 2 * np.pi) / (2 * np.pi)
    return hsv_to_rgb(np.stack([hue, np.ones_like(amp), amp / top], axis=-1))


def draw_wheel(ax: Any) -> None:
    """The colour wheel of ``complex_rgb``: phase around, amplitude outwards."""
    n = 201
    u = np.linspace(-1, 1, n)
    zz = u[None, :] + 1j * u[::-1, None]  # row 0 at the top: +imaginary up
    rgb = complex_rgb(np.where(np.abs(zz) <= 1, zz, 0))
    rgba = np.concatenate([rgb, (np.abs(zz) <= 1)[..., None].astype(float)], axis=-1)
    ax.imshow(rgba, extent=(-1, 1, -1, 1))
    for ang, text in ((0, "0"), (90, "π/2"), (180, "π"), (270, "−π/2")):
        a = np.deg2rad(ang)
        ax.text(1.28 * np.cos(a), 1.25 * np.sin(a), text, ha="center", va="center", fontsize=9)
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("hue: phase [rad]\nbrightness: |·| / max", fontsize=9)


def figure(view: FileView, sample: int = 0) -> Any:
    """The figure (matplotlib Figure, Agg) for pattern ``sample`` of the file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not 0 <= sample < view.n_rows:
        raise UserError(f"--sample {sample} out of range: the file holds 0..{view.n_rows - 1}")
    gen = view.generator
    doses = list(gen.params.doses)
    obj = view.static("objectGuess")
    probe = view.static("probeGuess")
    patch = view.read("Y", slice(sample, sample + 1))[0]
    n_show = min(view.n_rows, N_POSITIONS)
    xs = view.read("xcoords", slice(0, n_show))
    ys = view.read("ycoords", slice(0, n_show))
    x0, y0 = (
        float(view.read("xcoords", slice(sample, sample + 1))[0]),
        float(view.read("ycoords", slice(sample, sample + 1))[0]),
    )
    n = probe.shape[0]

    n_cols = max(4, len(doses) + 1)
    fig = plt.figure(figsize=(4.3 * n_cols, 8.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.0])
    fig.suptitle(
        f"{Path(view.path).name}: {view.n_rows:,} patterns, object {obj.shape[1]} x "
        f"{obj.shape[0]}, probe {n} x {n}, doses {', '.join(f'{d:g}' for d in doses)}",
        fontsize=13,
    )
    axes = top.subplots(1, 5, width_ratios=[1, 1, 1, 1, 0.5])

    ax = axes[0]
    im = ax.imshow(np.abs(obj), cmap="gray")
    # a few positions as visible dots, a dense cloud as single pixels
    ax.scatter(xs, ys, s=float(np.clip(2000 / max(n_show, 1), 0.3, 6)), color="tab:red", lw=0)
    ax.plot(x0, y0, "+", color="tab:cyan", ms=12, mew=2, label=f"pattern {sample}")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"|objectGuess| and {n_show:,} scan positions", fontsize=10)
    top.colorbar(im, ax=ax, shrink=0.7, label="|O| (transmission, 1)")

    ax = axes[1]
    im = ax.imshow(np.angle(obj), cmap="twilight", vmin=-np.pi, vmax=np.pi)
    ax.set_title("phase of objectGuess", fontsize=10)
    top.colorbar(
        im, ax=ax, shrink=0.7, label="phase [rad]", ticks=[-np.pi, 0, np.pi]
    ).ax.set_yticklabels(["−π", "0", "π"])
    for a in axes[:2]:
        a.set_xlabel("x [object pixels]")
        a.set_ylabel("y [object pixels]")

    half = (-n / 2 - 0.5, n / 2 - 0.5, n / 2 - 0.5, -n / 2 - 0.5)  # pixel centres from N/2
    axes[2].imshow(complex_rgb(probe), extent=half)
    axes[2].set_title(f"probeGuess (max |P| {np.abs(probe).max():.3g})", fontsize=10)
    axes[3].imshow(complex_rgb(patch), extent=half)
    axes[3].set_title(
        f"ground-truth patch Y of pattern {sample}\n(centre x {x0:.1f}, y {y0:.1f})", fontsize=10
    )
    for a in axes[2:4]:
        a.set_xlabel("x − centre [object pixels]")
        a.set_ylabel("y − centre [object pixels]")
    draw_wheel(axes[4])

    cols = bottom.subplots(1, n_cols)
    cmap = plt.get_cmap("magma").with_extremes(bad="black")
    for k, dose in enumerate(doses):
        name = f"{dose_tag(dose)}/diffraction"
        scale = float(view.dataset_attrs(name)["amplitude_scale"])
        counts = photons(view.read(name, slice(sample, sample + 1))[0], scale)
        ax = cols[k]
        with np.errstate(divide="ignore"):
            logc = np.ma.masked_invalid(np.where(counts > 0, np.log10(counts), np.nan))
        im = ax.imshow(logc, cmap=cmap, vmin=0.0, extent=half)
        ax.set_facecolor("black")
        ax.set_title(f"dose {dose:g}: pattern {sample}, {int(counts.sum()):,} photons", fontsize=10)
        ax.set_xlabel("detector column − N/2 [pixel]")
        ax.set_ylabel("detector row − N/2 [pixel]")
        bottom.colorbar(im, ax=ax, shrink=0.8, label="photons (log10); black: 0")
    ax = cols[len(doses)]
    n_cal = min(view.n_rows, N_POSITIONS)
    for dose in doses:
        ph = view.read(f"{dose_tag(dose)}/photons", slice(0, n_cal)) / dose
        ax.hist(ph, bins=40, histtype="step", lw=1.5, label=f"{dose:g}: mean {ph.mean():.3f}")
    ax.axvline(1.0, color="0.3", ls="--", lw=1)
    ax.set_xlabel("photons per pattern / dose")
    ax.set_ylabel("patterns per bin")
    ax.set_title(f"dose calibration ({n_cal:,} patterns)", fontsize=10)
    ax.legend(title="dose", fontsize=8)
    ax.grid(alpha=0.3)
    for ax in cols[len(doses) + 1 :]:
        ax.axis("off")
    return fig


def plot_file(view: FileView, out: Path, options: Mapping[str, Any]) -> None:
    """``hpcgen plot FILE --out PNG``: the figure for pattern ``options["sample"]`` (default 0)."""
    import matplotlib.pyplot as plt

    fig = figure(view, int(options.get("sample") or 0))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
