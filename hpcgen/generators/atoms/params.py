"""Parameters of the atoms generator (the spec's ``[params]`` table)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hpcgen.generators.base import require

#: object kinds, in the order of their codes in the ``kinds`` field (255: empty slot)
KIND_NAMES = ("blob", "rectangle", "line", "pattern")
LINE_NAMES = ("horizontal", "vertical", "diagonal", "antidiagonal")
PATTERN_NAMES = ("checkerboard", "L", "T", "plus", "zigzag")
SPLIT_NAMES = ("train", "val", "test")
EMPTY_KIND = 255
#: samples per chunk: ~525 bytes per sample, so ~10 MB per chunk
DEFAULT_CHUNK_SIZE = 20_000
#: colours are 1..N_COLOURS (0 is the background), as in ARC
N_COLOURS = 9


def _check_probs(name: str, probs: tuple[float, ...], n: int) -> None:
    require(len(probs) == n, f"{name} needs {n} entries, got {len(probs)}")
    require(all(p >= 0 for p in probs), f"{name} must be >= 0, got {list(probs)}")
    require(math.isclose(sum(probs), 1.0, abs_tol=1e-9), f"{name} must sum to 1, got {sum(probs)}")


@dataclass(frozen=True)
class AtomsParams:
    """What the images look like. Sizes are in grid cells; probabilities are per object.

    - ``grid_size``: cells per image side, 8-64 (the source workflow's grids: 16).
    - ``min_objects``/``max_objects``: the number of objects an image *tries* to hold, drawn
      uniformly in [min, max] (1 <= min <= max <= 16); ``max_objects`` is also the width of the
      ``kinds`` field. An object that cannot be placed after ``max_attempts`` positions is
      dropped (the image keeps what could be placed); the first one always fits.
    - ``min_size``/``max_size``: cells per object, 1 <= min <= max <= min(64, grid_size**2 // 4).
      Blob sizes are uniform in the range; other shapes draw a size uniformly among those their
      family can make in the range, then a shape of that size uniformly.
    - ``kind_probs``: blob, rectangle, line, pattern; ``line_probs``: horizontal, vertical,
      diagonal (top-left to bottom-right), antidiagonal; ``pattern_probs``: checkerboard, L, T,
      plus, zigzag. Each sums to 1.
    - ``blob_weight``: relative weight (>= 1 makes blobs compact; 1: plain random growth, up to
      100) of a frontier cell that already has >= 2 of its 4 neighbours in the blob.
    - ``max_attempts``: placement attempts per object, 1-1000.
    - ``separation``: 0, objects only do not overlap (as in the source workflow); 1, no two
      objects touch, not even diagonally (every object is its own 8-connected island of cells).
    - ``split_parts``: train, val, test parts of each block of ``sum(split_parts)`` consecutive
      sample indices (8, 1, 1: exactly 80/10/10 in every block of 10); sum 1-1000.
    """

    grid_size: int = 16
    min_objects: int = 1
    max_objects: int = 4
    min_size: int = 2
    max_size: int = 15
    kind_probs: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2)
    line_probs: tuple[float, float, float, float] = (0.3, 0.3, 0.2, 0.2)
    pattern_probs: tuple[float, float, float, float, float] = (0.2, 0.2, 0.2, 0.2, 0.2)
    blob_weight: float = 3.0
    max_attempts: int = 20
    separation: int = 0
    split_parts: tuple[int, int, int] = (8, 1, 1)

    def __post_init__(self) -> None:
        g = self.grid_size
        require(8 <= g <= 64, f"grid_size must be in [8, 64], got {g}")
        require(
            1 <= self.min_objects <= self.max_objects <= 16,
            f"need 1 <= min_objects <= max_objects <= 16, got {self.min_objects}, "
            f"{self.max_objects}",
        )
        size_cap = min(64, g * g // 4)
        require(
            1 <= self.min_size <= self.max_size <= size_cap,
            f"need 1 <= min_size <= max_size <= {size_cap}, got {self.min_size}, {self.max_size}",
        )
        _check_probs("kind_probs", self.kind_probs, len(KIND_NAMES))
        _check_probs("line_probs", self.line_probs, len(LINE_NAMES))
        _check_probs("pattern_probs", self.pattern_probs, len(PATTERN_NAMES))
        require(
            1.0 <= self.blob_weight <= 100.0,
            f"blob_weight must be in [1, 100], got {self.blob_weight}",
        )
        require(
            1 <= self.max_attempts <= 1000,
            f"max_attempts must be in [1, 1000], got {self.max_attempts}",
        )
        require(self.separation in (0, 1), f"separation must be 0 or 1, got {self.separation}")
        parts = self.split_parts
        require(
            len(parts) == 3 and all(p >= 0 for p in parts) and 1 <= sum(parts) <= 1000,
            f"split_parts must be 3 integers >= 0 with a sum in [1, 1000], got {list(parts)}",
        )
        # every family that can be drawn must be able to make a shape in the size range
        from hpcgen.generators.atoms.shapes import build_catalogue

        build_catalogue(self)

    @property
    def split_fractions(self) -> tuple[float, float, float]:
        total = sum(self.split_parts)
        return tuple(p / total for p in self.split_parts)  # type: ignore[return-value]
