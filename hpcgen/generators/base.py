"""The contract between the engine and a generator.

A generator knows physics, not MPI or HDF5. The engine hands it one chunk of the sample space at a
time and writes what it returns. Everything a generator exposes:

- ``Params``: a frozen dataclass with defaults; ``__post_init__`` raises :class:`SpecError` for
  bad values. The engine builds it from the spec's ``[params]`` table (unknown keys are refused
  before construction, by :func:`build_params`).
- ``fields()``: the datasets it produces, per-sample shape, dtype, units. Names may contain "/" to
  place a dataset in a group (``dose_1000/diffraction``). The first axis of every dataset in the
  file is the sample axis.
- ``sample(chunk)``: draw the chunk's inputs on the CPU from ``chunk.rng(...)`` (deterministic in
  (seed, chunk index, key)), returns {field name: array of shape (chunk.count, *shape)}.
- ``compute(inputs, chunk, device)``: everything derived from the inputs, on numpy or cupy.
  Returns host (numpy) arrays.
- ``verifier()``: a streaming checker fed chunk by chunk by ``hpcgen verify``.
- Optional: ``static_datasets()`` (datasets without a sample axis, e.g. grids), ``root_attrs()``,
  ``group_attrs()``, ``input_files()`` (hashed into provenance), ``exporters()`` (extra
  ``hpcgen export`` formats), ``plot()``, ``file_checks()``, ``supports_device()``; class
  attributes ``default_chunk_size`` and ``cli_option_table`` (the ``hpcgen plot`` / ``hpcgen
  export`` options its hooks read, see :class:`Option`).

The hooks that read a finished file (``file_checks``, ``plot``, exporters) get a
:class:`FileView`: the file's spec, fields, rows, static datasets and attributes as numpy and
Python values. They never see h5py: the HDF5 calls and the names of the engine's attributes
stay in hpcgen/io (the view's ``data_hash``, ``provenance``, ``done`` read them).

Generator-specific subcommands (``hpcgen fieldmap``, ``hpcgen dataset atoms`` ...) live in the
generator's package as a module with ``register(subparsers) -> None`` and are listed in
``hpcgen.generators.CLI_EXTENSIONS``; each parser sets ``func=handler(args) -> int``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from hpcgen.errors import SpecError

if TYPE_CHECKING:
    from hpcgen.spec import RunSpec

#: dtype placeholder in a FieldSpec: "the run's float dtype" (spec ``dtype``: float64/float32)
FLOAT = "float"


@dataclass(frozen=True)
class FieldSpec:
    """One dataset with a sample axis: (n_samples, *shape) of ``dtype``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    units: str
    description: str
    #: extra attributes written on the dataset (e.g. column names)
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def resolved_dtype(self, float_dtype: np.dtype | str) -> np.dtype:
        return np.dtype(float_dtype if self.dtype == FLOAT else self.dtype)


@dataclass(frozen=True)
class StaticData:
    """A dataset without a sample axis (coordinates, grids, model geometry)."""

    data: np.ndarray
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """One fixed-size slice of the sample space: samples [start, start + count)."""

    index: int
    start: int
    count: int
    seed: int

    def rng(self, *key: str | int) -> np.random.Generator:
        """An independent random stream that depends only on (seed, chunk index, key).

        Use a different key for each independent purpose (``rng("inputs")``,
        ``rng("noise", dose)``) so that adding a draw to one purpose never shifts another.
        """
        words = [self.index] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in key]
        seq = np.random.SeedSequence(self.seed, spawn_key=tuple(words))
        return np.random.Generator(np.random.PCG64(seq))


@dataclass(frozen=True)
class Device:
    """Where ``compute`` runs. ``xp`` is numpy or cupy; ``kind`` is "cpu" or "gpu"."""

    kind: str
    xp: types.ModuleType

    def to_host(self, a: Any) -> np.ndarray:
        return a.get() if hasattr(a, "get") and self.kind == "gpu" else np.asarray(a)


@dataclass(frozen=True)
class CheckResult:
    """One line of the verify table. ``passed`` False makes ``hpcgen verify`` exit 1."""

    name: str
    passed: bool
    value: str
    detail: str = ""


class Verifier:
    """Streaming checker: ``update`` per chunk of rows, then ``results`` once.

    ``data`` maps every field name to the rows of this chunk (numpy arrays); ``start`` is the
    global index of the first row. Keep running sums only: memory must stay bounded.
    """

    def update(self, data: Mapping[str, np.ndarray], start: int) -> None:
        raise NotImplementedError

    def results(self) -> list[CheckResult]:
        raise NotImplementedError


