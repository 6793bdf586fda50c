"""Global accuracy and speed of the tracks step control: the defaults against the old defaults.

The adaptive step control bounds the error of each step (``step_control``: "lhcb", ``tolerance``
mm on x, y and tolerance/|dz| + ``rel_tolerance`` x the step's change of tx, ty on the slopes;
"global", the step's error carried to z_end within ``tolerance``). What a trainer
sees is the error at z_end, summed over the steps and carried by the lever arm and the bending.
This measures that global error against an independent DOP853 integration
(hpcgen.generators.tracks.independent, rtol 1e-11, atol 1e-9 mm on x, y), and the cost of the
settings with the compiled CPU kernel (numba, one thread), for three samples:

- ``defaults``: TracksParams() as it is, z 3000 -> 9000 mm, p 2-100 GeV log-uniform;
- ``specs``: the production specs' per-track ends (jobs/tracks_*.toml: z_range [0, 14000] mm,
  dz_range [1000, 10000] mm); the figures are given for every track and for the tracks inside
  the LHCb T-station box at z_end (|x| < 3 m, |y| < 2.5 m, |tx|, |ty| < 1: status 0 there);
- ``corner``: the hardest corner of the specs, every track at 2 GeV over the longest dz
  (10000 mm, z_start in [0, 4000] mm), the slopes over their whole ranges.

Old settings: LHCb's, step_control "lhcb", tolerance 0.001 mm, rel_tolerance 5e-5, initial_step
1000 mm. New: the current TracksParams defaults, or ``--tolerance``, ``--rel-tolerance``,
``--step-control``, ``--initial-step``, ``--integrator``.
Speed: both settings on the same tracks in the same process, alternating, ``--repeats`` times;
process CPU seconds, best and median (the machine is shared: best is the kernel, median the
weather).

    nice -n 10 .venv/bin/python bench/bench_tracks_global.py [--n-error 20000] [--n-speed 1000000]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hpcgen.generators.tracks import independent  # noqa: E402
from hpcgen.generators.tracks.params import LHCB_T_ACCEPTANCE, TracksParams  # noqa: E402
from hpcgen.generators.tracks.propagate import Propagator, make_field  # noqa: E402
from hpcgen.generators.tracks.sampling import sample_tracks  # noqa: E402
from hpcgen.generators.tracks.stepper import StepperSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OLD = {"tolerance": 0.001, "rel_tolerance": 5e-5, "step_control": "lhcb", "initial_step": 1000.0}
#: the judge: DOP853 at these tolerances (mm on x, y; slopes get atol / 1000)
JUDGE_RTOL, JUDGE_ATOL_MM = 1e-11, 1e-9
SPEC_Z = {"z_range": (0.0, 14000.0), "dz_range": (1000.0, 10000.0)}
SAMPLES = {
    "defaults": {},
    "specs": SPEC_Z,
    "corner": {"z_range": (0.0, 14000.0), "dz_range": (10000.0, 10000.0), "p_min": 2.0,
               "p_max": 2.0},
}  # fmt: skip


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True)
        return out.stdout.decode().strip()
    except OSError:
        return "n/a"


def judge(p: TracksParams, X: np.ndarray, Z: np.ndarray, rtol: float = JUDGE_RTOL) -> np.ndarray:
    """(n, 4) Y at z_end from the independent DOP853 propagation."""
    ref = independent.propagate(
        independent.ReferenceField.from_params(p),
        X[:, :5],
        Z[:, 0],
        Z[:, 1],
        p.max_slope,
        rtol=rtol,
        atol_mm=JUDGE_ATOL_MM if rtol == JUDGE_RTOL else JUDGE_ATOL_MM / 10,
    )
    if ref.failed:
        raise SystemExit(f"DOP853 failed: {ref.failed}")
    return ref.Y


def stats(err_um: np.ndarray) -> dict[str, float]:
    if not len(err_um):
        return {"n": 0}
    return {
        "n": len(err_um),
        "max_um": float(err_um.max()),
        "p99_um": float(np.percentile(err_um, 99)),
        "median_um": float(np.median(err_um)),
        "over_1um": int((err_um > 1.0).sum()),
    }


def accuracy(p: TracksParams, settings: dict[str, dict], n: int, seed: int) -> dict:
    """Global error max(|dx|, |dy|) at z_end in um, per setting, against DOP853."""
    raw = sample_tracks(p, np.random.default_rng(seed), n, None)
    X, Z = raw["X"], raw["Z"]
    t = time.perf_counter()
    ref = judge(p, X, Z)
    judge_s = time.perf_counter() - t
    k = min(n, 2000)  # the judge against itself at 10x tighter tolerances
    tighter = judge(p, X[:k], Z[:k], rtol=JUDGE_RTOL / 10)
    self_um = float(np.abs(ref[:k, :2] - tighter[:, :2]).max() * 1000)
    ax, ay, atx, aty = LHCB_T_ACCEPTANCE
    inside = (
        (np.abs(ref[:, 0]) < ax)
        & (np.abs(ref[:, 1]) < ay)
        & (np.abs(ref[:, 2]) < atx)
        & (np.abs(ref[:, 3]) < aty)
    )
    field = make_field(p)
    out: dict = {"n": n, "judge_s": judge_s, "judge_self_um": self_um, "inside": int(inside.sum())}
    for label, over in settings.items():
        q = replace(p, **over)
        Y, status, nsteps = Propagator(field, StepperSettings.from_params(q), "numba")(
            X[:, :5], Z[:, 0], Z[:, 1]
        )
        ok = status == 0
        err = np.abs(Y[:, :2] - ref[:, :2]).max(axis=1) * 1000
        worst = int(np.argmax(np.where(ok, err, -1)))
        out[label] = {
            "all": stats(err[ok]),
            "in_acceptance": stats(err[ok & inside]),
            "stopped": int((~ok).sum()),
            "mean_steps": float(nsteps.mean()),
            "worst": {"P": float(raw["P"][worst]), "X": X[worst].tolist(), "Z": Z[worst].tolist()},
        }
    return out


def speed(p: TracksParams, settings: dict[str, dict], n: int, repeats: int, seed: int) -> dict:
    """Process CPU seconds of the numba kernel per setting, alternating, same tracks."""
    raw = sample_tracks(p, np.random.default_rng(seed + 1), n, None)
    X, Z = raw["X"][:, :5], raw["Z"]
    field = make_field(p)
    props = {
        k: Propagator(field, StepperSettings.from_params(replace(p, **v)), "numba")
        for k, v in settings.items()
    }
    for prop in props.values():  # compile / warm up outside the timing
        prop(X[:1000], Z[:1000, 0], Z[:1000, 1])
    cpu: dict[str, list[float]] = {k: [] for k in props}
    for _ in range(repeats):
        for k, prop in props.items():
            c = time.process_time()
            prop(X, Z[:, 0], Z[:, 1])
            cpu[k].append(time.process_time() - c)
    return {
        k: {
            "best_s": min(v),
            "median_s": float(np.median(v)),
            "tracks_per_s_best": n / min(v),
            "tracks_per_s_median": n / float(np.median(v)),
        }
        for k, v in cpu.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-error", type=int, default=20_000, help="tracks per accuracy sample")
    ap.add_argument("--n-speed", type=int, default=1_000_000, help="tracks per speed sample")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--tolerance", type=float, help="new setting (default: TracksParams')")
    ap.add_argument("--rel-tolerance", type=float, help="new setting (default: TracksParams')")
    ap.add_argument("--step-control", choices=("global", "lhcb"), help="new setting")
    ap.add_argument("--initial-step", type=float, help="new setting, mm")
    ap.add_argument("--integrator", choices=("cashkarp", "dopri5", "bs32"), help="new setting")
    ap.add_argument("--only", choices=list(SAMPLES), action="append", help="samples to run")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    base = TracksParams()
    new = {
        "tolerance": base.tolerance if args.tolerance is None else args.tolerance,
        "rel_tolerance": base.rel_tolerance if args.rel_tolerance is None else args.rel_tolerance,
    }
    for name in ("step_control", "initial_step", "integrator"):
        value = getattr(args, name)
        new[name] = getattr(base, name) if value is None else value
    settings = {"old": OLD, "new": new}
    result: dict = {"commit": commit(), "load_before": load(), "old": OLD, "new": new}
    print(f"commit {result['commit']}, load {result['load_before']}; old {OLD}, new {new}")
    for name in args.only or list(SAMPLES):
        p = TracksParams(**SAMPLES[name])
        acc = accuracy(p, settings, args.n_error, args.seed)
        result[name] = {"accuracy": acc}
        print(
            f"\n{name}: {acc['n']} tracks ({acc['inside']} inside the T-station box at z_end), "
            f"judge {acc['judge_s']:.1f} s, judge vs itself at rtol 1e-12: "
            f"{acc['judge_self_um']:.1e} um"
        )
        print("| setting | tracks | max um | p99 um | median um | > 1 um | mean steps |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for label in settings:
            a = acc[label]
            for part in ("all", "in_acceptance"):
                s = a[part]
                if s["n"]:
                    print(
                        f"| {label} | {part} ({s['n']}) | {s['max_um']:.3f} | {s['p99_um']:.3f} | "
                        f"{s['median_um']:.3f} | {s['over_1um']} | {a['mean_steps']:.2f} |"
                    )
        if name != "corner" and not args.no_speed:
            sp = speed(p, settings, args.n_speed, args.repeats, args.seed)
            result[name]["speed"] = sp
            o, w = sp["old"], sp["new"]
            print(
                f"speed, {args.n_speed} tracks, best / median of {args.repeats} (CPU s): "
                f"old {o['best_s']:.3f} / {o['median_s']:.3f}, new {w['best_s']:.3f} / "
                f"{w['median_s']:.3f}; new/old time {w['best_s'] / o['best_s']:.3f} (best), "
                f"{w['median_s'] / o['median_s']:.3f} (median); "
                f"{w['tracks_per_s_best'] / 1e6:.2f} M tracks/s new (best)"
            )
    result["load_after"] = load()
    print(f"\nload after {result['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
