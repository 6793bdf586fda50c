"""``hpcgen plot`` for every generator: a PNG of sane size from a small file through the CLI,
labelled axes and colour bars, no text drawn over other text; the tracks picture's numbers
(status counts, trajectories, field, input distributions) against the file; ptycho's photons and
energy's per-domain parameters against theirs."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import ROOT, run_hpcgen

from hpcgen.generators.tracks.fields import ABORTED, STATUS_NAMES
from hpcgen.generators.tracks.params import GAUSS_B0, GAUSS_W, GAUSS_ZC
from hpcgen.io.reader import Reader

JOBS = ROOT / "jobs"


def run_ok(*args: object) -> None:
    res = run_hpcgen(*map(str, args))
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One small file per generator, made by ``hpcgen run``. The tracks file has backward and
    forward tracks, a flipped Gaussian field, a step limit low enough to stop some tracks and an
    acceptance box small enough to flag others: several status flags to count."""
    d = tmp_path_factory.mktemp("plots")
    tracks = d / "tracks.toml"
    tracks.write_text(
        'generator = "tracks"\nn_samples = 1500\nseed = 3\nchunk_size = 500\n'
        'output = "tracks.h5"\n\n[params]\nfield = "gaussian"\npolarity = -1\nmax_steps = 6\n'
        "dz_range = [-2000.0, 6000.0]\nacceptance = [2000.0, 2000.0, 0.3, 0.3]\n"
    )
    out = {g: d / f"{g}.h5" for g in ("tracks", "illumination", "ptycho", "energy", "atoms")}
    q = ["--quiet", "--overwrite"]
    run_ok("run", tracks, "--out", out["tracks"], *q)
    run_ok(
        "run",
        JOBS / "illumination_demo.toml",
        "--out",
        out["illumination"],
        "--n",
        600,
        "--chunk-size",
        300,
        "--set",
        "level=1",
        *q,
    )
    run_ok(
        "run",
        JOBS / "ptycho_demo.toml",
        "--out",
        out["ptycho"],
        "--n",
        24,
        "--chunk-size",
        12,
        "--set",
        "N=32",
        "--set",
        "object_size=128",
        *q,
    )
    run_ok(
        "run",
        JOBS / "energy_plasma_physics.toml",
        "--out",
        out["energy"],
        "--n",
        2,
        "--chunk-size",
        1,
        "--set",
        "height=32",
        "--set",
        "width=32",
        "--set",
        "n_steps=4",
        *q,
    )
    run_ok(
        "run", JOBS / "atoms_demo.toml", "--out", out["atoms"], "--n", 200, "--chunk-size", 100, *q
    )
    return out


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


EXTRA = {"illumination": ["--face", "panel_north/front"]}


@pytest.mark.parametrize("gen", ["tracks", "illumination", "ptycho", "energy", "atoms"])
def test_plot_writes_a_png_of_sane_size(files, tmp_path, gen):
    out = tmp_path / f"{gen}.png"
    res = run_hpcgen("plot", files[gen], "--out", out, *EXTRA.get(gen, []))
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == f"plot: {out}"
    w, h = png_size(out)
    assert 400 <= w <= 2500 and 200 <= h <= 2500, (w, h)
    assert 10_000 < out.stat().st_size < 3_000_000


# --- figures: labels, colour bars, no text over text ---------------------------------------------


_FIGURES: dict = {}


def figure_of(gen: str, path: Path, sample: int = 0):
    """The generator's figure (before saving) for a file, drawn once (drawing is what is slow):
    the tests only read it."""
    key = (gen, str(path), sample)
    if key not in _FIGURES:
        fig = _draw(gen, path, sample)
        fig.canvas.draw()  # lay out, as saving does
        _FIGURES[key] = fig
    return _FIGURES[key]


def _draw(gen: str, path: Path, sample: int):
    if gen == "tracks":
        from hpcgen.generators.tracks import plot

        with Reader(path) as r:
            return plot.figure(plot.prepare(r))
    if gen == "ptycho":
        from hpcgen.generators.ptycho import plot

        with Reader(path) as r:
            return plot.figure(r, sample)
    if gen == "energy":
        from hpcgen.generators.energy import plot

        with h5py.File(path, "r") as h5:
            return plot.figure([plot.read_strip(h5, sample)])
    from hpcgen.generators.illumination import plot

    with Reader(path) as r:
        mean, az, sin_el = plot.sky_map(r, "panel_north/front", plot.sky_bins(r.n_rows))
        normal = plot.face_normal(r, "panel_north/front")
    return plot.figure(mean, az, sin_el, "panel_north/front", normal)


