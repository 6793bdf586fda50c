"""Output paths: every command that writes a file makes its missing directory, the same way."""

from __future__ import annotations

from pathlib import Path

from hpcgen.errors import UserError


def make_parent(out: str | Path) -> None:
    """Create the directory of ``out`` (and its parents) if missing. Call it after every other
    check of the command, so that a refused command leaves no directory behind. A directory
    that cannot be made (a file in its way, no permission) is a one-line UserError."""
    parent = Path(out).parent
    if parent.is_dir():
        return
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"output directory does not exist and cannot be created: {parent}: {e.strerror or e}"
        ) from None
