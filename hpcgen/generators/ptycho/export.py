"""``hpcgen export FILE --format data001 --out DIR``: NPZ files that PtychoPINN reads unchanged.

For every dose, in the fly64 dose study's layout (``studies/fly64_dose_overlap/generation.py``
names the folder ``dose_<int(dose)>`` and the files ``patched_train.npz``/``patched_test.npz``):

    DIR/dose_<d>/patched_train.npz, DIR/dose_<d>/patched_test.npz
    DIR/run_manifest.json

Each NPZ is read as it is by the four PtychoPINN readers: the study validator
(``validate_dataset_contract``), the torch loaders (``ptycho_torch/dataloader.py``,
``ptycho_torch/memmap_bridge.py``), ``RawData.from_file`` and the TensorFlow ``load_data``
(``ptycho/workflows/components.py``). Where they want different names, both are written with
the same values (docs/using_ptycho.md):

    diffraction, diff3d        (n, N, N) float32    normalised amplitude sqrt(counts) / scale;
                                                    the validator and torch read diffraction,
                                                    RawData and load_data diff3d
    Y                          (n, N, N) complex64  ground-truth object patches
    objectGuess (M, M), probeGuess (N, N) complex64
    xcoords, ycoords           (n,) float64         probe centres, object pixels
    xcoords_start, ycoords_start (n,) float64       = xcoords, ycoords (load_data indexes them)
    scan_index                 (n,) int64
    _metadata                  0-d unicode          JSON, MetadataManager's schema (metadata.py)

split along y at fraction 0.5 of the y range (PtychoPINN's split_dataset_tool rule: train is
y < y_min + 0.5 (y_max - y_min)). NPZ members are streamed block by block (uncompressed, as
np.savez writes them), so memory stays bounded by the run's chunk size; every file written is
then re-read and checked against all of this before the export reports success.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.engine.provenance import sha256_file
from hpcgen.errors import UserError
from hpcgen.generators.base import FileView, Node
from hpcgen.generators.ptycho.metadata import (
    METADATA_KEY,
    build_metadata,
    metadata_array,
    parse_metadata,
)
from hpcgen.generators.ptycho.params import dose_tag

SPLIT_FRACTION = 0.5
MANIFEST = "run_manifest.json"
#: file of each split inside DIR/dose_<d>/ (the fly64 study's Phase C names)
SPLIT_FILES = {"train": "patched_train.npz", "test": "patched_test.npz"}

#: keys every reader needs: name -> (dtype, number of dimensions); per-row keys first
CONTRACT: dict[str, tuple[str, int]] = {
    "diffraction": ("float32", 3),
    "diff3d": ("float32", 3),
    "Y": ("complex64", 3),
    "xcoords": ("float64", 1),
    "ycoords": ("float64", 1),
    "xcoords_start": ("float64", 1),
    "ycoords_start": ("float64", 1),
    "scan_index": ("int64", 1),
    "objectGuess": ("complex64", 2),
    "probeGuess": ("complex64", 2),
}
PER_ROW = (
    "diffraction",
    "diff3d",
    "Y",
    "xcoords",
    "ycoords",
    "xcoords_start",
    "ycoords_start",
    "scan_index",
)
#: (key, copy): the second is written for the readers that ask for it by that name
DUPLICATES = (("diffraction", "diff3d"), ("xcoords", "xcoords_start"), ("ycoords", "ycoords_start"))


def split_masks(y: np.ndarray, fraction: float = SPLIT_FRACTION) -> tuple[np.ndarray, float]:
    """(train mask, split point): train is y < y_min + fraction * (y_max - y_min)."""
    if len(y) == 0:
        return np.zeros(0, bool), float("nan")
    split = float(y.min() + (y.max() - y.min()) * fraction)
    return y < split, split


# --- streamed NPZ ---------------------------------------------------------------------------------


def write_npz_streamed(
    path: Path, members: list[tuple[str, np.dtype, tuple[int, ...], Callable[[], Iterator]]]
) -> None:
    """Write an uncompressed NPZ member by member: (key, dtype, shape, blocks()) where blocks()
    yields C-ordered arrays whose rows add up to ``shape``."""
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, dtype, shape, blocks in members:
            header = {
                "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                "fortran_order": False,
                "shape": tuple(shape),
            }
            with zf.open(key + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array_header_2_0(fh, header)
                written = 0
                for block in blocks():
                    a = np.ascontiguousarray(block, dtype=dtype)
                    fh.write(a.tobytes())
                    written += len(a) if a.ndim else 1
                expect = shape[0] if shape else 1
                if written != expect:
                    raise RuntimeError(f"{path}:{key}: wrote {written} rows, header says {expect}")
    tmp.replace(path)


def iter_npy_member(path: Path, key: str, block: int = 1024) -> tuple[np.dtype, tuple, Iterator]:
    """(dtype, shape, iterator over row blocks) of one member of an uncompressed NPZ."""
    zf = zipfile.ZipFile(path)
    fh = zf.open(key + ".npy")
    version = np.lib.format.read_magic(fh)
    read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read_header(fh)
    if fortran:
        raise UserError(f"{path}:{key}: Fortran-ordered arrays are not DATA-001")
    row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1

    def gen() -> Iterator[np.ndarray]:
        try:
            n = shape[0] if shape else 1
            for s in range(0, n, block):
                k = min(block, n - s)
                buf = fh.read(k * row * dtype.itemsize)
                yield np.frombuffer(buf, dtype=dtype).reshape((k, *shape[1:]) if shape else ())
        finally:
            fh.close()
            zf.close()

    return dtype, shape, gen()


# --- contract validation --------------------------------------------------------------------------


def validate_data001(path: Path) -> list[str]:
    """Problems of one NPZ against what every PtychoPINN reader needs (empty list: valid):
    keys, dtypes, shapes, equal first-axis lengths, finite values, non-negative amplitudes,
    duplicated keys equal (diff3d = diffraction, *_start = coords), and a ``_metadata`` that
    MetadataManager parses. Streams the arrays."""
    try:
        with zipfile.ZipFile(path) as zf:
            keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except (OSError, zipfile.BadZipFile) as e:
        return [f"{path}: not a readable NPZ ({e})"]
    problems = [f"missing key {k}" for k in (*CONTRACT, METADATA_KEY) if k not in keys]
    if problems:
        return problems
    shapes: dict[str, tuple] = {}
    for key, (dtype, ndim) in CONTRACT.items():
        dt, shape, blocks = iter_npy_member(path, key)
        shapes[key] = shape
        if str(dt) != dtype:
            problems.append(f"{key} is {dt}, the readers want {dtype}")
        if len(shape) != ndim:
            problems.append(f"{key} has shape {shape}, the readers want {ndim} dimensions")
        nonfinite = negative = 0
        for b in blocks:
            if dt.kind in "fc":
                nonfinite += int(np.count_nonzero(~np.isfinite(b)))
            if key in ("diffraction", "diff3d"):
                negative += int(np.count_nonzero(b < 0))
        if nonfinite:
            problems.append(f"{key} has {nonfinite} non-finite values")
        if negative:
            problems.append(f"{key} has {negative} negative amplitudes")
    if problems:
        return problems
    lengths = {k: shapes[k][0] for k in PER_ROW}
    if len(set(lengths.values())) != 1:
        problems.append(f"first-axis lengths differ: {lengths}")
    n_pat = shapes["diffraction"][1:]
    if (
        shapes["diff3d"][1:] != n_pat
        or shapes["Y"][1:] != n_pat
        or shapes["probeGuess"] != n_pat
        or n_pat[0] != n_pat[1]
    ):
        problems.append(
            f"diffraction {n_pat}, diff3d {shapes['diff3d'][1:]}, Y {shapes['Y'][1:]}, "
            f"probeGuess {shapes['probeGuess']} must be the same square shape"
        )
    obj = shapes["objectGuess"]
    if obj[0] != obj[1]:
        problems.append(f"objectGuess {obj} is not square")
    if problems:
        return problems
    for key, copy in DUPLICATES:
        rows = _rows_differing(path, key, copy)
        if rows:
            problems.append(f"{copy} differs from {key} in {rows} rows")
    problems += _metadata_problems(path, n_pat[0])
    return problems


def _rows_differing(path: Path, key: str, copy: str) -> int:
    """Rows where two members of the same shape and dtype differ (streamed, bit for bit)."""
    _, _, a = iter_npy_member(path, key)
    _, _, b = iter_npy_member(path, copy)
    differ = 0
    for x, y in zip(a, b, strict=True):
        flat_x, flat_y = x.reshape(len(x), -1), y.reshape(len(y), -1)
        differ += int(np.count_nonzero((flat_x.view(np.uint8) != flat_y.view(np.uint8)).any(1)))
    return differ


def _metadata_problems(path: Path, n: int) -> list[str]:
    """``_metadata`` is a 0-d unicode array (read without allow_pickle) holding JSON with
    physics_parameters.nphotons > 0 and physics_parameters.N = the pattern size."""
    dt, shape, blocks = iter_npy_member(path, METADATA_KEY)
    if dt.kind != "U" or shape != ():
        blocks.close()
        return [f"{METADATA_KEY} is {dt} of shape {shape}; want a 0-d unicode string"]
    try:
        meta = parse_metadata(next(blocks))
        phys = meta["physics_parameters"]
        nphotons, size = float(phys["nphotons"]), int(phys["N"])
    except (ValueError, KeyError, TypeError) as e:
        return [f"{METADATA_KEY} does not parse as MetadataManager metadata ({e!r})"]
    finally:
        blocks.close()
    problems = []
    if not (np.isfinite(nphotons) and nphotons > 0):
        problems.append(f"{METADATA_KEY}: nphotons {nphotons} is not > 0")
    if size != n:
        problems.append(f"{METADATA_KEY}: N = {size}, the patterns are {n} px")
    return problems


def validate_split(train: Path, test: Path) -> list[str]:
    """Train and test share no scan position, train lies strictly below test in y, and both
    hold the same objectGuess and probeGuess."""
    with np.load(train) as a, np.load(test) as b:
        ya, yb = a["ycoords"], b["ycoords"]
        pa = set(zip(a["xcoords"].tolist(), ya.tolist()))
        pb = set(zip(b["xcoords"].tolist(), yb.tolist()))
        same_truth = np.array_equal(a["objectGuess"], b["objectGuess"]) and np.array_equal(
            a["probeGuess"], b["probeGuess"]
        )
    problems = []
    if pa & pb:
        problems.append(f"{len(pa & pb)} scan positions in both train and test")
    if len(ya) and len(yb) and not ya.max() < yb.min():
        problems.append(f"train y reaches {ya.max():.3f}, test y starts at {yb.min():.3f}")
    if not same_truth:
        problems.append("train and test have different objectGuess/probeGuess")
    return problems


# --- the exporter ---------------------------------------------------------------------------------


def export_data001(view: FileView, out: Path, options: Mapping[str, Any]) -> None:
    """Write DIR/dose_<d>/patched_{train,test}.npz and DIR/run_manifest.json (module doc)."""
    gen = view.generator
    p = gen.params
    out = Path(out)
    if out.exists():
        # check_output has refused an existing path without --overwrite; never rm a stranger
        if not (out / MANIFEST).is_file():
            raise UserError(
                f"{out} exists and is not a data001 export (no {MANIFEST}); remove it yourself"
            )
        shutil.rmtree(out)
    if not view.complete:
        raise UserError(
            f"{view.path}: some chunks are not written (done bitmap); finish the "
            "run with --resume before exporting"
        )
    y = view.read("ycoords")
    train, split = split_masks(y)
    n = len(y)
    n_ch = _node(view, "Y").shape[1]
    obj = view.static("objectGuess")
    probe = view.static("probeGuess")
    block = view.spec.chunk_size
    run = _run_record(view)
    out.mkdir(parents=True)

    def rows(name: str, mask: np.ndarray) -> Callable[[], Iterator[np.ndarray]]:
        def it() -> Iterator[np.ndarray]:
            for start, b in view.iter_rows([name], block):
                yield b[name][mask[start : start + len(b[name])]]

        return it

    energy = view.read("exit_energy")
    files: list[dict[str, Any]] = []
    doses: list[dict[str, Any]] = []
    study: dict[str, dict[str, Any]] = {}
    for dose in p.doses:
        tag = dose_tag(dose)
        (out / tag).mkdir()
        scale = gen.amplitude_scale(dose)
        scales = {"amplitude_scale": scale, "photons_per_unit_intensity": scale * scale}
        entry: dict[str, Any] = {"dose": dose, "group": tag, **scales, "splits": {}}
        photons = view.read(f"{tag}/photons")
        for split_name, mask in (("train", train), ("test", ~train)):
            k = int(mask.sum())
            path = out / tag / SPLIT_FILES[split_name]
            stats = _photon_statistics(photons[mask], energy[mask], scale)
            split_record = {
                "split_fraction": SPLIT_FRACTION,
                "split_axis": "y",
                "split_point": split,
                "parent_file": str(view.path),
                "train_count": int(train.sum()),
                "test_count": int(n - train.sum()),
            }
            meta = build_metadata(
                dose=dose,
                n_pixels=n_ch,
                split=split_name,
                n_patterns=k,
                split_record=split_record,
                photon_statistics=stats,
                scales=scales,
                run={**run, "dose_group": tag, "noise_stream": f'chunk.rng("noise", "{tag}")'},
            )
            meta_arr = metadata_array(meta)
            f32, c64, f64 = np.dtype(np.float32), np.dtype(np.complex64), np.dtype(np.float64)
            members = [
                ("diffraction", f32, (k, n_ch, n_ch), rows(f"{tag}/diffraction", mask)),
                ("diff3d", f32, (k, n_ch, n_ch), rows(f"{tag}/diffraction", mask)),
                ("Y", c64, (k, n_ch, n_ch), rows("Y", mask)),
                ("objectGuess", c64, obj.shape, lambda: iter([obj])),
                ("probeGuess", c64, probe.shape, lambda: iter([probe])),
                ("xcoords", f64, (k,), rows("xcoords", mask)),
                ("ycoords", f64, (k,), rows("ycoords", mask)),
                ("xcoords_start", f64, (k,), rows("xcoords", mask)),
                ("ycoords_start", f64, (k,), rows("ycoords", mask)),
                ("scan_index", np.dtype(np.int64), (k,), rows("scan_index", mask)),
                (METADATA_KEY, meta_arr.dtype, (), lambda a=meta_arr: iter([a])),
            ]
            write_npz_streamed(path, members)
            entry["splits"][split_name] = {"file": str(path.relative_to(out)), **stats}
            problems = validate_data001(path)
            if problems:
                raise RuntimeError(f"{path} fails the reader contract: {'; '.join(problems)}")
            files.append(
                {
                    "path": str(path.relative_to(out)),
                    "dose": dose,
                    "split": split_name,
                    "n_patterns": k,
                    "sha256": sha256_file(path),
                }
            )
        pair = [out / tag / SPLIT_FILES[s] for s in ("train", "test")]
        problems = validate_split(*pair)
        if problems:
            raise RuntimeError(f"{out / tag}: train/test split invalid: {'; '.join(problems)}")
        doses.append(entry)
        # the study's own manifest entry (generation.py main): paths as it writes them
        study[tag] = {
            "dose": dose,
            "train": str(pair[0]),
            "test": str(pair[1]),
            "intermediate_dir": str(out / tag),
        }

    spec = view.spec
    manifest = {
        **study,
        "format": "PtychoPINN NPZ (DATA-001 + diff3d, *_start, _metadata), normalised amplitude",
        "source_file": str(view.path),
        "data_hash": view.data_hash,
        "generator": spec.generator,
        "params": spec.params,
        "seeds": {
            "seed": spec.seed,
            "chunk_size": spec.chunk_size,
            "n_samples": spec.n_samples,
            "streams": {
                "positions": 'chunk.rng("positions") (random scans)',
                "noise": 'chunk.rng("noise", "dose_<d>") per dose',
            },
        },
        "split": {
            "axis": "y",
            "fraction": SPLIT_FRACTION,
            "split_point": split,
            "rule": "train: y < y_min + fraction * (y_max - y_min)",
            "n_train": int(train.sum()),
            "n_test": int(n - train.sum()),
        },
        "mean_exit_energy": gen.mean_energy,
        "doses": doses,
        "files": files,
        "validation": "every file passed the reader contract (keys, dtypes, shapes, lengths, "
        "finite, non-negative amplitudes, diff3d = diffraction, *_start = coords, _metadata "
        "parses); train/test disjoint and separated in y",
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")


def _photon_statistics(photons: np.ndarray, energy: np.ndarray, scale: float) -> dict[str, Any]:
    """Detected photons per pattern of one file (None when it has no pattern) and the mean the
    model expects, scale^2 * mean exit energy."""
    k = len(photons)
    return {
        "n_patterns": k,
        "photons_mean": float(photons.mean()) if k else None,
        "photons_std": float(photons.std()) if k else None,
        "photons_min": int(photons.min()) if k else None,
        "photons_max": int(photons.max()) if k else None,
        "expected_photons_mean": float(scale * scale * energy.mean()) if k else None,
    }


def _node(view: FileView, name: str) -> Node:
    node = view.node(name)
    if node is None:
        raise UserError(f"{view.path}: no dataset {name!r}")
    return node


def _run_record(view: FileView) -> dict[str, Any]:
    """Seed, streams, parameters and provenance of the run, for each file's _metadata."""
    spec, prov = view.spec, view.provenance
    return {
        "seed": spec.seed,
        "n_samples": spec.n_samples,
        "chunk_size": spec.chunk_size,
        "positions_stream": 'chunk.rng("positions") (random scans)',
        "generator": spec.generator,
        "params": spec.params,
        "mean_exit_energy": view.generator.mean_energy,
        "source_file": str(view.path),
        "data_hash": view.data_hash,
        "hpcgen_version": prov.get("versions", {}).get("hpcgen"),
        "git_commit": prov.get("git_commit"),
        "start_time": prov.get("start_time"),
        "end_time": prov.get("end_time"),
        "input_files": prov.get("input_files", {}),
    }


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    raise TypeError(f"not JSON serialisable: {type(v)}")
