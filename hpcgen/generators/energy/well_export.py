"""``hpcgen export FILE --format well --out DIR``: energy files as a dataset of The Well.

The tree The Well's ``WellDataset(path=DIR, well_split_name=...)`` reads::

    DIR/stats.yaml                      normalisation statistics of the train split
    DIR/data/train/<file stem>.hdf5     the first 80 % of each file's trajectories
    DIR/data/valid/<file stem>.hdf5     the next 10 %
    DIR/data/test/<file stem>.hdf5      the last 10 %

Split by trajectory, contiguous and deterministic: the trajectories of a file are independent
draws (one random stream per chunk), so their order carries no meaning. valid and test take
``floor(f * n + 1/2)`` trajectories each, at least one when their fraction is above 0; train takes
the rest and must keep at least one.

Every output file is a plain HDF5 file in The Well's layout: the data are copied, block by block
(about :data:`BLOCK_BYTES` of trajectories in memory at a time), never referenced -- The Well opens
files through fsspec file objects, and HDF5 cannot follow a virtual dataset (the shards route's
``merge --virtual``) from such an object. Constant scalars are written 0-d (The Well's ``to_xarray``
gives them no dimension), whatever the source held. Root attributes are kept except the engine's
run description (``hpcgen_spec``, ``hpcgen_chunk_range``: the file is no longer a run's rows);
``n_trajectories`` is the split's count and ``hpcgen_export`` (JSON) names the source file, its row
range and the split. The engine's bookkeeping (done flags, checksums) is not part of the file's
view, so it is not copied.

stats.yaml holds, for every field of ``t0_fields`` (here ``energy``), what The Well's
``ZScoreNormalization`` (``mean``, ``std``, ``mean_delta``, ``std_delta``) and
``RMSNormalization`` (``rms``, ``rms_delta``) read: ``stats[key][field]``, one float per scalar
field. Values are over every pixel of every frame of the train split, deltas over the differences
of consecutive frames of a trajectory (stride 1), in float64; std is the population standard
deviation and rms = sqrt(mean of squares).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from hpcgen.errors import UserError
from hpcgen.generators.base import FileView, Node
from hpcgen.generators.energy.reader import RunningStats
from hpcgen.io import layout
from hpcgen.io.paths import output_parent

SPLITS = ("train", "valid", "test")
#: train, valid, test
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
STATS = "stats.yaml"
#: bytes of trajectories read and written at a time (float64 statistics take a few times more)
BLOCK_BYTES = 32 * 2**20
#: root attributes that describe the source run, not an exported split
DROPPED_ROOT_ATTRS = (layout.ATTR_SPEC, layout.ATTR_CHUNK_RANGE, layout.ATTR_MISSING)
EXPORT_ATTR = "hpcgen_export"
FIELD_GROUP = "t0_fields"
STAT_KEYS = ("mean", "mean_delta", "rms", "rms_delta", "std", "std_delta")


# --- splits ---------------------------------------------------------------------------------------
def parse_fractions(value: str | Sequence[float] | None) -> tuple[float, float, float]:
    """Train, valid and test fractions from "0.8,0.1,0.1" (or a sequence; None: 80/10/10).
    Each in [0, 1], train above 0, summing to 1."""
    if value is None:
        return DEFAULT_FRACTIONS
    try:
        parts = value.split(",") if isinstance(value, str) else list(value)
        f = tuple(float(x) for x in parts)
    except (TypeError, ValueError):
        raise UserError(
            f"split fractions must be three numbers like 0.8,0.1,0.1, got {value!r}"
        ) from None
    if len(f) != 3 or not all(0.0 <= x <= 1.0 for x in f) or f[0] <= 0:
        raise UserError(f"split fractions must be three numbers in [0, 1], train > 0: {value!r}")
    if abs(sum(f) - 1.0) > 1e-9:
        raise UserError(f"split fractions must add up to 1, got {value!r} (sum {sum(f):g})")
    return (f[0], f[1], f[2])


def split_rows(
    n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, tuple[int, int]]:
    """Contiguous row ranges [a, b) of train, valid and test for a file of ``n`` trajectories
    (splits of fraction 0 are left out)."""
    counts = {}
    for name, f in zip(SPLITS[1:], fractions[1:]):
        if f > 0:
            counts[name] = max(1, math.floor(f * n + 0.5))
    n_train = n - sum(counts.values())
    if n_train < 1:
        need = 1 + len(counts)
        raise UserError(
            f"{n} trajectories cannot be split {'/'.join(f'{x:g}' for x in fractions)}: "
            f"every split needs at least one, so at least {need}"
        )
    out = {"train": (0, n_train)}
    start = n_train
    for name, c in counts.items():
        out[name] = (start, start + c)
        start += c
    return out


# --- statistics -----------------------------------------------------------------------------------
class FieldStats:
    """Running statistics of one field's values and of its consecutive-frame differences."""

    def __init__(self) -> None:
        self.values = RunningStats()
        self.deltas = RunningStats()

    def add(self, block: np.ndarray) -> None:
        """``block``: (trajectories, T, ...) rows of a time-varying field."""
        x = np.asarray(block, np.float64)
        self.values.add(x)
        self.deltas.add(np.diff(x, axis=1))

    def as_dict(self) -> dict[str, float]:
        out = {}
        for suffix, st in (("", self.values), ("_delta", self.deltas)):
            var = max(st.variance, 0.0)
            out[f"mean{suffix}"] = float(st.mean)
            out[f"std{suffix}"] = math.sqrt(var)
            out[f"rms{suffix}"] = math.sqrt(var + st.mean**2)
        return out


