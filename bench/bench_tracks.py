"""Benchmark of the tracks kernels on one core, accuracy against references, and the 10M run.

The standard case: z 3000 -> 9000 mm, x, y, slopes from the seed ranges, p 2-100 GeV
log-uniform, both charges, adaptive Cash-Karp with LHCb's defaults (1 um per step). Everything in
one run, so the ratios compare like with like on the same (shared, loaded) machine:

- throughput of the compiled kernel (numba, one thread): Gaussian model, synthetic map with
  grid_steps off / z / xyz / cell, the other schemes; tracks/s from process CPU time and from
  wall time;
- accuracy: analytic fields against scipy DOP853 at rtol 1e-12; the map against a fine fixed-step
  RK4 (0.5 mm) through the same trilinear interpolant - for each grid_steps mode (the
  accuracy/speed trade-off through a map's kinks);
- ratios: scipy solve_ivp per track (RK45, rtol 1e-8 / atol 1e-6 mm, ~1 um) and the vectorised
  numpy fixed RK4 at 5 mm (stepper.propagate_reference), against the numba Cash-Karp;
- GPU kernel throughput when cupy sees a device;
- with --e2e: ``mpiexec -n 2 hpcgen run jobs/tracks_10M.toml`` end to end: wall time, file size
  and the share of time in sampling / compute / writing from the file's provenance.

    nice -n 10 .venv/bin/python bench/bench_tracks.py [--n 1000000] [--e2e] [--json out.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from hpcgen.generators.tracks import fieldmap as fm  # noqa: E402
from hpcgen.generators.tracks import synthmap as sm  # noqa: E402
from hpcgen.generators.tracks.constants import C_LIGHT  # noqa: E402
from hpcgen.generators.tracks.fields import FieldMap, GaussianDipole, UniformField  # noqa: E402
from hpcgen.generators.tracks.propagate import Propagator  # noqa: E402
from hpcgen.generators.tracks.stepper import StepperSettings, propagate_reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: the settings this benchmark has always measured with: LHCb's extrapolator's tolerances (the
#: generator's defaults are tighter, docs/tracks.md "What the tolerance means"), no grid planes
LHCB = {
    "tolerance": 0.001,
    "rel_tolerance": 5e-5,
    "step_control": "lhcb",
    "initial_step": 1000.0,
    "grid_steps": "off",
}


def lhcb(scheme: str = "cashkarp", **kw) -> StepperSettings:
    return StepperSettings(scheme, **{**LHCB, **kw})


GAUSS = GaussianDipole(-1.0182, 5007.0, 1744.0)


def synth_map_field() -> FieldMap:
    """The synthetic map (``hpcgen fieldmap synth``) as a run loads it: written as text, read
    back through the map cache."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "synth.txt"
        grid = sm.synth_map()
        fm.write_text(path, grid)
        fm.prime_cache(path, grid)
        return FieldMap(fm.load_map(path))