def all_axes(fig) -> list:
    """Axes of a figure, of its subfigures and inset axes (colour bars), each once."""
    out = list(fig.axes)
    for sub in getattr(fig, "subfigs", []):
        out += all_axes(sub)
    out += [c for a in out for c in a.child_axes]
    return list({id(a): a for a in out}.values())


def tick_labels(axis) -> list:
    """The tick labels an axis draws: non-empty, at ticks inside the view (matplotlib keeps
    labels for ticks beyond the limits but does not draw them)."""
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-9 * max(abs(lo), abs(hi), 1.0)
    out = []
    for locs, labels in (
        (axis.get_majorticklocs(), axis.get_majorticklabels()),
        (axis.get_minorticklocs(), axis.get_minorticklabels()),
    ):
        for loc, t in zip(locs, labels):
            if lo - eps <= loc <= hi + eps and shown(t):
                out.append(t)
    return out


def is_colorbar(ax) -> bool:
    return hasattr(ax, "_colorbar")


def shown(text) -> bool:
    return text.get_visible() and bool(text.get_text().strip())


@pytest.mark.parametrize("gen", ["tracks", "illumination", "ptycho", "energy"])
def test_axes_with_numbers_have_labels_and_colour_bars_say_what_they_show(files, gen):
    fig = figure_of(gen, files[gen])
    n_bars = 0
    for ax in all_axes(fig):
        if not ax.axison:
            continue
        if is_colorbar(ax):
            n_bars += 1
            cb = ax._colorbar
            label = ax.get_ylabel() if cb.orientation == "vertical" else ax.get_xlabel()
            assert label.strip(), f"{gen}: a colour bar without a label"
            continue
        for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            numbers = tick_labels(axis)
            if numbers:
                assert axis.get_label_text().strip(), (
                    f"{gen}: axes {ax.get_title()!r} shows {name} values without a label"
                )
    assert n_bars >= {"tracks": 1, "illumination": 1, "ptycho": 5, "energy": 1}[gen]


def text_boxes(fig) -> list[tuple[str, object]]:
    """(text, window extent) of every title, suptitle, axis label and tick label drawn."""
    texts = []

    def add(t) -> None:
        if t is not None and shown(t):
            texts.append(t)

    def walk(f) -> None:
        add(getattr(f, "_suptitle", None))
        for sub in getattr(f, "subfigs", []):
            walk(sub)

    walk(fig)
    for ax in all_axes(fig):
        if not ax.axison:
            add(ax.title)
            continue
        for t in (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label):
            add(t)
        for t in tick_labels(ax.xaxis) + tick_labels(ax.yaxis):
            add(t)
    r = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(r)) for t in texts]


@pytest.mark.parametrize("gen", ["tracks", "illumination", "ptycho", "energy"])
def test_no_title_or_label_is_drawn_over_another_or_cut(files, gen):
    fig = figure_of(gen, files[gen])
    boxes = text_boxes(fig)
    assert len(boxes) > 10
    w, h = fig.canvas.get_width_height()
    for text, b in boxes:
        # energy saves with bbox_inches="tight" (its colour bars are insets): nothing is cut
        if gen != "energy":
            assert b.x0 >= -1 and b.y0 >= -1 and b.x1 <= w + 1 and b.y1 <= h + 1, (
                f"{gen}: {text!r} runs off the figure"
            )
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1 :]:
            shrunk = a.shrunk(0.9, 0.9)  # touching is fine, overlapping is not
            assert not shrunk.overlaps(b.shrunk(0.9, 0.9)), f"{gen}: {ta!r} overlaps {tb!r}"


# --- tracks: the numbers drawn are the file's ----------------------------------------------------


@pytest.fixture(scope="module")
def tracks_picture(files):
    from hpcgen.generators.tracks.plot import prepare

    with Reader(files["tracks"]) as r:
        return prepare(r)


