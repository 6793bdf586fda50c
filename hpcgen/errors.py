"""Error types that decide how the CLI exits.

``UserError`` (and its subclasses) is a mistake the user can fix: the CLI prints its message as one
line on stderr and exits with status 2. Anything else is an internal error: traceback, status 1.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (spec, parameters, files, command line). Exit code 2."""


class SpecError(UserError):
    """An invalid run spec or generator parameter."""


class OutputExistsError(UserError):
    """The output exists and neither --overwrite nor --resume was given."""
