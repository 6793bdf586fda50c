"""Output paths: every command that writes a file makes its missing directory, the same way."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hpcgen.errors import UserError


def make_parent(out: str | Path) -> list[Path]:
    """Create the directory of ``out`` (and its parents) if missing; returns the directories it
    created, outermost first. Call it after every other check of the command, so that a refused
    command leaves no directory behind. A directory that cannot be made (a file in its way, no
    permission, a name too long) is a one-line UserError, and leaves none of the ones made
    before it. ``..`` is resolved first (``a/../b`` makes ``b``, not ``a``)."""
    parent = Path(os.path.abspath(Path(out).parent))
    if parent.is_dir():
        return []
    missing = [d for d in (parent, *parent.parents) if not d.exists()][::-1]
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_empty_dirs(missing)
        raise UserError(
            f"output directory does not exist and cannot be created: {Path(out).parent}: "
            f"{e.strerror or e}"
        ) from None
    return missing


def remove_empty_dirs(created: list[Path]) -> None:
    """Undo make_parent for a command that failed later: remove the directories it created,
    innermost first, as far as they are still empty (a partial output a ``--resume`` needs stays,
    and so does every directory above it)."""
    for d in reversed(created):
        if not os.path.isdir(d):
            continue  # never made (a failed make_parent) or already gone
        try:
            d.rmdir()
        except OSError:
            return


@contextmanager
def output_parent(out: str | Path) -> Iterator[list[Path]]:
    """make_parent around the rest of a command's work: if that work fails (a full disk, a
    refusal found late), the directories made here are removed again (remove_empty_dirs)."""
    created = make_parent(out)
    try:
        yield created
    except BaseException:
        remove_empty_dirs(created)
        raise
