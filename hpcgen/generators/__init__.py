"""Registry of generators: name -> "module:Class", imported only when asked for.

Adding a generator: a folder under hpcgen/generators/ and one line here.
"""

from __future__ import annotations

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
    if name not in REGISTRY:
        raise SpecError(f"unknown generator {name!r} (known: {', '.join(sorted(REGISTRY))})")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
