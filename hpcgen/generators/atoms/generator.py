"""The atoms generator: the engine contract (fields, sample, compute, verify, export, plot)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.generators.atoms.checks import AtomsVerifier
from hpcgen.generators.atoms.dataset import ARC_PALETTE, draw_report, export_dataset
from hpcgen.generators.atoms.kernel import render_images
from hpcgen.generators.atoms.options import OPTIONS
from hpcgen.generators.atoms.params import (
    DEFAULT_CHUNK_SIZE,
    EMPTY_KIND,
    KIND_NAMES,
    SPLIT_NAMES,
    AtomsParams,
)
from hpcgen.generators.atoms.split import assign_split
from hpcgen.generators.base import Chunk, Device, Exporter, FieldSpec, FileView, Generator

FIELD_NAMES = ("images", "labels", "masks", "kinds", "split")


class AtomsGenerator(Generator):
    """ARC-like grids of 1-4 objects (see hpcgen.generators.atoms and docs/atoms.md).

    All the work is random sampling, so ``sample`` produces every field (the numba kernel runs
    on the CPU) and ``compute`` adds nothing. At ~525 bytes per sample, 20 000 samples make a
    ~10 MB chunk.
    """

    name = "atoms"
    Params = AtomsParams
    default_chunk_size = DEFAULT_CHUNK_SIZE
    cli_option_table = OPTIONS

    def fields(self) -> list[FieldSpec]:
        p: AtomsParams = self.params
        g, k = p.grid_size, p.max_objects
        kinds = {str(i): n for i, n in enumerate(KIND_NAMES)} | {str(EMPTY_KIND): "empty"}
        return [
            FieldSpec(
                "images",
                (g, g),
                "uint8",
                "colour index",
                "grid cells: 0 background, 1-9 object colour (ARC palette)",
                {"palette": list(ARC_PALETTE)},
            ),
            FieldSpec("labels", (), "uint8", "objects", "number of objects placed in the image"),
            FieldSpec(
                "masks",
                (g, g),
                "uint8",
                "object index",
                "object of each cell: 0 background, 1..labels in placement order",
            ),
            FieldSpec(
                "kinds",
                (k,),
                "uint8",
                "kind code",
                f"kind of object slot j (mask value j+1); {EMPTY_KIND} = empty slot",
                {"kind_names": list(KIND_NAMES), "empty": EMPTY_KIND, "codes": str(kinds)},
            ),
            FieldSpec(
                "split",
                (),
                "uint8",
                "split code",
                "0 train, 1 val, 2 test: keyed hash of (seed, index), exactly "
                f"{'/'.join(map(str, p.split_parts))} per aligned block of "
                f"{sum(p.split_parts)} indices",
                {"split_names": list(SPLIT_NAMES), "split_parts": list(p.split_parts)},
            ),
        ]

    def sample(self, chunk: Chunk) -> dict[str, np.ndarray]:
        seeds = chunk.rng("atoms").integers(
            0, np.iinfo(np.uint64).max, size=chunk.count, dtype=np.uint64, endpoint=True
        )
        out = render_images(self.params, seeds)
        index = np.arange(chunk.start, chunk.start + chunk.count, dtype=np.int64)
        out["split"] = assign_split(index, chunk.seed, self.params.split_parts)
        return out

    def compute(
        self, inputs: Mapping[str, np.ndarray], chunk: Chunk, device: Device
    ) -> dict[str, np.ndarray]:
        return {}  # every field is drawn in sample()

    def verifier(self) -> AtomsVerifier:
        return AtomsVerifier(self.params)

    def root_attrs(self) -> dict[str, Any]:
        return {"atoms_kind_names": list(KIND_NAMES), "atoms_split_names": list(SPLIT_NAMES)}

    def exporters(self) -> dict[str, Exporter]:
        return {"dataset": export_dataset}

    def plot(self, view: FileView, out: Path, options: Mapping[str, Any]) -> None:
        """100 random images of the file's train split (ARC colours, labels) and the label
        histogram per split."""
        k = self.params.max_objects
        hist = np.zeros((3, k + 1), np.int64)
        for _, block in view.iter_rows(["labels", "split"]):
            for s in range(3):
                sel = block["split"] == s
                hist[s] += np.bincount(block["labels"][sel], minlength=k + 1)[: k + 1]
        n_train = int(hist[0].sum())
        # second pass over the split codes: the rows of 100 random ranks among the train rows
        rng = np.random.default_rng(view.spec.seed)
        ranks = np.sort(rng.choice(n_train, size=min(100, n_train), replace=False))
        pick, seen = [], 0
        for start, block in view.iter_rows(["split"]):
            rows = start + np.flatnonzero(block["split"] == 0)
            inside = ranks[(ranks >= seen) & (ranks < seen + rows.size)]
            pick.append(rows[inside - seen])
            seen += rows.size
        pick = np.concatenate(pick) if pick else np.zeros(0, np.int64)
        images = view.read("images", pick) if pick.size else np.zeros((0, 1, 1), np.uint8)
        labels = view.read("labels", pick) if pick.size else np.zeros(0, np.uint8)
        draw_report(
            images,
            labels,
            hist,
            Path(out),
            f"{Path(view.path).name}: {n_train} training images, {pick.size} at random",
        )
