"""Registry of generators: name -> "module:Class", imported only when asked for.

Adding a generator to hpcgen: a folder under hpcgen/generators/ and one line here. A generator
that lives outside hpcgen is named in the spec by its own "package.module:Class" (anything with
a colon), importable from ``sys.path`` (the working directory of ``python -m hpcgen``, or
``PYTHONPATH``); see docs/writing_a_generator.md.
"""

from __future__ import annotations

import dataclasses
import importlib

from hpcgen.errors import SpecError
from hpcgen.generators.base import Generator

REGISTRY: dict[str, str] = {
    "tracks": "hpcgen.generators.tracks.generator:TracksGenerator",
    "atoms": "hpcgen.generators.atoms.generator:AtomsGenerator",
    "illumination": "hpcgen.generators.illumination.generator:IlluminationGenerator",
    "energy": "hpcgen.generators.energy.generator:EnergyGenerator",
    "ptycho": "hpcgen.generators.ptycho.generator:PtychoGenerator",
}

#: modules with ``register(subparsers)`` adding generator-specific subcommands to ``hpcgen``
CLI_EXTENSIONS: list[str] = [
    "hpcgen.generators.atoms.cli",
    "hpcgen.generators.energy.cli",
    "hpcgen.generators.tracks.cli",
    "hpcgen.generators.ptycho.cli",
    "hpcgen.jobs.cli",
]


def get_generator_class(name: str) -> type[Generator]:
    """The class of generator ``name``: one of REGISTRY's names, or "package.module:Class" (any
    name with a colon) for a generator outside hpcgen. Raises SpecError (one line) if it is
    unknown, cannot be imported, or is not a :class:`Generator` subclass."""
    if name in REGISTRY:
        module, cls = REGISTRY[name].split(":")
        return getattr(importlib.import_module(module), cls)
    if ":" not in name:
        raise SpecError(
            f"unknown generator {name!r} (known: {', '.join(sorted(REGISTRY))}, "
            'or "package.module:Class" for your own)'
        )
    return _import_generator(name)


def _import_generator(name: str) -> type[Generator]:
    """Import "package.module:Class"; every way it can fail is one SpecError line."""
    module, _, cls_name = name.partition(":")
    if not module or not cls_name or ":" in cls_name:
        raise SpecError(f'generator {name!r}: expected "package.module:Class"')
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # the module, or something it imports, is not on sys.path
        missing = getattr(e, "name", None)
        why = f"no module named {missing!r}" if missing else str(e).splitlines()[0]
        raise SpecError(
            f"generator {name!r}: cannot import {module!r}: {why} "
            "(run from the folder that holds it or add that folder to PYTHONPATH)"
        ) from None
    cls = getattr(mod, cls_name, None)
    if cls is None:
        raise SpecError(f"generator {name!r}: module {module!r} has no {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise SpecError(
            f"generator {name!r}: {cls_name!r} is not a subclass of "
            "hpcgen.generators.base.Generator"
        )
    if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
        raise SpecError(f"generator {name!r}: {cls_name}.Params must be a dataclass")
    return cls
