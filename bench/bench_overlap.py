"""The overlapped loop against the plain one, in one invocation (not part of the tests).

    python bench/bench_overlap.py [--spec jobs/ptycho_demo.toml] [--n-samples N] [--repeats 2]
    mpiexec.mpich -n 2 python bench/bench_overlap.py ...
    mpiexec.mpich -n 2 python bench/bench_overlap.py --spec jobs/tracks_10M.toml --fsync
    mpiexec.mpich -n 2 python bench/bench_overlap.py --spec jobs/tracks_10M.toml --write-wait 1.0

Runs the spec once to warm up, then with ``RunOptions.overlap`` off and on, alternating
(repeats x 2 runs, same process, same ranks), into a temporary directory beside the repository,
and reads each file's timings (provenance ``timings_per_rank``). Per rank it prints wall and loop
seconds, the seconds in sample + compute and in write, and ``loop / max(sample + compute,
write)``: 1 is a perfect overlap, (sample + compute + write) / max(...) none (the last column).
The last line compares the overlapped loop with max(sample + compute, write) as the plain runs
measured them: in an overlapped run each part is slowed by the other.
``wall`` also counts the run's start (validation, file creation) and finish. Checks that both
files hold the same bytes.

A slower write, where the overlap matters (both modes change the write only, never the bytes):

- ``--fsync``: after every chunk's write each rank fsyncs the output file, as a file system that
  puts every write on the disk before it returns would (real I/O on this machine's disk);
- ``--write-wait S``: after every chunk's write the rank sleeps S seconds per GB it wrote, without
  holding the GIL or a core: a model of a shared file system's wait (the client blocked on the
  servers), not a measurement of one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "jobs" / "ptycho_demo.toml"))
    ap.add_argument("--n-samples", type=int, default=0, help="override the spec's n_samples")
    ap.add_argument("--chunk-size", type=int, default=0, help="override the spec's chunk_size")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--fsync", action="store_true", help="fsync the file after every chunk")
    ap.add_argument(
        "--write-wait", type=float, default=0.0, help="sleep this many s per GB written"
    )
    args = ap.parse_args()

    import h5py
    import numpy as np

    from hpcgen.engine.comm import world
    from hpcgen.engine.run import RunOptions, run
    from hpcgen.spec import RunSpec

    comm = world()
    if args.fsync or args.write_wait:
        slow_down_writes(fsync=args.fsync, wait_s_per_gb=args.write_wait)
    spec = RunSpec.load(args.spec)
    d = comm.bcast(tempfile.mkdtemp(prefix="bench-overlap-", dir=ROOT) if comm.rank == 0 else None)
    rows: list[tuple[bool, int, list[dict[str, float]]]] = []
    files: dict[bool, Path] = {}
    # rep -1: a warm-up (kernels compiled and cached, file system caches), not reported
    for rep in range(-1, args.repeats):
        for overlap in (False, True) if rep % 2 == 0 else (True, False):
            if rep < 0 and overlap:
                continue
            values = spec.to_dict()
            values["output"] = str(Path(d) / f"o{int(overlap)}-{rep}.h5")
            if args.n_samples:
                values["n_samples"] = args.n_samples
            if args.chunk_size:
                values["chunk_size"] = args.chunk_size
            s = RunSpec.from_dict(values)
            run(s, RunOptions(quiet=True, overlap=overlap, after_round=None), comm)
            files[overlap] = Path(s.output)
            if comm.rank == 0 and rep >= 0:
                with h5py.File(s.output, "r") as f:
                    prov = json.loads(f.attrs["hpcgen_provenance"])
                rows.append((overlap, rep, prov["timings_per_rank"]))
    if comm.rank != 0:
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import assert_same_data

    assert_same_data(files[False], files[True])
    n = spec.n_samples if not args.n_samples else args.n_samples
    slow = f"; fsync every chunk: {args.fsync}; write wait: {args.write_wait} s/GB"
    print(
        f"spec {args.spec}, {n:,} samples, {comm.size} rank(s){slow}; same bytes with and without"
    )
    print(
        "| overlap | run | rank | wall (s) | loop (s) | sample + compute (s) | write (s) | "
        "loop / max | wall / max | no-overlap bound |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for overlap, rep, timings in rows:
        for rank, t in enumerate(timings):
            sc, w = t["sample_s"] + t["compute_s"], t["write_s"]
            m = max(sc, w)
            print(
                f"| {'on' if overlap else 'off'} | {rep} | {rank} | {t['wall_s']:.2f} | "
                f"{t['loop_s']:.2f} | {sc:.2f} | {w:.2f} | {t['loop_s'] / m:.2f} | "
                f"{t['wall_s'] / m:.2f} | {(sc + w) / m:.2f} |"
            )
    best = {
        o: min(float(np.max([t["loop_s"] for t in tim])) for oo, _, tim in rows if oo == o)
        for o in (False, True)
    }
    # the ideal overlapped loop: the longer of the two parts, as the plain runs measured them
    # (uncontended; in an overlapped run each part is slowed by the other)
    bound = min(
        float(np.max([max(t["sample_s"] + t["compute_s"], t["write_s"]) for t in tim]))
        for o, _, tim in rows
        if not o
    )
    print(
        f"loop (slowest rank, best run): off {best[False]:.2f} s, on {best[True]:.2f} s, "
        f"x{best[False] / best[True]:.2f}; max(sample + compute, write) of the plain runs "
        f"{bound:.2f} s: on / that {best[True] / bound:.2f}"
    )
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def slow_down_writes(*, fsync: bool, wait_s_per_gb: float) -> None:
    """Wrap the engine's FileWriter.write: after the chunk's collective write, fsync the file
    (every rank, through its own descriptor: fsync flushes the file's dirty pages whoever wrote
    them) and/or sleep in proportion to the bytes this rank wrote."""
    import os
    import time

    from hpcgen.io.writer import FileWriter

    plain = FileWriter.write

    def write(self: FileWriter, k: int | None, data: dict | None) -> None:
        plain(self, k, data)
        if data is None:
            return
        if fsync:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if wait_s_per_gb:
            nbytes = sum(getattr(v, "nbytes", 0) for v in data.values())
            time.sleep(wait_s_per_gb * nbytes / 1e9)

    FileWriter.write = write  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
