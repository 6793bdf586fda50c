"""Same-process A/B of the numba tracks kernel: the working tree against a git commit's.

On this shared 2-core VM, runs of the same code in separate processes spread by ~1.3x, so the
speed of a kernel change is measured in one process: the two kernels alternate on the same
tracks, best and median of each, and their results are compared bit for bit. The commit's
``kernels_numba.py`` and ``simd.py`` are loaded as separate modules (their vector types renamed,
so that kernels of different widths do not share numba types); the rest of the package is the
working tree's.

    .venv/bin/python bench/ab_tracks_kernel.py --base 2fad58b --field map --n 200000 --reps 7
    .venv/bin/python bench/ab_tracks_kernel.py --base d4a152d --grid-steps cell --scheme rk4 \\
        --step 200 --n 50000 --reps 10
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_tracks import GAUSS, standard_tracks, synth_map_field  # noqa: E402

from hpcgen.generators.tracks import kernels_numba  # noqa: E402
from hpcgen.generators.tracks.stepper import StepperSettings  # noqa: E402
from hpcgen.generators.tracks.tableaus import TABLEAUS  # noqa: E402

PKG = "hpcgen/generators/tracks"


#: the commit's own modules the base kernel runs with (rk4.py where the commit still has it);
#: the rest of the package is the working tree's
LOCAL = ("simd", "rk4", "kernels_numba")


def _localise(src: str) -> str:
    """Imports of LOCAL modules point at their base_ copies."""

    def package_import(m: re.Match) -> str:
        names = [n.strip() for n in m.group(1).split(",")]
        keep = [n for n in names if n not in LOCAL]
        lines = [f"from hpcgen.generators.tracks import {', '.join(keep)}"] if keep else []
        return "\n".join(lines + [f"import base_{n} as {n}" for n in names if n in LOCAL])

    src = re.sub(
        r"from hpcgen\.generators\.tracks import ([\w, ]+)$", package_import, src, flags=re.M
    )
    for n in LOCAL:
        src = src.replace(f"from hpcgen.generators.tracks.{n} import", f"from base_{n} import")
    return src


def base_kernel(commit: str, where: Path):
    """The commit's kernels_numba module, importing the commit's simd as base_simd."""
    for name in LOCAL:
        got = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:{PKG}/{name}.py"],
            capture_output=True,
            text=True,
        )
        if got.returncode != 0:
            continue  # a module the commit does not have
        src = re.sub(r'name="(\w+)"', r'name="base_\1"', got.stdout)  # distinct numba type names
        (where / f"base_{name}.py").write_text(_localise(src))
    sys.path.insert(0, str(where))
    path = where / "base_kernels_numba.py"
    spec = importlib.util.spec_from_file_location("base_kernels_numba", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["base_kernels_numba"] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the git commit to compare against")
    ap.add_argument("--field", choices=("map", "gauss"), default="map")
    ap.add_argument("--n", type=int, default=200_000, help="standard tracks per run")
    ap.add_argument("--reps", type=int, default=7, help="runs of each kernel, alternating")
    ap.add_argument(
        "--grid-steps", default="off", help="the map's grid_steps (off, z, xy, xyz, cell)"
    )
    ap.add_argument("--scheme", default="cashkarp", help="the integrator (tableaus.TABLEAUS)")
    ap.add_argument("--step", type=float, default=5.0, help="a fixed scheme's step (mm)")
    a = ap.parse_args()
    sch = {"scheme": a.scheme, "step": a.step}
    with tempfile.TemporaryDirectory() as d:
        base = base_kernel(a.base, Path(d))
        if a.field == "map":
            field = synth_map_field()
            st = StepperSettings(
                tolerance=0.001, rel_tolerance=5e-5, grid_steps=a.grid_steps, **sch
            )
        else:  # LHCb's tolerances, as this comparison has always used
            field, st = GAUSS, StepperSettings(tolerance=0.001, rel_tolerance=5e-5, **sch)
        state, z0, z1 = standard_tracks(a.n)
        kernels = {f"base {a.base}": base.propagate_numba, "tree": kernels_numba.propagate_numba}
        times = {k: [] for k in kernels}
        outs = {}
        for fn in kernels.values():
            fn(state[:100], z0[:100], z1[:100], field, st)  # compile or load from cache
        for _ in range(a.reps):
            for k, fn in kernels.items():
                t = time.process_time()
                outs[k] = fn(state, z0, z1, field, st)
                times[k].append(time.process_time() - t)
    (kb, ob), (_, ot) = outs.items()
    same = all(np.array_equal(x, y, equal_nan=True) for x, y in zip(ob, ot))
    best = {k: min(v) for k, v in times.items()}
    for k, v in times.items():
        print(
            f"{k:16s} best {a.n / best[k]:>11,.0f} tracks/s/core  median "
            f"{a.n / float(np.median(v)):>11,.0f}  x{best[kb] / best[k]:.2f}"
        )
    mode = f" grid_steps={a.grid_steps}" if a.field == "map" else ""
    mode += f" {a.scheme}" + ("" if TABLEAUS[a.scheme].adaptive else f" step={a.step:g}")
    print(f"{a.field}{mode}, {a.n} tracks, {a.reps} runs each; same bits: {same}")


if __name__ == "__main__":
    main()
