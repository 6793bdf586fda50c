"""Benchmark of the atoms generator on one core: images per second, measured in one run.

- baseline: a pure-Python reimplementation of the source workflow's approach (one Python call per
  image, numpy's Generator called for every draw, the image and its blob growth in Python lists,
  ``np.array`` over the collected list at the end), drawing the same kinds of shapes from the same
  catalogue. The source reported about 543 images/s for its own code;
- kernel: the numba kernel alone (``kernel.render_images``) for pre-drawn per-image seeds;
- sample: ``AtomsGenerator.sample`` per chunk (seed draws + kernel + split), what ``hpcgen run``
  computes per chunk before writing;
- dataset (with --dataset): the whole ``hpcgen dataset atoms`` path in-process (generation,
  spooling, deflate-compressed npz, report, metadata) into a temporary directory.

    nice -n 10 .venv/bin/python bench/bench_atoms.py [--images 200000] [--baseline 3000]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hpcgen.generators.atoms import cli  # noqa: E402
from hpcgen.generators.atoms.generator import AtomsGenerator  # noqa: E402
from hpcgen.generators.atoms.kernel import render_images  # noqa: E402
from hpcgen.generators.atoms.params import AtomsParams  # noqa: E402
from hpcgen.generators.atoms.shapes import build_catalogue  # noqa: E402
from hpcgen.generators.base import Chunk  # noqa: E402

# --- the baseline: pure Python, one image per call -----------------------------------------------


def python_image(rng: np.random.Generator, p: AtomsParams, cat: dict) -> tuple[np.ndarray, int]:
    g = p.grid_size
    grid = [[0] * g for _ in range(g)]
    placed = 0
    for _ in range(int(rng.integers(p.min_objects, p.max_objects + 1))):
        f = int(np.searchsorted(cat["cum"], rng.random(), side="right"))
        f = min(f, len(cat["cum"]) - 1)
        group = cat["groups"][f][int(rng.integers(len(cat["groups"][f])))]
        size, templates = group
        colour = int(rng.integers(1, 10))
        cells = None
        for _attempt in range(p.max_attempts):
            if not templates:  # blob: grow from a random free cell
                y, x = int(rng.integers(g)), int(rng.integers(g))
                if grid[y][x]:
                    continue
                blob = [(y, x)]
                members = {(y, x)}
                while len(blob) < size:
                    frontier, weights = [], []
                    for by, bx in blob:
                        for ny, nx in ((by + 1, bx), (by - 1, bx), (by, bx + 1), (by, bx - 1)):
                            c = (ny, nx)
                            if (
                                0 <= ny < g
                                and 0 <= nx < g
                                and not grid[ny][nx]
                                and c not in members
                                and c not in frontier
                            ):
                                nb = sum(
                                    (ny + dy, nx + dx) in members
                                    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))
                                )
                                frontier.append(c)
                                weights.append(p.blob_weight if nb >= 2 else 1.0)
                    if not frontier:
                        break
                    w = np.array(weights)
                    c = frontier[int(rng.choice(len(frontier), p=w / w.sum()))]
                    blob.append(c)
                    members.add(c)
                if len(blob) == size:
                    cells = blob
                    break
            else:
                shape = templates[int(rng.integers(len(templates)))]
                h = max(y for y, _ in shape) + 1
                w = max(x for _, x in shape) + 1
                y0, x0 = int(rng.integers(g - h + 1)), int(rng.integers(g - w + 1))
                if all(not grid[y0 + y][x0 + x] for y, x in shape):
                    cells = [(y0 + y, x0 + x) for y, x in shape]
                    break
        if cells is None:
            continue
        placed += 1
        for y, x in cells:
            grid[y][x] = colour
    return np.array(grid), placed


def python_corpus(n: int, seed: int, p: AtomsParams) -> tuple[np.ndarray, np.ndarray]:
    c = build_catalogue(p)
    cat = {"cum": c.family_cum.tolist(), "groups": []}
    for f in range(len(c.family_names)):
        groups = []
        for s in range(c.family_group[f], c.family_group[f + 1]):
            templates = [
                list(
                    zip(
                        c.cell_y[c.tpl_cell[t] : c.tpl_cell[t + 1]].tolist(),
                        c.cell_x[c.tpl_cell[t] : c.tpl_cell[t + 1]].tolist(),
                    )
                )
                for t in range(c.group_tpl[s], c.group_tpl[s + 1])
            ]
            groups.append((int(c.group_size[s]), templates))
        cat["groups"].append(groups)
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        img, label = python_image(rng, p, cat)
        images.append(img)
        labels.append(label)
    return np.array(images, dtype=np.uint8), np.array(labels, dtype=np.uint8)


# --- timing --------------------------------------------------------------------------------------


def best_rate(fn: Callable[[], object], items: int, repeats: int) -> float:
    fn()  # warm-up: numba cache load, first-touch of buffers
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return items / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200_000, help="images per timed kernel run")
    ap.add_argument("--baseline", type=int, default=3_000, help="images for the Python baseline")
    ap.add_argument("--chunk", type=int, default=20_000, help="chunk size for sample()")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--dataset",
        type=int,
        default=0,
        help="also time `hpcgen dataset atoms` for this many images",
    )
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()

    p = AtomsParams()
    gen = AtomsGenerator(p)
    seeds = np.random.default_rng(1).integers(0, 2**63, args.images, dtype=np.uint64)
    res: dict[str, float | int | str] = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "images": args.images,
        "baseline_images": args.baseline,
    }
    res["baseline_img_s"] = best_rate(lambda: python_corpus(args.baseline, 1, p), args.baseline, 1)
    res["kernel_img_s"] = best_rate(lambda: render_images(p, seeds), args.images, args.repeats)
    n_chunks = -(-args.images // args.chunk)

    def sample_all() -> None:
        for k in range(n_chunks):
            start = k * args.chunk
            gen.sample(Chunk(k, start, min(args.chunk, args.images - start), seed=1))

    res["sample_img_s"] = best_rate(sample_all, args.images, args.repeats)
    if args.dataset:

        def write_dataset() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "ds"
                out.mkdir()
                cli.write(out, p, args.dataset, 1, args.chunk)

        res["dataset_images"] = args.dataset
        res["dataset_img_s"] = best_rate(write_dataset, args.dataset, 1)
    res["kernel_vs_baseline"] = res["kernel_img_s"] / res["baseline_img_s"]
    for k, v in res.items():
        print(f"{k:22s} {v:,.1f}" if isinstance(v, float) else f"{k:22s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