def stats_document(stats: Mapping[str, FieldStats]) -> dict[str, dict[str, float]]:
    """{key: {field: value}}, the structure of The Well's stats.yaml."""
    per_field = {name: s.as_dict() for name, s in stats.items()}
    return {key: {name: d[key] for name, d in per_field.items()} for key in STAT_KEYS}


# --- copying --------------------------------------------------------------------------------------
def _attrs(src: Mapping[str, Any], dst: h5py.AttributeManager, drop: Sequence[str] = ()) -> None:
    for k, v in src.items():
        if k not in drop:
            dst[k] = v


def _strs(v: Any) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(v)]


def _is_row_dataset(d: Node) -> bool:
    """The engine marks every per-sample dataset with sample_axis = 0."""
    return "sample_axis" in d.attrs


def _is_constant_scalar(name: str, d: Node) -> bool:
    a = d.attrs
    return name.startswith("scalars/") and not a.get("sample_varying") and not a.get("time_varying")


def _walk(src: FileView, group: str = "") -> list[Node]:
    """Every group and dataset below ``group``, depth first, members in name order (the order
    of h5py's ``visititems``)."""
    node = src.node(group)
    out: list[Node] = []
    for name in node.children if node is not None else ():
        child = src.node(f"{group}/{name}" if group else name)
        if child is None:
            continue
        out.append(child)
        if child.kind == "group":
            out += _walk(src, child.path)
    return out


def _layout(src: FileView, dst: h5py.File) -> list[Node]:
    """Copy every group and attribute and every dataset without a sample axis (constant scalars
    made 0-d); create the per-sample datasets empty. Returns the per-sample datasets."""
    rows: list[Node] = []
    for obj in _walk(src):
        if obj.kind == "group":
            _attrs(obj.attrs, dst.require_group(obj.path).attrs)
            continue
        if _is_row_dataset(obj):
            rows.append(obj)
            continue
        data = src.static(obj.path)
        if _is_constant_scalar(obj.path, obj):
            data = np.asarray(data).reshape(())
        d = dst.create_dataset(obj.path, data=data)
        _attrs(obj.attrs, d.attrs)
    return rows


