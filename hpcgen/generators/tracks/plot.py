"""``hpcgen plot FILE --out PNG`` for tracks files: what a tracking physicist looks at first.

Two steps, so that the numbers can be tested apart from the drawing:

- ``prepare(reader)`` reads the file and returns a ``TracksPicture``: exact status counts over the
  whole file, the inputs and outputs of its first rows (rows are drawn independently and alike,
  so the first rows are a fair sample), a few trajectories re-propagated through the file's own
  field with the numpy reference kernel, and the field's By on the axis;
- ``figure(picture)`` draws it (matplotlib, Agg); ``plot_file`` does both and writes the PNG.

Trajectories: the reference propagator takes per-track z0, z1, so one call propagates every drawn
track from its own z_start to each of ``n_points`` planes between z_start and z_end (the same X
repeated, one row per plane). The last plane is z_end: the path ends on the file's Y (the
reference kernel computes what the compiled ones do), which the figure marks with a cross.

Units: mm for x, y, z and dz; slopes dimensionless; p in GeV; B in T.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.base import FileView
from hpcgen.generators.tracks.constants import C_LIGHT
from hpcgen.generators.tracks.fields import ABORTED, STATUS_NAMES

#: rows read for the distributions (the first rows of the file)
N_SAMPLE = 200_000
#: at most this many points in the bending scatter (readable, and a small PNG)
N_SCATTER = 20_000
#: charge -> colour, used in every panel
CHARGE_COLOURS = {1: "tab:red", -1: "tab:blue"}


@dataclass
class Path3:
    """One re-propagated track: positions (mm) at ``z`` from z_start to z_end (inclusive)."""

    row: int
    charge: int
    p: float  # GeV
    status: int  # the file's status of this track
    z: np.ndarray
    x: np.ndarray
    y: np.ndarray


@dataclass
class TracksPicture:
    """Everything the figure shows; arrays hold the first ``n_sample`` rows of the file."""

    name: str
    n_rows: int
    #: "ok" (status 0), then each flag name of STATUS_NAMES: tracks of the whole file with it set
    status_counts: dict[str, int]
    X: np.ndarray  # (n, 6) x, y, tx, ty, q/p, dz
    Y: np.ndarray  # (n, 4)
    P: np.ndarray  # (n,) GeV
    Z: np.ndarray  # (n, 2) z_start, z_end
    status: np.ndarray  # (n,)
    paths: list[Path3]
    field_label: str
    field_z: np.ndarray  # mm
    field_by: np.ndarray  # T, By(0, 0, z)
    #: on-axis integral of By over the file's z span (T mm) and that span (mm)
    by_integral: float
    z_span: tuple[float, float]
    title: str

    @property
    def n_sample(self) -> int:
        return len(self.P)


def status_counts(reader: FileView) -> dict[str, int]:
    """Tracks of the whole file with status 0 ("ok") and with each flag bit set (a track may
    carry several flags, so the flag counts may add up to more than the failed tracks)."""
    counts = {"ok": 0, **{name: 0 for name in STATUS_NAMES.values()}}
    for _, block in reader.iter_rows(["status"]):
        s = np.asarray(block["status"])
        counts["ok"] += int((s == 0).sum())
        for bit, name in STATUS_NAMES.items():
            counts[name] += int(((s & bit) != 0).sum())
    return counts


def pick_paths(
    X: np.ndarray, P: np.ndarray, Z: np.ndarray, status: np.ndarray, n_paths: int, z_peak: float
) -> np.ndarray:
    """Rows of up to ``n_paths`` status-0 tracks, half of each charge, spread evenly over log p
    (the lowest and highest momentum of each charge included: soft tracks bend, hard ones not).
    Tracks whose z span holds ``z_peak`` (mm, where |By| peaks) come first: they show the bend."""
    rows = []
    charges = np.sign(X[:, 4])
    crosses = (np.minimum(Z[:, 0], Z[:, 1]) <= z_peak) & (np.maximum(Z[:, 0], Z[:, 1]) >= z_peak)
    for q in (-1, 1):
        k = n_paths // 2 + (n_paths % 2 if q == 1 else 0)
        cand = np.flatnonzero((status == 0) & (charges == q) & crosses)
        if len(cand) < k:
            cand = np.flatnonzero((status == 0) & (charges == q))
        k = min(k, len(cand))
        if k == 0:
            continue
        by_p = cand[np.argsort(P[cand], kind="stable")]
        rows.append(by_p[np.unique(np.linspace(0, len(by_p) - 1, k).round().astype(int))])
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


def trajectories(
    propagate: Any, X: np.ndarray, Z: np.ndarray, n_points: int = 80
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of tracks ``X`` (n, >=5) on ``n_points`` planes from their z_start to z_end
    (``Z`` (n, 2), mm): (z, x, y), each (n, n_points). One call of ``propagate`` (a Propagator):
    each track is propagated from z_start to every plane after the first."""
    X = np.asarray(X, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    n = len(X)
    frac = np.linspace(0.0, 1.0, n_points)
    z = Z[:, :1] + (Z[:, 1:2] - Z[:, :1]) * frac  # (n, n_points); z[:, -1] == z_end exactly
    z[:, -1] = Z[:, 1]
    state = np.repeat(X[:, :5], n_points - 1, axis=0)
    z0 = np.repeat(Z[:, 0], n_points - 1)
    out, _, _ = propagate(state, z0, z[:, 1:].ravel())
    x = np.concatenate([X[:, :1], out[:, 0].reshape(n, n_points - 1)], axis=1)
    y = np.concatenate([X[:, 1:2], out[:, 1].reshape(n, n_points - 1)], axis=1)
    return z, x, y


def field_label(generator: Any, reader: FileView) -> str:
    """How the file's field is described in titles: the model and its parameters."""
    p = generator.params
    pol = "" if p.polarity == 1 else ", polarity -1"
    if p.field == "gaussian":
        return f"Gaussian dipole B0 {p.b0:+.4g} T, zc {p.z_center:g} mm, w {p.z_width:g} mm{pol}"
    if p.field == "uniform":
        return "uniform B = ({:g}, {:g}, {:g}) T{}".format(*p.b_uniform, pol)
    return f"map {Path(p.field_map).name}{pol}"


def _field_of(generator: Any, reader: FileView) -> Any:
    """The file's field; for a map, the map file must be the one the file was made with."""
    p = generator.params
    field = generator.field  # UserError when a map is missing or unreadable
    if p.field == "map":
        recorded = str(reader.attrs.get("field_map_sha256", ""))
        if recorded and recorded != field.sha256:
            raise UserError(
                f"field map {p.field_map} differs from the map {reader.path} was made with "
                f"(SHA-256 {field.sha256[:12]}..., the file records {recorded[:12]}...): "
                "trajectories and By(z) would not be the file's"
            )
    return field


def prepare(
    reader: FileView, n_sample: int = N_SAMPLE, n_paths: int = 12, n_points: int = 80
) -> TracksPicture:
    """Read what the figure shows from a complete tracks file (see the module docstring)."""
    if not reader.complete:
        n_missing = int((~reader.done).sum())
        raise UserError(
            f"{reader.path}: {n_missing} of {len(reader.done)} chunks are not written yet "
            "(unwritten rows read as zeros): finish the run (hpcgen run --resume) first"
        )
    gen = reader.generator
    n = min(reader.n_rows, n_sample)
    rows = slice(0, n)
    X, Y, P, Z = (np.asarray(reader.read(k, rows), np.float64) for k in ("X", "Y", "P", "Z"))
    status = np.asarray(reader.read("status", rows))
    field = _field_of(gen, reader)
    propagate = gen.propagator("numpy")

    z_lo, z_hi = (float(Z.min()), float(Z.max())) if n else (0.0, 1.0)
    extent = field.z_extent()
    lo, hi = (min(z_lo, extent[0]), max(z_hi, extent[1])) if extent else (z_lo, z_hi)
    fz = np.linspace(lo, hi, 1000)
    _, by, _ = field(np.zeros_like(fz), np.zeros_like(fz), fz, np)
    by = np.asarray(by, np.float64)

    paths = []
    picked = pick_paths(X, P, Z, status, n_paths, float(fz[np.argmax(np.abs(by))]))
    if len(picked):
        z, x, y = trajectories(propagate, X[picked], Z[picked], n_points)
        for k, r in enumerate(picked):
            paths.append(
                Path3(int(r), int(np.sign(X[r, 4])), float(P[r]), int(status[r]), z[k], x[k], y[k])
            )
    p = gen.params
    title = (
        f"{Path(reader.path).name}: {reader.n_rows:,} tracks, {p.integrator}, "
        f"{field_label(gen, reader)}"
    )
    return TracksPicture(
        name=Path(reader.path).name,
        n_rows=reader.n_rows,
        status_counts=status_counts(reader),
        X=X,
        Y=Y,
        P=P,
        Z=Z,
        status=status,
        paths=paths,
        field_label=field_label(gen, reader),
        field_z=fz,
        field_by=by,
        by_integral=float(field.axis_integral(z_lo, z_hi)),
        z_span=(z_lo, z_hi),
        title=title,
    )


def kick(pic: TracksPicture) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(1/p [1/GeV], kick, charge, has_backward) of the tracks with a valid Y (status without the
    step-limit and slope flags), at most N_SCATTER of them. kick = tx(z_end) - tx(z_start),
    times sign(dz) when some tracks run backward, so that it is always the bend along +z."""
    good = np.flatnonzero((pic.status & ABORTED) == 0)[:N_SCATTER]
    dz = pic.Z[good, 1] - pic.Z[good, 0]
    backward = bool((dz < 0).any())
    dtx = pic.Y[good, 2] - pic.X[good, 2]
    if backward:
        dtx = dtx * np.sign(dz)
    return 1.0 / pic.P[good], dtx, np.sign(pic.X[good, 4]).astype(int), backward


def _strong_field(pic: TracksPicture) -> tuple[float, float] | None:
    """The z interval (mm) where |By| on the axis exceeds half its peak; None for a flat field."""
    a = np.abs(pic.field_by)
    if a.max() == 0 or np.ptp(a) < 1e-9 * a.max():
        return None
    z = pic.field_z[a > 0.5 * a.max()]
    return float(z.min()), float(z.max())


def _span(v: np.ndarray) -> tuple[float, float]:
    """Histogram range of ``v``: its min and max, widened around a constant (mm: +-1 % or 1)."""
    if v.size == 0:
        return (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if hi > lo:
        return (lo, hi)
    pad = max(1.0, 0.01 * abs(lo))
    return (lo - pad, hi + pad)


def figure(pic: TracksPicture) -> Any:
    """The figure (matplotlib Figure, Agg): trajectories in x-z and y-z, By(z), bending against
    1/p, status counts, and the input distributions."""
    plt = pyplot()
    from matplotlib import ticker

    fig = plt.figure(figsize=(17, 17), layout="constrained")
    # three bands, each laid out on its own (one grid would align the histograms with the long
    # flag names of the status panel)
    top, mid, bottom = fig.subfigures(3, 1, height_ratios=[1.3, 1.1, 2.0])
    sample_note = (
        f"the first {pic.n_sample:,} of {pic.n_rows:,} tracks"
        if pic.n_sample < pic.n_rows
        else f"all {pic.n_rows:,} tracks"
    )
    fig.suptitle(pic.title, fontsize=13)

    # --- trajectories ---------------------------------------------------------------------------
    ax_xz, ax_yz = top.subplots(1, 2)
    strong = _strong_field(pic)
    for ax, col in ((ax_xz, 0), (ax_yz, 1)):
        coord = "xy"[col]
        if strong is not None:
            ax.axvspan(*strong, color="0.9", zorder=0, label="|By| on the axis > half its peak")
        for q in (1, -1):
            first = True
            for t in pic.paths:
                if t.charge != q:
                    continue
                v = t.x if col == 0 else t.y
                label = f"q = {q:+d} (p in GeV at the end)" if first else None
                ax.plot(t.z, v, "-", color=CHARGE_COLOURS[q], lw=1.3, label=label)
                ax.plot(t.z[0], v[0], "o", color=CHARGE_COLOURS[q], ms=4)
                ax.plot(pic.Z[t.row, 1], pic.Y[t.row, col], "x", color="k", ms=7, mew=1.5)
                ax.annotate(
                    f"{t.p:.3g}",
                    (t.z[-1], v[-1]),
                    xytext=(4, 2),
                    textcoords="offset points",
                    fontsize=8,
                    color=CHARGE_COLOURS[q],
                )
                first = False
        ax.plot([], [], "x", color="k", ms=7, mew=1.5, label="the file's Y at z_end")
        ax.set_xlabel("z [mm]")
        ax.set_ylabel(f"{coord} [mm]")
        ax.grid(alpha=0.3)
        ax.set_title(
            f"{coord}–z: {len(pic.paths)} status-0 tracks re-propagated from z_start (dot), "
            "spread in p",
            fontsize=11,
        )
    # one legend for both views (the same tracks and colours), under them: inside a view it
    # hides tracks
    handles, labels = ax_xz.get_legend_handles_labels()
    top.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=10)

    # --- field ----------------------------------------------------------------------------------
    ax_b, ax_k, ax_s = mid.subplots(1, 3, width_ratios=[2.0, 1.1, 1.2])
    ax_b.plot(
        pic.field_z, pic.field_by, "-", color="tab:green", lw=1.5, label="By(x = 0, y = 0, z)"
    )
    ax_b.axvspan(
        *pic.z_span,
        color="0.85",
        zorder=0,
        label=f"z span of the tracks: ∫By dz = {pic.by_integral / 1000:+.3f} T m",
    )
    ax_b.axhline(0, color="0.4", lw=0.8)
    ax_b.set_xlabel("z [mm]")
    ax_b.set_ylabel("By on the axis [T]")
    ax_b.set_title(f"field of the file: {pic.field_label}", fontsize=10)
    ax_b.grid(alpha=0.3)
    ax_b.legend(fontsize=9, loc="lower right")

    # --- bending --------------------------------------------------------------------------------
    inv_p, dtx, q, backward = kick(pic)
    for c, label in ((1, "q = +1"), (-1, "q = -1")):
        sel = q == c
        ax_k.scatter(
            inv_p[sel],
            dtx[sel],
            s=2,
            color=CHARGE_COLOURS[c],
            alpha=0.4,
            label=label,
            rasterized=True,
        )
    # small-slope bend of a track through the whole z span on the axis: dtx = -C (q/p) int By dz
    slope = -C_LIGHT * pic.by_integral / 1000.0  # per 1/GeV for q = +1 (q/p in 1/MeV)
    if inv_p.size:
        u = np.array([0.0, float(inv_p.max())])
        ax_k.plot(
            u, slope * u, "--", color="k", lw=1, label="small-slope kick, q = ±1, whole z span"
        )
        ax_k.plot(u, -slope * u, "--", color="k", lw=1)
    ax_k.set_xlabel("1/p [1/GeV]")
    ax_k.set_ylabel("sign(dz) · Δtx" if backward else "Δtx = tx(z_end) − tx(z_start)")
    ax_k.set_title(f"bending by charge ({len(inv_p):,} tracks with a valid Y)", fontsize=10)
    ax_k.grid(alpha=0.3)
    ax_k.legend(fontsize=8, loc="best", markerscale=4)

    # --- status ---------------------------------------------------------------------------------
    names = list(pic.status_counts)
    counts = np.array([pic.status_counts[k] for k in names])
    bits = ["0"] + [str(b) for b in STATUS_NAMES]
    labels = [f"{name} ({bit})" for name, bit in zip(names, bits)]
    ypos = np.arange(len(names))[::-1]
    colours = ["tab:green"] + ["tab:orange"] * (len(names) - 1)
    ax_s.barh(ypos, np.maximum(counts, 0), color=colours, log=True)
    ax_s.set_yticks(ypos, labels, fontsize=9)
    ax_s.set_xlim(0.8, max(10.0, counts.max() * 30.0))
    for yv, c in zip(ypos, counts):
        share = 100.0 * c / max(pic.n_rows, 1)
        ax_s.text(max(c, 1) * 1.15, yv, f"{c:,} ({share:.3g} %)", va="center", fontsize=8)
    ax_s.set_xlabel("tracks (log scale)")
    ax_s.set_ylabel("status flag (bit)")
    ax_s.set_title(f"status of all {pic.n_rows:,} tracks", fontsize=10)

    # --- input distributions --------------------------------------------------------------------
    X, P, Z = pic.X, pic.P, pic.Z
    charges = np.sign(X[:, 4]).astype(int)
    hists = [
        ("x at z_start [mm]", X[:, 0]),
        ("y at z_start [mm]", X[:, 1]),
        ("tx at z_start", X[:, 2]),
        ("ty at z_start", X[:, 3]),
        (None, None),  # p by charge, below
        ("dz = z_end − z_start [mm]", X[:, 5]),
        ("z_start [mm]", Z[:, 0]),
    ]
    cells = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]
    grid = bottom.subplots(2, 4)
    bottom.suptitle(f"inputs of {sample_note}", fontsize=12)
    for (label, v), (r, c) in zip(hists, cells):
        ax = grid[r, c]
        if label is None:
            pos = P[P > 0]
            lo, hi = (pos.min(), pos.max()) if pos.size else (1.0, 10.0)
            edges = np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 1.1, 41)
            for qv, name in ((1, "q = +1"), (-1, "q = -1")):
                ax.hist(
                    P[charges == qv],
                    bins=edges,
                    histtype="step",
                    color=CHARGE_COLOURS[qv],
                    label=f"{name}: {(charges == qv).sum():,}",
                )
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_xlabel("p [GeV]")
            ax.legend(fontsize=8)
        else:
            ax.hist(v, bins=50, range=_span(v), color="tab:gray")
            ax.xaxis.set_major_locator(ticker.MaxNLocator(5))
            ax.ticklabel_format(axis="x", useOffset=False)
            if v.size and np.ptp(v) == 0:  # a fixed input: say so rather than draw one bar
                ax.set_title(f"every track: {v[0]:g}", fontsize=10)
            ax.set_xlabel(label)
        ax.set_ylabel("tracks per bin")
        ax.grid(alpha=0.3)
    ax = grid[1, 3]
    h = ax.hist2d(
        Z[:, 0], Z[:, 1], bins=50, range=[_span(Z[:, 0]), _span(Z[:, 1])], cmin=1, cmap="viridis"
    )
    ax.ticklabel_format(useOffset=False)
    fig.colorbar(h[3], ax=ax, label="tracks per bin")
    ax.set_xlabel("z_start [mm]")
    ax.set_ylabel("z_end [mm]")
    return fig


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_file(reader: FileView, out: Path, options: Mapping[str, Any]) -> None:
    """``hpcgen plot FILE --out PNG`` for a tracks file."""
    plt = pyplot()
    fig = figure(prepare(reader))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)
