"""RunSpec: what to generate. A TOML file plus command-line overrides, validated up front.

A spec file looks like::

    generator = "tracks"
    n_samples = 100_000          # > 0
    seed = 42                    # >= 0
    chunk_size = 10_000          # samples per chunk (default: the generator's)
    output = "tracks_demo.h5"
    dtype = "float64"            # float64 | float32: the float fields' dtype
    device = "auto"              # auto | cpu | gpu
    io = "auto"                  # auto | mpio | shards

    [params]                     # the generator's parameters; unknown keys are refused
    field = "gaussian"

Paths: ``output`` is relative to the directory hpcgen runs in. An input file named in
``[params]`` (``field_map``, ``base_npz``, ``model``, ``articulation``, ``sun_file``: the
generator's *path parameters*) is relative to the spec file's directory, so a spec and its inputs
can move together; an absolute path (or ``~/...``) is taken as it is, and a path given with
``--set`` is relative to the working directory. The spec holds each resolved path re-expressed
relative to the working directory (``jobs/maps/f.txt`` for ``maps/f.txt`` in ``jobs/x.toml``),
normalised: for a spec in the working directory its (normalised) paths, and so its data
identity, are what they were before spec-relative paths.

The data written is a pure function of the *data identity* (generator, full params, n_samples,
seed, chunk_size, dtype): output path, rank count, batch split and io route do not change a byte
of data. The device does not change the inputs (always drawn on the CPU); GPU outputs agree with
CPU outputs to floating-point rounding (different libm, FFT and summation order), not bytewise.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hpcgen.errors import SpecError
from hpcgen.generators import get_generator_class
from hpcgen.generators.base import Generator, build_params, params_to_dict

TOP_LEVEL = ("generator", "n_samples", "seed", "chunk_size", "output", "dtype", "device", "io")
DTYPES = ("float64", "float32")
DEVICES = ("auto", "cpu", "gpu")
IO_ROUTES = ("auto", "mpio", "shards")
#: the largest sample count: row indices and HDF5 shapes are signed 64-bit
MAX_SAMPLES = 2**62
#: keys that define the data (everything else only says where/how it is produced)
DATA_KEYS = ("generator", "params", "n_samples", "seed", "chunk_size", "dtype")
#: a Params field whose metadata holds this key (true) names an input file: a relative path in a
#: spec file is relative to the spec file's directory. ``field(default="", metadata={PATH: True})``
PATH = "hpcgen_path"
#: path parameters of generators whose Params do not mark them with ``PATH`` metadata
PATH_PARAMS: dict[str, tuple[str, ...]] = {
    "tracks": ("field_map",),
    "ptycho": ("base_npz",),
    "illumination": ("model", "articulation", "sun_file"),
}


def path_params(generator: str) -> tuple[str, ...]:
    """Names of the generator's parameters that are input-file paths (empty for an unknown
    generator: the spec's validation reports that)."""
    try:
        cls = get_generator_class(generator)
    except SpecError:
        return ()
    marked = [f.name for f in fields(cls.Params) if f.metadata.get(PATH)]
    return tuple(dict.fromkeys([*marked, *PATH_PARAMS.get(generator, ())]))


def resolve_path(value: Any, base: str | os.PathLike) -> Any:
    """A path parameter's value from a spec file in directory ``base``, as a normalised path
    relative to the working directory (``./a/../b.txt`` is ``b.txt``). Unchanged: an absolute
    path, ``~...``, "" or None (the parameter's "none" / "bundled default") and a non-string
    (validation reports it)."""
    if not isinstance(value, str) or not value or value.startswith("~") or os.path.isabs(value):
        return value
    return os.path.relpath(os.path.abspath(os.path.join(base, value)))


def relocate_path(value: Any, base: str | os.PathLike) -> Any:
    """The inverse of :func:`resolve_path`: a path relative to the working directory, written
    relative to ``base`` (the directory a spec file is written to)."""
    if not isinstance(value, str) or not value or value.startswith("~") or os.path.isabs(value):
        return value
    if os.path.abspath(base) == os.path.abspath(os.curdir):
        return value
    return os.path.relpath(os.path.abspath(value), os.path.abspath(base))


