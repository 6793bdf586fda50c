"""The data001 export against each PtychoPINN reader's contract, one test per reader.

Each test does to the exported files what that reader does (keys it indexes, how it opens the
NPZ, the shapes and dtypes it asserts, what it computes from the arrays), as read in
PtychoPINN's sources:

- the fly64 study: ``studies/fly64_dose_overlap/generation.py`` (file tree, run_manifest.json),
  ``training.py`` (``build_training_jobs``: ``dose_<int>/patched_{train,test}.npz``),
  ``overlap.py`` (``glob("*train.npz")``), ``validation.py`` (``validate_dataset_contract``);
- ``ptycho/metadata.py`` ``MetadataManager.load_with_metadata`` / ``get_nphotons`` /
  ``validate_parameters``;
- ``ptycho/raw_data.py`` ``RawData.from_file`` and ``RawData.__init__``;
- ``ptycho/workflows/components.py`` ``load_data`` (the TensorFlow training entry);
- ``ptycho_torch/dataloader.py`` (``npz_headers``, ``_get_diffraction_stack``,
  ``_validate_writer_inputs``) and ``ptycho_torch/memmap_bridge.py``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import run_hpcgen

from hpcgen.generators.ptycho.export import validate_data001

SPEC = """generator = "ptycho"
n_samples = 150
seed = 11
chunk_size = 64
output = "p.h5"

[params]
N = 16
object_size = 48
doses = [1e3, 1e5]
"""
DOSES = {"dose_1000": 1e3, "dose_100000": 1e5}
SPLITS = ("train", "test")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(HDF5 file, export folder): 150 patterns of 16 x 16 at two doses, exported by the CLI."""
    d = tmp_path_factory.mktemp("ptycho_clients")
    (d / "p.toml").write_text(SPEC)
    h5 = d / "p.h5"
    run_hpcgen("run", d / "p.toml", "--out", h5, "--quiet", cwd=d, check=True)
    out = d / "phase_c"
    run_hpcgen("export", h5, "--format", "data001", "--out", out, check=True)
    return h5, out


def hdf5_split(h5: Path) -> np.ndarray:
    """The export's train mask, by split_dataset_tool's rule: y < y_min + 0.5 (y_max - y_min)."""
    with h5py.File(h5, "r") as f:
        y = f["ycoords"][...]
    return y < y.min() + 0.5 * (y.max() - y.min())


def load_with_metadata(path: Path) -> tuple[dict[str, np.ndarray], dict | None]:
    """What MetadataManager.load_with_metadata does: allow_pickle=True, every key but _metadata
    into the dict, _metadata parsed as json.loads(str(value.item()))."""
    data, meta = {}, None
    with np.load(path, allow_pickle=True) as z:
        for key in z.files:
            if key == "_metadata":
                meta = json.loads(str(z[key].item()))
            else:
                data[key] = z[key]
    return data, meta


def raw_data_init_checks(x, y, x0, y0, diff3d, probe, scan_index, obj) -> None:
    """RawData.__init__'s assertions and _check_data_validity."""
    assert x.shape == y.shape == x0.shape == y0.shape
    assert x.ndim == y.ndim == x0.ndim == y0.ndim == 1
    assert diff3d.ndim == 3 and diff3d.shape[1] == diff3d.shape[2]
    assert probe.ndim == 2
    assert scan_index.ndim == 1
    assert obj is None or obj.ndim == 2


# --- the fly64 study ---------------------------------------------------------------------------


