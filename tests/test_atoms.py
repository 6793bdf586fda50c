"""atoms generator: the images' rules, the shape catalogue, the split and the verifier.

Shapes are recognised here from first principles (predicates on cell sets), independently of
the generator's catalogue code.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage, stats

from hpcgen.errors import SpecError
from hpcgen.generators.atoms.checks import AtomsVerifier, image_hashes
from hpcgen.generators.atoms.generator import AtomsGenerator
from hpcgen.generators.atoms.kernel import render_images
from hpcgen.generators.atoms.params import (
    KIND_NAMES,
    LINE_NAMES,
    PATTERN_NAMES,
    AtomsParams,
)
from hpcgen.generators.atoms.shapes import build_catalogue
from hpcgen.generators.atoms.split import assign_split, split_counts
from hpcgen.generators.base import Chunk, build_params

N = 20_000
P_OK = 1e-4  # deterministic data: a p-value below this would be a real deviation


def generate(n: int = N, seed: int = 11, index: int = 0, **params) -> dict[str, np.ndarray]:
    gen = AtomsGenerator(AtomsParams(**params))
    return gen.sample(Chunk(index=index, start=index * n, count=n, seed=seed))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return generate()


def head(d: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: v[:n] for k, v in d.items()}


def objects(d: dict[str, np.ndarray], slot: int | None = None):
    """Yield (image, kind, colour set, normalised cell set, h, w) for every placed object (or
    only the object in ``slot``, 0-based)."""
    for i in range(len(d["labels"])):
        slots = range(int(d["labels"][i])) if slot is None else [slot]
        for j in slots:
            if j >= d["labels"][i]:
                continue
            ys, xs = np.nonzero(d["masks"][i] == j + 1)
            colours = set(d["images"][i][ys, xs].tolist())
            y0, x0 = ys.min(), xs.min()
            cells = frozenset(zip((ys - y0).tolist(), (xs - x0).tolist()))
            yield i, int(d["kinds"][i, j]), colours, cells, ys.max() - y0 + 1, xs.max() - x0 + 1


# --- shape predicates (first principles) ---------------------------------------------------------


def line_type(cells: frozenset, h: int, w: int) -> str | None:
    n = len(cells)
    if h == 1 and w == n:
        return "horizontal"
    if w == 1 and h == n:
        return "vertical"
    if h == w == n and cells == {(i, i) for i in range(n)}:
        return "diagonal"
    if h == w == n and cells == {(i, n - 1 - i) for i in range(n)}:
        return "antidiagonal"
    return None


def _zigzag_rows(cells: frozenset, h: int, w: int) -> bool:
    """One cell per column, steps of exactly one row, turning only at the top/bottom row."""
    if len(cells) != w or len({x for _, x in cells}) != w or w < h + 1:
        return False
    rows = [y for _, y in sorted((x, y) for y, x in cells)]
    steps = np.diff(rows)
    if not (np.abs(steps) == 1).all():
        return False
    turns = [rows[k] for k in range(1, w - 1) if steps[k - 1] != steps[k]]
    return len(turns) >= 1 and all(t in (0, h - 1) for t in turns)


def pattern_types(cells: frozenset, h: int, w: int) -> set[str]:
    out = set()
    box = {(y, x) for y in range(h) for x in range(w)}

    def row(r: int) -> set:
        return {(r, x) for x in range(w)}

    def col(c: int) -> set:
        return {(y, c) for y in range(h)}

    if (
        h >= 3
        and w >= 3
        and any(cells == {(y, x) for y, x in box if (y + x) % 2 == p} for p in (0, 1))
    ):
        out.add("checkerboard")
    if h == w and h % 2 == 1 and h >= 3 and cells == row(h // 2) | col(w // 2):
        out.add("plus")
    if h >= 2 and w >= 2 and any(cells == row(r) | col(c) for r in (0, h - 1) for c in (0, w - 1)):
        out.add("L")
    if w % 2 == 1 and w >= 3 and h >= 2 and any(cells == row(r) | col(w // 2) for r in (0, h - 1)):
        out.add("T")
    if h % 2 == 1 and h >= 3 and w >= 2 and any(cells == col(c) | row(h // 2) for c in (0, w - 1)):
        out.add("T")
    flipped = frozenset((x, y) for y, x in cells)
    if (h in (2, 3) and _zigzag_rows(cells, h, w)) or (w in (2, 3) and _zigzag_rows(flipped, w, h)):
        out.add("zigzag")
    return out


def chi2_p(observed: list[int], probs: list[float]) -> float:
    obs, p = np.asarray(observed, float), np.asarray(probs, float)
    return float(stats.chisquare(obs, p / p.sum() * obs.sum()).pvalue)


# --- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grid_size": 4}, "grid_size must be in [8, 64]"),
        ({"min_objects": 0}, "min_objects <= max_objects"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects <= max_objects"),
        ({"max_size": 65}, "max_size <= 64"),
        ({"min_size": 5, "max_size": 4}, "min_size <= max_size"),
        ({"kind_probs": [0.5, 0.2, 0.2, 0.2]}, "kind_probs must sum to 1"),
        ({"line_probs": [1.2, -0.2, 0.0, 0.0]}, "line_probs must be >= 0"),
        ({"pattern_probs": [0.5, 0.5]}, "params.pattern_probs must have 5 entries, got 2"),
        ({"blob_weight": 0.5}, "blob_weight must be in [1, 100]"),
        ({"max_attempts": 0}, "max_attempts must be in [1, 1000]"),
        ({"separation": 2}, "separation must be 0 or 1"),
        ({"split_parts": [0, 0, 0]}, "split_parts must be 3 integers"),
        # plus patterns need 5 cells: with at most 4 a drawable family has no shape
        ({"max_size": 4}, "no pattern/plus shape has between 2 and 4 cells"),
        ({"max_objects": 2.5}, "params.max_objects must be an integer"),
    ],
)
def test_bad_params_are_refused_with_a_clear_message(values: dict, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        build_params(AtomsParams, values)


def test_a_family_with_probability_zero_needs_no_shape() -> None:
    p = AtomsParams(max_size=4, pattern_probs=(0.25, 0.25, 0.25, 0.0, 0.25))
    assert "pattern/plus" not in build_catalogue(p).family_names


# --- the shape catalogue -------------------------------------------------------------------------


def test_catalogue_counts_match_the_analytic_counts() -> None:
    cat = build_catalogue(AtomsParams())

    def by_size(family: str) -> Counter:
        return Counter(len(t) for t in cat.templates(family))

    # L: arm a >= 2, foot b >= 2, a + b - 1 = s cells; {a, b} and its mirror are one shape:
    # 4 (s - 2) distinct placements of orientation per size
    assert by_size("pattern/L") == {s: 4 * (s - 2) for s in range(3, 16)}
    # T: odd bar w >= 3 plus stem t >= 1 (w + t = s), 4 orientations
    assert by_size("pattern/T") == {s: 4 * len(range(3, s, 2)) for s in range(4, 16)}
    assert by_size("pattern/plus") == {5: 1, 9: 1, 13: 1}
    # rectangles h, w >= 2 with 2 <= h w <= 15
    pairs = Counter(h * w for h in range(2, 8) for w in range(2, 8) if h * w <= 15)
    assert by_size("rectangle") == pairs
    for name in LINE_NAMES:
        assert by_size(f"line/{name}") == {s: 1 for s in range(2, 16)}


def test_every_template_is_recognised_as_its_own_family_only() -> None:
    p = AtomsParams()
    cat = build_catalogue(p)
    for family in cat.family_names[1:]:
        for t in cat.templates(family):
            cells = frozenset(t)
            h = max(y for y, _ in t) + 1
            w = max(x for _, x in t) + 1
            assert p.min_size <= len(cells) <= p.max_size
            kind, _, sub = family.partition("/")
            if kind == "rectangle":
                assert len(cells) == h * w and h >= 2 and w >= 2
                assert not pattern_types(cells, h, w)
            elif kind == "line":
                assert line_type(cells, h, w) == sub
                assert not pattern_types(cells, h, w)
            else:
                assert pattern_types(cells, h, w) == {sub}, (family, t)
                assert line_type(cells, h, w) is None and len(cells) < h * w


# --- the images ----------------------------------------------------------------------------------


def test_fields_have_the_declared_shapes_and_dtypes(data: dict) -> None:
    gen = AtomsGenerator(AtomsParams())
    for f in gen.fields():
        assert data[f.name].shape == (N, *f.shape), f.name
        assert data[f.name].dtype == np.dtype(f.dtype), f.name


def test_values_labels_masks_and_kinds_are_consistent(data: dict) -> None:
    img, msk, lab, kinds = data["images"], data["masks"], data["labels"], data["kinds"]
    assert img.max() <= 9
    assert lab.min() >= 1 and lab.max() <= 4
    assert ((msk > 0) == (img > 0)).all()
    assert (msk.reshape(N, -1).max(axis=1) == lab).all()
    filled = np.arange(4)[None, :] < lab[:, None]
    assert (kinds[filled] < 4).all() and (kinds[~filled] == 255).all()


def test_every_object_has_one_colour_and_2_to_15_cells(data: dict) -> None:
    sizes = Counter()
    for _, _, colours, cells, _, _ in objects(head(data, 8000)):
        assert len(colours) == 1 and 1 <= next(iter(colours)) <= 9
        sizes[len(cells)] += 1
    assert min(sizes) == 2 and max(sizes) == 15


def test_objects_have_the_shape_of_their_kind(data: dict) -> None:
    cross = ndimage.generate_binary_structure(2, 1)
    seen = Counter()
    for _, kind, _, cells, h, w in objects(head(data, 3000)):
        grid = np.zeros((h, w), bool)
        grid[tuple(np.array(sorted(cells)).T)] = True
        name = KIND_NAMES[kind]
        seen[name] += 1
        if name == "blob":
            assert ndimage.label(grid, structure=cross)[1] == 1, "blobs are 4-connected"
        elif name == "rectangle":
            assert grid.all() and h >= 2 and w >= 2
        elif name == "line":
            assert line_type(cells, h, w) is not None
        else:
            assert len(pattern_types(cells, h, w)) == 1
    assert set(seen) == set(KIND_NAMES)


def test_first_object_kinds_lines_patterns_and_colours_follow_the_probabilities(data: dict) -> None:
    """The first object always fits, so its draws are unbiased by dropped placements."""
    kinds, lines, patterns, colours = Counter(), Counter(), Counter(), Counter()
    for _, kind, colour, cells, h, w in objects(data, slot=0):
        kinds[kind] += 1
        colours[next(iter(colour))] += 1
        if KIND_NAMES[kind] == "line":
            lines[line_type(cells, h, w)] += 1
        elif KIND_NAMES[kind] == "pattern":
            patterns[next(iter(pattern_types(cells, h, w)))] += 1
    assert sum(kinds.values()) == N
    assert chi2_p([kinds[k] for k in range(4)], [0.4, 0.2, 0.2, 0.2]) > P_OK
    assert chi2_p([lines[k] for k in LINE_NAMES], [0.3, 0.3, 0.2, 0.2]) > P_OK
    assert chi2_p([patterns[k] for k in PATTERN_NAMES], [1] * 5) > P_OK
    assert chi2_p([colours[c] for c in range(1, 10)], [1] * 9) > P_OK
    # and they can fail: the same counts are far from other probabilities
    assert chi2_p([kinds[k] for k in range(4)], [0.25] * 4) < 1e-12


def test_kind_probabilities_are_honoured() -> None:
    d = generate(2000, kind_probs=(0.0, 1.0, 0.0, 0.0))
    assert set(np.unique(d["kinds"])) == {1, 255}


def test_blob_weight_makes_blobs_compact() -> None:
    """Preferring frontier cells with >= 2 blob neighbours lowers the perimeter of equal-size
    blobs."""

    def mean_perimeter(weight: float) -> tuple[float, float]:
        d = generate(
            3000,
            kind_probs=(1.0, 0.0, 0.0, 0.0),
            min_objects=1,
            max_objects=1,
            min_size=12,
            max_size=12,
            blob_weight=weight,
        )
        m = np.pad(d["masks"] > 0, ((0, 0), (1, 1), (1, 1)))
        edges = (m[:, 1:, :] != m[:, :-1, :]).sum(axis=(1, 2)) + (m[:, :, 1:] != m[:, :, :-1]).sum(
            axis=(1, 2)
        )
        return edges.mean(), edges.std() / np.sqrt(len(edges))

    (p1, e1), (p3, e3), (p10, e10) = (mean_perimeter(w) for w in (1.0, 3.0, 10.0))
    assert p1 - p3 > 5 * np.hypot(e1, e3)
    assert p3 - p10 > 5 * np.hypot(e3, e10)
    assert p10 >= 14  # 12 cells can do no better than a 3x4 box (perimeter 14)


def test_separation_keeps_objects_from_touching() -> None:
    def touching(d: dict) -> int:
        m = d["masks"].astype(int)
        count = 0
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a = m[:, max(dy, 0) :, max(dx, 0) : m.shape[2] + min(dx, 0)]
            b = m[:, : m.shape[1] - dy, max(-dx, 0) : m.shape[2] - max(dx, 0)]
            count += int(((a > 0) & (b > 0) & (a != b)).sum())
        return count

    assert touching(generate(3000, separation=0)) > 0  # the default lets objects touch
    assert touching(generate(3000, separation=1)) == 0


def test_placement_retries_are_bounded_and_keep_what_fits() -> None:
    crowded = {"min_objects": 16, "max_objects": 16, "min_size": 12, "max_size": 15}
    one = generate(2000, max_attempts=1, **crowded)["labels"]
    many = generate(2000, max_attempts=200, **crowded)["labels"]
    assert one.min() >= 1 and many.max() <= 16  # the first object always fits
    assert one.max() < 16  # a crowded grid drops objects...
    assert many.mean() > one.mean() + 1  # ...fewer with more attempts


def test_object_counts_are_uniform_when_placement_rarely_fails() -> None:
    labels = generate(8000, max_attempts=1000)["labels"]
    assert chi2_p(np.bincount(labels, minlength=5)[1:].tolist(), [1] * 4) > P_OK


# --- determinism and the split -------------------------------------------------------------------


def test_same_chunk_same_bytes_other_chunk_or_seed_other_bytes() -> None:
    gen = AtomsGenerator(AtomsParams())
    a = gen.sample(Chunk(3, 300, 100, seed=5))
    b = gen.sample(Chunk(3, 300, 100, seed=5))
    c = gen.sample(Chunk(4, 400, 100, seed=5))
    d = gen.sample(Chunk(3, 300, 100, seed=6))
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    assert not np.array_equal(a["images"], c["images"])
    assert not np.array_equal(a["images"], d["images"])


def test_each_image_depends_only_on_its_own_seed() -> None:
    seeds = np.random.default_rng(0).integers(0, 2**63, 50, dtype=np.uint64)
    full = render_images(AtomsParams(), seeds)
    part = render_images(AtomsParams(), seeds[17:23])
    for k in full:
        assert np.array_equal(full[k][17:23], part[k]), k


def test_split_is_exact_per_block_and_independent_of_chunking() -> None:
    n, seed = 10_007, 42
    whole = assign_split(np.arange(n), seed)
    pieces = np.concatenate(
        [assign_split(np.arange(a, min(a + 333, n)), seed) for a in range(0, n, 333)]
    )
    assert np.array_equal(whole, pieces)
    blocks = whole[: n // 10 * 10].reshape(-1, 10)
    assert ((blocks == 0).sum(1) == 8).all() and ((blocks == 1).sum(1) == 1).all()
    assert tuple(np.bincount(whole, minlength=3)) == split_counts(n, seed)
    # positions inside blocks are shuffled, and the shuffle depends on the seed
    assert len({int(np.flatnonzero(b == 1)[0]) for b in blocks}) == 10
    assert not np.array_equal(whole, assign_split(np.arange(n), seed + 1))


def test_split_parts_set_other_ratios() -> None:
    s = assign_split(np.arange(5000), 3, (3, 1, 0))
    assert np.bincount(s, minlength=3).tolist() == [3750, 1250, 0]


def test_sample_stores_the_split_of_the_global_index() -> None:
    gen = AtomsGenerator(AtomsParams())
    d = gen.sample(Chunk(2, 1234, 500, seed=9))
    assert np.array_equal(d["split"], assign_split(np.arange(1234, 1734), 9))


# --- the verifier --------------------------------------------------------------------------------


def verify(d: dict, starts: list[int] | None = None, params: AtomsParams | None = None) -> dict:
    v = AtomsVerifier(params or AtomsParams())
    n = len(d["labels"])
    bounds = [*(starts or [0]), n]
    for a, b in itertools.pairwise(bounds):
        v.update({k: x[a:b] for k, x in d.items()}, a)
    return {r.name.split(" (")[0].split(" in ")[0]: r for r in v.results()}


def test_verifier_passes_generated_data_in_any_block_split(data: dict) -> None:
    whole = verify(data)
    pieces = verify(data, [0, 7, 2003, 2010, 15_555])
    assert all(r.passed for r in whole.values()), [r for r in whole.values() if not r.passed]
    assert [(r.passed, r.value) for r in whole.values()] == [
        (r.passed, r.value) for r in pieces.values()
    ]


def _first(d: dict, cond) -> int:
    return int(np.flatnonzero(cond(d))[0])


@pytest.mark.parametrize(
    ("corrupt", "failing"),
    [
        (lambda d: d["images"].__setitem__((5, 0, 0), 12), {"values", "masks match images"}),
        (
            lambda d: d["labels"].__setitem__(_first(d, lambda d: d["labels"] == 2), 0),
            {"objects per image", "object sizes", "masks match labels and kinds"},
        ),
        (
            lambda d: d["labels"].__setitem__(_first(d, lambda d: d["labels"] == 2), 3),
            {"object sizes", "masks match labels and kinds"},
        ),
        (
            lambda d: d["kinds"].__setitem__((_first(d, lambda d: d["labels"] < 4), 3), 1),
            {"masks match labels and kinds"},
        ),
        (lambda d: d["split"].__setitem__(slice(0, 10), 0), {"split sizes"}),
        (lambda d: d["split"].__setitem__(3, 7), {"split sizes", "no index"}),
    ],
)
def test_verifier_fails_each_kind_of_defect(data: dict, corrupt, failing: set) -> None:
    d = {k: v[:500].copy() for k, v in data.items()}
    assert all(r.passed for r in verify(d).values())
    corrupt(d)
    results = verify(d)
    assert {name for name, r in results.items() if not r.passed} == failing


def test_verifier_checks_sizes_and_colours_from_masks(data: dict) -> None:
    d = {k: v[:200].copy() for k, v in data.items()}
    i = int(np.flatnonzero(d["labels"] >= 2)[0])
    ys, xs = np.nonzero(d["masks"][i] == 1)
    d["images"][i, ys[0], xs[0]] = d["images"][i, ys[0], xs[0]] % 9 + 1  # a second colour
    d["masks"][i, ys[1:], xs[1:]] = 2  # object 1 shrinks to one cell, object 2 grows
    failed = {n for n, r in verify(d).items() if not r.passed}
    assert failed == {"object sizes", "masks match images"}


def test_verifier_detects_biased_kinds() -> None:
    biased = generate(5000, kind_probs=(0.3, 0.3, 0.2, 0.2))
    assert not verify(biased)["kind frequencies"].passed
    assert verify(biased, params=AtomsParams(kind_probs=(0.3, 0.3, 0.2, 0.2)))[
        "kind frequencies"
    ].passed


def test_verifier_detects_overlapping_rows(data: dict) -> None:
    d = {k: v[:100] for k, v in data.items()}
    v = AtomsVerifier(AtomsParams())
    v.update(d, 0)
    v.update(d, 50)
    results = {r.name: r for r in v.results()}
    assert not results["no index in two splits"].passed


def test_leakage_counts_images_shared_across_splits_and_fails(data: dict) -> None:
    d = {k: v[:1000].copy() for k, v in data.items()}
    val = np.flatnonzero(d["split"] == 1)
    train = np.flatnonzero(d["split"] == 0)
    assert verify(d)["train/val/test leakage"].passed
    d["images"][val[:50]] = d["images"][train[:50]]
    seen = {d["images"][i].tobytes() for i in train}
    expected = np.mean([d["images"][i].tobytes() in seen for i in val])
    assert expected >= 50 / len(val)
    result = verify(d)["train/val/test leakage"]
    assert not result.passed
    assert result.value.startswith(f"val in train {expected:.2%} (chance ")


def test_image_hashes_equal_iff_images_equal(data: dict) -> None:
    imgs = data["images"][:2000]
    h = image_hashes(imgs)
    assert np.array_equal(h, image_hashes(imgs.copy()))
    distinct = len({im.tobytes() for im in imgs})
    assert len(set(h.tolist())) == distinct


def test_params_roundtrip_through_the_spec_table() -> None:
    p = AtomsParams(separation=1, split_parts=(90, 5, 5))
    table = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
    assert (
        build_params(
            AtomsParams, {k: list(v) if isinstance(v, tuple) else v for k, v in table.items()}
        )
        == p
    )
