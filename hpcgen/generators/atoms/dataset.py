"""The versioned dataset directory: train/val/test npz files, metadata.json, validation report.

Layout (docs/atoms.md)::

    datasets/YYYY-MM-DD-vN/
        train.npz  val.npz  test.npz   # keys images, labels, masks, kinds (uint8), index (int64)
        metadata.json                  # written last: a directory without it is incomplete
        validation_report.png

Both ``hpcgen dataset atoms`` (generating in-process) and ``hpcgen export FILE --format dataset``
(reading an HDF5 file) feed rows block by block into :class:`DatasetWriter`. It spools each
(split, key) to a raw file and at the end streams every spool into a deflate-compressed zip
entry holding a ``.npy`` file: byte for byte the format of ``np.savez_compressed`` (``np.load``
reads it), but memory stays bounded by one block however large the dataset. The spool needs as
much temporary disk as the uncompressed arrays (``storage_info.total_bytes``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.atoms.params import (
    EMPTY_KIND,
    KIND_NAMES,
    SPLIT_NAMES,
    AtomsParams,
)
from hpcgen.generators.base import FileView, params_to_dict

#: metadata.json format version
METADATA_VERSION = "1.0.0"
#: the ARC task viewer's colours for values 0-9
ARC_PALETTE = (
    "#000000",  # 0 black (background)
    "#0074D9",  # 1 blue
    "#FF4136",  # 2 red
    "#2ECC40",  # 3 green
    "#FFDC00",  # 4 yellow
    "#AAAAAA",  # 5 grey
    "#F012BE",  # 6 magenta
    "#FF851B",  # 7 orange
    "#7FDBFF",  # 8 sky blue
    "#870C25",  # 9 maroon
)
KEYS = ("images", "labels", "masks", "kinds", "index")
_COPY_BYTES = 1 << 24
#: rows per step when deduplicating spools (bounds memory to a few MB)
_DEDUP_BLOCK = 1 << 15
#: what ``dedup`` drops (metadata.json ``dedup.rule``)
DEDUP_RULE = (
    "val images that occur pixel for pixel in train, and test images that occur in train or in "
    "the kept val images, are dropped with all their keys; train is kept whole"
)


def key_layout(params: AtomsParams) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-sample shape and dtype of every npz key."""
    g, k = params.grid_size, params.max_objects
    u8 = np.dtype(np.uint8)
    return {
        "images": ((g, g), u8),
        "labels": ((), u8),
        "masks": ((g, g), u8),
        "kinds": ((k,), u8),
        "index": ((), np.dtype(np.int64)),
    }


def bytes_per_sample(params: AtomsParams) -> int:
    """Uncompressed bytes of one sample over all npz keys (525 for 16x16, 4 objects)."""
    return sum(int(np.prod(s)) * d.itemsize for s, d in key_layout(params).values())


def spec_readable(n: int) -> str:
    """The dataset spec's ``estimate_memory`` style: "768 bytes", "1.00 KB", "24.41 MB",
    "1.50 GB". Its units are powers of 1024 labelled KB/MB/GB, two decimals."""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024**2:
        return f"{n / 1024:.2f} KB"
    if n < 1024**3:
        return f"{n / 1024**2:.2f} MB"
    return f"{n / 1024**3:.2f} GB"


def binary_readable(n: int) -> str:
    """Binary units named as such: 1 KiB = 1024 bytes."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def memory_info(params: AtomsParams, n: int) -> dict[str, Any]:
    """The spec's ``memory_info``: the images alone, uint8 (256 bytes per 16x16 image)."""
    per = params.grid_size * params.grid_size
    return {"bytes_per_image": per, "total_bytes": per * n, "readable": spec_readable(per * n)}


def storage_info(params: AtomsParams, n: int) -> dict[str, Any]:
    """What the npz files hold uncompressed, all keys (images, labels, masks, kinds, index):
    also the temporary disk the spool needs."""
    per = bytes_per_sample(params)
    return {
        "bytes_per_sample": per,
        "total_bytes": per * n,
        "readable": binary_readable(per * n),
        "keys": list(KEYS),
    }


