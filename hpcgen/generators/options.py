"""The options of ``hpcgen plot`` and ``hpcgen export`` that generators declare for their hooks.

A generator lists the options its ``plot`` and exporters read in ``cli_option_table``
(:meth:`hpcgen.generators.base.Generator.cli_options`), kept in a module of its package named
``options`` that imports nothing but :mod:`hpcgen.generators.base`: building the CLI parser reads
that module, never the generator's (its kernels, numba, scipy), so ``hpcgen --help`` stays quick.
A generator without such a module is imported to ask its class.

``add_generator_options(parser, "plot")`` adds the union over every registered generator; an
option two generators declare (``--sample``) is added once, its help naming both.
"""

from __future__ import annotations

import argparse
import importlib

from hpcgen.generators import REGISTRY, get_generator_class
from hpcgen.generators.base import Option

#: the commands whose hooks take generator options
COMMANDS = ("plot", "export")


def options_module(name: str) -> str:
    """The light module that declares generator ``name``'s options: ``<its package>.options``."""
    module = REGISTRY[name].split(":")[0]
    return module.rsplit(".", 1)[0] + ".options"


def generator_options(name: str, command: str) -> list[Option]:
    """The options of ``hpcgen COMMAND`` that generator ``name``'s hooks read."""
    if command not in COMMANDS:
        raise ValueError(f"no generator options for command {command!r} (known: {COMMANDS})")
    path = options_module(name)
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name != path:
            raise
        return get_generator_class(name).cli_options(command)
    return list(getattr(module, "OPTIONS", {}).get(command, ()))


def merged_options(command: str) -> list[Option]:
    """The union of every registered generator's options for ``command``, in registry order;
    an option declared by several generators appears once, its help "gen: help; gen: help".
    ValueError where two generators declare one flag with different behaviour (action, type,
    default)."""
    merged: dict[str, tuple[Option, list[tuple[str, str]]]] = {}
    for name in REGISTRY:
        for opt in generator_options(name, command):
            if opt.flag not in merged:
                merged[opt.flag] = (opt, [(name, opt.help)])
                continue
            first, helps = merged[opt.flag]
            if _behaviour(first) != _behaviour(opt):
                raise ValueError(
                    f"generators {helps[0][0]} and {name} declare {opt.flag} differently"
                )
            helps.append((name, opt.help))
    return [
        Option(
            opt.flag,
            "; ".join(f"{gen}: {text}" for gen, text in helps),
            action=opt.action,
            type=opt.type,
            default=opt.default,
            metavar=opt.metavar,
            aliases=opt.aliases,
        )
        for opt, helps in merged.values()
    ]


def add_generator_options(parser: argparse.ArgumentParser, command: str) -> list[Option]:
    """Add every registered generator's options for ``command`` ("plot", "export") to
    ``parser``; returns them (merged, see :func:`merged_options`)."""
    options = merged_options(command)
    for opt in options:
        parser.add_argument(*opt.flags, **opt.argparse_kwargs())
    return options


def _behaviour(opt: Option) -> tuple[object, ...]:
    return (opt.action, opt.type, opt.default, opt.aliases)
