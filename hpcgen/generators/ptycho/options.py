"""The ``hpcgen plot`` options the ptycho hooks read (no kernels imported: the CLI reads this
to build its --help)."""

from __future__ import annotations

from hpcgen.generators.base import Option

OPTIONS: dict[str, tuple[Option, ...]] = {
    "plot": (
        Option("--sample", "pattern (row) index to draw, local to the file", type=int, default=0),
    ),
}
