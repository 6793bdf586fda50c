"""The Python API: make data in memory (``generate``, ``iter_chunks``) and read files (``open``).

Both live on the package: ``hpcgen.generate``, ``hpcgen.iter_chunks``, ``hpcgen.open``::

    import hpcgen

    data = hpcgen.generate("atoms", n=1000, seed=42)          # {field: array of 1000 rows}
    for start, block in hpcgen.iter_chunks("tracks", n=10_000_000, seed=1, field="gaussian"):
        ...                                                   # one chunk at a time

    with hpcgen.open("tracks_demo.h5") as f:
        x = f["X"][:1000]                                     # numpy, rows of this file

In-memory generation runs the engine's own per-chunk steps (``generator.sample`` then
``generator.compute`` on each chunk of the same plan), in one process and without MPI: the rows
are byte for byte those ``hpcgen run`` writes for the same generator, params, n, seed, chunk size
and dtype, on any number of ranks. Nothing here imports mpi4py, so it is safe in a notebook or a
PyTorch worker.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import SpecError, UserError
from hpcgen.generators import get_generator_class
from hpcgen.generators.base import Device, Generator
from hpcgen.spec import RunSpec

#: generate's / iter_chunks's own keyword arguments (every other keyword is a generator param)
OWN_ARGUMENTS = ("n", "seed", "chunk_size", "dtype", "device")


# --- generate -------------------------------------------------------------------------------------


def make_spec(
    generator: str,
    n: int,
    seed: int = 0,
    chunk_size: int | None = None,
    dtype: str = "float64",
    device: str = "auto",
    **params: Any,
) -> RunSpec:
    """The validated RunSpec of an in-memory run (the spec ``hpcgen run`` would use for the same
    keywords). Raises SpecError for an unknown generator or parameter, or a bad value."""
    cls = get_generator_class(generator)
    known = [f.name for f in dataclasses.fields(cls.Params)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise SpecError(
            f"unknown parameter {unknown[0]!r} for the {generator} generator "
            f"(its parameters: {', '.join(known)}; "
            f"generate's own arguments: {', '.join(OWN_ARGUMENTS)})"
        )
    return RunSpec(
        generator=generator,
        params=dict(params),
        n_samples=_integer("n", n),
        seed=_integer("seed", seed),
        chunk_size=0 if chunk_size is None else _integer("chunk_size", chunk_size),
        dtype=dtype,
        device=device,
    ).validated()


def _integer(name: str, value: Any) -> int:
    """Accept Python and numpy integers (RunSpec takes only ``int``); refuse anything else."""
    if isinstance(value, bool):
        raise SpecError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise SpecError(f"{name} must be an integer, got {value!r}") from None


def iter_spec(spec: RunSpec) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield (first row, {field: rows}) for every chunk of ``spec`` in order, computed in this
    process. Each block holds ``spec.chunk_size`` rows (the last one the remainder), in the
    field's dtype as written to a file; only the generator's fields are returned (the engine
    writes nothing else). Memory: one chunk at a time."""
    return _chunks(spec, spec.make_generator())


def _chunks(spec: RunSpec, gen: Generator) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """The engine's per-chunk steps (hpcgen.engine.run), chunk 0, 1, ... on one process. The
    checks run now, before the first chunk (this is not a generator function itself)."""
    from hpcgen.engine.device import select_device

    gen.check_n_samples(spec.n_samples)
    device = select_device(spec.device, gen)
    return _loop(spec, gen, device)


