"""Engine benchmarks (not part of the tests). Results go to docs/benchmarks.md.

python bench/bench_engine.py tracks [--spec jobs/tracks_demo.toml]
    tracks/s of `hpcgen run` for 1 and 2 ranks on the same spec, in one invocation, with the
    per-rank split of time into sampling, compute and write (from the file's provenance).

mpiexec.mpich -n 2 python bench/bench_engine.py io [--mb-per-chunk 27] [--rounds 8]
    write throughput of the engine's HDF5 path (FileWriter: collective MPI-IO writes, flush,
    done flags) against a plain binary write of the same bytes (os.pwrite at the same offsets)
    on the same disk, both ending with fsync, measured in one run, alternating the order.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def bench_tracks(spec: str, ranks: list[int]) -> None:
    import h5py

    hpcgen = [sys.executable, "-m", "hpcgen"]
    with tempfile.TemporaryDirectory(dir=ROOT) as d:
        rows = []
        for n in ranks:
            out = Path(d) / f"r{n}.h5"
            cmd = [
                "mpiexec.mpich",
                "-n",
                str(n),
                *hpcgen,
                "run",
                spec,
                "--out",
                str(out),
                "--quiet",
                "--yes",
            ]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT)
            wall = time.perf_counter() - t0
            with h5py.File(out) as f:
                prov = json.loads(f.attrs["hpcgen_provenance"])
                n_samples = int(json.loads(f.attrs["hpcgen_spec"])["n_samples"])
            tim = prov["timings_per_rank"]
            rows.append((n, n_samples, wall, tim))
        print(f"spec {spec}; load average before: {os.getloadavg()[0]:.2f}")
        print(
            "| ranks | samples | wall (s, incl. start-up) | samples/s | samples/s per rank | "
            "sample / compute / write (s, rank 0) |"
        )
        print("|---|---|---|---|---|---|")
        for n, ns, wall, tim in rows:
            t0 = tim[0]
            print(
                f"| {n} | {ns:,} | {wall:.2f} | {ns / wall:,.0f} | {ns / wall / n:,.0f} | "
                f"{t0['sample_s']:.2f} / {t0['compute_s']:.2f} / {t0['write_s']:.2f} |"
            )


def bench_io(mb_per_chunk: float, rounds: int, repeats: int) -> None:
    from mpi4py import MPI

    from hpcgen.engine.comm import bcast_result
    from hpcgen.engine.provenance import base_record
    from hpcgen.io.writer import FileWriter
    from hpcgen.spec import RunSpec

    comm = MPI.COMM_WORLD
    # tracks rows are ~109 B; pick the chunk size that gives about mb_per_chunk per write round
    chunk_size = int(mb_per_chunk * 1e6 / 109)
    n_samples = chunk_size * comm.size * rounds
    tmpdir = bcast_result(comm, lambda: tempfile.mkdtemp(dir=ROOT))
    spec = RunSpec.from_dict(
        {
            "generator": "tracks",
            "n_samples": n_samples,
            "chunk_size": chunk_size,
            "output": f"{tmpdir}/io.h5",
        }
    )
    gen = spec.make_generator()
    rng = np.random.default_rng(comm.rank)
    # random rows for every field of the generator (tracks: X, Y, P, Z, status, n_steps)
    data = {}
    for fs in gen.fields():
        dt = fs.resolved_dtype(spec.dtype)
        data[fs.name] = (rng.random((chunk_size, *fs.shape)) * 100).astype(dt)
    row_bytes = sum(a[0].nbytes for a in data.values())
    nbytes = n_samples * row_bytes
    prov = bcast_result(comm, lambda: base_record(spec.to_dict(), [], comm.size, "cpu", "mpio"))

    def hdf5() -> float:
        comm.Barrier()
        t0 = time.perf_counter()
        w = FileWriter(Path(spec.output), spec, gen, (0, spec.n_chunks), comm, "create", prov)
        for r in range(rounds):
            w.write(r * comm.size + comm.rank, data)
        w.finish(prov)
        fd = os.open(spec.output, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        comm.Barrier()
        dt = time.perf_counter() - t0
        if comm.rank == 0:
            os.unlink(spec.output)
        return dt

    def raw() -> float:
        path = f"{tmpdir}/raw.bin"
        comm.Barrier()
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        for r in range(rounds):
            k = r * comm.size + comm.rank
            off = k * chunk_size * row_bytes
            for name in data:
                buf = data[name].tobytes()
                os.pwrite(fd, buf, off)
                off += len(buf)
        os.fsync(fd)
        os.close(fd)
        comm.Barrier()
        dt = time.perf_counter() - t0
        if comm.rank == 0:
            os.unlink(path)
        return dt

    results = {"hdf5": [], "raw": []}
    for i in range(repeats):
        order = (("hdf5", hdf5), ("raw", raw)) if i % 2 == 0 else (("raw", raw), ("hdf5", hdf5))
        for name, fn in order:
            results[name].append(fn())
    if comm.rank == 0:
        h, r = np.median(results["hdf5"]), np.median(results["raw"])
        print(
            f"ranks {comm.size}, {nbytes / 1e6:.0f} MB in {rounds} collective rounds of "
            f"{mb_per_chunk:.0f} MB per rank; median of {repeats}; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        print("| ranks | MB per rank per round | total MB | HDF5 MB/s | raw MB/s | ratio |")
        print("|---|---|---|---|---|---|")
        mb = nbytes / 1e6
        print(
            f"| {comm.size} | {mb_per_chunk:.0f} | {mb:.0f} | {mb / h:,.0f} | {mb / r:,.0f} | "
            f"{r / h:.2f} |"
        )
        os.rmdir(tmpdir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("tracks")
    t.add_argument("--spec", default="jobs/tracks_demo.toml")
    t.add_argument("--ranks", default="1,2")
    io = sub.add_parser("io")
    io.add_argument("--mb-per-chunk", type=float, default=27.0)
    io.add_argument("--rounds", type=int, default=8)
    io.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.what == "tracks":
        bench_tracks(a.spec, [int(x) for x in a.ranks.split(",")])
    else:
        bench_io(a.mb_per_chunk, a.rounds, a.repeats)


if __name__ == "__main__":
    main()