# --- the output directory ------------------------------------------------------------------------


def next_version_dir(root: Path, today: dt.date) -> Path:
    """root/YYYY-MM-DD-vN with N one above the highest version of that date already there."""
    pattern = re.compile(rf"^{re.escape(today.isoformat())}-v(\d+)$")
    taken = [
        int(m.group(1))
        for p in (root.iterdir() if root.is_dir() else ())
        if (m := pattern.match(p.name))
    ]
    return root / f"{today.isoformat()}-v{max(taken, default=0) + 1}"


def check_output_dir(path: Path) -> None:
    """A dataset is never written over anything: the directory must be absent or empty."""
    if path.exists() and not path.is_dir():
        raise UserError(f"output {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        raise UserError(f"output directory {path} is not empty: refusing to overwrite a dataset")


def create_output_dir(path: Path) -> None:
    """Create (or take, if empty) the output directory; exclusive where it did not exist, so two
    concurrent runs cannot both get the same new version."""
    check_output_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        check_output_dir(path)  # an empty directory that already existed is fine


# --- writing -------------------------------------------------------------------------------------


def _write_npz_entry(
    zf: zipfile.ZipFile, key: str, spool: Path, shape: tuple[int, ...], dtype: np.dtype
) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with zf.open(f"{key}.npy", "w", force_zip64=True) as out, open(spool, "rb") as src:
        np.lib.format.write_array_header_2_0(out, header) if _needs_v2(
            header
        ) else np.lib.format.write_array_header_1_0(out, header)
        shutil.copyfileobj(src, out, _COPY_BYTES)


def _needs_v2(header: Mapping[str, Any]) -> bool:
    return len(repr(header)) > 60000


class DatasetWriter:
    """Collects rows block by block; ``finish`` writes the npz files, report and metadata."""

    def __init__(self, out_dir: Path, params: AtomsParams) -> None:
        self.out = Path(out_dir)
        self.params = params
        self.layout = key_layout(params)
        self.spool = self.out / ".spool"
        self.spool.mkdir()
        self.files = {
            (s, key): open(self.spool / f"{name}.{key}.bin", "wb")
            for s, name in enumerate(SPLIT_NAMES)
            for key in KEYS
        }
        self.counts = np.zeros(3, np.int64)
        self.label_hist = np.zeros((3, params.max_objects + 1), np.int64)

    def add(self, block: Mapping[str, np.ndarray], start: int) -> None:
        """Rows of all fields (with ``split``); ``start`` is the global index of the first row."""
        split = np.asarray(block["split"])
        if split.size and split.max() > 2:
            raise UserError(f"invalid split code {int(split.max())} near row {start}")
        index = np.arange(start, start + len(split), dtype=np.int64)
        for s in range(3):
            sel = split == s
            if not sel.any():
                continue
            for key in KEYS:
                shape, dtype = self.layout[key]
                rows = index[sel] if key == "index" else np.asarray(block[key])[sel]
                if rows.shape[1:] != shape:
                    raise UserError(f"{key}: rows of shape {rows.shape[1:]}, expected {shape}")
                self.files[s, key].write(np.ascontiguousarray(rows, dtype=dtype).tobytes())
            self.counts[s] += int(sel.sum())
            labels = np.asarray(block["labels"])[sel]
            self.label_hist[s] += np.bincount(labels, minlength=self.label_hist.shape[1])[
                : self.label_hist.shape[1]
            ]

    def finish(
        self, metadata: dict[str, Any], report_seed: int, dedup: bool = False
    ) -> dict[str, Any]:
        """Write train/val/test.npz, validation_report.png, then metadata.json (returned).

        ``dedup``: first drop the val images that also occur in train and the test images that
        occur in train or val (:meth:`_dedup`); the counts go to metadata ``dedup``."""
        for f in self.files.values():
            f.close()
        before = self.counts.copy()
        dropped = self._dedup() if dedup else np.zeros(3, np.int64)
        file_bytes = {}
        for s, name in enumerate(SPLIT_NAMES):
            path = self.out / f"{name}.npz"
            with zipfile.ZipFile(
                path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True
            ) as zf:
                for key in KEYS:
                    shape, dtype = self.layout[key]
                    spool = self.spool / f"{name}.{key}.bin"
                    _write_npz_entry(zf, key, spool, (int(self.counts[s]), *shape), dtype)
            file_bytes[path.name] = path.stat().st_size
        self._report(report_seed)
        metadata = dict(metadata)  # dataset_info keeps its place (base_metadata puts None there)
        metadata["dataset_info"] = {
            **{f"{name}_count": int(c) for name, c in zip(SPLIT_NAMES, self.counts)},
            "total_count": int(self.counts.sum()),
        }
        kept = int(self.counts.sum())
        if kept != int(before.sum()):
            # our storage_info describes what the files hold; the spec's memory_info stays its
            # estimate_memory(num_images) of the images generated
            metadata["storage_info"] = storage_info(self.params, kept)
        metadata["dedup"] = {"enabled": bool(dedup)}
        if dedup:
            metadata["dedup"] |= {
                "rule": DEDUP_RULE,
                "dropped": {name: int(c) for name, c in zip(SPLIT_NAMES[1:], dropped[1:])},
                "before": {f"{name}_count": int(c) for name, c in zip(SPLIT_NAMES, before)},
            }
        metadata["label_histogram"] = {
            name: {str(i): int(c) for i, c in enumerate(h)}
            for name, h in zip(SPLIT_NAMES, self.label_hist)
        }
        metadata["arrays"] = {**metadata.get("arrays", {}), "file_bytes": file_bytes}
        shutil.rmtree(self.spool)
        tmp = self.out / "metadata.json.tmp"
        tmp.write_text(json.dumps(metadata, indent=2) + "\n")
        os.replace(tmp, self.out / "metadata.json")
        return metadata

    def _dedup(self) -> np.ndarray:
        """Drop, from the val and test spools, the images that occur pixel for pixel in train
        (test: in train or val), every key of those rows. Images are compared by their 128-bit
        BLAKE2b digests (a false match among 10^8 images has probability ~10^-23); memory: 16
        bytes per train and val image. Returns the rows dropped per split (3,)."""
        seen = self._digests(0)
        dropped = np.zeros(3, np.int64)
        for s in (1, 2):
            digests = self._digests(s)
            keep = ~np.isin(digests, seen)
            dropped[s] = int((~keep).sum())
            if dropped[s]:
                self._filter(s, keep)
            seen = np.concatenate([seen, digests[keep]])
        return dropped

    def _spool_rows(self, s: int, key: str) -> np.ndarray:
        """The spooled rows of split s, key ``key``, as a read-only memory map."""
        shape, dtype = self.layout[key]
        path = self.spool / f"{SPLIT_NAMES[s]}.{key}.bin"
        if int(self.counts[s]) == 0:
            return np.zeros((0, *shape), dtype)
        return np.memmap(path, dtype, "r", shape=(int(self.counts[s]), *shape))

    def _digests(self, s: int) -> np.ndarray:
        """128-bit BLAKE2b digests (n,) S16 of split s's spooled images."""
        images = self._spool_rows(s, "images")
        out = np.empty(len(images), "S16")
        for a in range(0, len(images), _DEDUP_BLOCK):
            block = np.ascontiguousarray(images[a : a + _DEDUP_BLOCK])
            out[a : a + len(block)] = [
                hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in block
            ]
        return out

    def _filter(self, s: int, keep: np.ndarray) -> None:
        """Rewrite every spool of split s with its rows where ``keep``, block by block."""
        name = SPLIT_NAMES[s]
        for key in KEYS:
            rows = self._spool_rows(s, key)
            tmp = self.spool / f"{name}.{key}.kept"
            with open(tmp, "wb") as out:
                for a in range(0, len(rows), _DEDUP_BLOCK):
                    b = a + _DEDUP_BLOCK
                    out.write(np.ascontiguousarray(rows[a:b][keep[a:b]]).tobytes())
            del rows  # the map goes before its file is replaced
            os.replace(tmp, self.spool / f"{name}.{key}.bin")
        self.counts[s] = int(keep.sum())
        labels = self._spool_rows(s, "labels")
        width = self.label_hist.shape[1]
        self.label_hist[s] = np.bincount(labels, minlength=width)[:width]

    def abort(self) -> None:
        """Drop the spool after a failure (the directory then has no metadata.json)."""
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.spool, ignore_errors=True)

    def _report(self, seed: int) -> None:
        n_train = int(self.counts[0])
        g = self.params.grid_size
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(n_train, size=min(100, n_train), replace=False))
        images = np.zeros((0, g, g), np.uint8)
        labels = np.zeros(0, np.uint8)
        if n_train:  # memory maps: only the picked rows are read
            images = np.memmap(self.spool / "train.images.bin", np.uint8, "r").reshape(-1, g, g)
            labels = np.memmap(self.spool / "train.labels.bin", np.uint8, "r")
            images, labels = np.array(images[pick]), np.array(labels[pick])
        draw_report(
            images,
            labels,
            self.label_hist,
            self.out / "validation_report.png",
            f"{self.out.name}: {n_train} training images, {len(pick)} at random",
        )


