"""``hpcgen plot FILE --out PNG``: object, probe, scan positions and one pattern per dose."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.generators.ptycho.params import dose_tag


def plot_file(reader: Any, out: Path, options: Mapping[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen = reader.generator
    doses = gen.params.doses
    obj = reader.h5["objectGuess"][...]
    probe = reader.h5["probeGuess"][...]
    n_show = min(reader.n_rows, 20_000)
    xs, ys = reader.read("xcoords", slice(0, n_show)), reader.read("ycoords", slice(0, n_show))
    ncol = max(3, len(doses))
    fig, ax = plt.subplots(2, ncol, figsize=(3.6 * ncol, 7.2))
    im = ax[0, 0].imshow(np.abs(obj), cmap="gray")
    ax[0, 0].plot(xs, ys, ",", color="tab:red", alpha=0.5)
    ax[0, 0].set_title(f"|objectGuess| and {n_show} scan positions")
    fig.colorbar(im, ax=ax[0, 0], shrink=0.7)
    im = ax[0, 1].imshow(np.angle(obj), cmap="twilight")
    ax[0, 1].set_title("phase(objectGuess) [rad]")
    fig.colorbar(im, ax=ax[0, 1], shrink=0.7)
    # probe: brightness = amplitude, colour = phase
    from matplotlib.colors import hsv_to_rgb

    amp = np.abs(probe) / np.abs(probe).max()
    hsv = np.stack([(np.angle(probe) + np.pi) / (2 * np.pi), np.ones_like(amp), amp], axis=-1)
    ax[0, 2].imshow(hsv_to_rgb(hsv))
    ax[0, 2].set_title("probeGuess (hue = phase)")
    for a in ax[0, 3:]:
        a.axis("off")
    for k, dose in enumerate(doses):
        d = reader.read(f"{dose_tag(dose)}/diffraction", slice(0, 1))[0]
        im = ax[1, k].imshow(np.log10(d**2 + 1e-12), cmap="magma", vmin=np.log10(d.max() ** 2) - 5)
        ax[1, k].set_title(f"pattern 0, dose {dose:g}: log10 diffraction$^2$")
        fig.colorbar(im, ax=ax[1, k], shrink=0.7)
    for a in ax[1, len(doses) :]:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
