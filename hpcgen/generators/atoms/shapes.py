"""The shape catalogue: every non-blob shape the generator can draw, as flat numba-friendly tables.

Shapes are enumerated once per parameter set (a few thousand cells at most), grouped as
family -> size group -> templates:

- a *family* is a kind or a sub-kind (``rectangle``, ``line/vertical``, ``pattern/plus``) with its
  probability (``kind_probs`` x ``line_probs`` / ``pattern_probs``);
- a *size group* holds the family's shapes with one cell count; the kernel draws the group
  uniformly (so sizes are uniform over what the family can make) and then a template uniformly;
- a *template* is a set of cells (dy, dx) with its bounding box (h, w), anchored at (0, 0).

Blobs have size groups (``min_size``..``max_size``) but no templates: the kernel grows them.

The shapes (all orientations, duplicates removed):

- rectangle: filled h x w boxes with h, w >= 2 (a 1-wide box would be a line);
- line: 1 x L, L x 1 and the two diagonals of L x L, L <= grid size;
- checkerboard: one colour class of an h x w board, h, w >= 3 (a 2-high board is a zigzag);
- L: an arm of a >= 2 and a foot of b >= 2 cells sharing the corner (a + b - 1 cells);
- T: a bar of w >= 3 (odd) cells and a stem of t >= 1 cells from its middle (w + t cells);
- plus: four arms of r >= 1 cells around a centre (4r + 1 cells);
- zigzag: a triangle wave of amplitude a in {1, 2} across n >= a + 2 columns, one cell per column
  (8-connected: 0,1,0,1,... or 0,1,2,1,0,...).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hpcgen.errors import SpecError
from hpcgen.generators.atoms.params import KIND_NAMES, LINE_NAMES, PATTERN_NAMES

if TYPE_CHECKING:
    from hpcgen.generators.atoms.params import AtomsParams

Cells = tuple[tuple[int, int], ...]

BLOB, RECTANGLE, LINE, PATTERN = range(4)


def normalise(cells: Iterable[tuple[int, int]]) -> Cells:
    """Shift cells so that the bounding box starts at (0, 0); sorted, without duplicates."""
    cells = set(cells)
    y0 = min(y for y, _ in cells)
    x0 = min(x for _, x in cells)
    return tuple(sorted((y - y0, x - x0) for y, x in cells))


def orientations(cells: Iterable[tuple[int, int]]) -> set[Cells]:
    """The distinct images of a shape under the 8 rotations/reflections of the square."""
    out = set()
    cur = list(cells)
    for _ in range(4):
        cur = [(x, -y) for y, x in cur]  # rotate by 90 degrees
        out.add(normalise(cur))
        out.add(normalise((y, -x) for y, x in cur))  # mirror
    return out


def _rectangles(g: int, lo: int, hi: int) -> set[Cells]:
    return {
        tuple((y, x) for y in range(h) for x in range(w))
        for h in range(2, g + 1)
        for w in range(2, g + 1)
        if lo <= h * w <= hi
    }


def _lines(g: int, lo: int, hi: int, orientation: str) -> set[Cells]:
    make = {
        "horizontal": lambda n: [(0, i) for i in range(n)],
        "vertical": lambda n: [(i, 0) for i in range(n)],
        "diagonal": lambda n: [(i, i) for i in range(n)],
        "antidiagonal": lambda n: [(i, n - 1 - i) for i in range(n)],
    }[orientation]
    return {normalise(make(n)) for n in range(lo, min(hi, g) + 1)}


def _checkerboards(g: int, lo: int, hi: int) -> set[Cells]:
    out: set[Cells] = set()
    for h in range(3, g + 1):
        for w in range(3, g + 1):
            if (h * w) // 2 > hi:  # both colour classes hold at least floor(hw/2) cells
                break
            for phase in (0, 1):
                cells = [(y, x) for y in range(h) for x in range(w) if (y + x) % 2 == phase]
                if lo <= len(cells) <= hi:
                    out |= orientations(cells)
    return out


def _ls(lo: int, hi: int) -> set[Cells]:
    out: set[Cells] = set()
    for a in range(2, hi + 1):
        for b in range(2, hi + 2 - a):
            cells = [(i, 0) for i in range(a)] + [(a - 1, j) for j in range(b)]
            if lo <= len(set(cells)) <= hi:
                out |= orientations(cells)
    return out


def _ts(lo: int, hi: int) -> set[Cells]:
    out: set[Cells] = set()
    for w in range(3, hi + 1, 2):
        for t in range(1, hi + 1 - w):
            cells = [(0, j) for j in range(w)] + [(i, w // 2) for i in range(1, t + 1)]
            if lo <= len(cells) <= hi:
                out |= orientations(cells)
    return out


def _pluses(lo: int, hi: int) -> set[Cells]:
    out: set[Cells] = set()
    for r in range(1, hi):
        cells = {(r, j) for j in range(2 * r + 1)} | {(i, r) for i in range(2 * r + 1)}
        if lo <= len(cells) <= hi:
            out |= orientations(cells)
    return out


def _zigzags(lo: int, hi: int) -> set[Cells]:
    out: set[Cells] = set()
    for amp in (1, 2):
        wave = [amp - abs(amp - (c % (2 * amp))) for c in range(hi)]  # 0,1,..,amp,..,1,0,1,..
        for n in range(amp + 2, hi + 1):
            if lo <= n <= hi:
                out |= orientations((wave[c], c) for c in range(n))
    return out


@dataclass(frozen=True)
class Catalogue:
    """Flat tables for the kernel (see the module docstring for the hierarchy)."""

    family_names: tuple[str, ...]
    family_kind: np.ndarray  # uint8 (F,): code in KIND_NAMES
    family_cum: np.ndarray  # float64 (F,): cumulative probability, last entry 1
    family_group: np.ndarray  # int64 (F+1,): size groups of family f: [fg[f], fg[f+1])
    group_size: np.ndarray  # int64 (S,): cells of the objects in group s
    group_tpl: np.ndarray  # int64 (S+1,): templates of group s: [gt[s], gt[s+1]) (blob: none)
    tpl_h: np.ndarray  # int64 (T,): bounding-box height
    tpl_w: np.ndarray  # int64 (T,): bounding-box width
    tpl_cell: np.ndarray  # int64 (T+1,): cells of template t: [tc[t], tc[t+1])
    cell_y: np.ndarray  # int64 (C,)
    cell_x: np.ndarray  # int64 (C,)

    def templates(self, family: str) -> list[Cells]:
        """All templates of one family (for tests and docs)."""
        f = self.family_names.index(family)
        out = []
        for s in range(self.family_group[f], self.family_group[f + 1]):
            for t in range(self.group_tpl[s], self.group_tpl[s + 1]):
                a, b = self.tpl_cell[t], self.tpl_cell[t + 1]
                out.append(tuple(zip(self.cell_y[a:b].tolist(), self.cell_x[a:b].tolist())))
        return out

    def kernel_tables(self) -> tuple[np.ndarray, ...]:
        return (
            self.family_cum,
            self.family_kind,
            self.family_group,
            self.group_size,
            self.group_tpl,
            self.tpl_h,
            self.tpl_w,
            self.tpl_cell,
            self.cell_y,
            self.cell_x,
        )


@functools.lru_cache(maxsize=32)
def build_catalogue(p: AtomsParams) -> Catalogue:
    """Enumerate the shapes for a parameter set. Raises SpecError when a family that can be
    drawn (probability > 0) has no shape in [min_size, max_size] that fits the grid."""
    g, lo, hi = p.grid_size, p.min_size, p.max_size
    families: list[tuple[str, int, float, set[Cells] | None]] = [
        ("blob", BLOB, p.kind_probs[BLOB], None),
        ("rectangle", RECTANGLE, p.kind_probs[RECTANGLE], _rectangles(g, lo, hi)),
    ]
    for name, prob in zip(LINE_NAMES, p.line_probs):
        families.append((f"line/{name}", LINE, p.kind_probs[LINE] * prob, _lines(g, lo, hi, name)))
    makers = {
        "checkerboard": lambda: _checkerboards(g, lo, hi),
        "L": lambda: _ls(lo, hi),
        "T": lambda: _ts(lo, hi),
        "plus": lambda: _pluses(lo, hi),
        "zigzag": lambda: _zigzags(lo, hi),
    }
    for name, prob in zip(PATTERN_NAMES, p.pattern_probs):
        families.append((f"pattern/{name}", PATTERN, p.kind_probs[PATTERN] * prob, makers[name]()))

    names, kinds, probs, fam_group, group_size, group_tpl = [], [], [], [0], [], [0]
    tpl_h, tpl_w, tpl_cell, cys, cxs = [], [], [0], [], []
    for name, kind, prob, shapes in families:
        if prob <= 0:
            continue  # never drawn: not in the tables
        if shapes is not None:
            shapes = {s for s in shapes if max(y for y, _ in s) < g and max(x for _, x in s) < g}
            if not shapes:
                raise SpecError(
                    f"no {name} shape has between {lo} and {hi} cells on a {g}x{g} grid: "
                    f"change min_size/max_size or give {KIND_NAMES[kind]} sub-kind probability 0"
                )
        names.append(name)
        kinds.append(kind)
        probs.append(prob)
        sizes = range(lo, hi + 1) if shapes is None else sorted({len(s) for s in shapes})
        for size in sizes:
            group_size.append(size)
            for s in sorted(t for t in shapes or () if len(t) == size):
                tpl_h.append(max(y for y, _ in s) + 1)
                tpl_w.append(max(x for _, x in s) + 1)
                cys.extend(y for y, _ in s)
                cxs.extend(x for _, x in s)
                tpl_cell.append(len(cys))
            group_tpl.append(len(tpl_h))
        fam_group.append(len(group_size))
    cum = np.cumsum(probs) / np.sum(probs)
    cum[-1] = 1.0
    i64 = np.int64
    return Catalogue(
        family_names=tuple(names),
        family_kind=np.array(kinds, np.uint8),
        family_cum=cum,
        family_group=np.array(fam_group, i64),
        group_size=np.array(group_size, i64),
        group_tpl=np.array(group_tpl, i64),
        tpl_h=np.array(tpl_h, i64),
        tpl_w=np.array(tpl_w, i64),
        tpl_cell=np.array(tpl_cell, i64),
        cell_y=np.array(cys, i64),
        cell_x=np.array(cxs, i64),
    )
