"""Benchmark the ptycho generator on one core: forward model, Poisson samplers, whole chunks.

    nice -n 10 .venv/bin/python bench/bench_ptycho.py [--patterns 1024] [--repeat 3]

N = 64, the built-in 512 px object and probe, uniform random positions. Rates are patterns per
second of *CPU time of this process* (time.process_time; the best of --repeat runs), which is
robust on a shared machine; wall-clock rates are printed beside them. FFT threads: 1.

Sections:
- forward: fused numba patch/exit-wave kernel; FFT2 complex64 of the whole batch with FFTW
  (pyfftw, the default), scipy.fft and numpy.fft; the whole forward model (patch, FFT, |F|^2 in
  blocks of 32) with either library;
- sampler costs per pixel by lambda: auto (table inversion from TABLE_MIN, PTRS from TABLE_MAX)
  and numpy's Poisson (direct), and the cost of one photon of splitting;
- samplers per dose: auto / direct / split, and numpy's rng.poisson on the whole lambda array
  (the naive way);
- end to end: PtychoGenerator.sample + compute on one chunk of --patterns, one dose at a time
  (FFTW, and scipy.fft in the same run) and the three-dose sweep (patterns = samples x doses).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("HPCGEN_PTYCHO_FFT_WORKERS", "1")

import numpy as np
import scipy.fft

from hpcgen.generators.base import Chunk, Device
from hpcgen.generators.ptycho.generator import PtychoGenerator
from hpcgen.generators.ptycho.params import PtychoParams
from hpcgen.generators.ptycho.poisson import TABLE_MAX, TABLE_MIN, sample_amplitudes

CPU = Device("cpu", np)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best CPU seconds, best wall seconds) over ``repeat`` calls after one warm-up call."""
    fn()
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall)


def line(label: str, count: float, cpu: float, wall: float, unit: str = "patterns/s") -> None:
    print(f"  {label:<44} {count / cpu:>10,.0f} {unit} (CPU)   {count / wall:>10,.0f} (wall)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patterns", type=int, default=1024, help="patterns per timed call")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n_pat, rep = args.patterns, args.repeat
    doses = (1e3, 1e4, 1e5)

    gen = PtychoGenerator(PtychoParams(doses=doses))
    chunk = Chunk(index=0, start=0, count=n_pat, seed=1)
    inputs = gen.sample(chunk)
    xs, ys = inputs["xcoords"], inputs["ycoords"]
    fw = gen.forward
    print(f"ptycho bench: N = 64, M = {fw.m}, {n_pat} patterns per call, best of {rep}")
    # rates are only comparable between runs at a similar load
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")

    print("forward model")
    line("patch + exit wave (numba)", n_pat, *timed(lambda: fw.patches(xs, ys), rep))
    exitw = fw.patches(xs, ys)[0] * fw.probe
    buf, plan = fw._block_fft(n_pat)  # the generator's own plan (flags, alignment, threads)
    buf[...] = exitw
    line("FFT2 complex64 (FFTW via pyfftw, in place)", n_pat, *timed(plan, rep))
    line(
        "FFT2 complex64 (scipy.fft, whole batch)",
        n_pat,
        *timed(lambda: scipy.fft.fft2(exitw, norm="ortho", workers=1), rep),
    )
    line(
        "FFT2 complex64 (numpy.fft, whole batch)",
        n_pat,
        *timed(lambda: np.fft.fft2(exitw, norm="ortho"), rep),
    )
    line(
        "forward total: patch, FFT, |F|^2 (blocks of 32)",
        n_pat,
        *timed(lambda: fw.run(xs, ys), rep),
    )
    fw_scipy = PtychoGenerator(PtychoParams(doses=doses, fft="scipy")).forward
    line("  the same with scipy.fft", n_pat, *timed(lambda: fw_scipy.run(xs, ys), rep))
    _, intensity, _ = fw.run(xs, ys)

    print("sampler costs (ns per draw / per photon)")
    rng = np.random.default_rng(0)
    for lam in (0.5, 2.0, 5.0, 8.0, 12.0, 50.0, 1000.0):
        a = np.full((64, 4096), lam / 4.0, np.float32)
        cpu, _ = timed(lambda a=a: sample_amplitudes(a, 4.0, rng, "direct"), rep)
        text = f"  lambda = {lam:<7g} direct {cpu / a.size * 1e9:6.1f} ns per pixel"
        cpu, _ = timed(lambda a=a: sample_amplitudes(a, 4.0, rng, "auto"), rep)
        print(f"{text}, auto {cpu / a.size * 1e9:6.1f} ns")
    a = np.full((64, 4096), 0.0, np.float32)
    cpu0, _ = timed(lambda: sample_amplitudes(a + 1e-30, 4.0, rng, "split"), rep)
    a = np.full((64, 4096), 2.0 / 4.0, np.float32)
    cpu2, _ = timed(lambda: sample_amplitudes(a, 4.0, rng, "split"), rep)
    per_pixel = cpu0 / a.size
    print(
        f"  split: {per_pixel * 1e9:.1f} ns per pixel + "
        f"{(cpu2 - cpu0) / (2.0 * a.size) * 1e9:.1f} ns per photon"
    )

    print("samplers per dose")
    for dose in doses:
        s2 = gen.photon_scale2(dose)
        lam = intensity.astype(np.float64) * s2
        ptrs = np.mean((lam >= TABLE_MAX).sum(axis=(1, 2)))
        table = np.mean(((lam >= TABLE_MIN) & (lam < TABLE_MAX)).sum(axis=(1, 2)))
        dim = np.mean(np.where(lam < TABLE_MIN, lam, 0).sum(axis=(1, 2)))
        print(
            f"  dose {dose:g}: {ptrs:.0f} PTRS pixels, {table:.0f} table pixels, "
            f"{dim:.0f} photons in pixels below {TABLE_MIN:g}"
        )
        for method in ("auto", "direct", "split"):
            line(
                f"  {method}",
                n_pat,
                *timed(lambda m=method, s2=s2: sample_amplitudes(intensity, s2, rng, m), rep),
            )
        line(
            "  numpy rng.poisson(lambda) (naive)",
            n_pat,
            *timed(lambda lam=lam: rng.poisson(lam), rep),
        )

    print("end to end: sample + compute (one core)")
    for dose in doses:
        for fft in ("fftw", "scipy"):
            g = PtychoGenerator(PtychoParams(doses=(dose,), fft=fft))
            line(
                f"dose {dose:g} alone ({fft})",
                n_pat,
                *timed(lambda g=g: g.compute(g.sample(chunk), chunk, CPU), rep),
            )
    cpu, wall = timed(lambda: gen.compute(gen.sample(chunk), chunk, CPU), rep)
    line("sweep [1e3, 1e4, 1e5]: samples", n_pat, cpu, wall, "samples/s")
    line("sweep [1e3, 1e4, 1e5]: patterns (x 3 doses)", 3 * n_pat, cpu, wall)


if __name__ == "__main__":
    main()
