"""The ``hpcgen export`` options the atoms hooks read (no kernels imported: the CLI reads this
to build its --help)."""

from __future__ import annotations

from hpcgen.generators.base import Option

OPTIONS: dict[str, tuple[Option, ...]] = {
    "export": (
        Option(
            "--dedup",
            "drop val images also found in train, and test images found in train or val "
            "(format dataset; counts in metadata.json 'dedup')",
            action="store_true",
        ),
    ),
}
