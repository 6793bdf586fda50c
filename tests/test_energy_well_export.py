"""Energy files as a dataset of The Well: ``hpcgen export FILE --format well --out DIR``, 0-d
constant scalars, per-trajectory vortex / laminar shapes and the frame-0 diversity check.

The contract is The Well's (PolymathicAI/the_well): ``WellDataset(path=DIR, well_split_name=...)``
globs ``DIR/data/<split>/*.hdf5`` and reads ``DIR/stats.yaml`` with ``yaml.safe_load``;
``ZScoreNormalization`` takes ``stats["mean" | "std" | "mean_delta" | "std_delta"][field]``,
``RMSNormalization`` ``stats["rms" | "rms_delta"][field]`` for every field of t0/t1/t2_fields;
``the_well.utils.export.hdf5_to_xarray`` (``WellDataset.to_xarray``) gives a constant scalar no
dimension, so it must be 0-d. The tests without the-well check that contract on the files; the
ones marked by ``importorskip("the_well")`` run the real reader.
"""

from __future__ import annotations

import json
import math
import shutil

import h5py
import numpy as np
import pytest
import yaml
from helpers import assert_same_data, run_hpcgen

from hpcgen.errors import UserError
from hpcgen.generators.base import Chunk, Device
from hpcgen.generators.energy import patterns, well, well_export
from hpcgen.generators.energy.checks import EnergyVerifier
from hpcgen.generators.energy.generator import EnergyGenerator
from hpcgen.generators.energy.params import EnergyParams
from hpcgen.generators.energy.well_export import parse_fractions, split_rows
from hpcgen.io.writer import shard_name

N = 10  # trajectories: an 80/10/10 split of 8/1/1
SPEC = """
generator = "energy"
n_samples = {n}
seed = 21
chunk_size = 3
output = "unused.h5"
dtype = "float32"

[params]
domain = "fluid_dynamics"
n_steps = 4
height = 16
width = 24
{extra}
"""
STAT_KEYS = {"mean", "std", "mean_delta", "std_delta", "rms", "rms_delta"}


def write_spec(d, n=N, extra=""):
    p = d / f"spec_{n}{len(extra)}.toml"
    p.write_text(SPEC.format(n=n, extra=extra))
    return p


