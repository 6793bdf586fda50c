"""``hpcgen verify`` for atoms: streaming checks with bounded memory, over every row.

Every check judges the stored fields with code of its own: object sizes and colours from the
masks, kinds against ``kind_probs``, split counts against ``split_parts`` per block (not by
re-running the split's hash), touching objects from the masks, leakage by BLAKE2b digests
(hashlib), not the generator's SplitMix64. Everything is a running count except the leakage
check, which keeps one 8-byte digest per image (80 MB for 10 million images).

Leakage (:func:`leak`): a val/test image found pixel for pixel in train (or a test image in val)
is counted; chance alone puts some there (small images repeat: ~2 % of val is in train at 10^5
default images, ~10 % at 10^6), and chance is measured in the file itself as the share of the
reference split's images that have a twin inside that split. The check fails when more are found
than chance + 6 standard deviations + 3 images.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hpcgen.generators.atoms.params import EMPTY_KIND, KIND_NAMES, SPLIT_NAMES, AtomsParams
from hpcgen.generators.base import CheckResult, Verifier

#: a kind-frequency chi-square p-value below this fails verify (a correct file fails 1 in 10^6)
P_MIN = 1e-6
#: rows per vectorised step inside one update (bounds temporaries to ~10 MB)
_SUB = 4096
#: leakage fails above chance + this many standard deviations (+ LEAK_SLACK images): measured on
#: correct files the excess has a spread of about 1 sd, so a correct file fails ~1 in 10^9
LEAK_SIGMAS = 6.0
#: images of allowance on top, for tiny files where chance is estimated from a handful of twins
LEAK_SLACK = 3
#: the leakage check's name
LEAK_CHECK = "train/val/test leakage (identical images across splits)"


def image_hashes(images: np.ndarray) -> np.ndarray:
    """A 64-bit BLAKE2b digest per image (n, h, w) uint8: equal images, equal hashes; among 10^7
    different images a collision has probability ~3e-6. hashlib's BLAKE2b shares nothing with
    the generator (its split and image streams use SplitMix64)."""
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    digests = b"".join(hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in flat)
    return np.frombuffer(digests, dtype=np.uint64).copy()


@dataclass(frozen=True)
class Leak:
    """Images of split ``a`` found, pixel for pixel, in split ``ref``, against chance."""

    name: str
    n: int  # images of a
    found: int  # of them also in ref
    chance: float  # expected fraction by chance: the share of ref's images with a twin in ref
    bound: float  # most images found that chance explains

    @property
    def ok(self) -> bool:
        return self.found <= self.bound


def twin_share(h: np.ndarray) -> float:
    """Fraction of the images (hashes h) that have an identical twin elsewhere in the same set."""
    if len(h) == 0:
        return 0.0
    _, counts = np.unique(h, return_counts=True)
    return float(counts[counts > 1].sum()) / len(h)


def leak(name: str, a: np.ndarray, ref: np.ndarray) -> Leak:
    """How many images of ``a`` occur in ``ref``, and how many chance explains.

    Images are drawn independently whatever their split, so an image of ``a`` is in ``ref`` with
    the probability that one of ``ref``'s images has a twin among the others of ``ref``: the
    twin share q of ``ref`` estimates it from the file itself. The count found is then about
    binomial(n, q); its spread grows by the error of q (twins come in pairs: variance about
    2 q / m for m reference images), so sd = sqrt(n q (1 - q) (1 + 2 n / m)). Bound:
    n q + LEAK_SIGMAS sd + LEAK_SLACK.
    """
    n, m = len(a), len(ref)
    found = int(np.isin(a, ref).sum()) if n and m else 0
    q = twin_share(ref)
    sd = math.sqrt(n * q * (1 - q) * (1 + 2 * n / max(m, 1)))
    return Leak(name, n, found, q, n * q + LEAK_SIGMAS * sd + LEAK_SLACK)


class AtomsVerifier(Verifier):
    def __init__(self, params: AtomsParams) -> None:
        self.p = params
        k = params.max_objects
        self.rows = 0
        self.bad = {
            "values": 0,
            "labels": 0,
            "sizes": 0,
            "foreground": 0,
            "colour": 0,
            "mask_label": 0,
            "kinds": 0,
            "split": 0,
            "touching": 0,
        }
        self.label_hist = np.zeros(k + 1, np.int64)
        self.size_hist = np.zeros(params.grid_size**2 + 1, np.int64)
        self.kind_first = np.zeros(len(KIND_NAMES), np.int64)
        self.kind_all = np.zeros(len(KIND_NAMES), np.int64)
        self.split_counts = np.zeros(3, np.int64)
        self.block = int(sum(params.split_parts))
        self.block_bad = 0  # complete aligned blocks whose split counts are not exactly parts
        self.pending: dict[int, np.ndarray] = {}  # incomplete blocks at update edges
        self.ranges: list[tuple[int, int]] = []
        self.hashes: list[list[np.ndarray]] = [[], [], []]

    # --- streaming -------------------------------------------------------------------------------
    def update(self, data: Mapping[str, np.ndarray], start: int) -> None:
        n = len(data["labels"])
        self.ranges.append((start, start + n))
        self.rows += n
        for a in range(0, n, _SUB):
            b = min(a + _SUB, n)
            self._update_objects({k: data[k][a:b] for k in ("images", "masks", "labels", "kinds")})
            self.hashes_add(data["images"][a:b], data["split"][a:b])
        self._update_split(np.asarray(data["split"]), start)

    def _update_objects(self, d: Mapping[str, np.ndarray]) -> None:
        p, k = self.p, self.p.max_objects
        n = len(d["labels"])
        img = d["images"].reshape(n, -1)
        msk = d["masks"].reshape(n, -1)
        lab = d["labels"].astype(np.int64)
        kinds = d["kinds"]
        bad = self.bad
        bad["values"] += int((img.max(axis=1) > 9).sum())
        bad["labels"] += int(((lab < p.min_objects) | (lab > p.max_objects)).sum())
        self.label_hist += np.bincount(np.minimum(lab, k), minlength=k + 1)
        # cells per object index: counts[i, j] = cells of image i with mask j (j > k: clipped)
        idx = np.minimum(msk, k + 1).astype(np.int64) + (k + 2) * np.arange(n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=n * (k + 2)).reshape(n, k + 2)
        sizes = counts[:, 1 : k + 1]
        present = np.arange(1, k + 1)[None, :] <= lab[:, None]
        size_ok = np.where(present, (sizes >= p.min_size) & (sizes <= p.max_size), sizes == 0)
        bad["sizes"] += int((~size_ok.all(axis=1) | (counts[:, k + 1] > 0)).sum())
        self.size_hist += np.bincount(sizes[present], minlength=self.size_hist.size)[
            : self.size_hist.size
        ]
        bad["foreground"] += int(((msk > 0) != (img > 0)).any(axis=1).sum())
        if p.separation == 1:
            bad["touching"] += int(_touching(d["masks"]).sum())
        colour_bad = np.zeros(n, bool)
        for j in range(1, k + 1):
            inside = msk == j
            lo = np.where(inside, img, 255).min(axis=1)
            hi = np.where(inside, img, 0).max(axis=1)
            colour_bad |= (lo != hi) & inside.any(axis=1)
        bad["colour"] += int(colour_bad.sum())
        bad["mask_label"] += int((msk.max(axis=1).astype(np.int64) != lab).sum())
        kinds_ok = np.where(present, kinds < len(KIND_NAMES), kinds == EMPTY_KIND)
        bad["kinds"] += int((~kinds_ok.all(axis=1)).sum())
        first = kinds[:, 0]
        self.kind_first += np.bincount(first[first < 4], minlength=4)[:4]
        self.kind_all += np.bincount(kinds[kinds < 4].ravel(), minlength=4)[:4]

    def _update_split(self, split: np.ndarray, start: int) -> None:
        valid = split < 3
        self.bad["split"] += int((~valid).sum())
        self.split_counts += np.bincount(split[valid], minlength=3)[:3]
        b = self.block
        blk = (start + np.arange(len(split))) // b
        first, last = int(blk[0]), int(blk[-1])
        per = np.bincount(
            ((blk - first) * 3 + np.minimum(split, 2)).astype(np.int64),
            minlength=(last - first + 1) * 3,
        ).reshape(-1, 3)
        parts = np.array(self.p.split_parts)
        for edge in {first, last}:  # blocks cut by the update boundaries: merge, check when full
            counts = self.pending.pop(edge, np.zeros(3, np.int64)) + per[edge - first]
            if counts.sum() == b:
                self.block_bad += int((counts != parts).any())
            else:
                self.pending[edge] = counts
        inner = per[1:-1] if last > first else per[:0]
        self.block_bad += int((inner != parts).any(axis=1).sum())

    def hashes_add(self, images: np.ndarray, split: np.ndarray) -> None:
        h = image_hashes(images)
        for s in range(3):
            self.hashes[s].append(h[split == s])

    # --- report ----------------------------------------------------------------------------------
    def results(self) -> list[CheckResult]:
        p, bad, n = self.p, self.bad, self.rows
        out = [
            CheckResult("values in 0-9", bad["values"] == 0, f"{bad['values']} bad of {n}"),
            CheckResult(
                f"objects per image in [{p.min_objects}, {p.max_objects}]",
                bad["labels"] == 0,
                f"{bad['labels']} bad of {n}",
                "labels histogram " + _hist(self.label_hist, 0),
            ),
            CheckResult(
                f"object sizes in [{p.min_size}, {p.max_size}] (from masks)",
                bad["sizes"] == 0,
                f"{bad['sizes']} bad images of {n}",
                "sizes " + _hist(self.size_hist[: p.max_size + 1], 0),
            ),
            CheckResult(
                "masks match images (mask > 0 iff image > 0, one colour per object)",
                bad["foreground"] == 0 and bad["colour"] == 0,
                f"{bad['foreground']} foreground, {bad['colour']} colour mismatches of {n}",
            ),
            CheckResult(
                "masks match labels and kinds (max mask = label, label kinds filled)",
                bad["mask_label"] == 0 and bad["kinds"] == 0,
                f"{bad['mask_label']} mask/label, {bad['kinds']} kinds mismatches of {n}",
            ),
            CheckResult(
                "objects do not touch (separation = 1)",
                bad["touching"] == 0,
                f"{bad['touching']} images with touching objects of {n}"
                if p.separation == 1
                else "not required (separation = 0)",
            ),
            self._kind_check(),
            self._split_check(),
            self._overlap_check(),
            self._duplicates(),
        ]
        return out

    def _kind_check(self) -> CheckResult:
        """Chi-square of the first object's kind against kind_probs. The first object always fits
        (empty grid), so its kind follows kind_probs exactly; later objects are dropped more often
        when large, which biases their kinds slightly (reported, not tested)."""
        from scipy import stats

        probs = np.array(self.p.kind_probs)
        obs = self.kind_first
        total = int(obs.sum())
        name = "kind frequencies (first object, chi-square vs kind_probs)"
        if total == 0:
            return CheckResult(name, False, "no objects")
        drawn = probs > 0
        impossible = int(obs[~drawn].sum())
        if drawn.sum() > 1:
            pval = float(stats.chisquare(obs[drawn], probs[drawn] * total).pvalue)
        else:
            pval = 1.0
        freq = " ".join(f"{k}={c / total:.4f}" for k, c in zip(KIND_NAMES, obs))
        all_freq = " ".join(
            f"{k}={c / max(int(self.kind_all.sum()), 1):.4f}"
            for k, c in zip(KIND_NAMES, self.kind_all)
        )
        return CheckResult(
            name,
            pval >= P_MIN and impossible == 0,
            f"p={pval:.3g} ({freq})",
            f"all placed objects: {all_freq}",
        )

    def _split_check(self) -> CheckResult:
        """Every complete aligned block holds exactly split_parts; the totals are then within
        parts[s] of the fractions (only the incomplete edge blocks can deviate)."""
        parts = np.array(self.p.split_parts)
        expected = self.rows * parts / parts.sum()
        within = bool((np.abs(self.split_counts - expected) <= parts).all())
        ok = self.block_bad == 0 and within and self.bad["split"] == 0
        counts = " ".join(f"{s}={c}" for s, c in zip(SPLIT_NAMES, self.split_counts))
        exp = " ".join(f"{e:.1f}" for e in expected)
        return CheckResult(
            f"split sizes ({'/'.join(map(str, self.p.split_parts))} per block of {self.block})",
            ok,
            counts,
            f"expected {exp}; {self.block_bad} blocks off; {self.bad['split']} invalid codes",
        )

    def _overlap_check(self) -> CheckResult:
        """Each sample index holds one split code and appears in one row: no two row ranges
        overlap, and every code is 0, 1 or 2 (so no index is in two splits)."""
        spans = sorted(self.ranges)
        overlaps = sum(1 for (_, b), (c, _) in itertools.pairwise(spans) if c < b)
        ok = overlaps == 0 and self.bad["split"] == 0
        return CheckResult(
            "no index in two splits",
            ok,
            f"{overlaps} overlapping row ranges, {self.bad['split']} invalid split codes",
        )

    def _duplicates(self) -> CheckResult:
        """Leakage: val/test images that also occur, pixel for pixel, in train (and test in val)
        beyond what chance explains. Small images repeat by chance (a lone 2-cell line has a few
        thousand variants; at 10^6 default images ~10 % of val is in train by chance), so the
        reference is the file's own repeat rate inside the reference split (:func:`leak`)."""
        h = [np.concatenate(x) if x else np.zeros(0, np.uint64) for x in self.hashes]
        leaks = [
            leak("val in train", h[1], h[0]),
            leak("test in train", h[2], h[0]),
            leak("test in val", h[2], h[1]),
        ]

        def rate(x: Leak) -> str:
            return f"{x.found / x.n:.2%} (chance {x.chance:.2%})" if x.n else "n/a"

        within = 1.0 - sum(np.unique(x).size for x in h) / max(sum(x.size for x in h), 1)
        bounds = ", ".join(f"{x.name} {x.found}/{math.floor(x.bound)}" for x in leaks)
        return CheckResult(
            LEAK_CHECK,
            all(x.ok for x in leaks),
            ", ".join(f"{x.name} {rate(x)}" for x in leaks),
            f"found/most chance explains: {bounds}; repeats within splits: {within:.2%} of "
            "images; the dataset export's dedup option drops val/test images found in train",
        )


def _touching(masks: np.ndarray) -> np.ndarray:
    """Per image (n, g, g masks): do two different objects occupy 8-neighbouring cells?"""
    m = masks.astype(np.int16)
    out = np.zeros(len(m), bool)
    # each neighbour pair once: right, down, down-right, down-left
    for a, b in (
        (m[:, :, :-1], m[:, :, 1:]),
        (m[:, :-1, :], m[:, 1:, :]),
        (m[:, :-1, :-1], m[:, 1:, 1:]),
        (m[:, :-1, 1:], m[:, 1:, :-1]),
    ):
        out |= ((a > 0) & (b > 0) & (a != b)).any(axis=(1, 2))
    return out


def _hist(counts: np.ndarray, offset: int) -> str:
    return " ".join(f"{i + offset}:{int(c)}" for i, c in enumerate(counts) if c)