def _loop(
    spec: RunSpec, gen: Generator, device: Device
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    from hpcgen.engine.partition import Plan

    fields = gen.fields()
    plan = Plan(spec.n_samples, spec.chunk_size, spec.seed, n_ranks=1, rounds=[])
    for k in range(spec.n_chunks):
        chunk = plan.chunk(k)  # the engine's chunk k: rows, seed and index
        start = chunk.start
        inputs = gen.sample(chunk)
        outputs = gen.compute(inputs, chunk, device)
        data = {**inputs, **outputs}
        # the writer casts each chunk with np.ascontiguousarray(rows, dtype=dataset dtype)
        yield (
            start,
            {
                fs.name: np.ascontiguousarray(data[fs.name], dtype=fs.resolved_dtype(spec.dtype))
                for fs in fields
            },
        )


def iter_chunks(
    generator: str,
    n: int,
    seed: int = 0,
    chunk_size: int | None = None,
    dtype: str = "float64",
    *,
    device: str = "auto",
    **params: Any,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield (first row, {field: rows}) chunk by chunk: the rows of :func:`generate` without
    holding more than one chunk (``chunk_size`` rows, default the generator's) in memory.

    The spec is checked before the first chunk is computed: a bad parameter raises SpecError
    from this call, not from the first ``next()``.
    """
    spec = make_spec(generator, n, seed, chunk_size, dtype, device, **params)
    return iter_spec(spec)


def generate(
    generator: str,
    n: int,
    seed: int = 0,
    chunk_size: int | None = None,
    dtype: str = "float64",
    *,
    device: str = "auto",
    **params: Any,
) -> dict[str, np.ndarray]:
    """``n`` samples of ``generator`` in memory: {field name: array of shape (n, *sample shape)}.

    - ``seed`` (>= 0), ``chunk_size`` (> 0; None: the generator's default) and ``dtype``
      ("float64" or "float32": the dtype of the float fields) are the spec's keys of the same
      name; every other keyword is a generator parameter (``field="gaussian"``, ``N=64`` ...).
      The rows are the same bytes ``hpcgen run`` writes for that spec.
    - ``device``: "auto" (the CLI's default), "cpu" or "gpu" (GPU outputs agree with the CPU to
      rounding, not bytewise).
    - Memory: all ``n`` rows of every field, plus one chunk being computed. For large ``n``
      use :func:`iter_chunks` or ``hpcgen run``.

    Raises SpecError (a UserError) for an unknown generator or parameter or a bad value.
    """
    spec = make_spec(generator, n, seed, chunk_size, dtype, device, **params)
    gen = spec.make_generator()
    out = {
        fs.name: np.empty((spec.n_samples, *fs.shape), dtype=fs.resolved_dtype(spec.dtype))
        for fs in gen.fields()
    }
    for start, block in _chunks(spec, gen):
        for name, rows in block.items():
            out[name][start : start + len(rows)] = rows
    return out


# --- open -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldInfo:
    """One data field of a file: ``shape`` is (rows in this file, *sample_shape)."""

    name: str
    units: str
    shape: tuple[int, ...]
    dtype: np.dtype
    description: str

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.shape[1:]


class FieldView:
    """Rows of one field, read on indexing: ``view[a:b]``, ``view[i]``, ``view[[i, j]]`` return
    numpy arrays (row indices local to the file). Nothing is read until indexed."""

    def __init__(self, file: HpcgenFile, name: str) -> None:
        self._file = file
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return self._file.field(self.name).shape

    @property
    def dtype(self) -> np.dtype:
        return self._file.field(self.name).dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        return self._file.read(self.name, rows)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self._file.read(self.name)
        return a if dtype is None else a.astype(dtype)


class HpcgenFile:
    """An hpcgen file opened for reading: :func:`open`. Use as a context manager.

    - ``spec`` (the RunSpec it was written from), ``provenance`` (dict), ``fields``
      ([FieldInfo]), ``len(f)`` (rows in this file), ``row_range`` (the global rows [r0, r1) it
      holds: a shard or a batch job's file holds a slice of the run), ``complete``.
    - ``f["X"][a:b]`` or ``f.read("X", rows)``: numpy arrays; rows are local to the file.
    - ``for start, block in f`` (or ``f.blocks(names, block)``): {field: rows} blocks of the run's
      chunk size, never the whole file.
    - ``f.static(name)``: a dataset without a sample axis (grids, model geometry).
    - ``f.verify()``: the ``hpcgen verify`` report.
    - Escape hatch: ``f.h5`` is the open ``h5py.File`` (read only); anything read through it is
      outside this API's guarantees.
    """

    def __init__(self, path: str | Path) -> None:
        from hpcgen.io.reader import Reader

        self._reader = Reader(path)
        self.path = self._reader.path
        self.spec: RunSpec = self._reader.spec
        self.fields: list[FieldInfo] = []
        for fs in self._reader.fields:
            node = self._reader.node(fs.name)
            if node is None or node.dtype is None:
                raise UserError(f"{self.path}: no dataset {fs.name!r} (the spec's field)")
            self.fields.append(
                FieldInfo(
                    name=fs.name,
                    units=fs.units,
                    shape=node.shape,
                    dtype=node.dtype,
                    description=fs.description,
                )
            )
        self._by_name = {f.name: f for f in self.fields}
        self.static_names: list[str] = list(self._reader.generator.static_datasets())

    # --- what is in the file -------------------------------------------------------------------
    @property
    def h5(self) -> Any:
        """The underlying read-only ``h5py.File`` (escape hatch, see the class docstring)."""
        return self._reader.h5

    @property
    def provenance(self) -> dict[str, Any]:
        return self._reader.provenance

    @property
    def row_range(self) -> tuple[int, int]:
        return self._reader.row_range

    @property
    def chunk_size(self) -> int:
        return self.spec.chunk_size

    @property
    def complete(self) -> bool:
        """Every chunk of the file is written (rows of unwritten chunks hold no data)."""
        return self._reader.complete

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> FieldInfo:
        if name not in self._by_name:
            raise UserError(f"{self.path}: no field {name!r} (fields: {', '.join(self.names)})")
        return self._by_name[name]

    def __len__(self) -> int:
        return self._reader.n_rows

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    # --- data ----------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> FieldView:
        self.field(name)
        return FieldView(self, name)

    def read(self, name: str, rows: Any = slice(None)) -> np.ndarray:
        """Rows of one field as a numpy array. ``rows``: a slice, an int, or a sequence of ints
        in any order (local to the file; negative indices count from the end)."""
        self.field(name)
        return self._reader.read(name, rows)

    def blocks(
        self, names: Sequence[str] | None = None, block: int | None = None
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield (local first row, {field: rows}) of at most ``block`` rows (default: the run's
        chunk size), for ``names`` (default: every field)."""
        for name in names or []:
            self.field(name)
        return self._reader.iter_rows(names, block)

    def __iter__(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        return self.blocks()

    def static(self, name: str) -> np.ndarray:
        """A dataset without a sample axis (listed in ``static_names``), read whole."""
        if name not in self.static_names:
            raise UserError(
                f"{self.path}: no static dataset {name!r} "
                f"(static datasets: {', '.join(self.static_names) or 'none'})"
            )
        return self._reader.static(name)

    def verify(self) -> dict[str, Any]:
        """Run ``hpcgen verify``'s checks (integrity, then the generator's, streamed by chunk).
        Returns its report: {"file", "generator", "n_rows", "passed", "checks": [{"name",
        "passed", "value", "detail"}]}, the JSON ``hpcgen verify`` writes
        (``--json``)."""
        from hpcgen.verify import verify_file

        _, report = verify_file(self.path)
        return report

    # --- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> HpcgenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<hpcgen file {str(self.path)!r}: {self.spec.generator}, {len(self)} rows>"


def open(path: str | Path) -> HpcgenFile:
    """Open an hpcgen file (a run, a shard, a merged or virtual file) for reading.
    Raises UserError if it is missing or not an hpcgen file."""
    return HpcgenFile(path)