def test_file_tree_and_manifest_are_the_fly64_studys(run: tuple[Path, Path]) -> None:
    _, out = run
    tree = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert tree == [
        "dose_1000/patched_test.npz",
        "dose_1000/patched_train.npz",
        "dose_100000/patched_test.npz",
        "dose_100000/patched_train.npz",
        "run_manifest.json",
    ]
    manifest = json.loads((out / "run_manifest.json").read_text())
    for tag, dose in DOSES.items():
        # build_training_jobs: phase_c_root / f"dose_{int(dose)}" / "patched_{train,test}.npz"
        dose_dir = out / f"dose_{int(dose)}"
        assert (dose_dir / "patched_train.npz").is_file()
        assert (dose_dir / "patched_test.npz").is_file()
        # overlap.py main: the first glob("*train.npz") / glob("*test.npz") of the dose folder
        assert [p.name for p in dose_dir.glob("*train.npz")] == ["patched_train.npz"]
        assert [p.name for p in dose_dir.glob("*test.npz")] == ["patched_test.npz"]
        # generation.py main: manifest[f"dose_{int(dose)}"] = {dose, train, test, intermediate_dir}
        assert manifest[tag] == {
            "dose": dose,
            "train": str(dose_dir / "patched_train.npz"),
            "test": str(dose_dir / "patched_test.npz"),
            "intermediate_dir": str(dose_dir),
        }


def test_study_validator_contract(run: tuple[Path, Path]) -> None:
    """generation.py stage 5: load_with_metadata, then validate_dataset_contract(data)."""
    _, out = run
    for tag in DOSES:
        for split in SPLITS:
            data, _ = load_with_metadata(out / tag / f"patched_{split}.npz")
            for key in ("diffraction", "objectGuess", "probeGuess", "xcoords", "ycoords"):
                assert key in data, key
            assert np.issubdtype(data["diffraction"].dtype, np.floating)  # amplitude
            assert data["diffraction"].dtype == np.float32
            assert np.issubdtype(data["objectGuess"].dtype, np.complexfloating)
            assert np.issubdtype(data["probeGuess"].dtype, np.complexfloating)
            for key in ("xcoords", "ycoords"):
                assert np.issubdtype(data[key].dtype, np.floating)
                assert data[key].shape[0] == data["diffraction"].shape[0]


# --- MetadataManager ---------------------------------------------------------------------------


def test_metadata_parses_as_metadata_manager_reads_it(run: tuple[Path, Path]) -> None:
    h5, out = run
    train = hdf5_split(h5)
    with h5py.File(h5, "r") as f:
        seed = json.loads(f.attrs["hpcgen_spec"])["seed"]
        groups = {tag: (f[f"{tag}/photons"][...], f[f"{tag}/diffraction"]) for tag in DOSES}
        scales = {tag: float(d.attrs["amplitude_scale"]) for tag, (_, d) in groups.items()}
        photons = {tag: p for tag, (p, _) in groups.items()}
    for tag, dose in DOSES.items():
        for split, mask in zip(SPLITS, (train, ~train), strict=True):
            path = out / tag / f"patched_{split}.npz"
            data, meta = load_with_metadata(path)
            assert meta is not None and "_metadata" not in data
            # readable without pickle too: a 0-d unicode string, not a pickled object
            with np.load(path) as z:
                raw = z["_metadata"]
                assert raw.dtype.kind == "U" and raw.shape == ()
                assert set(dict(z)) == {*data, "_metadata"}
            assert meta["schema_version"] == "1.0.0"
            # get_nphotons and validate_parameters read physics_parameters; ptycho_train
            # (scripts/training/train.py) sets config.nphotons from a top-level "nphotons",
            # else from physics_parameters
            phys = meta["physics_parameters"]
            assert phys["nphotons"] == dose and phys["N"] == 16
            assert meta.get("nphotons", phys["nphotons"]) == dose
            assert meta["training_parameters"]["n_images"] == int(mask.sum())
            record = meta["data_transformations"][0]
            assert record["operation"] == "train_test_split"
            assert record["parameters"]["train_count"] == int(train.sum())
            extra = meta["additional_parameters"]
            assert extra["seed"] == seed and extra["dose"] == dose and extra["split"] == split
            assert extra["amplitude_scale"] == scales[tag]
            stats = extra["photon_statistics"]
            assert stats["photons_mean"] == pytest.approx(photons[tag][mask].mean())
            assert stats["photons_max"] == int(photons[tag][mask].max())
            # the scale in _metadata turns the stored amplitudes back into the photon counts
            counts = (data["diffraction"].astype(np.float64) * extra["amplitude_scale"]) ** 2
            np.testing.assert_allclose(counts.sum(axis=(1, 2)), photons[tag][mask], rtol=1e-5)