def export(src, out, *extra):
    return run_hpcgen("export", src, "--format", "well", "--out", out, *extra)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A fluid_dynamics (vortex) file of 10 trajectories written by ``hpcgen run`` and its export
    by the real CLI."""
    d = tmp_path_factory.mktemp("well")
    src = d / "energy_fluid_dynamics.h5"
    run_hpcgen("run", write_spec(d), "--out", src, "--quiet", check=True)
    out = d / "well_fd"
    res = export(src, out)
    assert res.returncode == 0, res.stderr
    return src, out


def is_dataset(obj):
    return isinstance(obj, h5py.Dataset)


def data_files(out):
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


# --- the tree and the files -----------------------------------------------------------------------
def test_export_writes_the_well_tree_split_80_10_10_by_trajectory(exported):
    src, out = exported
    assert data_files(out) == [
        "data/test/energy_fluid_dynamics.hdf5",
        "data/train/energy_fluid_dynamics.hdf5",
        "data/valid/energy_fluid_dynamics.hdf5",
        "stats.yaml",
    ]
    with h5py.File(src, "r") as s:
        rows = {"train": (0, 8), "valid": (8, 9), "test": (9, 10)}
        for split, (a, b) in rows.items():
            with h5py.File(out / "data" / split / "energy_fluid_dynamics.hdf5", "r") as f:
                assert f.attrs["n_trajectories"] == b - a
                assert f.attrs["dataset_name"] == "energy_fluid_dynamics"
                names = [
                    "t0_fields/energy",
                    "trajectory_seed",
                    *(f"scalars/{n}" for n in well.TRAJECTORY_SCALARS),
                    *(f"scalars/{n}" for n in patterns.PATTERN_PARAMETERS["vortex"]),
                ]
                for name in names:
                    assert f[name].dtype == s[name].dtype, name
                    assert f[name][...].tobytes() == s[name][a:b].tobytes(), (split, name)
                assert f["t0_fields/energy"].attrs["first_sample"] == a
                assert json.loads(f.attrs["hpcgen_export"]) == {
                    "source": src.name,
                    "rows": [a, b],
                    "split": split,
                }


def test_exported_files_are_plain_the_well_layout_with_0d_constant_scalars(exported):
    _, out = exported
    for path in (out / "data").rglob("*.hdf5"):
        with h5py.File(path, "r") as f:
            assert well.check_layout(f) == [], path
            assert "_hpcgen" not in f and "hpcgen_spec" not in f.attrs
            found: list[h5py.Dataset] = []
            f.visititems(lambda _, o, found=found: found.append(o) if is_dataset(o) else None)
            assert found and not any(d.is_virtual for d in found)
            for name in EnergyParams().simulation_parameters():
                d = f[f"scalars/{name}"]
                assert d.shape == () and d.dtype == np.float32, name
                assert d[()] == np.float32(f.attrs[name])
            for name in patterns.PATTERN_PARAMETERS["vortex"]:
                assert f[f"scalars/{name}"].shape == (f.attrs["n_trajectories"],)
                assert not f[f"scalars/{name}"].attrs["time_varying"]


def test_stats_yaml_is_the_train_split_recomputed_with_numpy(exported):
    src, out = exported
    stats = yaml.safe_load((out / "stats.yaml").read_text())
    assert set(stats) == STAT_KEYS
    with h5py.File(src, "r") as s:
        x = s["t0_fields/energy"][0:8].astype(np.float64)  # the train split only
    dx = x[:, 1:] - x[:, :-1]  # consecutive frames of each trajectory
    expected = {
        "mean": x.mean(),
        "std": x.std(),
        "rms": np.sqrt((x * x).mean()),
        "mean_delta": dx.mean(),
        "std_delta": dx.std(),
        "rms_delta": np.sqrt((dx * dx).mean()),
    }
    for key, value in expected.items():
        assert list(stats[key]) == ["energy"], key
        assert isinstance(stats[key]["energy"], float), key
        assert stats[key]["energy"] == pytest.approx(value, rel=1e-9, abs=1e-15), key


def test_export_streams_one_trajectory_at_a_time_with_the_same_result(
    exported, tmp_path, monkeypatch
):
    src, out = exported
    with h5py.File(src, "r") as f:
        row_bytes = sum(
            f[n].dtype.itemsize * math.prod(f[n].shape[1:])
            for n in ("t0_fields/energy", "trajectory_seed")
        )
    monkeypatch.setattr(well_export, "BLOCK_BYTES", row_bytes)  # less than one row with scalars
    blocks = []
    add = well_export.FieldStats.add
    monkeypatch.setattr(
        well_export.FieldStats, "add", lambda self, b: (blocks.append(len(b)), add(self, b))
    )
    totals = well_export.export_well([src], tmp_path / "small")
    assert totals == {"train": 8, "valid": 1, "test": 1}
    assert blocks == [1] * 8  # statistics merged over eight one-trajectory blocks
    small = yaml.safe_load((tmp_path / "small/stats.yaml").read_text())
    whole = yaml.safe_load((out / "stats.yaml").read_text())
    for key in STAT_KEYS:
        assert small[key]["energy"] == pytest.approx(whole[key]["energy"], rel=1e-12), key
    for split in ("train", "valid", "test"):
        name = f"data/{split}/energy_fluid_dynamics.hdf5"
        assert_same_data(tmp_path / "small" / name, out / name)


def test_raw_file_constant_scalars_are_0d_and_the_checker_refuses_shape_1(exported, tmp_path):
    src, _ = exported
    with h5py.File(src, "r") as f:
        assert well.check_layout(f) == []
        for name in EnergyParams().simulation_parameters():
            assert f[f"scalars/{name}"].shape == (), name
    path = tmp_path / "old.h5"  # the (1,) shape The Well's to_xarray cannot read
    path.write_bytes(src.read_bytes())
    with h5py.File(path, "r+") as f:
        attrs = dict(f["scalars/blur_sigma"].attrs)
        del f["scalars/blur_sigma"]
        f["scalars/blur_sigma"] = np.array([2.0], np.float32)
        f["scalars/blur_sigma"].attrs.update(attrs)
        assert well.check_layout(f) == [
            "scalars/blur_sigma: shape (1,), expected () from its flags"
        ]


def test_export_of_an_old_file_makes_its_constant_scalars_0d(exported, tmp_path):
    src, _ = exported
    old = tmp_path / "old.h5"
    old.write_bytes(src.read_bytes())
    with h5py.File(old, "r+") as f:
        for name in EnergyParams().simulation_parameters():
            attrs, value = dict(f[f"scalars/{name}"].attrs), f[f"scalars/{name}"][()]
            del f[f"scalars/{name}"]
            f[f"scalars/{name}"] = np.array([value], np.float32)
            f[f"scalars/{name}"].attrs.update(attrs)
    assert export(old, tmp_path / "out").returncode == 0
    with h5py.File(tmp_path / "out/data/train/old.hdf5", "r") as f:
        assert well.check_layout(f) == []
        assert f["scalars/blur_sigma"].shape == ()


@pytest.mark.slow
def test_export_of_a_virtual_merged_file_copies_plain_data(exported, tmp_path):
    _, out = exported
    spec = write_spec(tmp_path)
    shards = tmp_path / "shards"
    shards.mkdir()
    for a, b in [(0, 2), (2, 4)]:  # chunks of 3 trajectories: rows 0-5 and 6-9
        run_hpcgen(
            "run", spec, "--chunks", f"{a}:{b}", "--atomic", "--quiet",
            "--out", shards / shard_name((a, b)), check=True,
        )  # fmt: skip
    vds = tmp_path / "energy_fluid_dynamics.h5"
    run_hpcgen("merge", shards, "--out", vds, "--virtual", check=True)
    with h5py.File(vds, "r") as f:
        assert f["t0_fields/energy"].is_virtual
    res = run_hpcgen("verify", vds, "--report", tmp_path / "v.json")
    assert res.returncode == 0, res.stdout + res.stderr
    checks = {c["name"]: c for c in json.loads((tmp_path / "v.json").read_text())["checks"]}
    assert checks["plain datasets for The Well's loader (reported)"]["value"] == "virtual"

    vout = tmp_path / "well_vds"
    assert export(vds, vout).returncode == 0
    for split in ("train", "valid", "test"):
        name = f"data/{split}/energy_fluid_dynamics.hdf5"
        with h5py.File(vout / name, "r") as f:
            assert not f["t0_fields/energy"].is_virtual
        assert_same_data(out / name, vout / name)
    assert (vout / "stats.yaml").read_text() == (out / "stats.yaml").read_text()


# --- splits and refusals --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "counts"), [(3, (1, 1, 1)), (5, (3, 1, 1)), (10, (8, 1, 1)), (101, (81, 10, 10))]
)
def test_split_is_contiguous_with_at_least_one_trajectory_per_split(n, counts):
    rows = split_rows(n)
    assert list(rows) == ["train", "valid", "test"]
    assert tuple(b - a for a, b in rows.values()) == counts
    assert rows["train"][0] == 0 and rows["test"][1] == n
    assert rows["train"][1] == rows["valid"][0] and rows["valid"][1] == rows["test"][0]
    assert split_rows(n, (0.9, 0.1, 0.0)) == {
        "train": (0, n - max(1, math.floor(0.1 * n + 0.5))),
        "valid": (n - max(1, math.floor(0.1 * n + 0.5)), n),
    }


def test_bad_splits_are_user_errors():
    with pytest.raises(UserError, match="at least 3"):
        split_rows(2)
    for bad in ("0.8,0.1", "0.8,0.3,0.1", "0,0.5,0.5", "a,b,c"):
        with pytest.raises(UserError, match="split fractions"):
            parse_fractions(bad)
    assert parse_fractions("0.7,0.2,0.1") == (0.7, 0.2, 0.1)


@pytest.mark.slow
def test_export_refusals_are_one_line_exit_2(exported, tmp_path):
    src, out = exported
    res = export(src, out)  # exists
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "exists; use --overwrite" in res.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    res = export(src, other, "--overwrite")
    assert res.returncode == 2 and "refusing to replace" in res.stderr
    assert (other / "notes.txt").read_text() == "mine"
    tiny = tmp_path / "tiny.h5"
    run_hpcgen("run", write_spec(tmp_path, n=2), "--out", tiny, "--quiet", check=True)
    res = export(tiny, tmp_path / "t")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "2 trajectories cannot be split" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.partial").exists()


def test_overwrite_replaces_an_export_tree(exported, tmp_path):
    src, out = exported
    copy = tmp_path / "copy"
    assert export(src, copy).returncode == 0
    (copy / "data/train/energy_fluid_dynamics.hdf5").write_bytes(b"stale")
    assert export(src, copy, "--overwrite").returncode == 0
    assert_same_data(
        copy / "data/train/energy_fluid_dynamics.hdf5",
        out / "data/train/energy_fluid_dynamics.hdf5",
    )
    assert not (tmp_path / "copy.old").exists()


# --- per-trajectory vortex and laminar shapes -----------------------------------------------------
def vortex_reference(shape, cx, cy, w, m, phase):
    """exp(-R^2/w^2)(1 + sin(m theta + phase)) on [-1, 1]^2, x down the rows, by mean."""
    x = np.linspace(-1, 1, shape[0])[:, None] - cx
    y = np.linspace(-1, 1, shape[1])[None, :] - cy
    e = np.exp(-(x**2 + y**2) / w**2) * (1 + np.sin(m * np.arctan2(x, y) + phase))
    return (e / e.mean()).astype(np.float32)


def laminar_reference(shape, kx, ky, px, py):
    x = 2 * np.pi * np.arange(shape[0])[:, None] / shape[0]
    y = 2 * np.pi * np.arange(shape[1])[None, :] / shape[1]
    e = np.sin(ky * y + py) * np.cos(kx * x + px) + 2
    return e / e.mean()


def first_frames(params, chunk):
    gen = EnergyGenerator(params)
    inputs = gen.sample(chunk)
    return inputs, gen.compute(inputs, chunk, Device("cpu", np))["t0_fields/energy"][:, 0]


@pytest.mark.parametrize("domain", ["fluid_dynamics", "active_matter"])
def test_vortex_domains_draw_a_vortex_per_trajectory(domain):
    p = EnergyParams(domain=domain, n_steps=2, height=32, width=48, noise_sigma=0.0)
    chunk = Chunk(index=2, start=12, count=6, seed=4)
    inputs, frames = first_frames(p, chunk)
    names = list(patterns.PATTERN_PARAMETERS["vortex"])
    for name in names:
        v = inputs[f"scalars/{name}"]
        lo, hi = patterns.PARAMETER_RANGES[name]
        assert v.shape == (6,) and v.dtype == np.float32 and np.all((v >= lo) & (v <= hi)), name
    assert np.array_equal(inputs["scalars/vortex_mode"], np.round(inputs["scalars/vortex_mode"]))
    assert len({f.tobytes() for f in frames}) == 6  # six different initial conditions
    for i in range(6):
        args = [float(inputs[f"scalars/{n}"][i]) for n in names]
        np.testing.assert_allclose(frames[i], vortex_reference((32, 48), *args), rtol=1e-5)
    again, frames2 = first_frames(p, chunk)  # determinism per (seed, chunk)
    assert frames2.tobytes() == frames.tobytes()
    assert all(again[k].tobytes() == inputs[k].tobytes() for k in inputs)


def test_laminar_draws_integer_wave_numbers_and_phases_per_trajectory():
    p = EnergyParams(pattern="laminar", n_steps=2, height=16, width=16)
    inputs = EnergyGenerator(p).sample(Chunk(index=0, start=0, count=8, seed=9))
    kx, ky = inputs["scalars/laminar_kx"], inputs["scalars/laminar_ky"]
    assert np.array_equal(kx, np.round(kx)) and kx.min() >= 1 and kx.max() <= 4
    assert np.array_equal(ky, np.round(ky)) and ky.min() >= 1 and ky.max() <= 4
    names = list(patterns.PATTERN_PARAMETERS["laminar"])
    bases = {
        patterns.base_pattern(
            "laminar", (16, 16), None, {n: inputs[f"scalars/{n}"][i] for n in names}
        ).tobytes()
        for i in range(8)
    }
    assert len(bases) == 8
    args = [float(inputs[f"scalars/{n}"][0]) for n in names]
    np.testing.assert_allclose(
        patterns.base_pattern("laminar", (16, 24), None, dict(zip(names, args))),
        laminar_reference((16, 24), *args),
        rtol=1e-6,
    )


@pytest.mark.parametrize("pattern", ["vortex", "laminar"])
def test_source_variation_keeps_the_source_pattern_for_every_trajectory(pattern):
    p = EnergyParams(pattern=pattern, pattern_variation="source", n_steps=2, height=32, width=32)
    inputs, frames = first_frames(p, Chunk(index=1, start=4, count=4, seed=3))
    source = (
        vortex_reference((32, 32), 0.0, 0.0, 1.0, 5.0, 0.0)
        if pattern == "vortex"
        else laminar_reference((32, 32), 1, 1, 0.0, 0.0).astype(np.float32)
    )
    gen = EnergyGenerator(p)
    bases = np.stack(
        [
            patterns.base_pattern(
                pattern,
                (32, 32),
                None,
                {n: inputs[f"scalars/{n}"][i] for n in patterns.PATTERN_PARAMETERS[pattern]},
            )
            for i in range(4)
        ]
    )
    assert len({b.tobytes() for b in bases}) == 1
    np.testing.assert_allclose(bases[0], source, rtol=1e-6)
    assert gen.root_attrs()["pattern_variation"] == "source"
    assert frames.shape == (4, 32, 32)


def test_turbulent_inputs_have_no_pattern_scalars():
    gen = EnergyGenerator(EnergyParams(n_steps=2, height=16, width=16))
    inputs = gen.sample(Chunk(index=0, start=0, count=2, seed=1))
    assert not [k for k in inputs if "vortex" in k or "laminar" in k]
    assert not [f.name for f in gen.fields() if "vortex" in f.name or "laminar" in f.name]


def test_pattern_shapes_are_the_same_for_one_and_two_ranks(tmp_path):
    spec = write_spec(tmp_path, n=7)
    one = run_hpcgen("run", spec, "--out", tmp_path / "r1.h5", "--quiet", ranks=1, check=True)
    two = run_hpcgen("run", spec, "--out", tmp_path / "r2.h5", "--quiet", ranks=2, check=True)
    assert one.returncode == two.returncode == 0
    assert_same_data(tmp_path / "r1.h5", tmp_path / "r2.h5")
    with h5py.File(tmp_path / "r1.h5", "r") as f:
        assert len({e.tobytes() for e in f["t0_fields/energy"][:, 0]}) == 7


# --- verify: diversity of frame 0 -----------------------------------------------------------------
def verify_frame0(params, count=5, blocks=(2, 3)):
    gen = EnergyGenerator(params)
    v = EnergyVerifier(params)
    chunk = Chunk(index=0, start=0, count=count, seed=8)
    inputs = gen.sample(chunk)
    data = {**inputs, **gen.compute(inputs, chunk, Device("cpu", np))}
    start = 0
    for n in blocks:
        v.update({k: a[start : start + n] for k, a in data.items()}, start)
        start += n
    return v, data


def test_verify_reports_frame0_diversity():
    p = EnergyParams(domain="fluid_dynamics", n_steps=2, height=16, width=16)
    v, data = verify_frame0(p)
    line = {c.name: c for c in v.results()}["frame 0 differs between trajectories"]
    assert line.passed and line.value == "5 distinct of 5"
    e = data["t0_fields/energy"]
    rms = [np.sqrt(np.mean((e[i, 0].astype(float) - e[0, 0]) ** 2)) for i in range(1, 5)]
    assert f"mean {np.mean(rms) / np.abs(e[0, 0].astype(float)).mean():.3g}" in line.detail

    source = EnergyParams(
        domain="fluid_dynamics", pattern_variation="source", n_steps=2, height=16, width=16
    )
    v, _ = verify_frame0(source)
    line = v.frame0_result()
    assert line.passed and line.value == "1 distinct of 5" and "by design" in line.detail

    v = EnergyVerifier(p)  # per-trajectory shapes but one frame 0 everywhere: a failure
    data["t0_fields/energy"][:, 0] = data["t0_fields/energy"][0, 0]
    v.update(data, 0)
    line = v.frame0_result()
    assert not line.passed and line.value == "1 distinct of 5"
    assert line.detail.endswith("mean 0, min 0")


# --- The Well's own reader ------------------------------------------------------------------------
def test_well_dataset_reads_the_export_with_zscore_and_rms(exported):
    pytest.importorskip("the_well")
    from the_well.data import WellDataset
    from the_well.data.normalization import RMSNormalization, ZScoreNormalization

    src, out = exported
    stats = yaml.safe_load((out / "stats.yaml").read_text())
    with h5py.File(src, "r") as s:
        raw = s["t0_fields/energy"][...]
    m, sd, rms = stats["mean"]["energy"], stats["std"]["energy"], stats["rms"]["energy"]
    for norm, expect in (
        (ZScoreNormalization, lambda x: (x - m) / sd),
        (RMSNormalization, lambda x: x / rms),
    ):
        ds = WellDataset(
            path=str(out),
            well_split_name="train",
            n_steps_input=2,
            n_steps_output=1,
            use_normalization=True,
            normalization_type=norm,
        )
        assert len(ds) == 8 * 2  # 8 trajectories x 2 windows of 3 of 4 frames
        sample = ds[3]  # trajectory 1, window starting at frame 1
        assert tuple(sample["input_fields"].shape) == (2, 16, 24, 1)
        assert tuple(sample["output_fields"].shape) == (1, 16, 24, 1)
        for key in ("input_fields", "output_fields", "input_scalars", "constant_scalars"):
            assert np.isfinite(sample[key].numpy()).all(), key
        got = sample["input_fields"].numpy()[..., 0]
        np.testing.assert_allclose(got, expect(raw[1, 1:3].astype(np.float64)), rtol=1e-5)
        assert tuple(sample["constant_scalars"].shape) == (5 + 5,)  # parameters + vortex shape
    for split, n in (("valid", 1), ("test", 1)):
        ds = WellDataset(path=str(out), well_split_name=split, n_steps_input=2, n_steps_output=1)
        assert len(ds) == n * 2


def test_to_xarray_reads_the_export_and_the_raw_file(exported, tmp_path):
    pytest.importorskip("the_well")
    pytest.importorskip("xarray")
    from the_well.data import WellDataset

    src, out = exported
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / src.name).write_bytes(src.read_bytes())
    for path, split, n in ((out, "train", 8), (raw_dir, None, N)):
        ds = WellDataset(path=str(path), well_split_name=split, n_steps_input=1)
        xr = ds.to_xarray(backend="numpy")
        assert xr["energy"].dims == ("sample", "time", "x", "y")
        assert xr["energy"].shape == (n, 4, 16, 24)
        assert xr["blur_sigma"].dims == ("sample",)  # 0-d per file, stacked over files
        assert xr["entropy"].dims == ("sample", "time")
        assert xr["vortex_width"].shape == (n,)


def test_export_joins_several_files_into_one_tree_with_the_split_option(exported, tmp_path):
    src, _ = exported
    second = tmp_path / "energy_fluid_dynamics_b.h5"
    shutil.copy(src, second)
    out = tmp_path / "joined"
    res = run_hpcgen(
        "export", src, second, "--format", "well", "--out", out, "--split", "0.6,0.2,0.2"
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (out / "data" / "train").iterdir()) == [
        "energy_fluid_dynamics.hdf5",
        "energy_fluid_dynamics_b.hdf5",
    ]
    for name in ("energy_fluid_dynamics.hdf5", "energy_fluid_dynamics_b.hdf5"):
        counts = {}
        for split in ("train", "valid", "test"):
            with h5py.File(out / "data" / split / name, "r") as f:
                counts[split] = int(f.attrs["n_trajectories"])
        assert counts == {"train": 6, "valid": 2, "test": 2}
