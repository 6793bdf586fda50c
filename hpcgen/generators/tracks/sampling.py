"""Draw track inputs on the CPU from one chunk's random stream."""

from __future__ import annotations

import numpy as np

from hpcgen.generators.tracks.params import TracksParams


def sample_tracks(p: TracksParams, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """n tracks: X (n,6) [x, y, tx, ty, q/p, dz], P (n,) GeV, Z (n,2) [z_start, z_end], float64.

    x, y, tx, ty uniform in their ranges; p log-uniform in [p_min, p_max] GeV; charge uniform
    over ``charges``; q/p = charge / (1000 p) in 1/MeV; dz fixed or uniform in ``dz_range``.
    Draw order is fixed (it defines the data): x, y, tx, ty, log p, charge, dz.
    """
    x = rng.uniform(*p.x_range, n)
    y = rng.uniform(*p.y_range, n)
    tx = rng.uniform(*p.tx_range, n)
    ty = rng.uniform(*p.ty_range, n)
    mom = np.exp(rng.uniform(np.log(p.p_min), np.log(p.p_max), n))
    charge = np.asarray(p.charges, dtype=np.float64)[rng.integers(0, len(p.charges), n)]
    if p.dz_range:
        dz = rng.uniform(p.dz_range[0], p.dz_range[1], n)
    else:
        dz = np.full(n, p.z_end - p.z_start)
    qop = charge / (mom * 1000.0)
    X = np.stack([x, y, tx, ty, qop, dz], axis=1)
    Z = np.stack([np.full(n, p.z_start), p.z_start + dz], axis=1)
    return {"X": X, "P": mom, "Z": Z}
