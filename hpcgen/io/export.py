"""``hpcgen export``: generic NPZ export, streamed so that memory stays bounded.

Generators add formats through ``Generator.exporters()`` (csv, data001, dataset ...). A generic
NPZ is written entry by entry: the .npy header first, then the rows block by block into the zip
member, so a 10M-track export never holds the file in memory.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import numpy as np

from hpcgen.errors import OutputExistsError, UserError
from hpcgen.generators.base import FileView
from hpcgen.io import checksums
from hpcgen.io.paths import output_parent
from hpcgen.io.reader import Reader
from hpcgen.io.writer import check_vds_sources

#: row filter: (block of all fields) -> boolean mask of rows to keep, or None for all
RowFilter = Callable[[Mapping[str, np.ndarray]], np.ndarray] | None


def check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; use --overwrite to replace it")


def export_npz(
    r: FileView,
    out: Path,
    names: list[str] | None = None,
    row_filter: RowFilter = None,
    keys: Mapping[str, str] | None = None,
    filter_fields: Sequence[str] = (),
) -> int:
    """Write fields as an uncompressed NPZ (np.load reads it), streaming. Returns rows written.

    With a row filter, a first pass counts the kept rows (the .npy header needs the shape);
    ``filter_fields`` names what the filter reads, so that only those are read besides each
    output field (default: every field). ``r``: any FileView (generators' exporters call this
    with the view they are given).
    """
    names = names or [f.name for f in r.fields]
    keys = keys or {n: n.replace("/", "_") for n in names}
    if row_filter is None:
        n_keep = r.n_rows
    else:
        needed = list(filter_fields) or None
        n_keep = sum(int(row_filter(b).sum()) for _, b in r.iter_rows(needed))
    tmp = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in names:
            ds = r.node(name)
            if ds is None or ds.kind != "dataset" or ds.dtype is None:
                raise UserError(f"{r.path}: no dataset {name!r}")
            header = {
                "descr": np.lib.format.dtype_to_descr(ds.dtype),
                "fortran_order": False,
                "shape": (n_keep, *ds.shape[1:]),
            }
            with zf.open(keys[name] + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_2_0(fh, header)
                if row_filter is None:
                    read: list[str] | None = [name]
                else:
                    read = [name, *filter_fields] if filter_fields else None
                for _, block in r.iter_rows(read):
                    rows = block[name]
                    if row_filter is not None:
                        rows = rows[row_filter(block)]
                    fh.write(np.ascontiguousarray(rows).tobytes())
    tmp.replace(out)
    return n_keep


def check_exportable(r: Reader) -> None:
    """Refuse a file whose rows are not all real data: a virtual file with a missing source
    (HDF5 reads it as fill values, without an error), a file with chunks not written, or rows
    that do not match their stored checksums (this reads the whole file once)."""
    missing = check_vds_sources(r.path)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UserError(
            f"{r.path}: {len(missing)} source file(s) of its virtual datasets are missing "
            f"({', '.join(missing[:3])}{more}); restore them or merge without --virtual"
        )
    done = r.done
    if not done.all():
        ranges = ", ".join(f"[{a},{b})" for a, b in false_runs(done, r.chunk_range[0]))
        raise UserError(
            f"{r.path}: chunks {ranges} are not written ({int((~done).sum())} of {done.size}); "
            "finish it with --resume (or merge the missing shards) before exporting"
        )
    sums = checksums.check_file(r.h5, r.chunk_range, r.spec.chunk_size, r.n_rows, done)
    if sums.mismatches:
        raise UserError(
            f"{r.path}: checksum mismatch in {sums.describe()}: the file is corrupt; "
            "regenerate those chunks (or the file) before exporting"
        )


def false_runs(flags: np.ndarray, offset: int = 0) -> list[tuple[int, int]]:
    """[a, b) index ranges (plus ``offset``) where ``flags`` is False."""
    padded = np.concatenate(([True], np.asarray(flags, bool), [True]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(offset + int(a), offset + int(b)) for a, b in zip(edges[::2], edges[1::2])]


def export(
    paths: str | Path | Sequence[str | Path], fmt: str, out: Path, options: Mapping[str, Any]
) -> None:
    """Export one file, or several where the format joins files (an exporter with the
    attribute ``many_files = True`` is handed the list of readers)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    with ExitStack() as stack:
        readers = [stack.enter_context(Reader(p)) for p in paths]
        names = {r.spec.generator for r in readers}
        if len(names) > 1:
            raise UserError(f"files of different generators ({', '.join(sorted(names))})")
        r = readers[0]
        formats = r.generator.exporters()
        for each in readers:
            check_exportable(each)
        if fmt not in formats and fmt != "npz":
            known = ", ".join(sorted({"npz", *formats}))
            raise UserError(
                f"unknown export format {fmt!r} for {r.spec.generator} (known: {known})"
            )
        fn = formats.get(fmt)
        if len(readers) > 1 and (fn is None or not getattr(fn, "many_files", False)):
            raise UserError(f"export --format {fmt} takes one file, got {len(readers)}")
        check_output(out, bool(options.get("overwrite")))
        stack.enter_context(output_parent(out))
        if len(readers) > 1:
            # a many_files exporter takes the list, outside the Exporter signature
            cast(Callable[..., None], fn)(readers, out, options)
        elif fn is not None:
            fn(r, out, options)
        else:
            export_npz(r, out)
