"""Where the energy generator's blur switches from direct taps to one FFT pair.

The fast step blurs a map by scipy's truncated Gaussian taps applied separably (cost grows with
the kernel's width) up to a kernel radius of ``kernels.DIRECT_BLUR_MAX_RADIUS`` pixels, and by
one real FFT pair with the wrapped kernel's transfer function above it (cost independent of
sigma). This bench times both on one map for a range of sigmas, one core, process CPU time, best
of ``--repeats`` runs of ``--frames`` blurs each, the two alternating in one process.

    .venv/bin/python bench/bench_energy_blur.py --size 256 --frames 50 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from hpcgen.generators.energy import kernels


def per_frame_ms(fn: Callable[[], object], frames: int, repeats: int) -> list[float]:
    """Process CPU time of one call, ms, for each of ``repeats`` runs of ``frames`` calls."""
    fn()  # compile / plan outside the timing
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(frames):
            fn()
        out.append(1e3 * (time.process_time() - t0) / frames)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="map side (pixels)")
    ap.add_argument("--frames", type=int, default=50, help="blurs per timed run")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per variant")
    ap.add_argument(
        "--sigmas",
        default="1,2,3,4,5,6,7,8,10,12",
        help="comma-separated blur sigmas (pixels)",
    )
    a = ap.parse_args()
    shape = (a.size, a.size)
    e = np.random.default_rng(0).random(shape, dtype=np.float32)
    tmp = np.empty(shape, np.float32)
    out = np.empty(shape, np.float32)
    print(
        f"map {a.size} x {a.size} float32, best / median of {a.repeats} runs of {a.frames} "
        f"blurs, ms per blur (process CPU time); DIRECT_BLUR_MAX_RADIUS = "
        f"{kernels.DIRECT_BLUR_MAX_RADIUS}"
    )
    print(f"{'sigma':>6} {'radius':>6} {'direct':>16} {'FFT pair':>16}  faster   used")
    for sigma in (float(s) for s in a.sigmas.split(",")):
        taps = kernels.gaussian_taps(sigma)
        radius = (len(taps) - 1) // 2
        transfer = kernels.gaussian_transfer(shape, sigma)
        direct_ms: list[float] = []
        fft_ms: list[float] = []
        for _ in range(2):  # alternate, so that a change of machine load hits both
            direct_ms += per_frame_ms(
                lambda taps=taps: kernels.blur_direct(e, taps, taps, tmp, out),
                a.frames,
                a.repeats,
            )
            fft_ms += per_frame_ms(
                lambda transfer=transfer: kernels.blur_fft(e, transfer), a.frames, a.repeats
            )
        d, f = min(direct_ms), min(fft_ms)
        used = "direct" if radius <= kernels.DIRECT_BLUR_MAX_RADIUS else "FFT"
        print(
            f"{sigma:6g} {radius:6d} {d:7.3f} / {np.median(direct_ms):6.3f} "
            f"{f:7.3f} / {np.median(fft_ms):6.3f}  {'direct' if d < f else 'FFT':6s}   {used}"
        )


if __name__ == "__main__":
    main()
