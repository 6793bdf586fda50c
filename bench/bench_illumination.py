"""Benchmark of the illumination generator. Not part of the test run.

Measures, in one process on one core, on the bundled Intelsat 901 model:

1. the whole generator (sample + compute per chunk) at level 3: samples/s and rays/s;
2. Embree alone on exactly the rays the generator cast (recorded during step 1):
   a. the raw embreex ``OCCLUDED`` call on the prepared float32 arrays,
   b. trimesh's intersector ``mesh.ray.intersects_any`` (body-frame float64 rays), the way most
      trimesh users call Embree;
   and the generator's rays/s as a fraction of each (target >= 80 % of the raw rate);
3. the seed approach: a Python loop over sun vectors calling a per-vector lit-fraction function
   (one intersector per call, one ``intersects_location`` per facet centroid, the LCAS convention
   at level 0), against the generator with ``convention = "lcas"``; and a per-vector loop over
   our own calculator at level 3 (same rays as step 1, one vector per call).

Timings: process CPU time, best of ``--repeat`` alternating runs (the machine is shared; the best
run is the least disturbed one).

    nice -n 10 .venv/bin/python bench/bench_illumination.py [--n 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from hpcgen.generators.base import Chunk, Device
from hpcgen.generators.illumination.generator import IlluminationGenerator, Params
from hpcgen.generators.illumination.lit import LitCalculator

#: CPU time of this process: on a shared machine, wall time also counts the time spent waiting
#: for a core. Everything measured here is single-threaded.
clock = time.process_time


def run_generator(gen: IlluminationGenerator, n: int, chunk_size: int) -> float:
    cpu = Device("cpu", np)
    t0 = clock()
    for k, start in enumerate(range(0, n, chunk_size)):
        chunk = Chunk(index=k, start=start, count=min(chunk_size, n - start), seed=1)
        gen.compute(gen.sample(chunk), chunk, cpu)
    return clock() - t0


def seed_lit_fractions(model, mesh: trimesh.Trimesh, sun: np.ndarray) -> dict[str, float]:
    """The seed's calculate_lit_fractions: per call a new intersector, one ray per facet."""
    intersector = RayMeshIntersector(mesh)
    tris, face = model.body_triangles()
    out = {}
    for i, name in enumerate(model.face_names):
        lit = facing = 0
        for t in tris[face == i]:
            n = np.cross(t[1] - t[0], t[2] - t[0])
            n /= np.linalg.norm(n)
            if n @ sun <= 0:
                continue
            facing += 1
            origin = t.mean(axis=0) + n * 1e-2
            _, rays, _ = intersector.intersects_location(
                origin[None], sun[None], multiple_hits=False
            )
            lit += len(rays) == 0
        out[name] = lit / facing if facing else 0.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000, help="sun vectors for the generator runs")
    ap.add_argument("--seed-n", type=int, default=300, help="sun vectors for the seed loop")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    gen = IlluminationGenerator(Params(level=3))
    chunk = IlluminationGenerator.default_chunk_size
    calc = gen.calculator()
    print(
        f"model: {len(gen.model.faces)} faces, level 3: {len(calc.tri_local) * calc.K} "
        f"sample points per sun vector; n = {args.n}, chunk = {chunk}"
    )

    # record the rays of one generator pass
    caster = calc.static_caster
    recorded: list[tuple[np.ndarray, np.ndarray]] = []
    original = caster.occluded_prepared

    def recording(o: np.ndarray, d: np.ndarray) -> np.ndarray:
        recorded.append((o.copy(), d.copy()))
        return original(o, d)

    caster.occluded_prepared = recording
    run_generator(gen, args.n, chunk)
    caster.occluded_prepared = original
    n_rays = sum(len(o) for o, _ in recorded)
    body = [
        (o.astype(np.float64) / caster.scale + caster.origin, d.astype(np.float64))
        for o, d in recorded
    ]
    tris, _ = gen.model.body_triangles()
    mesh = trimesh.Trimesh(
        tris.reshape(-1, 3), np.arange(3 * len(tris)).reshape(-1, 3), process=False
    )
    assert type(mesh.ray).__module__.endswith("ray_pyembree"), "embreex is not installed"

    t_gen, t_raw, t_trimesh = [], [], []
    for _ in range(args.repeat):
        t_gen.append(run_generator(gen, args.n, chunk))
        t0 = clock()
        for o, d in recorded:
            original(o, d)
        t_raw.append(clock() - t0)
        t0 = clock()
        for o, d in body:
            mesh.ray.intersects_any(o, d)
        t_trimesh.append(clock() - t0)
    g, r, tm = min(t_gen), min(t_raw), min(t_trimesh)
    print(f"rays cast per pass: {n_rays} ({n_rays / args.n:.0f} per sun vector)")
    print(
        f"generator (sample + compute): {args.n / g:,.0f} samples/s, {n_rays / g / 1e6:.2f} Mrays/s"
    )
    print(
        f"embree raw OCCLUDED, same rays: {n_rays / r / 1e6:.2f} Mrays/s -> generator at "
        f"{100 * r / g:.0f} %"
    )
    print(
        f"trimesh mesh.ray.intersects_any, same rays: {n_rays / tm / 1e6:.2f} Mrays/s -> "
        f"generator at {100 * tm / g:.0f} %"
    )

    # seed approach: Python loop over sun vectors, per-vector function
    sun = IlluminationGenerator(Params()).sample(Chunk(0, 0, args.seed_n, 2))["sun_vectors"]
    lcas = LitCalculator(gen.model, convention="lcas")
    t0 = clock()
    seed_values = np.array([list(seed_lit_fractions(gen.model, mesh, s).values()) for s in sun])
    t_seed = clock() - t0
    ours = lcas(sun)
    agree = float((np.abs(seed_values - ours) < 1e-12).mean())
    gen_lcas = IlluminationGenerator(Params(convention="lcas"))
    t_lcas = min(run_generator(gen_lcas, args.n, chunk) for _ in range(args.repeat))
    print(
        f"seed loop (lcas, level 0, {args.seed_n} vectors): {args.seed_n / t_seed:,.0f} "
        f"samples/s; generator lcas: {args.n / t_lcas:,.0f} samples/s -> "
        f"{(args.n / t_lcas) / (args.seed_n / t_seed):,.0f}x; values agree on "
        f"{100 * agree:.2f} % of entries"
    )
    one = LitCalculator(gen.model, level=3)
    m = min(args.n, 2000)
    loop_sun = gen.sample(Chunk(0, 0, m, 3))["sun_vectors"]
    t0 = clock()
    for s in loop_sun:
        one(s[None])
    t_loop = clock() - t0
    print(
        f"per-vector loop over our level-3 calculator ({m} vectors): {m / t_loop:,.0f} "
        f"samples/s -> batched generator {(args.n / g) / (m / t_loop):.1f}x"
    )


if __name__ == "__main__":
    main()
