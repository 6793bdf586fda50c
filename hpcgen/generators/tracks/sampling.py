"""Draw track inputs on the CPU from one chunk's random stream.

Where the tracks start and end (mm). By default every track runs from the fixed plane ``z_start``
to ``z_start + dz``. With ``z_range`` or ``z_planes`` z_start is drawn per track, and both ends are
kept inside a window: ``z_range``, or else the field's z extent (a map's grid; the Gaussian model
zc +- 8 w; a uniform field has none). The track's dz is drawn first, exactly as the parameters say
(fixed or uniform in ``dz_range``, its sign flipped with probability 1/2 under
``both_directions``); z_start is then drawn over the positions that keep z_end = z_start + dz in
the window: uniformly in that interval (``z_range``), or with equal probability among the planes in
it (``z_planes``). Nothing is rejected or redrawn, so the stream use per track is fixed and dz
keeps its distribution; z_start is uniform only where every dz fits (towards the window's far end
its density falls to zero, the price of never moving an end). A window that cannot hold some dz
of the range is refused before the run (``check_z_sampling``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpcgen.errors import SpecError

if TYPE_CHECKING:
    from hpcgen.generators.tracks.params import TracksParams

#: a window (low, high) in mm; None: no field extent (a uniform field is everywhere)
Extent = tuple[float, float] | None


def draws_z_start(p: TracksParams) -> bool:
    """Whether z_start is drawn per track (``z_range`` or ``z_planes``) rather than fixed."""
    return bool(p.z_range or p.z_planes)


def z_window(p: TracksParams, extent: Extent) -> tuple[float, float]:
    """Where both ends of a drawn track lie (mm): ``z_range``, else the field's z extent, else
    unbounded."""
    if p.z_range:
        return (float(p.z_range[0]), float(p.z_range[1]))
    if extent is not None:
        return (float(extent[0]), float(extent[1]))
    return (-np.inf, np.inf)


def z_start_interval(dz: np.ndarray, window: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the z_start values that keep z_start and z_start + dz inside the window."""
    wlo, whi = window
    dz = np.asarray(dz, dtype=np.float64)
    return np.maximum(wlo, wlo - dz), np.minimum(whi, whi - dz)


def _dz_extremes(p: TracksParams) -> list[float]:
    """The dz values at the ends of the drawn range(s): where a window fits worst (the room left
    for z_start shrinks monotonically with |dz| on either side of 0)."""
    base = list(p.dz_range) if p.dz_range else [p.z_end - p.z_start]
    return base + [-d for d in base] if p.both_directions else base


def check_z_sampling(p: TracksParams, extent: Extent) -> None:
    """SpecError unless every track of ``p`` can be placed: the planes and ``z_range`` inside the
    field's z extent (``extent``; None: not known here or unbounded), and for every dz of the
    range a z_start (or plane) that keeps z_end in the window."""
    if not draws_z_start(p):
        return
    if p.z_range and extent is not None:
        lo, hi = p.z_range
        if lo < extent[0] or hi > extent[1]:
            raise SpecError(
                f"params.z_range [{lo:g}, {hi:g}] mm reaches outside the field's z extent "
                f"[{extent[0]:g}, {extent[1]:g}] mm"
            )
    window = z_window(p, extent)
    planes = np.unique(np.asarray(p.z_planes, dtype=np.float64))
    if len(planes) and not np.isfinite(planes).all():
        raise SpecError("params.z_planes must be finite numbers (mm)")
    outside = planes[(planes < window[0]) | (planes > window[1])]
    if len(outside):
        raise SpecError(
            f"params.z_planes: plane {outside[0]:g} mm lies outside the z window "
            f"[{window[0]:g}, {window[1]:g}] mm (z_range, or the field's z extent)"
        )
    for dz in _dz_extremes(p):
        lo, hi = (float(v) for v in z_start_interval(np.array(dz), window))
        fits = ((planes >= lo) & (planes <= hi)).any() if len(planes) else lo <= hi
        if not fits:
            where = "no plane of z_planes" if len(planes) else "no z_start"
            raise SpecError(
                f"params: {where} keeps z_end = z_start + dz inside the z window "
                f"[{window[0]:g}, {window[1]:g}] mm for dz = {dz:g} mm (narrow dz_range or widen "
                "z_range)"
            )


def sample_tracks(
    p: TracksParams, rng: np.random.Generator, n: int, extent: Extent = None
) -> dict[str, np.ndarray]:
    """n tracks: X (n,6) [x, y, tx, ty, q/p, dz], P (n,) GeV, Z (n,2) [z_start, z_end], float64.

    x, y, tx, ty uniform in their ranges; p log-uniform in [p_min, p_max] GeV; charge uniform
    over ``charges``; q/p = charge / (1000 p) in 1/MeV; dz fixed or uniform in ``dz_range``, its
    sign flipped with probability 1/2 under ``both_directions``; z_start fixed, or drawn in the
    window given dz (module docstring; ``extent``: the field's z extent). Draw order is fixed (it
    defines the data): x, y, tx, ty, log p, charge, dz, then the sign and z_start where drawn.
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
    if p.both_directions:
        dz = np.where(rng.random(n) < 0.5, -dz, dz)
    qop = charge / (mom * 1000.0)
    X = np.stack([x, y, tx, ty, qop, dz], axis=1)
    if draws_z_start(p):
        z0, z1 = _draw_z(p, rng.random(n), dz, z_window(p, extent))
    else:
        z0 = np.full(n, p.z_start)
        z1 = p.z_start + dz
    return {"X": X, "P": mom, "Z": np.stack([z0, z1], axis=1)}


def _draw_z(
    p: TracksParams, u: np.ndarray, dz: np.ndarray, window: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """z_start from u in [0, 1) over the interval (or planes) that fits each dz; z_end."""
    lo, hi = z_start_interval(dz, window)
    if p.z_planes:
        planes = np.unique(np.asarray(p.z_planes, dtype=np.float64))
        first = np.searchsorted(planes, lo, side="left")
        count = np.searchsorted(planes, hi, side="right") - first
        if (count < 1).any():  # check_z_sampling refuses such parameters before any run
            raise SpecError("params: a track's dz leaves no plane of z_planes in the z window")
        z0 = planes[first + np.minimum((u * count).astype(np.int64), count - 1)]
    else:
        if (hi < lo).any():
            raise SpecError("params: a track's dz does not fit in the z window")
        z0 = lo + u * (hi - lo)
    # lo + u (hi - lo) and z0 + dz can round one ulp past the window (a map's last plane): keep
    # both ends inside
    z0 = np.clip(z0, *window)
    return z0, np.clip(z0 + dz, *window)
