"""The ``hpcgen plot`` and ``hpcgen export`` options the energy hooks read (no kernels imported:
the CLI reads this to build its --help)."""

from __future__ import annotations

from hpcgen.generators.base import Option

OPTIONS: dict[str, tuple[Option, ...]] = {
    "plot": (
        Option("--domain", "domain to draw (must be the file's; one file holds one domain)"),
        Option("--sample", "trajectory index to draw, local to the file", type=int, default=0),
    ),
    "export": (
        Option(
            "--split",
            "trajectory fractions of the splits (format well; default 0.8,0.1,0.1)",
            metavar="TRAIN,VALID,TEST",
        ),
    ),
}