def _write_split(
    src: FileView,
    split: str,
    rows: tuple[int, int],
    path: Path,
    stats: dict[str, FieldStats] | None,
) -> None:
    a, b = rows
    with h5py.File(path, "w") as dst:
        _attrs(src.attrs, dst.attrs, DROPPED_ROOT_ATTRS)
        dst.attrs["n_trajectories"] = b - a
        dst.attrs[EXPORT_ATTR] = json.dumps(
            {"source": src.path.name, "rows": [a, b], "split": split}, sort_keys=True
        )
        row_sets = _layout(src, dst)
        for s in row_sets:
            d = dst.create_dataset(s.path, shape=(b - a, *s.shape[1:]), dtype=s.dtype)
            _attrs(s.attrs, d.attrs)
            d.attrs["first_sample"] = int(s.attrs.get("first_sample", 0)) + a
        tracked = {f"{FIELD_GROUP}/{f}": f for f in stats or {}}
        row_bytes = sum(np.dtype(s.dtype).itemsize * math.prod(s.shape[1:]) for s in row_sets)
        block = max(1, BLOCK_BYTES // max(row_bytes, 1))
        for start in range(a, b, block):
            stop = min(start + block, b)
            for s in row_sets:
                values = src.read(s.path, slice(start, stop))
                dst[s.path][start - a : stop - a] = values
                if stats is not None and s.path in tracked:
                    stats[tracked[s.path]].add(values)


def _t0_fields(src: FileView) -> list[str]:
    g = src.node(FIELD_GROUP)
    return _strs(g.attrs.get("field_names", [])) if g is not None and g.kind == "group" else []


def _energy_shape(src: FileView) -> tuple[int, ...]:
    d = src.node(f"{FIELD_GROUP}/energy")
    if d is None:
        raise UserError(f"{src.path}: no {FIELD_GROUP}/energy dataset")
    return d.shape


def _check_sources(readers: Sequence[FileView]) -> None:
    """Energy files, complete, one dataset name and map size (WellDataset refuses a split
    directory mixing them), distinct file names."""
    if not readers:
        raise UserError("no files to export")
    names, sizes, stems = set(), set(), set()
    for r in readers:
        if r.spec.generator != "energy":
            raise UserError(f"{r.path}: --format well takes energy files, not {r.spec.generator}")
        done = r.done
        if not done.all():
            raise UserError(
                f"{r.path}: incomplete ({int(done.sum())} of {done.size} chunks written); "
                "finish the run first"
            )
        names.add(str(r.attrs["dataset_name"]))
        sizes.add(_energy_shape(r)[2:])
        if r.path.stem in stems:
            raise UserError(f"two input files named {r.path.stem}: rename one")
        stems.add(r.path.stem)
    if len(names) > 1 or len(sizes) > 1:
        raise UserError(
            "The Well reads one dataset name and map size per directory; got "
            f"{', '.join(sorted(names))} and sizes {', '.join(map(str, sorted(sizes)))}"
        )


def _replace(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished tree into place; an existing ``out`` only with --overwrite and only if
    it is an export tree (stats.yaml and data/, nothing else)."""
    if out.exists() or out.is_symlink():
        entries = {p.name for p in out.iterdir()} if out.is_dir() else None
        if not overwrite:
            raise UserError(f"{out} exists; use --overwrite to replace it")
        if entries is None or not entries <= {STATS, "data"}:
            raise UserError(f"refusing to replace {out}: not an export of this kind")
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def export_readers(
    readers: Sequence[FileView],
    out: Path,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    overwrite: bool = False,
) -> dict[str, int]:
    """Write the tree of The Well (module docstring) from open energy files. Returns the number
    of trajectories of each split."""
    out = Path(out)
    _check_sources(readers)
    plans = [(r, split_rows(r.n_rows, fractions)) for r in readers]
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise UserError(f"{out} exists; use --overwrite to replace it")
    with output_parent(out):
        tmp = out.with_name(out.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)  # a previous export that did not finish
        stats = {name: FieldStats() for name in _t0_fields(readers[0])}
        totals = dict.fromkeys(SPLITS, 0)
        for split in SPLITS:
            (tmp / "data" / split).mkdir(parents=True)
        for r, plan in plans:
            for split, rows in plan.items():
                target = tmp / "data" / split / f"{r.path.stem}.hdf5"
                _write_split(r, split, rows, target, stats if split == "train" else None)
                totals[split] += rows[1] - rows[0]
        with open(tmp / STATS, "w") as fh:
            yaml.safe_dump(stats_document(stats), fh, sort_keys=True)
        _replace(tmp, out, overwrite)
    return totals


def export_well(
    paths: Sequence[str | Path],
    out: str | Path,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    overwrite: bool = False,
) -> dict[str, int]:
    """:func:`export_readers` on energy files given by path."""
    from hpcgen.io.reader import Reader

    with ExitStack() as stack:
        readers = [stack.enter_context(Reader(p)) for p in paths]
        return export_readers(readers, Path(out), fractions, overwrite)


def export_well_format(
    r: FileView | Sequence[FileView], out: Path, options: Mapping[str, Any]
) -> None:
    """The ``well`` format of ``hpcgen export``: one open file (or several). Options:
    ``overwrite``; ``split`` "train,valid,test" fractions (default 0.8,0.1,0.1)."""
    readers = list(r) if isinstance(r, Sequence) else [r]
    totals = export_readers(
        readers, Path(out), parse_fractions(options.get("split")), bool(options.get("overwrite"))
    )
    counts = ", ".join(f"{k} {v}" for k, v in totals.items())
    print(f"{out}: The Well tree, trajectories {counts}; {STATS} from train")


#: ``hpcgen export A.h5 B.h5 ... --format well`` joins several files into one tree
export_well_format.many_files = True  # type: ignore[attr-defined]
