"""The ``hpcgen plot`` options the illumination hooks read (no kernels imported: the CLI reads
this to build its --help)."""

from __future__ import annotations

from hpcgen.generators.base import Option

OPTIONS: dict[str, tuple[Option, ...]] = {
    "plot": (Option("--face", "face name (the file's face_names) whose lit fraction to draw"),),
}
