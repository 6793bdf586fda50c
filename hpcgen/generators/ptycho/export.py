"""``hpcgen export FILE --format data001 --out DIR``: PtychoPINN's DATA-001 NPZ layout.

For every dose: DIR/dose_<d>/train.npz and DIR/dose_<d>/test.npz with

    diffraction (n, N, N) float32   normalised amplitude sqrt(counts) / amplitude_scale
    Y           (n, N, N) complex64 ground-truth object patches
    objectGuess (M, M)    complex64
    probeGuess  (N, N)    complex64
    xcoords, ycoords (n,) float64   probe centres, object pixels
    scan_index  (n,)      int64

split along y at fraction 0.5 of the y range (PtychoPINN's split_dataset_tool rule: train is
y < y_min + 0.5 (y_max - y_min)), plus DIR/run_manifest.json (files, doses, seeds, scales, photon
statistics, validation). NPZ members are streamed block by block (uncompressed, as np.savez
writes them), so memory stays bounded by the run's chunk size; every file written is then
re-read and checked against the contract before the export reports success.
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
from hpcgen.generators.ptycho.params import dose_tag

SPLIT_FRACTION = 0.5
MANIFEST = "run_manifest.json"

#: DATA-001 keys: name -> (dtype, number of dimensions); per-row keys first
CONTRACT: dict[str, tuple[str, int]] = {
    "diffraction": ("float32", 3),
    "Y": ("complex64", 3),
    "xcoords": ("float64", 1),
    "ycoords": ("float64", 1),
    "scan_index": ("int64", 1),
    "objectGuess": ("complex64", 2),
    "probeGuess": ("complex64", 2),
}
PER_ROW = ("diffraction", "Y", "xcoords", "ycoords", "scan_index")


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
    """Problems of one NPZ against DATA-001 (empty list: valid). Streams the arrays."""
    try:
        with zipfile.ZipFile(path) as zf:
            keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
    except (OSError, zipfile.BadZipFile) as e:
        return [f"{path}: not a readable NPZ ({e})"]
    problems = [f"missing key {k}" for k in CONTRACT if k not in keys]
    if problems:
        return problems
    shapes: dict[str, tuple] = {}
    for key, (dtype, ndim) in CONTRACT.items():
        dt, shape, blocks = iter_npy_member(path, key)
        shapes[key] = shape
        if str(dt) != dtype:
            problems.append(f"{key} is {dt}, DATA-001 wants {dtype}")
        if len(shape) != ndim:
            problems.append(f"{key} has shape {shape}, DATA-001 wants {ndim} dimensions")
        nonfinite = negative = 0
        for b in blocks:
            if dt.kind in "fc":
                nonfinite += int(np.count_nonzero(~np.isfinite(b)))
            if key == "diffraction":
                negative += int(np.count_nonzero(b < 0))
        if nonfinite:
            problems.append(f"{key} has {nonfinite} non-finite values")
        if negative:
            problems.append(f"diffraction has {negative} negative amplitudes")
    if problems:
        return problems
    lengths = {k: shapes[k][0] for k in PER_ROW}
    if len(set(lengths.values())) != 1:
        problems.append(f"first-axis lengths differ: {lengths}")
    n_pat = shapes["diffraction"][1:]
    if shapes["Y"][1:] != n_pat or shapes["probeGuess"] != n_pat or n_pat[0] != n_pat[1]:
        problems.append(
            f"diffraction {n_pat}, Y {shapes['Y'][1:]}, probeGuess "
            f"{shapes['probeGuess']} must be the same square shape"
        )
    obj = shapes["objectGuess"]
    if obj[0] != obj[1]:
        problems.append(f"objectGuess {obj} is not square")
    return problems


def validate_split(train: Path, test: Path) -> list[str]:
    """Train and test share no scan position, and train lies strictly below test in y."""
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


def export_data001(reader: Any, out: Path, options: Mapping[str, Any]) -> None:
    """Write DIR/<dose>/{train,test}.npz and DIR/run_manifest.json (see the module doc)."""
    gen = reader.generator
    p = gen.params
    out = Path(out)
    if out.exists():
        # check_output has refused an existing path without --overwrite; never rm a stranger
        if not (out / MANIFEST).is_file():
            raise UserError(
                f"{out} exists and is not a data001 export (no {MANIFEST}); remove it yourself"
            )
        shutil.rmtree(out)
    if not reader.complete:
        raise UserError(
            f"{reader.path}: some chunks are not written (done bitmap); finish the "
            "run with --resume before exporting"
        )
    y = reader.read("ycoords")
    train, split = split_masks(y)
    n = len(y)
    n_ch = reader.h5["Y"].shape[1]
    obj = reader.h5["objectGuess"][...]
    probe = reader.h5["probeGuess"][...]
    block = reader.spec.chunk_size
    out.mkdir(parents=True)

    def rows(name: str, mask: np.ndarray) -> Callable[[], Iterator[np.ndarray]]:
        def it() -> Iterator[np.ndarray]:
            for start, b in reader.iter_rows([name], block):
                yield b[name][mask[start : start + len(b[name])]]

        return it

    files: list[dict[str, Any]] = []
    doses: list[dict[str, Any]] = []
    for dose in p.doses:
        tag = dose_tag(dose)
        (out / tag).mkdir()
        scale = gen.amplitude_scale(dose)
        entry: dict[str, Any] = {
            "dose": dose,
            "group": tag,
            "amplitude_scale": scale,
            "photons_per_unit_intensity": scale * scale,
            "splits": {},
        }
        photons = reader.read(f"{tag}/photons")
        energy = reader.read("exit_energy")
        for split_name, mask in (("train", train), ("test", ~train)):
            k = int(mask.sum())
            path = out / tag / f"{split_name}.npz"
            members = [
                (
                    "diffraction",
                    np.dtype(np.float32),
                    (k, n_ch, n_ch),
                    rows(f"{tag}/diffraction", mask),
                ),
                ("Y", np.dtype(np.complex64), (k, n_ch, n_ch), rows("Y", mask)),
                ("objectGuess", np.dtype(np.complex64), obj.shape, lambda: iter([obj])),
                ("probeGuess", np.dtype(np.complex64), probe.shape, lambda: iter([probe])),
                ("xcoords", np.dtype(np.float64), (k,), rows("xcoords", mask)),
                ("ycoords", np.dtype(np.float64), (k,), rows("ycoords", mask)),
                ("scan_index", np.dtype(np.int64), (k,), rows("scan_index", mask)),
            ]
            write_npz_streamed(path, members)
            ph = photons[mask]
            entry["splits"][split_name] = {
                "file": str(path.relative_to(out)),
                "n_patterns": k,
                "photons_mean": float(ph.mean()) if k else None,
                "photons_std": float(ph.std()) if k else None,
                "photons_min": int(ph.min()) if k else None,
                "photons_max": int(ph.max()) if k else None,
                "expected_photons_mean": float(scale * scale * energy[mask].mean()) if k else None,
            }
            problems = validate_data001(path)
            if problems:
                raise RuntimeError(f"{path} fails DATA-001: {'; '.join(problems)}")
            files.append(
                {
                    "path": str(path.relative_to(out)),
                    "dose": dose,
                    "split": split_name,
                    "n_patterns": k,
                    "sha256": sha256_file(path),
                }
            )
        problems = validate_split(out / tag / "train.npz", out / tag / "test.npz")
        if problems:
            raise RuntimeError(f"{out / tag}: train/test split invalid: {'; '.join(problems)}")
        doses.append(entry)

    spec = reader.spec
    manifest = {
        "format": "DATA-001 (PtychoPINN canonical NPZ), normalised amplitude",
        "source_file": str(reader.path),
        "data_hash": reader.h5.attrs.get("hpcgen_data_hash"),
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
        "validation": "every file passed DATA-001 (keys, dtypes, shapes, lengths, finite, "
        "non-negative amplitudes); train/test disjoint and separated in y",
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    raise TypeError(f"not JSON serialisable: {type(v)}")
