"""The ``hpcgen export`` options the tracks hooks read (no kernels imported: the CLI reads this
to build its --help)."""

from __future__ import annotations

from hpcgen.generators.base import Option

OPTIONS: dict[str, tuple[Option, ...]] = {
    "export": (Option("--only-ok", "npz: drop flagged tracks (status != 0)", action="store_true"),),
}