def test_tracks_status_counts_are_the_files(files, tracks_picture):
    with h5py.File(files["tracks"], "r") as f:
        status = f["status"][...]
        names = [str(n) for n in f["status"].attrs["flag_names"]]
        bits = [int(b) for b in f["status"].attrs["flag_bits"]]
    expected = {"ok": int((status == 0).sum())}
    expected |= {n: int(((status & b) != 0).sum()) for n, b in zip(names, bits)}
    assert tracks_picture.status_counts == expected
    # the file exercises several flags, so the counts are not all one number
    assert expected["ok"] > 0 and expected["step limit"] > 0 and expected["out of acceptance"] > 0


def test_tracks_status_bars_drawn_are_the_counts(files, tracks_picture):
    fig = figure_of("tracks", files["tracks"])
    (ax,) = [a for a in all_axes(fig) if a.get_title().startswith("status of all")]
    widths = [p.get_width() for p in ax.patches]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    drawn = dict(zip(labels, widths))
    assert len(drawn) == 1 + len(STATUS_NAMES)
    for name, count in tracks_picture.status_counts.items():
        (label,) = [lab for lab in drawn if lab.startswith(f"{name} (")]
        assert drawn[label] == count, (label, drawn[label], count)


def test_tracks_trajectories_start_on_X_and_end_on_the_files_Y(tracks_picture):
    pic = tracks_picture
    assert len(pic.paths) == 12
    assert {t.charge for t in pic.paths} == {-1, 1}
    for t in pic.paths:
        r = t.row
        assert pic.status[r] == 0
        assert t.z[0] == pic.Z[r, 0] and t.z[-1] == pic.Z[r, 1]
        assert (t.x[0], t.y[0]) == (pic.X[r, 0], pic.X[r, 1])
        # the reference kernel, plane by plane, ends where the run's kernel did (float64 file)
        np.testing.assert_allclose([t.x[-1], t.y[-1]], pic.Y[r, :2], rtol=0, atol=1e-6)
        assert np.isfinite(t.x).all() and np.isfinite(t.y).all()
    # soft and hard tracks both drawn: the momentum spread of the picks covers the file's
    p = sorted(t.p for t in pic.paths)
    assert p[0] < 2 * pic.P.min() and p[-1] > 0.5 * pic.P.max()


def test_tracks_field_profile_is_the_files_flipped_gaussian(tracks_picture):
    pic = tracks_picture
    expected = -GAUSS_B0 * np.exp(-0.5 * ((pic.field_z - GAUSS_ZC) / GAUSS_W) ** 2)  # polarity -1
    np.testing.assert_allclose(pic.field_by, expected, rtol=1e-12, atol=1e-15)
    assert pic.z_span == (float(pic.Z.min()), float(pic.Z.max()))
    from scipy.integrate import quad

    integral, _ = quad(
        lambda z: -GAUSS_B0 * np.exp(-0.5 * ((z - GAUSS_ZC) / GAUSS_W) ** 2), *pic.z_span
    )
    assert pic.by_integral == pytest.approx(integral, rel=1e-9)


def test_tracks_bending_is_taken_along_the_direction_of_motion(tracks_picture):
    from hpcgen.generators.tracks.plot import kick

    pic = tracks_picture
    inv_p, dtx, q, backward = kick(pic)
    good = (pic.status & ABORTED) == 0
    assert backward and len(inv_p) == good.sum()
    dz = pic.Z[good, 1] - pic.Z[good, 0]
    np.testing.assert_array_equal(dtx, (pic.Y[good, 2] - pic.X[good, 2]) * np.sign(dz))
    # By > 0 here: q = +1 tracks bend to negative tx along +z, q = -1 to positive
    assert np.median(dtx[q == 1]) < 0 < np.median(dtx[q == -1])


def test_tracks_input_distributions_hold_every_track_including_dz_and_z_start(
    files, tracks_picture
):
    pic = tracks_picture
    fig = figure_of("tracks", files["tracks"])
    by_label = {a.get_xlabel(): a for a in all_axes(fig) if a.get_ylabel() == "tracks per bin"}
    for label in ("dz = z_end − z_start [mm]", "z_start [mm]", "x at z_start [mm]", "p [GeV]"):
        assert label in by_label, sorted(by_label)
    for label in ("dz = z_end − z_start [mm]", "z_start [mm]", "tx at z_start"):
        assert sum(p.get_height() for p in by_label[label].patches) == pic.n_rows
    dz = by_label["dz = z_end − z_start [mm]"]
    lo, hi = dz.patches[0].get_x(), dz.patches[-1].get_x() + dz.patches[-1].get_width()
    assert (lo, hi) == (pytest.approx(pic.X[:, 5].min()), pytest.approx(pic.X[:, 5].max()))