@dataclass(frozen=True)
class Node:
    """One object of a file as a hook sees it: a group or a dataset (no h5py object)."""

    #: path from the root without the leading "/" ("" is the root), e.g. "dimensions/time"
    path: str
    kind: Literal["group", "dataset"]
    #: the object's attributes: numpy scalars and arrays, str
    attrs: Mapping[str, Any]
    #: datasets: the whole shape (sample axis first for a field) and the dtype
    shape: tuple[int, ...] = ()
    dtype: np.dtype | None = None
    #: groups: member names (not paths), sorted
    children: tuple[str, ...] = ()
    #: datasets: a virtual dataset (rows read from other files, e.g. ``merge --virtual``)
    virtual: bool = False


@runtime_checkable
class FileView(Protocol):
    """What a hook (``file_checks``, ``plot``, an exporter) may see of an hpcgen file.

    Rows are local to the file: row 0 is global row ``row_range[0]`` (a shard or a batch job's
    file holds a slice of the run). Everything comes back as numpy arrays or Python values.
    hpcgen.io.reader.Reader implements it.
    """

    #: the file on disk (for messages and for naming outputs after it)
    path: Path
    #: the run spec the file was written from
    spec: RunSpec
    #: the generator rebuilt from ``spec`` (its params, fields, static datasets)
    generator: Generator
    #: the generator's fields, in its order
    fields: list[FieldSpec]
    #: global chunks [a, b) and global rows [r0, r1) this file holds
    chunk_range: tuple[int, int]
    row_range: tuple[int, int]

    @property
    def n_rows(self) -> int:
        """Rows in this file (r1 - r0)."""
        ...

    @property
    def done(self) -> np.ndarray:
        """bool (chunks in the file,): True where the chunk's rows are written."""
        ...

    @property
    def complete(self) -> bool:
        """Every chunk of the file is written."""
        ...

    @property
    def provenance(self) -> dict[str, Any]:
        """Who wrote the file, where and with what (JSON of the engine's provenance record)."""
        ...

    @property
    def data_hash(self) -> str | None:
        """The data identity (SHA-256 hex of the spec's data-determining part and the input
        files' contents): two files with the same hash hold the same rows. None if absent."""
        ...

    @property
    def attrs(self) -> dict[str, Any]:
        """The root attributes (the generator's ``root_attrs`` and the engine's)."""
        ...

    def group_attrs(self, name: str) -> dict[str, Any]:
        """Attributes of group ``name`` ("/" or "" for the root). UserError if no such group."""
        ...

    def dataset_attrs(self, name: str) -> dict[str, Any]:
        """Attributes of dataset ``name`` (a field or a static dataset): units, description,
        the FieldSpec's extra attributes as stored. UserError if no such dataset."""
        ...

    def node(self, path: str) -> Node | None:
        """The group or dataset at ``path`` (shape, dtype, attributes, members), None if the
        file has none there."""
        ...

    def read(
        self, name: str, rows: slice | int | Sequence[int] | np.ndarray = slice(None)
    ) -> np.ndarray:
        """Rows of one field: a slice (default: all), an int, or a 1-d sequence of ints in any
        order (negative counts from the end)."""
        ...

    def iter_rows(
        self, names: Sequence[str] | None = None, block: int | None = None
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(local first row, {field: rows}) blocks of at most ``block`` rows (default: the run's
        chunk size) of ``names`` (default: every field); memory stays bounded."""
        ...

    def static(self, name: str) -> np.ndarray:
        """A dataset without a sample axis (grids, model geometry), read whole."""
        ...


#: ``hpcgen export`` hook: (file, output path, options) -> None. An exporter with the attribute
#: ``many_files = True`` is handed a list of files where the user names several.
Exporter = Callable[[FileView, Path, Mapping[str, Any]], None]


@dataclass(frozen=True)
class Option:
    """One command-line option of ``hpcgen plot`` or ``hpcgen export`` that a generator's hook
    reads from its ``options`` mapping under the key :attr:`dest`.

    ``action``: "store" (takes a value, converted by ``type``) or "store_true" (a flag).
    """

    flag: str
    help: str
    action: Literal["store", "store_true"] = "store"
    #: converts the argument's text (int, float ...); None: keep the string
    type: Callable[[str], Any] | None = None
    default: Any = None
    metavar: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, *self.aliases)

    @property
    def dest(self) -> str:
        """The key in the hook's ``options`` (argparse's: "--only-ok" -> "only_ok")."""
        return self.flag.lstrip("-").replace("-", "_")

    def argparse_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``ArgumentParser.add_argument(*self.flags, ...)``."""
        kw: dict[str, Any] = {"help": self.help, "action": self.action, "dest": self.dest}
        if self.action == "store":
            kw["default"] = self.default
            if self.type is not None:
                kw["type"] = self.type
            if self.metavar is not None:
                kw["metavar"] = self.metavar
        return kw


