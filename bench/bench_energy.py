"""Benchmark of the energy generator's per-step work, one core, frames of 256 x 256 float32.

Measured in one run, on the same maps and draws:

- baseline A: plain scipy.ndimage rotation (cubic, grid-wrap) + Gaussian blur (wrap): the requested
  "about 100 frames/s" reference;
- baseline B: the whole step with plain scipy.ndimage (rotation, blur, translation, noise draw and
  addition, the renormalisations, entropy) -- kernels.step_reference;
- fast: the whole step of the generator (numba spline rotation, direct or FFT blur, fused
  translation + noise + renormalisation, entropy) -- sequence.evolve, which also draws the noise
  (numpy's values from a compiled ziggurat, normal.py) and applies the drift rule;
- the fast step's parts, and the generator's compute() per chunk (base patterns included);
- with --gpu and a CUDA device: sequence.evolve_batch on cupy for a batch of trajectories.

    nice -n 10 .venv/bin/python bench/bench_energy.py [--size 256] [--frames 200] [--gpu]
"""

from __future__ import annotations

import os

# one core: keep every library single-threaded before it is imported
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402

from hpcgen.generators.base import Chunk, Device  # noqa: E402
from hpcgen.generators.energy import kernels, maps, patterns  # noqa: E402
from hpcgen.generators.energy.generator import EnergyGenerator  # noqa: E402
from hpcgen.generators.energy.params import EnergyParams  # noqa: E402
from hpcgen.generators.energy.sequence import draw_noise, evolve, evolve_batch  # noqa: E402