def test_tracks_plot_of_an_unfinished_file_is_a_one_line_error(files, tmp_path):
    part = tmp_path / "part.h5"
    shutil.copy(files["tracks"], part)
    with h5py.File(part, "r+") as f:  # as an interrupted run leaves it: chunk 1 not done
        f["_hpcgen/done"][1] = 0
    res = run_hpcgen("plot", part, "--out", tmp_path / "p.png")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "1 of 3 chunks are not written yet" in res.stderr
    assert not (tmp_path / "p.png").exists()


# --- ptycho and energy ---------------------------------------------------------------------------


def test_ptycho_patterns_are_drawn_in_photons_of_the_file(files):
    from hpcgen.generators.ptycho.plot import photons

    sample = 5
    with h5py.File(files["ptycho"], "r") as f:
        groups = [str(g) for g in f.attrs["ptycho_dose_groups"]]
        for g in groups:
            ds = f[f"{g}/diffraction"]
            counts = photons(ds[sample], float(ds.attrs["amplitude_scale"]))
            assert counts.sum() == f[f"{g}/photons"][sample]  # counts = (diffraction * scale)**2
    fig = figure_of("ptycho", files["ptycho"], sample)
    labels = [a.get_ylabel() for a in all_axes(fig) if is_colorbar(a)]
    assert sum(lab.startswith("photons (log10)") for lab in labels) == len(groups)
    titles = [a.get_title() for a in all_axes(fig)]
    with h5py.File(files["ptycho"], "r") as f:
        for g in groups:
            n = int(f[f"{g}/photons"][sample])
            assert any(f"pattern {sample}, {n:,} photons" in t for t in titles), titles


def test_ptycho_sample_out_of_range_is_a_one_line_error(files, tmp_path):
    res = run_hpcgen("plot", files["ptycho"], "--out", tmp_path / "p.png", "--sample", "24")
    assert res.returncode == 2
    assert res.stderr.strip() == "hpcgen: error: --sample 24 out of range: the file holds 0..23"


def test_energy_rows_are_titled_with_their_domains_parameters(files, tmp_path):
    from hpcgen.generators.energy.params import PRESETS
    from hpcgen.generators.energy.plot import figure, read_strip

    # two turbulent domains that look alike in a picture
    trl = tmp_path / "turbulent_radiative_layer.h5"
    run_ok(
        "run",
        JOBS / "energy_turbulent_radiative_layer.toml",
        "--out",
        trl,
        "--n",
        1,
        "--chunk-size",
        1,
        "--set",
        "height=16",
        "--set",
        "width=16",
        "--set",
        "n_steps=2",
        "--quiet",
    )
    paths = [files["energy"], trl]
    strips = []
    for p in paths:
        with h5py.File(p, "r") as h5:
            strips.append(read_strip(h5, 0))
    fig = figure(strips)
    titles = [sub._suptitle.get_text() for sub in fig.subfigs]
    for title, domain in zip(titles, ("plasma_physics", "turbulent_radiative_layer")):
        pre = PRESETS[domain]
        assert title.startswith(f"{domain}, trajectory 0 of ")
        for part in (
            f"pattern {pre.pattern}",
            f"rotation ±{pre.rotation_max_deg:g}°",
            f"noise σ {pre.noise_sigma:g} × mean",
            f"blur σ {pre.blur_sigma:g} px",
            f"shift ±{pre.translation_max_px:g} px",
            "scaling off",
        ):
            assert part in title, (part, title)
    assert titles[0].split("\n")[1] != titles[1].split("\n")[1]


def test_sky_map_longitude_labels_are_outlined_to_read_over_any_bin(files):
    from matplotlib import patheffects

    fig = figure_of("illumination", files["illumination"])
    (ax,) = [a for a in all_axes(fig) if a.name == "mollweide"]
    labels = tick_labels(ax.xaxis)
    assert len(labels) >= 6
    for t in labels:
        effects = t.get_path_effects()
        assert any(isinstance(e, patheffects.withStroke) for e in effects), t.get_text()