class Generator:
    """Base class; subclasses set ``name`` and ``Params`` and implement the methods below."""

    name: ClassVar[str]
    Params: ClassVar[type]
    #: samples per chunk when the spec gives none: pick ~1-30 MB of output per chunk
    default_chunk_size: ClassVar[int] = 10_000
    #: command ("plot", "export") -> the options its hooks read; keep the table in a module that
    #: imports no kernels (``<package>/options.py``): the CLI reads it to build ``--help``
    cli_option_table: ClassVar[Mapping[str, Sequence[Option]]] = {}

    def __init__(self, params: Any, float_dtype: str = "float64") -> None:
        self.params = params
        self.float_dtype = np.dtype(float_dtype)

    # --- required ------------------------------------------------------------------------------
    def fields(self) -> list[FieldSpec]:
        raise NotImplementedError

    def sample(self, chunk: Chunk) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def compute(
        self, inputs: Mapping[str, np.ndarray], chunk: Chunk, device: Device
    ) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def verifier(self) -> Verifier:
        raise NotImplementedError

    # --- optional ------------------------------------------------------------------------------
    def static_datasets(self) -> dict[str, StaticData]:
        return {}

    def root_attrs(self) -> dict[str, Any]:
        return {}

    def check_n_samples(self, n_samples: int) -> None:
        """Raise SpecError if the generator cannot make ``n_samples`` (e.g. a raster scan or an
        input file with fewer positions). Called before any output is created."""

    def group_attrs(self, n_rows: int) -> dict[str, dict[str, Any]]:
        """Attributes of groups ("/" = root), created if missing; ``n_rows`` is the number of
        samples the file holds (a shard holds fewer than the run), for layouts such as The Well
        that record it."""
        return {}

    def file_checks(self, view: FileView) -> list[CheckResult]:
        """Checks of the file as a whole (layout, attributes), run by ``hpcgen verify`` after the
        streaming verifier."""
        return []

    def input_files(self) -> list[Path]:
        return []

    def exporters(self) -> dict[str, Exporter]:
        return {}

    def plot(self, view: FileView, out: Path, options: Mapping[str, Any]) -> None:
        """``hpcgen plot FILE --out PNG [options]``: draw something useful from a file.
        ``options``: the command's arguments by ``dest`` (:meth:`cli_options` of "plot")."""
        from hpcgen.errors import UserError

        raise UserError(f"the {self.name} generator has no plot")

    @classmethod
    def cli_options(cls, command: str) -> list[Option]:
        """The options of ``hpcgen COMMAND`` ("plot", "export") that this generator's hooks
        read (default: ``cli_option_table[command]``)."""
        return list(cls.cli_option_table.get(command, ()))

    def supports_device(self, kind: str) -> bool:
        """Whether ``compute`` can run on "cpu" / "gpu" (gpu: with cupy)."""
        return kind == "cpu"


# --- parameters ---------------------------------------------------------------------------------


def build_params(cls: type, values: Mapping[str, Any], where: str = "params") -> Any:
    """Build a Params dataclass from a TOML table: unknown keys and wrong types are SpecErrors."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise SpecError(
            f"unknown parameter {where}.{unknown[0]} (known: {', '.join(sorted(names))})"
        )
    hints = typing.get_type_hints(cls)
    converted = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**converted)
    except TypeError as e:  # a required parameter without default
        raise SpecError(f"{where}: {e}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check (and gently convert: int -> float, list -> tuple) a TOML value against a type hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except SpecError as e:
                errors.append(str(e))
        raise SpecError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise SpecError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise SpecError(f"{where} must have {len(args)} entries, got {len(value)}")
            return tuple(
                _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))
            )
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(f"{where} must be a string, got {value!r}")
        return value
    return value


def params_to_dict(params: Any) -> dict[str, Any]:
    """Params dataclass -> plain JSON/TOML-friendly dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return {f.name: plain(getattr(params, f.name)) for f in dataclasses.fields(params)}


def require(cond: bool, message: str) -> None:
    """Raise SpecError(message) unless cond: the one-liner for Params.__post_init__."""
    if not cond:
        raise SpecError(message)


#: (resolved path, size, mtime ns, ctime ns, inode): one version of a file (file_version)
FileVersion = tuple[str, int, int, int, int]


def file_version(path: str | Path) -> FileVersion:
    """(resolved path, size, mtime, ctime (ns), inode) of an existing file: the key of an
    in-process cache of what was read from it. A rewrite changes the ctime even when a copy
    keeps the size and the mtime (``cp -p``, ``rsync -t``, a file system of whole seconds), and
    a file moved into place has another inode."""
    p = Path(path).expanduser()
    st = p.stat()
    return str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino
