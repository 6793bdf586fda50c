"""Where the compiled tracks kernel spends its time in the map's "cell" mode: a CPU-clock profile.

    perf record -e cpu-clock -F 2000 -o /tmp/cell.perf -- \\
        .venv/bin/python bench/profile_cell.py run --dump /tmp/cell-code
    .venv/bin/python bench/profile_cell.py report --perf /tmp/cell.perf --dump /tmp/cell-code

``run`` propagates the bench's standard tracks (bench_tracks.standard_tracks, LHCb's settings)
through the synthetic map with ``grid_steps = "cell"`` for ``--repeats`` passes and writes the
kernel's machine code and load address to ``--dump``. perf cannot name numba's JIT code, so
``report`` places every sample in that code (``perf script``, ``objdump``) and cuts the kernel at
landmark instructions: ``vroundpd`` (an axis's cell from a multiply: the plane searches),
``vcvtps2pd`` (the map's float32 corner values widened: the cell's corners), ``vsqrtpd`` (the
norm of a stage's derivatives: one per stage and half-vector), ``vdivpd``. Each region between
two landmarks (a run of one kind counts once) gets its share of the kernel's samples. Which
source lines a region holds is read off the disassembly (``--asm``); docs/benchmarks.md has one
reading.
Needs perf (linux-perf) and objdump (binutils); ``--scheme`` another scheme (``rk4``: fixed steps
of 1000 mm, one per cell).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LANDMARKS = ("vroundpd", "vcvtps2pd", "vsqrtpd", "vdivpd")
#: bytes of machine code dumped from the kernel's entry (the compiled kernel is ~80 KB)
CODE_BYTES = 400_000
#: landmarks of one kind closer than this (bytes) open one region
MERGE_BYTES = 0x100


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_tracks as bt

    from hpcgen.generators.tracks import kernels_numba as kn
    from hpcgen.generators.tracks.propagate import Propagator

    # step: the fixed scheme's longest step (rk4: one step per cell); adaptive ones ignore it
    st = bt.lhcb(args.scheme, grid_steps="cell", step=1000.0)
    prop = Propagator(bt.synth_map_field(), st, "numba")
    state, z0, z1 = bt.standard_tracks(args.n)
    prop(state[:100], z0[:100], z1[:100])  # compile or load from the cache
    best = float("inf")
    for _ in range(args.repeats):
        c = time.process_time()
        _, _, nsteps = prop(state, z0, z1)
        best = min(best, time.process_time() - c)
    print(f"cell, {args.scheme}: {args.n / best:,.0f} tracks/s/core (best of {args.repeats}), "
          f"{nsteps.mean():.1f} steps a track")  # fmt: skip
    out = Path(args.dump)
    out.mkdir(parents=True, exist_ok=True)
    (cres,) = kn.kernel_for(args.scheme).overloads.values()
    addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
    (out / "kernel.bin").write_bytes(ctypes.string_at(addr, CODE_BYTES))
    (out / "kernel.json").write_text(json.dumps({"address": addr, "bytes": CODE_BYTES}))


def report(args: argparse.Namespace) -> None:
    dump = Path(args.dump)
    meta = json.loads((dump / "kernel.json").read_text())
    base, size = meta["address"], meta["bytes"]
    ips = subprocess.run(
        ["perf", "script", "-i", args.perf, "-F", "ip"], capture_output=True, text=True, check=True
    ).stdout.split()
    counts: dict[int, int] = {}
    for ip in ips:
        off = int(ip, 16) - base
        if 0 <= off < size:
            counts[off] = counts.get(off, 0) + 1
    inside = sum(counts.values())
    print(f"{len(ips)} samples, {inside} in the kernel ({100 * inside / max(len(ips), 1):.0f} %)")
    asm = subprocess.run(
        ["objdump", "-D", "-b", "binary", "-mi386:x86-64", str(dump / "kernel.bin")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if args.asm:
        Path(args.asm).write_text(asm)
    insn = re.compile(r"\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(\S+)")
    marks: list[tuple[int, str]] = []
    last = 0
    for line in asm.splitlines():
        m = insn.match(line)
        if not m or m.group(2) not in LANDMARKS:
            continue
        off, kind = int(m.group(1), 16), m.group(2)
        # one landmark for a run of its kind (the two half-vectors of one operation, a block
        # of conversions): a region starts at the first
        if not marks or marks[-1][1] != kind or off - last > MERGE_BYTES:
            marks.append((off, kind))
        last = off
    hot = [o for o in counts if counts[o] > 0]
    if not hot or not marks:
        sys.exit("no samples in the kernel: was `run` recorded under perf?")
    edges = [0] + [o for o, _ in marks] + [size]
    kinds = ["(start)"] + [k for _, k in marks]
    print("| from | to | opens with | share of the kernel's samples |\n|---|---|---|---:|")
    for a, b, kind in zip(edges[:-1], edges[1:], kinds):
        share = sum(v for o, v in counts.items() if a <= o < b) / inside
        if share >= args.min_share:
            print(f"| {a:#x} | {b:#x} | {kind} | {100 * share:.1f} % |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the workload (run it under perf record)")
    r.add_argument("--dump", required=True, help="directory for the kernel's code")
    r.add_argument("--n", type=int, default=50_000)
    r.add_argument("--repeats", type=int, default=15)
    r.add_argument("--scheme", default="cashkarp")
    p = sub.add_parser("report", help="the samples per region of the kernel")
    p.add_argument("--perf", required=True, help="perf.data of the run")
    p.add_argument("--dump", required=True)
    p.add_argument("--asm", help="also write the kernel's disassembly here")
    p.add_argument("--min-share", type=float, default=0.005)
    args = ap.parse_args()
    (run if args.cmd == "run" else report)(args)


if __name__ == "__main__":
    main()