def uptime() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def standard_tracks(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = np.exp(rng.uniform(np.log(2000.0), np.log(100_000.0), n))
    state = np.column_stack(
        [
            rng.uniform(-3000, 3000, n),
            rng.uniform(-2500, 2500, n),
            rng.uniform(-0.3, 0.3, n),
            rng.uniform(-0.25, 0.25, n),
            rng.choice([-1.0, 1.0], n) / p,
        ]
    )
    return state, np.full(n, 3000.0), np.full(n, 9000.0)


def timed(fn, *args):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def throughput(field, settings, n: int, repeat: int = 5) -> dict:
    """Best of ``repeat`` runs of the numba kernel on n standard tracks (after a warm-up), and
    the median: on this shared 2-core VM one process's runs of the same code spread by ~1.3x."""
    prop = Propagator(field, settings, "numba")
    state, z0, z1 = standard_tracks(n)
    prop(state[:100], z0[:100], z1[:100])  # compile / load from cache
    best = None
    cpus = []
    for _ in range(repeat):
        (_, status, nsteps), wall, cpu = timed(prop, state, z0, z1)
        cpus.append(cpu)
        if best is None or cpu < best["cpu_s"]:
            best = {"wall_s": wall, "cpu_s": cpu}
    best.update(
        n=n,
        repeat=repeat,
        tracks_per_s_cpu=n / best["cpu_s"],
        tracks_per_s_cpu_median=n / float(np.median(cpus)),
        tracks_per_s_wall=n / best["wall_s"],
        us_per_track_cpu=1e6 * best["cpu_s"] / n,
        steps_mean=float(nsteps.mean()),
        ok_fraction=float((status == 0).mean()),
    )
    return best


# --- references --------------------------------------------------------------------------------


def rhs(field):
    def f(z, s, qop):
        x, y, tx, ty = s
        bx, by, bz = (float(b) for b in field(np.array(x), np.array(y), np.array(z), np))
        k = C_LIGHT * qop * np.sqrt(1 + tx * tx + ty * ty)
        return [
            tx,
            ty,
            k * (tx * ty * bx - (1 + tx * tx) * by + ty * bz),
            k * ((1 + ty * ty) * bx - tx * ty * by - tx * bz),
        ]

    return f


def scipy_tracks(field, state, z0, z1, method="DOP853", rtol=1e-12, atol=1e-12):
    f = rhs(field)
    out = []
    for s, a, b in zip(state, z0, z1):
        sol = solve_ivp(f, (a, b), s[:4], method, rtol=rtol, atol=atol, args=(s[4],))
        out.append(sol.y[:, -1])
    return np.array(out)


def err_stats(y, ref, ok=None) -> dict:
    e = np.abs(y[:, :2] - ref[:, :2]).max(axis=1)
    if ok is not None:
        e = e[ok]
    return {
        "max_mm": float(e.max()),
        "p99_mm": float(np.percentile(e, 99)),
        "median_mm": float(np.median(e)),
        "n": len(e),
    }


def accuracy_analytic(n: int) -> dict:
    out = {}
    state, z0, z1 = standard_tracks(n, seed=11)
    for name, field in (("gaussian", GAUSS), ("uniform_by_-1T", UniformField(0.0, -1.0, 0.0))):
        ref = scipy_tracks(field, state, z0, z1)
        for scheme, tol in (("cashkarp", 1e-3), ("cashkarp", 1e-4), ("dopri5", 1e-3)):
            y, status, nsteps = Propagator(field, lhcb(scheme, tolerance=tol), "numba")(
                state, z0, z1
            )
            ok = status == 0
            out[f"{name}/{scheme}/tol={tol:g}"] = {
                **err_stats(y, ref, ok),
                "steps_mean": float(nsteps[ok].mean()),
            }
    return out


def accuracy_map(field, n: int, n_rate: int, cell_schemes: bool = False) -> dict:
    """The grid_steps trade-off through the trilinear map: error vs a 0.5 mm RK4, and speed;
    with ``cell_schemes`` also "cell" with each adaptive scheme (how much of a step is its
    stages: the grid planes set the steps, so the schemes differ only in stages per step)."""
    state, z0, z1 = standard_tracks(n, seed=12)
    ref, s_ref, _ = Propagator(field, lhcb("rk4", step=0.5), "numba")(state, z0, z1)
    out = {}
    cases = [
        (mode, max_step, "cashkarp")
        for mode in ("off", "z", "xy", "xyz", "cell")
        for max_step in ((1000.0, 250.0) if mode == "off" else (1000.0,))
    ]
    if cell_schemes:  # rk4: fixed steps of 200 mm (above the cells), cut at the cells' faces
        cases += [("cell", 1000.0, s) for s in ("dopri5", "bs32", "rk4")]
    for mode, max_step, scheme in cases:
        st = lhcb(scheme, grid_steps=mode, max_step=max_step, step=200.0)
        y, status, _ = Propagator(field, st, "numba")(state, z0, z1)
        ok = (status == 0) & (s_ref == 0)
        name = f"grid_steps={mode}/max_step={max_step:g}"
        out[name if scheme == "cashkarp" else f"{name}/{scheme}"] = {
            **err_stats(y, ref, ok),
            **{k: v for k, v in throughput(field, st, n_rate, 3).items() if k != "n"},
        }
    return out


# --- ratios --------------------------------------------------------------------------------------


def ratios(n_scipy: int, n_numpy: int, numba_rate: float) -> dict:
    state, z0, z1 = standard_tracks(n_scipy, seed=13)
    _, _, cpu = timed(scipy_tracks, GAUSS, state, z0, z1, "RK45", 1e-8, 1e-6)
    scipy_rate = n_scipy / cpu
    state, z0, z1 = standard_tracks(n_numpy, seed=14)
    _, _, cpu = timed(propagate_reference, state, z0, z1, GAUSS, lhcb("rk4", step=5.0))
    numpy_rate = n_numpy / cpu
    return {
        "scipy_solve_ivp_RK45_per_track_tracks_per_s": scipy_rate,
        "numpy_vectorised_rk4_5mm_tracks_per_s": numpy_rate,
        "numba_cashkarp_over_scipy": numba_rate / scipy_rate,
        "numba_cashkarp_over_numpy_rk4": numba_rate / numpy_rate,
    }


def gpu(n: int, map_field) -> dict | None:
    try:
        import cupy

        if not cupy.is_available():
            return None
    except Exception:
        return None
    out = {}
    maps = (("map_cell", "cell"), ("map_xyz", "xyz"), ("map_off", "off"))
    for name, field, mode in (("gaussian", GAUSS, "off"), *((k, map_field, m) for k, m in maps)):
        st = lhcb(grid_steps=mode)
        prop = Propagator(field, st, "cuda")
        state, z0, z1 = standard_tracks(n)
        prop(state[:1000], z0[:1000], z1[:1000])
        from hpcgen.generators.tracks.kernels_cuda import CudaPropagator

        cp_prop = CudaPropagator(field, st)
        ds, d0, d1 = (cupy.asarray(a) for a in (state, z0, z1))
        cp_prop(ds, d0, d1)
        cupy.cuda.Device().synchronize()
        t = time.perf_counter()
        cp_prop(ds, d0, d1)
        cupy.cuda.Device().synchronize()
        dt = time.perf_counter() - t
        out[name] = {"n": n, "kernel_s": dt, "tracks_per_s": n / dt}
    return out


# --- 10M end to end ------------------------------------------------------------------------------


def end_to_end(spec: Path, ranks: int) -> dict:
    with tempfile.TemporaryDirectory(dir=ROOT) as d:
        out = Path(d) / "t10M.h5"
        cmd = [
            "mpiexec.mpich",
            "-n",
            str(ranks),
            sys.executable,
            "-m",
            "hpcgen",
            "run",
            str(spec),
            "--out",
            str(out),
            "--quiet",
            "--yes",
        ]
        load0 = uptime()
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"})
        wall = time.perf_counter() - t
        size = out.stat().st_size
        meta = json.loads(out.with_name(out.stem + ".metadata.json").read_text())
    timings = meta["provenance"]["timings_per_rank"]
    tot = {k: sum(r[k] for r in timings) for k in ("sample_s", "compute_s", "write_s", "wall_s")}
    busy = tot["sample_s"] + tot["compute_s"] + tot["write_s"]
    return {
        "command": " ".join([*cmd[:3], "python -m hpcgen", *cmd[6:8]]),
        "ranks": ranks,
        "wall_s": wall,
        "file_bytes": size,
        "per_rank": timings,
        "share": {k: tot[k] / tot["wall_s"] for k in ("sample_s", "compute_s", "write_s")},
        "share_other": 1 - busy / tot["wall_s"],
        "tracks_per_s_wall": 10_000_000 / wall,
        "loadavg_before": load0,
        "loadavg_after": uptime(),
    }


def map_accuracy(res: dict, map_field, a: argparse.Namespace) -> None:
    res["accuracy_map_vs_rk4_0.5mm"] = accuracy_map(
        map_field, a.n_map_accuracy, a.n_map // 4, a.cell_schemes
    )
    for k, v in res["accuracy_map_vs_rk4_0.5mm"].items():
        print(
            f"map {k:30s} max {v['max_mm']:.2e} p99 {v['p99_mm']:.2e} mm  "
            f"{v['tracks_per_s_cpu']:>10,.0f} tracks/s/core (best of {v['repeat']})  "
            f"{v['steps_mean']:.1f} steps",
            flush=True,
        )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="tracks for the Gaussian throughput")
    ap.add_argument("--n-map", type=int, default=200_000, help="tracks for the map throughput")
    ap.add_argument("--n-accuracy", type=int, default=300, help="tracks against DOP853")
    ap.add_argument("--n-map-accuracy", type=int, default=2000, help="tracks against RK4 0.5 mm")
    ap.add_argument("--e2e", action="store_true", help="also run jobs/tracks_10M.toml, 2 ranks")
    ap.add_argument("--spec", default=str(ROOT / "jobs" / "tracks_10M.toml"))
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument(
        "--map-only", action="store_true", help="only the map's grid_steps trade-off table"
    )
    ap.add_argument(
        "--cell-schemes",
        action="store_true",
        help="the map table also has cell with dopri5, bs32 and fixed rk4 (200 mm)",
    )
    a = ap.parse_args()

    res: dict = {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "loadavg_start": uptime(),
    }
    print(f"load average at start: {res['loadavg_start']}", flush=True)
    map_field = synth_map_field()

    if a.map_only:
        map_accuracy(res, map_field, a)
        return
    res["throughput"] = {}
    for name, field, st, n in (
        ("gaussian/cashkarp", GAUSS, lhcb(), a.n),
        ("gaussian/dopri5", GAUSS, lhcb("dopri5"), a.n // 2),
        ("gaussian/bs32", GAUSS, lhcb("bs32"), a.n // 10),
        ("gaussian/rk4_5mm", GAUSS, lhcb("rk4", step=5.0), a.n // 100),
        ("map/cashkarp/grid_steps=off", map_field, lhcb(grid_steps="off"), a.n_map),
        ("map/cashkarp/grid_steps=z", map_field, lhcb(grid_steps="z"), a.n_map // 4),
        ("map/cashkarp/grid_steps=xyz", map_field, lhcb(grid_steps="xyz"), a.n_map // 4),
        (
            "map/cashkarp/grid_steps=cell",
            map_field,
            lhcb(grid_steps="cell"),
            a.n_map // 4,
        ),
    ):
        r = throughput(field, st, n)
        res["throughput"][name] = r
        print(
            f"{name:32s} {r['tracks_per_s_cpu']:>12,.0f} tracks/s/core (cpu, best of "
            f"{r['repeat']}; median {r['tracks_per_s_cpu_median']:,.0f}) "
            f"{r['tracks_per_s_wall']:>12,.0f} (wall)  {r['steps_mean']:.1f} steps",
            flush=True,
        )
    res["accuracy_analytic_vs_dop853"] = accuracy_analytic(a.n_accuracy)
    for k, v in res["accuracy_analytic_vs_dop853"].items():
        print(f"{k:36s} max {v['max_mm']:.2e} p99 {v['p99_mm']:.2e} median {v['median_mm']:.2e} mm")
    map_accuracy(res, map_field, a)
    res["ratios"] = ratios(300, 20_000, res["throughput"]["gaussian/cashkarp"]["tracks_per_s_cpu"])
    for k, v in res["ratios"].items():
        print(f"{k:48s} {v:,.1f}")
    res["gpu"] = gpu(10_000_000, map_field)
    print("gpu:", res["gpu"] or "no CUDA device")
    if a.e2e:
        res["end_to_end"] = end_to_end(Path(a.spec), 2)
        e = res["end_to_end"]
        print(
            f"10M end to end: {e['wall_s']:.1f} s wall, {e['file_bytes'] / 1e9:.2f} GB, "
            f"share sample {e['share']['sample_s']:.1%} compute {e['share']['compute_s']:.1%} "
            f"write {e['share']['write_s']:.1%} other {e['share_other']:.1%}"
        )
    res["loadavg_end"] = uptime()
    print(f"load average at end: {res['loadavg_end']}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