# --- RawData.from_file -------------------------------------------------------------------------


def test_raw_data_from_file_contract(run: tuple[Path, Path]) -> None:
    """from_file: load_with_metadata; xcoords_start/ycoords_start/scan_index by .get with
    fallbacks, data_dict["diff3d"] (amplitude, (n, N, N)), probeGuess, objectGuess."""
    h5, out = run
    train = hdf5_split(h5)
    with h5py.File(h5, "r") as f:
        h5_diff = {tag: f[f"{tag}/diffraction"][...] for tag in DOSES}
        h5_x, h5_y = f["xcoords"][...], f["ycoords"][...]
    for tag in DOSES:
        for split, mask in zip(SPLITS, (train, ~train), strict=True):
            d, _ = load_with_metadata(out / tag / f"patched_{split}.npz")
            # present in the file, not the fallbacks
            assert {"xcoords_start", "ycoords_start", "scan_index", "diff3d"} <= set(d)
            raw_data_init_checks(
                d["xcoords"],
                d["ycoords"],
                d["xcoords_start"],
                d["ycoords_start"],
                d["diff3d"],
                d["probeGuess"],
                d["scan_index"],
                d.get("objectGuess"),
            )
            assert d["diff3d"].dtype == np.float32 and d["diff3d"].shape[1:] == (16, 16)
            # the same amplitudes under both names, bit for bit, and the HDF5 rows
            assert d["diff3d"].tobytes() == d["diffraction"].tobytes()
            np.testing.assert_array_equal(d["diff3d"], h5_diff[tag][mask])
            assert d["xcoords_start"].tobytes() == d["xcoords"].tobytes()
            assert d["ycoords_start"].tobytes() == d["ycoords"].tobytes()
            np.testing.assert_array_equal(d["xcoords"], h5_x[mask])
            np.testing.assert_array_equal(d["ycoords"], h5_y[mask])
            np.testing.assert_array_equal(d["scan_index"], np.flatnonzero(mask))


# --- load_data (TensorFlow training entry) -----------------------------------------------------