def rates(fns: dict[str, tuple[Callable[[], object], int]], rounds: int) -> dict[str, float]:
    """Frames per CPU-second of each ``fn`` (which does ``frames`` frames): best of ``rounds``
    interleaved rounds. CPU time of this process (time.process_time), not wall time: the machine
    is shared, and a process that waits for a core should not count the wait."""
    best = dict.fromkeys(fns, math.inf)
    for fn, _ in fns.values():
        fn()  # warm-up: numba cache load, FFT plans
    for _ in range(rounds):
        for name, (fn, _) in fns.items():
            t = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t)
    return {name: frames / best[name] for name, (_, frames) in fns.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=100, help="frames per timed run")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (best is kept)")
    ap.add_argument("--domain", default="plasma_physics")
    ap.add_argument("--gpu", action="store_true", help="also time evolve_batch on cupy")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    p = EnergyParams(domain=args.domain, n_steps=args.frames + 1, height=args.size, width=args.size)
    pre = p.preset
    n = args.frames
    rng = np.random.default_rng(0)
    base = patterns.base_pattern(pre.pattern, p.shape, rng)
    angles = np.concatenate([[0.0], rng.uniform(-pre.rotation_max_deg, pre.rotation_max_deg, n)])
    m = pre.translation_max_px
    shifts = np.concatenate([[[0, 0]], rng.integers(-m, m + 1, (n, 2))])
    scales = np.ones(n + 1)
    ref = float(base.sum(dtype=np.float64))
    noise = [draw_noise(np.random.default_rng(k), p.shape, pre) for k in range(8)]
    amp = pre.noise_sigma * ref / base.size

    def baseline_a() -> None:
        for t in range(1, n + 1):
            r = ndi.rotate(base, angles[t], reshape=False, order=3, mode="grid-wrap")
            ndi.gaussian_filter(r, pre.blur_sigma, mode="wrap")

    def baseline_b() -> None:
        g = np.random.default_rng(1)
        x = base
        for t in range(1, n + 1):
            nz = draw_noise(g, p.shape, pre)
            x = kernels.step_reference(x, angles[t], pre.blur_sigma, tuple(shifts[t]), nz, amp, ref)
            maps.entropy(x)

    def fast() -> None:
        evolve(base, angles, shifts, scales, np.random.default_rng(1), pre, p.drift_tolerance)

    timed: dict[str, tuple[Callable[[], object], int]] = {
        "baseline A: scipy rotate + gaussian_filter": (baseline_a, n),
        "baseline B: whole step, plain scipy.ndimage": (baseline_b, n),
        "fast: whole step (evolve)": (fast, n),
    }

    # parts of the fast step
    st = kernels.FastStepper(p.shape, pre.blur_sigma)
    a = math.radians(33.0)
    rot = np.empty(p.shape, np.float32)
    out = np.empty(p.shape, np.float32)
    nz = np.empty(p.shape, np.float32)
    g = np.random.default_rng(2)
    transfer = kernels.gaussian_transfer(p.shape, pre.blur_sigma)
    blurred = kernels.blur_fft(base, transfer)
    tmp = np.empty(p.shape, np.float32)
    parts: dict[str, Callable[[], object]] = {
        "part: spline prefilter (numba)": lambda: kernels.spline_coefficients_wrap(
            base, st.coef, st.buffers
        ),
        "part: rotation gather (numba)": lambda: kernels.rotate_coefficients(
            st.coef, math.cos(a), math.sin(a), rot, st.rotation_rows
        ),
        "part: direct blur (numba, used)": lambda: kernels.blur_direct(
            base, st.taps, st.taps, tmp, out
        ),
        "part: FFT blur (scipy.fft, wide kernels)": lambda: kernels.blur_fft(base, transfer),
        "part: translate+noise+renorm (numba)": lambda: kernels.translate_noise(
            blurred, 1.0, 3, -2, noise[0], amp, out
        ),
        "part: noise draw (compiled ziggurat, used)": lambda: draw_noise(g, p.shape, pre, nz),
        "part: noise draw (numpy standard_normal)": lambda: g.standard_normal(
            dtype=np.float32, out=nz
        ),
        "part: total + entropy (numba, one pass, used)": lambda: kernels.total_and_entropy(base),
        "part: entropy (numpy maps.entropy)": lambda: maps.entropy(base),
    }
    for name, fn in parts.items():
        timed[name] = (lambda fn=fn: [fn() for _ in range(n)], n)

    # the generator's compute() for one default chunk (8 trajectories of 10 frames)
    gp = EnergyParams(domain=args.domain, height=args.size, width=args.size)
    gen = EnergyGenerator(gp)
    chunk = Chunk(index=0, start=0, count=gen.default_chunk_size, seed=1)
    inputs = gen.sample(chunk)
    timed["generator compute(), one chunk (8 x 9 steps)"] = (
        lambda: gen.compute(inputs, chunk, Device("cpu", np)),
        chunk.count * (gp.n_steps - 1),
    )
    results = rates(timed, args.repeats)

    if args.gpu:
        results.update(gpu_rates(p, args.repeats))

    fast_rate = results["fast: whole step (evolve)"]
    base_a = results["baseline A: scipy rotate + gaussian_filter"]
    base_b = results["baseline B: whole step, plain scipy.ndimage"]
    print(
        f"energy step benchmark: {args.size} x {args.size} float32, domain {args.domain} "
        f"({pre.pattern}, rotation {pre.rotation_max_deg:g} deg, blur {pre.blur_sigma:g} px, "
        f"noise {pre.noise_sigma:g}), one core, best of {args.repeats} rounds of {n} frames, "
        "frames per CPU-second"
    )
    print(f"{'what':<48} {'frames/s':>10}")
    for name, rate in results.items():
        print(f"{name:<48} {rate:>10.0f}")
    print(
        f"fast whole step / baseline A: {fast_rate / base_a:.2f}x; "
        f"/ baseline B: {fast_rate / base_b:.2f}x"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "size": args.size,
                    "domain": args.domain,
                    "machine": platform.processor() or platform.machine(),
                    "frames_per_s": results,
                },
                f,
                indent=2,
            )


def gpu_rates(p: EnergyParams, repeats: int) -> dict[str, float]:
    try:
        import cupy
        import cupyx.scipy.ndimage as cndi
    except ImportError:
        print("cupy not installed: no GPU timing")
        return {}
    if not cupy.is_available():
        print("no CUDA device: no GPU timing")
        return {}
    pre = p.preset
    batch, steps = 64, 10
    rng = np.random.default_rng(0)
    bases = np.stack([patterns.base_pattern(pre.pattern, p.shape, rng) for _ in range(batch)])
    r = pre.rotation_max_deg
    angles = np.concatenate([np.zeros((batch, 1)), rng.uniform(-r, r, (batch, steps - 1))], 1)
    shifts = rng.integers(-5, 6, (batch, steps, 2))
    scales = np.ones((batch, steps))

    def run() -> None:
        rngs = [np.random.default_rng(k) for k in range(batch)]
        evolve_batch(bases, angles, shifts, scales, rngs, pre, p.drift_tolerance, cupy, cndi)
        cupy.cuda.Device().synchronize()

    run()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return {f"gpu: evolve_batch (cupy, batch {batch}, wall)": batch * (steps - 1) / best}


if __name__ == "__main__":
    main()