# --- metadata ------------------------------------------------------------------------------------


def provenance(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    import numba
    import scipy

    import hpcgen

    return {
        "hpcgen_version": hpcgen.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scipy": scipy.__version__,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
        "cwd": os.getcwd(),
        **(extra or {}),
    }


def base_metadata(
    params: AtomsParams,
    n: int,
    seed: int,
    chunk_size: int,
    name: str,
    extra_provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """metadata.json without the counts (DatasetWriter.finish adds them).

    The dataset spec's fields come first, with the spec's names, meanings and nothing else in
    them: ``version``, ``timestamp`` (``datetime.now().isoformat()``: local time, no offset),
    ``generation_params`` {num_images, seed, grid_size, splits}, ``dataset_info``
    {train_count, val_count, test_count, total_count}, ``memory_info`` {bytes_per_image (the
    uint8 image alone), total_bytes, readable ("24.41 MB" style)}, ``file_format`` {dtype
    "uint8", compression "npz"}. What hpcgen adds lives under keys of its own: ``name``,
    ``timestamp_utc``, ``generator_info``, ``arrays``, ``storage_info``, ``label_histogram``,
    ``provenance``.
    """
    now = dt.datetime.now(dt.UTC)
    return {
        "version": METADATA_VERSION,
        "timestamp": now.astimezone().replace(tzinfo=None).isoformat(),
        "generation_params": {
            "num_images": n,
            "seed": seed,
            "grid_size": params.grid_size,
            "splits": dict(zip(SPLIT_NAMES, params.split_fractions)),
        },
        "dataset_info": None,  # counts: DatasetWriter.finish
        "memory_info": memory_info(params, n),
        "file_format": {"dtype": "uint8", "compression": "npz"},
        # --- hpcgen's own keys
        "name": name,
        "timestamp_utc": now.isoformat(),
        "generator_info": {
            "generator": "atoms",
            "chunk_size": chunk_size,
            "split_method": (
                f"keyed hash of (seed, index): exactly {list(params.split_parts)} train/val/test "
                f"in every aligned block of {sum(params.split_parts)} indices"
            ),
            "params": params_to_dict(params),
        },
        "arrays": {
            "container": "zip, deflate: the np.savez_compressed format, read with np.load",
            "keys": {
                k: {"dtype": str(d), "per_sample_shape": list(s)}
                for k, (s, d) in key_layout(params).items()
            },
            "labels": "number of objects placed in the image",
            "masks": "object index per cell: 0 background, 1..labels in placement order",
            "kinds": dict(enumerate(KIND_NAMES)) | {EMPTY_KIND: "empty slot"},
            "index": "global sample index (int64): the row in the HDF5 run of the same spec",
            "palette": list(ARC_PALETTE),
        },
        "storage_info": storage_info(params, n),
        "provenance": provenance(extra_provenance),
    }


# --- the validation report -----------------------------------------------------------------------


def draw_report(
    images: np.ndarray, labels: np.ndarray, label_hist: np.ndarray, out: Path, title: str
) -> None:
    """Up to 100 images in a 10x10 grid (ARC colours, label above each) and the label histogram
    per split (label_hist: (3, max_objects + 1) counts). The grid is one mosaic image, not 100
    matplotlib axes, whose drawing would dominate the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    g = images.shape[1] if images.ndim == 3 and images.shape[1] > 1 else 16
    gap_x, gap_y = 2, 6  # cells between tiles; the label sits in the vertical gap
    px, py = g + gap_x, g + gap_y
    mosaic = np.full((10 * py, 10 * px), 10, np.uint8)  # 10: white paper between tiles
    for i in range(min(100, len(images))):
        r, c = divmod(i, 10)
        mosaic[r * py + gap_y - 1 : r * py + gap_y - 1 + g, c * px + 1 : c * px + 1 + g] = images[i]
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(10, 13), height_ratios=[4.4, 1])
    ax.imshow(
        mosaic,
        cmap=ListedColormap([*ARC_PALETTE, "#FFFFFF"]),
        vmin=0,
        vmax=10,
        interpolation="nearest",
    )
    for i in range(min(100, len(images))):
        r, c = divmod(i, 10)
        ax.text(
            c * px + 1 + g / 2,
            r * py + gap_y - 2,
            f"label {int(labels[i])}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_axis_off()
    ax.set_title(title)
    width = 0.27
    x = np.arange(label_hist.shape[1])
    for s, name in enumerate(SPLIT_NAMES):
        total = max(int(label_hist[s].sum()), 1)
        axh.bar(
            x + (s - 1) * width,
            label_hist[s] / total,
            width,
            label=f"{name} ({int(label_hist[s].sum())} images)",
        )
    axh.set_xticks(x)
    axh.set_xlabel("label (objects placed)")
    axh.set_ylabel("fraction of the split")
    axh.set_title("label histogram")
    axh.legend(loc="upper left")  # label 0 (no object) is always empty
    fig.subplots_adjust(left=0.08, right=0.98, top=0.97, bottom=0.05, hspace=0.1)
    fig.savefig(out, dpi=90)
    plt.close(fig)


# --- export from an HDF5 run ---------------------------------------------------------------------


def export_dataset(view: FileView, out: Path, options: Mapping[str, Any]) -> None:
    """``hpcgen export FILE --format dataset --out DIR``: the dataset directory from an HDF5 run
    (complete files only), streamed block by block. Never overwrites: DIR must be absent or
    empty (--overwrite does not change that). ``options["dedup"]`` true: drop val/test images
    found in train (:meth:`DatasetWriter.finish`)."""
    from hpcgen.generators.atoms.generator import FIELD_NAMES

    out = Path(out)
    if not view.complete:
        missing = int((~view.done).sum())
        raise UserError(f"{view.path}: {missing} chunks are not done; finish the run first")
    create_output_dir(out)
    params: AtomsParams = view.generator.params
    writer = DatasetWriter(out, params)
    try:
        for start, block in view.iter_rows(FIELD_NAMES):
            writer.add(block, view.row_range[0] + start)
        meta = base_metadata(
            params,
            view.n_rows,
            view.spec.seed,
            view.spec.chunk_size,
            out.name,
            {
                "source_file": str(Path(view.path).resolve()),
                "source_rows": list(view.row_range),
                "source_data_hash": view.data_hash,
                "source_provenance": view.provenance,
            },
        )
        writer.finish(meta, report_seed=view.spec.seed, dedup=bool(options.get("dedup")))
    except BaseException:
        writer.abort()
        raise