def test_tf_load_data_contract(run: tuple[Path, Path]) -> None:
    """load_data: np.load without allow_pickle; xcoords, ycoords, xcoords_start, ycoords_start
    indexed directly; diff3d preferred over diffraction, rank 3 with first axis = len(xcoords);
    Y kept when its first axis matches; coordinates scaled in place; RawData built from rows."""
    _, out = run
    for tag in DOSES:
        for split in SPLITS:
            with np.load(out / tag / f"patched_{split}.npz") as data:
                x, y = data["xcoords"], data["ycoords"]
                x0, y0 = data["xcoords_start"], data["ycoords_start"]
                diff_key = "diff3d" if "diff3d" in data else "diffraction"
                assert diff_key == "diff3d"
                diff3d = data[diff_key]
                assert diff3d.ndim == 3 and diff3d.shape[0] == x.shape[0]
                probe = data["probeGuess"]
                obj = data.get("objectGuess", None)
                patches = data["Y"] if "Y" in data else None
            n = x.shape[0]
            assert patches is not None and patches.shape == (n, 16, 16)  # per image, kept
            for arr in (x, y, x0, y0):  # `xcoords *= coord_scale` needs writable floats
                arr *= 1.0
            sel = np.sort(np.random.default_rng(0).choice(n, size=n // 2, replace=False))
            raw_data_init_checks(
                x[sel], y[sel], x0[sel], y0[sel], diff3d[sel], probe, np.zeros(n)[sel], obj
            )
            # _generate_dataset_from_groups: Y[nn_indices] (groups, C, N, N) -> (groups, N, N, C)
            nn = np.stack([sel[:4], sel[4:8]])
            grouped = np.transpose(patches[nn], [0, 2, 3, 1])
            assert grouped.shape == (2, 16, 16, 4) and grouped.dtype == np.complex64


# --- the torch loaders -------------------------------------------------------------------------


def test_torch_loader_contract(run: tuple[Path, Path]) -> None:
    """ptycho_torch: the diffraction key chosen from the zip listing ('diffraction' before
    'diff3d'), its shape from the .npy header, canonical (n, N, N) layout, coordinates from
    np.load without pickle, probeGuess and 2-D objectGuess present with the pattern shape;
    memmap_bridge opens with mmap_mode='r' and casts coords to float64, scan_index to int32."""
    _, out = run
    for tag in DOSES:
        for split in SPLITS:
            path = out / tag / f"patched_{split}.npz"
            with zipfile.ZipFile(path) as archive:
                keys = {n[:-4] for n in archive.namelist() if n.endswith(".npy")}
                key = next(k for k in ("diffraction", "diff3d") if k in keys)
                assert key == "diffraction"
                with archive.open(f"{key}.npy") as npy:
                    version = np.lib.format.read_magic(npy)
                    assert version in ((1, 0), (2, 0), (3, 0))
                    read = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
                    shape, fortran, dtype = read(npy)
            assert not fortran and dtype == np.float32
            with np.load(path) as data:
                x, y = data["xcoords"], data["ycoords"]
                probe, obj = data["probeGuess"], data["objectGuess"]
                stack = data[key]
            assert x.ndim == y.ndim == 1 and len(x) == len(y) == shape[0]
            # canonical (N_scans, H, W): square in the last two axes, first axis = positions
            assert shape[1] == shape[2] == 16 and stack.shape == shape
            assert probe.shape == shape[1:] and obj.ndim == 2
            with np.load(path, mmap_mode="r") as data:
                assert data["xcoords"].astype(np.float64).dtype == np.float64
                assert data["scan_index"].astype(np.int32).max() < 150


# --- the checker and reproducibility -----------------------------------------------------------


def test_checker_catches_what_breaks_a_reader(run: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = run
    with np.load(out / "dose_1000/patched_train.npz") as z:
        good = {k: z[k] for k in z.files}
    p = tmp_path / "x.npz"
    np.savez(p, **good)
    assert validate_data001(p) == []
    meta = str(good["_metadata"].item())
    cases = {
        "missing key diff3d": {k: v for k, v in good.items() if k != "diff3d"},
        "missing key xcoords_start": {k: v for k, v in good.items() if k != "xcoords_start"},
        "missing key _metadata": {k: v for k, v in good.items() if k != "_metadata"},
        "diff3d differs from diffraction in 1 rows": {
            **good,
            "diff3d": np.concatenate([good["diff3d"][:1] * 2, good["diff3d"][1:]]),
        },
        "ycoords_start differs from ycoords": {**good, "ycoords_start": good["ycoords"] + 0.5},
        # MetadataManager.save_with_metadata's pickled object array: np.load(f) cannot read it
        "want a 0-d unicode string": {**good, "_metadata": np.array(meta, dtype=object)},
        "does not parse": {**good, "_metadata": np.array("{not json")},
        "nphotons 0.0 is not > 0": {
            **good,
            "_metadata": np.array(meta.replace('"nphotons": 1000.0', '"nphotons": 0.0')),
        },
    }
    for expected, arrays in cases.items():
        np.savez(p, **arrays)
        problems = validate_data001(p)
        assert any(expected in msg for msg in problems), (expected, problems)


def test_export_is_reproducible(run: tuple[Path, Path], tmp_path: Path) -> None:
    """The same HDF5 file gives the same bytes (no clock or host in _metadata)."""
    h5, out = run
    again = tmp_path / "phase_c"
    run_hpcgen("export", h5, "--format", "data001", "--out", again, check=True)
    for tag in DOSES:
        for split in SPLITS:
            name = f"{tag}/patched_{split}.npz"
            assert (again / name).read_bytes() == (out / name).read_bytes(), name