def identity_difference(was: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """How two specs' data identities (``RunSpec.to_dict`` of each) differ, as a phrase for an
    error message ("seed is 3 there, 4 here; params.p_min ..."); None if they agree. A differing
    input path gets a hint: such paths are kept relative to the working directory the run
    started in."""

    def differ(x: Any, y: Any) -> bool:  # as the data hash sees them: -0.0 is not 0.0, 1 not 1.0
        return json.dumps(x, sort_keys=True) != json.dumps(y, sort_keys=True)

    diffs: list[str] = []
    hint = False
    for key in DATA_KEYS:
        a, b = was.get(key), now.get(key)
        if key != "params" or not isinstance(a, Mapping) or not isinstance(b, Mapping):
            if differ(a, b):
                diffs.append(f"{key} is {a!r} there, {b!r} here")
            continue
        paths = path_params(str(now.get("generator", "")))
        for name in sorted(set(a) | set(b)):
            if differ(a.get(name), b.get(name)):
                diffs.append(f"params.{name} is {a.get(name)!r} there, {b.get(name)!r} here")
                hint = hint or name in paths
    if not diffs:
        return None
    if hint:
        diffs.append(
            "input paths are kept relative to the working directory: run from the directory "
            "the run started in"
        )
    return "; ".join(diffs)


@dataclass(frozen=True)
class RunSpec:
    generator: str
    params: dict[str, Any] = field(default_factory=dict)
    n_samples: int = 0
    seed: int = 0
    chunk_size: int = 0  # 0: the generator's default
    output: str = "out.h5"
    dtype: str = "float64"
    device: str = "auto"
    io: str = "auto"

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "spec") -> RunSpec:
        unknown = sorted(set(d) - set(TOP_LEVEL) - {"params"})
        if unknown:
            raise SpecError(
                f"{where}: unknown key {unknown[0]!r} (known: params, {', '.join(TOP_LEVEL)})"
            )
        if "generator" not in d:
            raise SpecError(f"{where}: missing key 'generator'")
        params = d.get("params", {})
        if not isinstance(params, dict):
            raise SpecError(f"{where}: [params] must be a table")
        kw = {k: d[k] for k in TOP_LEVEL if k in d}
        # 0 is the dataclass's "not given"; a chunk_size the user wrote must be a real size
        given = kw.get("chunk_size")
        if isinstance(given, int) and not isinstance(given, bool) and given <= 0:
            raise SpecError(f"chunk_size must be > 0, got {given}")
        return cls(params=dict(params), **kw).validated()

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        overrides: dict[str, Any] | None = None,
        relative_to: str | os.PathLike | None = None,
    ) -> RunSpec:
        """Read a spec file, apply ``overrides`` (``--set``, ``--n`` ...), validate.

        Relative input-file paths in the file's ``[params]`` are relative to ``relative_to``
        (default: the spec file's directory); those in ``overrides`` to the working directory
        (module doc)."""
        p = Path(path)
        if not p.is_file():
            raise SpecError(f"spec file not found: {p}")
        try:
            d = tomllib.loads(p.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SpecError(f"{p}: not valid TOML: {e}") from None
        overrides = dict(overrides or {})
        params = d.get("params")
        generator = overrides.get("generator", d.get("generator"))
        if isinstance(generator, str):
            base = p.parent if relative_to is None else Path(relative_to)
            for name in path_params(generator):
                if isinstance(params, dict) and name in params:
                    params[name] = resolve_path(params[name], base)
                for key in (name, f"params.{name}"):
                    if key in overrides:
                        overrides[key] = resolve_path(overrides[key], os.curdir)
        apply_overrides(d, overrides)
        return cls.from_dict(d, where=str(p))

    # --- validation ------------------------------------------------------------------------------
    def validated(self) -> RunSpec:
        """Check every field and the generator's params; fill in defaults. Raises SpecError."""
        gen_cls = get_generator_class(self.generator if isinstance(self.generator, str) else "")
        for key in ("n_samples", "seed", "chunk_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int):
                raise SpecError(f"{key} must be an integer, got {v!r}")
        if self.n_samples <= 0:
            raise SpecError(f"n_samples must be > 0, got {self.n_samples}")
        if self.n_samples > MAX_SAMPLES:
            raise SpecError(
                f"n_samples must be at most 2**62 (rows are int64), got {self.n_samples}"
            )
        if self.seed < 0:
            raise SpecError(f"seed must be >= 0, got {self.seed}")
        if self.chunk_size < 0:
            raise SpecError(f"chunk_size must be > 0, got {self.chunk_size}")
        for key, allowed in (("dtype", DTYPES), ("device", DEVICES), ("io", IO_ROUTES)):
            if getattr(self, key) not in allowed:
                raise SpecError(
                    f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}"
                )
        if not isinstance(self.output, str) or not self.output:
            raise SpecError("output must be a non-empty path")
        params = build_params(gen_cls.Params, self.params)
        chunk = self.chunk_size or getattr(gen_cls, "default_chunk_size", 10_000)
        return replace(self, params=params_to_dict(params), chunk_size=chunk)

    def check_output_dir(self) -> None:
        """The output's directory must exist and be writable (checked before any work)."""
        parent = Path(self.output).resolve().parent
        if not parent.is_dir():
            raise SpecError(f"output directory does not exist: {parent}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise SpecError(f"output directory is not writable: {parent}")

    # --- use -------------------------------------------------------------------------------------
    def make_generator(self) -> Generator:
        cls = get_generator_class(self.generator)
        return cls(build_params(cls.Params, self.params), float_dtype=self.dtype)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_samples // self.chunk_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "generator",
                "n_samples",
                "seed",
                "chunk_size",
                "output",
                "dtype",
                "device",
                "io",
                "params",
            )
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def data_identity(self) -> dict[str, Any]:
        d = self.to_dict()
        return {k: d[k] for k in DATA_KEYS}

    def data_hash(self, input_sha256: Mapping[str, str] | None = None) -> str:
        """SHA-256 of the data identity: equal hashes mean equal data.

        ``input_sha256`` ({path: SHA-256 of its contents}, from the generator's ``input_files()``)
        puts the contents of the input files into the identity: a field map edited in place
        changes the hash although the spec does not. Without input files the hash is the spec's
        alone (as in files written before input contents were hashed)."""
        identity = self.data_identity()
        if input_sha256:
            # file names, not paths: the params already hold the path as the user wrote it
            identity["input_sha256"] = sorted(
                [Path(p).name, digest] for p, digest in input_sha256.items()
            )
        blob = json.dumps(identity, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_toml(self, relative_to: str | os.PathLike | None = None) -> str:
        """Write the spec back as TOML (used to freeze a spec next to batch jobs).

        ``relative_to``: the directory the TOML is read from later (``RunSpec.load``'s
        ``relative_to``, by default the file's directory): relative input-file paths are
        written relative to it, so that loading the text from the working directory of now
        gives back this spec. None: as they are (the file lies in the working directory)."""
        lines = []
        for k in TOP_LEVEL:
            lines.append(f"{k} = {_toml_value(getattr(self, k))}")
        lines.append("")
        lines.append("[params]")
        paths = path_params(self.generator) if relative_to is not None else ()
        for k, v in self.params.items():
            if k in paths and relative_to is not None:
                v = relocate_path(v, relative_to)
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")
        return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise SpecError(f"cannot write {v!r} as TOML")


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs -> overrides. VALUE is read as TOML (``5``, ``"a"``, ``[1, 2]``);
    a bare word that is not TOML is taken as a string. ``params.`` may be omitted for params."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SpecError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key] = value
    return out


def apply_overrides(d: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Apply overrides in place: top-level keys directly, anything else into [params]."""
    for key, value in overrides.items():
        if key.startswith("params."):
            d.setdefault("params", {})[key[len("params.") :]] = value
        elif key in TOP_LEVEL:
            d[key] = value
        else:
            d.setdefault("params", {})[key] = value
