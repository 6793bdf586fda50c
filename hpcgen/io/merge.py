"""``hpcgen merge SHARD_DIR --out FILE``: join per-job shard files into one file (or a VDS).

Every shard is checked before anything is written: readable, same data identity (spec hash),
complete done bitmap, dataset lengths matching its chunk range, every chunk's rows matching their
stored checksums (a corrupt shard is refused, naming chunk and field, even with
``--allow-partial``); then the shards' chunk ranges must
tile [0, n_chunks) exactly: gaps, overlaps and duplicates are refused with a report naming the
ranges. ``--allow-partial`` writes what exists and records the missing chunk ranges in the file
(attribute ``hpcgen_missing_chunk_ranges``; their done flags stay 0, so verify reports them).

The merged file's data equals, byte for byte, a single run of the same spec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcgen.engine.provenance import base_record, now_iso
from hpcgen.errors import OutputExistsError, UserError
from hpcgen.io import checksums, layout
from hpcgen.io.paths import output_parent
from hpcgen.io.sidecar import write_sidecar
from hpcgen.io.writer import build_vds, check_vds_sources, create_layout
from hpcgen.spec import RunSpec


@dataclass
class Shard:
    path: Path
    spec: RunSpec | None = None
    data_hash: str = ""
    inputs: dict[str, str] = field(default_factory=dict)  # {input file: SHA-256}
    chunk_range: tuple[int, int] = (0, 0)
    problem: str = ""  # why this shard cannot be used ("" = fine)


class MergeError(UserError):
    """Refused merge. The message starts with a one-line summary; the report follows."""


def inspect_shard(path: Path) -> Shard:
    s = Shard(path)
    try:
        with h5py.File(path, "r") as f:
            s.spec = RunSpec.from_dict(json.loads(f.attrs[layout.ATTR_SPEC]))
            s.data_hash = str(f.attrs[layout.ATTR_DATA_HASH])
            a, b = (int(x) for x in f.attrs[layout.ATTR_CHUNK_RANGE])
            s.chunk_range = (a, b)
            s.inputs = json.loads(f.attrs.get(layout.ATTR_INPUTS, "{}"))
            done = f[layout.DONE][...]
            if not done.all():
                bad = np.flatnonzero(done == 0) + s.chunk_range[0]
                s.problem = f"incomplete: {len(bad)} chunk(s) not done, first {int(bad[0])}"
                return s
            r0, r1 = layout.rows_of(s.chunk_range, s.spec.chunk_size, s.spec.n_samples)
            for name in _field_names(f):
                if f[name].shape[0] != r1 - r0:
                    s.problem = f"truncated: {name} has {f[name].shape[0]} rows, expected {r1 - r0}"
                    return s
                f[name][r1 - r0 - 1]  # the last row must be readable
            sums = checksums.check_file(f, s.chunk_range, s.spec.chunk_size, r1 - r0, done)
            if sums.mismatches:
                s.problem = f"corrupt: checksum mismatch in {sums.describe()}"
    except (OSError, KeyError, ValueError) as e:
        s.problem = f"unreadable or not an hpcgen shard ({type(e).__name__}: {e})"
    return s


def _field_names(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(
        lambda n, o: (
            names.append(n) if isinstance(o, h5py.Dataset) and "sample_axis" in o.attrs else None
        )
    )
    return names


def find_shards(shard_dir: Path) -> list[Path]:
    if not shard_dir.is_dir():
        raise UserError(f"not a directory: {shard_dir}")
    paths = sorted(p for p in shard_dir.glob("*.h5") if p.is_file())
    if not paths:
        raise UserError(f"no shard files (*.h5) in {shard_dir}")
    return paths


def coverage(
    ranges: list[tuple[int, int, str]], n_chunks: int
) -> tuple[list[str], list[tuple[int, int]]]:
    """Problems (overlaps, duplicates) and gaps of chunk ranges against [0, n_chunks)."""
    problems: list[str] = []
    gaps: list[tuple[int, int]] = []
    pos = 0
    prev: tuple[int, int, str] | None = None
    for a, b, name in sorted(ranges):
        if prev is not None and (a, b) == prev[:2]:
            problems.append(f"duplicate: chunks [{a},{b}) in both {prev[2]} and {name}")
        elif prev is not None and a < pos:
            problems.append(f"overlap: chunks [{a},{min(b, pos)}) in both {prev[2]} and {name}")
        elif a > pos:
            gaps.append((pos, a))
        if a < 0 or b > n_chunks:  # a negative start: a damaged chunk-range attribute
            problems.append(
                f"out of range: {name} holds chunks [{a},{b}) of a {n_chunks}-chunk plan"
            )
        pos = max(pos, b)
        prev = (a, b, name)
    if pos < n_chunks:
        gaps.append((pos, n_chunks))
    return problems, gaps


def plan_merge(
    shard_dir: Path, allow_partial: bool
) -> tuple[RunSpec, list[Shard], list[tuple[int, int]]]:
    shards = [inspect_shard(p) for p in find_shards(shard_dir)]
    good = [s for s in shards if not s.problem]
    report: list[str] = []
    if not good:
        raise MergeError(
            f"no usable shard in {shard_dir}: "
            + "; ".join(f"{s.path.name}: {s.problem}" for s in shards)
        )
    # the reference spec: the most common data identity among readable shards
    hashes = [s.data_hash for s in good]
    ref_hash = max(set(hashes), key=hashes.count)
    ref = next(s for s in good if s.data_hash == ref_hash)
    for s in shards:
        if not s.problem and s.data_hash != ref_hash:
            s.problem = f"another spec (data hash {s.data_hash[:12]}, expected {ref_hash[:12]})"
    bad = [s for s in shards if s.problem]
    usable = [s for s in shards if not s.problem]
    assert ref.spec is not None  # a shard without a problem had its spec read
    n_chunks = ref.spec.n_chunks
    problems, gaps = coverage([(*s.chunk_range, s.path.name) for s in usable], n_chunks)
    for s in bad:
        report.append(f"{s.path.name}: {s.problem}")
    report += problems
    report += [f"gap: chunks [{a},{b}) missing" for a, b in gaps]
    # a corrupt or foreign shard is refused even with --allow-partial: it is not "missing"
    refuse = bool(problems) or any(s.problem.startswith(("another spec", "corrupt")) for s in bad)
    if not allow_partial:
        refuse = refuse or bool(bad) or bool(gaps)
    if refuse:
        head = f"refusing to merge {shard_dir}: {len(report)} problem(s)"
        raise MergeError(head + "\n" + "\n".join("  " + line for line in report))
    return ref.spec, sorted(usable, key=lambda s: s.chunk_range), gaps


def merge(
    shard_dir: Path,
    out: Path,
    *,
    virtual: bool = False,
    allow_partial: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; use --overwrite to replace it")
    spec, shards, gaps = plan_merge(shard_dir, allow_partial)
    with output_parent(out):
        gen = spec.make_generator()
        identity = {"data_hash": shards[0].data_hash, "inputs": shards[0].inputs}
        prov = base_record(spec.to_dict(), [], 1, "none", "merge-virtual" if virtual else "merge")
        prov["start_time"] = now_iso()
        prov["merged_from"] = [
            {"file": s.path.name, "chunk_range": list(s.chunk_range)} for s in shards
        ]
        prov["missing_chunk_ranges"] = [list(g) for g in gaps]
        if virtual:
            prov["end_time"] = now_iso()
            build_vds(out, spec, gen, [(s.path, s.chunk_range) for s in shards], prov, gaps)
            missing = check_vds_sources(out)
            if missing:
                raise UserError(f"{out}: virtual sources missing after merge: {', '.join(missing)}")
        else:
            _merge_copy(out, spec, gen, shards, gaps, prov, identity)
        write_sidecar(out, spec, gen, prov, shards[0].data_hash)
    return {"output": str(out), "shards": len(shards), "missing": gaps}


def _merge_copy(
    out: Path,
    spec: RunSpec,
    gen: Any,
    shards: list[Shard],
    gaps: list[tuple[int, int]],
    prov: dict[str, Any],
    identity: dict[str, Any],
) -> None:
    """Copy chunk by chunk; the checksums are those of the rows copied (each shard's were
    checked against its rows before anything was written)."""
    tmp = out.with_name(out.name + ".partial")
    names = [f.name for f in gen.fields()]
    with h5py.File(tmp, "w") as f:
        create_layout(f, spec, gen, (0, spec.n_chunks), prov, **identity)
        done = np.zeros(spec.n_chunks, dtype="u1")
        for s in shards:
            r0, r1 = layout.rows_of(s.chunk_range, spec.chunk_size, spec.n_samples)
            sums = f[layout.CHECKSUMS]
            with h5py.File(s.path, "r") as src:
                for j, name in enumerate(names):
                    for a in range(0, r1 - r0, spec.chunk_size):
                        b = min(a + spec.chunk_size, r1 - r0)
                        rows = src[name][a:b]
                        f[name][r0 + a : r0 + b] = rows
                        sums[s.chunk_range[0] + a // spec.chunk_size, j] = checksums.digest(rows)
            done[s.chunk_range[0] : s.chunk_range[1]] = 1
        f[layout.DONE][...] = done
        if gaps:
            f.attrs[layout.ATTR_MISSING] = np.array(gaps, dtype=np.int64)
        prov["end_time"] = now_iso()
        f.attrs[layout.ATTR_PROVENANCE] = json.dumps(prov, sort_keys=True)
    tmp.replace(out)
