"""``hpcgen fieldmap info MAP [--plot PNG]`` and ``hpcgen fieldmap synth --out MAP``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hpcgen.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    fm = subparsers.add_parser("fieldmap", help="tracks: inspect or synthesise an LHCb field map")
    sub = fm.add_subparsers(dest="fieldmap_command", required=True)

    info = sub.add_parser(
        "info", help="grid, ranges, peak |By|, integral of By dz, Gaussian fit, artefacts"
    )
    info.add_argument("map", help="field map in the LHCb text format (x y z Bx By Bz; mm, T)")
    info.add_argument("--plot", metavar="PNG", help="draw By(z) on the axis with the fit")
    info.add_argument(
        "--artefact-b", type=float, default=2.0, help="|B| (T) above which a point is an artefact"
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    info.set_defaults(func=cmd_info)

    synth = sub.add_parser(
        "synth",
        help="write the synthetic stand-in for the LHCb map (the real one is private), in the "
        "real twodip.rtf row order: y fastest, then x, then z",
    )
    synth.add_argument("--out", "-o", required=True, help="text map to write")
    synth.add_argument(
        "--artefacts",
        action="store_true",
        help="add non-physical |By| > 2 T at ~3%% of the edge points, like the real map",
    )
    synth.add_argument(
        "--artefact-fraction",
        type=float,
        default=0.03,
        help="fraction of edge points (|x| or |y| > 3500 mm) made artefacts (with --artefacts)",
    )
    synth.add_argument("--seed", type=int, default=2026, help="where the artefacts go")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing map")
    synth.set_defaults(func=cmd_synth)


def cmd_info(args: argparse.Namespace) -> int:
    from hpcgen.generators.tracks.fieldmap import load_map
    from hpcgen.generators.tracks.synthmap import summarize

    if args.plot and Path(args.plot).exists() and not args.overwrite:
        raise UserError(f"{args.plot} exists; use --overwrite to replace it")
    grid = load_map(args.map)
    s = summarize(grid, args.artefact_b)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print_info(s, sys.stdout)
    if args.plot:
        plot_profile(grid, s, Path(args.plot))
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


def print_info(s: dict, out) -> None:
    g = s["gaussian_fit"]
    rows = [
        ("file", f"{s['path']}"),
        ("sha256", s["sha256"]),
        ("grid", " x ".join(map(str, s["grid"])) + f" = {s['n_points']} points"),
        *(
            (f"{a} range", f"[{lo:g}, {hi:g}] mm, step {step}")
            for a, (lo, hi, step) in s["ranges_mm"].items()
        ),
        (
            "peak |By| on axis",
            f"{s['peak_abs_by_axis_T']:.3f} T (By = {s['peak_by_axis_T']:+.3f} T) "
            f"at z = {s['peak_z_mm']:.0f} mm",
        ),
        ("integral By dz on axis", f"{s['integral_by_dz_axis_Tm']:+.3f} T m"),
        (
            "Gaussian fit",
            f"B0 = {g['B0_T']:+.4f} T, zc = {g['zc_mm']:.0f} mm, w = {g['w_mm']:.0f} mm, "
            f"RMS residual {g['rms_residual_T']:.4f} T",
        ),
        ("max |B| anywhere", f"{s['max_abs_B_T']:.3f} T"),
        (
            f"artefacts (|B| > {s['artefact_threshold_T']:g} T)",
            f"{s['artefact_points']} points = {100 * s['artefact_fraction']:.2f} % of the grid, "
            f"{100 * s['artefact_fraction_of_edge_points']:.2f} % of edge points "
            f"(|x| or |y| > 3500 mm), {s['artefact_points_off_edge']} off the edge",
        ),
        ("masked cells", f"{100 * s['masked_cell_fraction']:.2f} % (a corner is an artefact)"),
    ]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}", file=out)


def plot_profile(grid, s: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from hpcgen.generators.tracks.synthmap import axis_profile

    z, by = axis_profile(grid)
    g = s["gaussian_fit"]
    zf = np.linspace(z[0], z[-1], 2000)
    fit = g["B0_T"] * np.exp(-0.5 * ((zf - g["zc_mm"]) / g["w_mm"]) ** 2)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(z, by, "o", ms=3, label="map, x = y = 0")
    ax.plot(
        zf,
        fit,
        "-",
        label=f"Gaussian fit: B0 {g['B0_T']:+.3f} T, zc {g['zc_mm']:.0f} mm, "
        f"w {g['w_mm']:.0f} mm (RMS {g['rms_residual_T']:.3f} T)",
    )
    ax.set_xlabel("z [mm]")
    ax.set_ylabel("By [T]")
    ax.set_title(
        f"{Path(s['path']).name}: peak {s['peak_by_axis_T']:+.3f} T at z = "
        f"{s['peak_z_mm']:.0f} mm, integral {s['integral_by_dz_axis_Tm']:+.3f} T m"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def cmd_synth(args: argparse.Namespace) -> int:
    from hpcgen.generators.tracks.fieldmap import prime_cache, write_text
    from hpcgen.generators.tracks.synthmap import synth_map
    from hpcgen.io.paths import output_parent

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} exists; use --overwrite to replace it")
    if not 0 < args.artefact_fraction <= 1:
        raise UserError(f"--artefact-fraction must be in (0, 1], got {args.artefact_fraction}")
    with output_parent(out):
        grid = synth_map(args.artefact_fraction if args.artefacts else 0.0, seed=args.seed)
        write_text(out, grid)
        prime_cache(out, grid)
    nx, ny, nz = grid.shape
    print(
        f"wrote {out}: synthetic LHCb-like dipole map, {nx} x {ny} x {nz} points"
        + (" with edge artefacts" if args.artefacts else ""),
        file=sys.stderr,
    )
    return 0
