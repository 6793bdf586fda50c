"""``hpcgen verify`` judges energy files as a third party: it recomputes what it checks from the
stored frames with code the generator does not run, at a tolerance derived from float32 storage,
so a generator that stops renormalising (or computes its entropy wrongly, or a reader whose pyramid
is wrong) cannot pass its own check.

Files are written in-process by the engine (one rank), and judged by ``verify_file``, or by the
real CLI where the exit status is the point.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.ndimage as ndi
from helpers import run_hpcgen

from hpcgen.engine.comm import SerialComm
from hpcgen.engine.run import RunOptions, run
from hpcgen.generators.energy import checks, kernels, maps, patterns
from hpcgen.generators.energy.params import DOMAINS, Preset
from hpcgen.generators.energy.sequence import evolve, evolve_batch
from hpcgen.spec import RunSpec
from hpcgen.verify import verify_file

CONSERVATION = "energy conserved at every step"
SOURCE_CRITERION = "energy within the drift tolerance of frame 0 (reported)"
FLAGS = "rescale flags follow the stored scale factors"
ENTROPY = "stored entropy matches the frames"
PYRAMID = "pyramid levels match an independent zoom"
#: float32 unit roundoff: the tolerances below are multiples of it
U = 2.0**-24


def write(path: Path, n: int = 4, chunk: int = 2, **params) -> Path:
    """An energy file written by the engine in this process (one rank)."""
    spec = RunSpec.from_dict(
        {
            "generator": "energy",
            "n_samples": n,
            "seed": 11,
            "chunk_size": chunk,
            "output": str(path),
            "dtype": "float32",
            "device": "cpu",
            "params": {"n_steps": 5, "height": 24, "width": 24, **params},
        }
    )
    run(spec, RunOptions(quiet=True), SerialComm())
    return path


def checks_of(path: Path) -> tuple[bool, dict[str, dict]]:
    passed, report = verify_file(path)
    return passed, {c["name"]: c for c in report["checks"]}


def failed(report: dict) -> set[str]:
    """The checks that failed, less the engine's byte-level "checksums match": a file edited after
    it was written fails that one too, which says nothing about the physics checks."""
    return {name for name, c in report.items() if not c["passed"]} - {"checksums match"}


# --- clean files pass, for every domain ---------------------------------------------------------
@pytest.mark.parametrize("domain", DOMAINS)
def test_clean_file_passes_every_check_for_every_domain(tmp_path, domain):
    # 96 x 144: pyramid level 64 (64 x 96) is below the map height and keeps the aspect ratio
    path = write(tmp_path / f"{domain}.h5", domain=domain, height=96, width=144)
    passed, c = checks_of(path)
    assert passed, failed(c)
    assert set(c) >= {CONSERVATION, SOURCE_CRITERION, FLAGS, ENTROPY, PYRAMID}
    # a plain float64 sum of every stored frame, against the declared total H * W
    with h5py.File(path) as h5:
        totals = h5["t0_fields/energy"][...].sum(axis=(-2, -1), dtype=np.float64)
    worst = float(np.abs(totals / (96 * 144) - 1).max())
    assert 0 < worst <= checks.CONSERVATION_RTOL
    assert c[CONSERVATION]["value"] == f"max error {worst:.3g}"
    assert c[PYRAMID]["value"].startswith("max difference ")
    assert "4 of 4 trajectories" in c[PYRAMID]["detail"]  # a file this small: every trajectory


def test_clean_file_with_scaling_and_rescales_passes(tmp_path):
    path = write(tmp_path / "scaled.h5", n=6, scaling_max=0.3, n_steps=8)
    passed, c = checks_of(path)
    with h5py.File(path) as h5:
        n_rescaled = int(h5["scalars/rescaled"][...].sum())
    assert n_rescaled > 0  # the drift rule acted: the declared totals jump back to H * W
    assert passed, failed(c)
    assert c[FLAGS]["value"] == "0 mismatches"
    assert c["drift rescales (reported)"]["value"] == f"{n_rescaled} steps"


# --- the user's corruption: a generator that stops renormalising ---------------------------------
@pytest.fixture(scope="module")
def hundred(tmp_path_factory) -> Path:
    """100 trajectories of 6 frames of 16 x 16 pixels (1 % is one trajectory)."""
    d = tmp_path_factory.mktemp("hundred")
    return write(d / "clean.h5", n=100, chunk=25, height=16, width=16, n_steps=6)


@pytest.mark.parametrize("fraction", [0.01, 1.0])
def test_unrenormalised_frames_fail_the_conservation_check(hundred, tmp_path, fraction):
    """Frames after the first scaled by (1 + 2.5e-3)^k: at most 1.3 % off frame 0, well inside the
    source's 5 %, so only the float32-derived tolerance catches it; verify exits 1 and names the
    conservation check (and only it: the entropy is scale-free, the flags untouched)."""
    bad = tmp_path / "bad.h5"
    shutil.copy(hundred, bad)
    rng = np.random.default_rng(5)
    rows = np.sort(rng.choice(100, size=max(1, round(100 * fraction)), replace=False))
    with h5py.File(bad, "r+") as h5:
        e = h5["t0_fields/energy"]
        t = e.shape[1]
        growth = (1 + 2.5e-3) ** np.arange(t, dtype=np.float64)
        for i in rows:
            e[i] = (e[i].astype(np.float64) * growth[:, None, None]).astype(np.float32)
    res = run_hpcgen("verify", bad, "--report", tmp_path / "bad.json")
    assert res.returncode == 1, res.stdout + res.stderr
    report = {c["name"]: c for c in json.loads((tmp_path / "bad.json").read_text())["checks"]}
    assert failed(report) == {CONSERVATION}
    assert f"FAIL  {CONSERVATION}" in res.stdout
    worst = (1 + 2.5e-3) ** (t - 1) - 1
    assert report[CONSERVATION]["value"] == f"max error {worst:.3g}"
    off = f"{(t - 1) * len(rows)} frames of {len(rows)} trajectories"
    assert off in report[CONSERVATION]["detail"]
    # the source workflow's 5 % stays a reported figure: it would have passed this file
    assert report[SOURCE_CRITERION]["passed"]
    assert report[SOURCE_CRITERION]["value"] == f"max {worst:.3g}"


def test_generator_that_stops_renormalising_fails_only_the_conservation_check(
    tmp_path, monkeypatch
):
    """The user's case from the inside: every step leaves its frame 2.5e-3 above the total it was
    renormalised to. The file is the generator's own (its checksums match), every other check
    passes, and the source's 5 % would have passed it too."""
    step = kernels.FastStepper.step

    def leaky(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        out *= np.float32(1 + 2.5e-3)
        return out

    monkeypatch.setattr(kernels.FastStepper, "step", leaky)
    path = write(tmp_path / "leaky.h5", n=6, n_steps=4)
    monkeypatch.undo()
    passed, c = checks_of(path)
    assert not passed
    assert {name for name, r in c.items() if not r["passed"]} == {CONSERVATION}
    assert c[SOURCE_CRITERION]["passed"]


def test_clean_hundred_passes(hundred):
    passed, c = checks_of(hundred)
    assert passed, failed(c)


def test_flipped_rescale_flag_fails(hundred, tmp_path):
    bad = tmp_path / "flag.h5"
    shutil.copy(hundred, bad)
    with h5py.File(bad, "r+") as h5:
        h5["scalars/rescaled"][37, 3] = 1.0  # no scaling: no step may be rescaled
    passed, c = checks_of(bad)
    assert not passed
    assert not c[FLAGS]["passed"] and c[FLAGS]["value"] == "1 mismatches"
    assert "trajectory 37 frame 3" in c[FLAGS]["detail"]


def test_slightly_wrong_stored_entropy_fails(hundred, tmp_path):
    """1e-5 nats is 20 float32 roundings of an entropy near 5.5 nats: not rounding."""
    bad = tmp_path / "entropy.h5"
    shutil.copy(hundred, bad)
    with h5py.File(bad, "r+") as h5:
        s = h5["scalars/entropy"]
        s[80, 2] = s[80, 2] + np.float32(1e-5)
    passed, c = checks_of(bad)
    assert not passed and failed(c) == {ENTROPY}


# --- independence: a mistake in shared code cannot pass its own check ---------------------------
def test_entropy_in_the_wrong_unit_fails_although_generator_and_maps_agree(tmp_path, monkeypatch):
    """Both entropy functions of the package give bits instead of nats while the file is written
    and while it is verified: only a check that computes -sum p ln p itself sees it."""
    fast, slow = kernels.total_and_entropy, maps.entropy
    monkeypatch.setattr(
        kernels, "total_and_entropy", lambda e: (fast(e)[0], fast(e)[1] / math.log(2))
    )
    monkeypatch.setattr(maps, "entropy", lambda e: slow(e) / math.log(2))
    passed, c = checks_of(write(tmp_path / "bits.h5"))
    assert not passed and failed(c) == {ENTROPY}


def test_wrong_pyramid_fails_although_it_conserves_energy(tmp_path, monkeypatch):
    """The reader's pyramid zoom shifted by a pixel still conserves energy (rescale renormalises),
    which is all the check compared before; scipy's zoom of the stored frame disagrees."""
    path = write(tmp_path / "p.h5", height=96, width=96)
    zoom = maps.periodic_zoom
    monkeypatch.setattr(maps, "periodic_zoom", lambda a, shape: np.roll(zoom(a, shape), 1, axis=-1))
    passed, c = checks_of(path)
    assert not passed and failed(c) == {PYRAMID}


# --- the generator keeps every frame on the declared total (no random walk) ---------------------
def declared(n_pixels_total: float, scales: np.ndarray, rescaled: np.ndarray) -> np.ndarray:
    out = np.empty(len(scales))
    out[0] = n_pixels_total
    for t in range(1, len(scales)):
        out[t] = n_pixels_total if rescaled[t] else out[t - 1] * float(np.float32(scales[t]))
    return out


def long_draws(n_steps: int, seed: int, shape=(32, 32)):
    rng = np.random.default_rng(seed)
    base = patterns.base_pattern("turbulent", shape, rng)
    angles = rng.uniform(-180, 180, n_steps)
    shifts = rng.integers(-3, 4, (n_steps, 2))
    scales = rng.uniform(0.997, 1.003, n_steps).astype(np.float32).astype(np.float64)
    return base, angles, shifts, scales


@pytest.mark.parametrize("scaling", [False, True])
def test_long_trajectory_stays_on_the_declared_total(scaling):
    """1000 steps: renormalising to the measured total of the previous frame lets the rounding
    random-walk (to 6e-7 and 1.1e-6 here); renormalising to the declared total keeps every frame
    within the tolerance verify uses."""
    n_steps, shape = 1000, (32, 32)
    base, angles, shifts, scales = long_draws(n_steps, 1, shape)
    if not scaling:
        scales[:] = 1.0
    preset = Preset("turbulent", 180.0, 0.1, 1.5, 3)
    tr = evolve(base, angles, shifts, scales, np.random.default_rng(2), preset, 0.05)
    totals = tr.frames.sum(axis=(-2, -1), dtype=np.float64)
    want = declared(shape[0] * shape[1], scales, tr.rescaled)
    assert np.abs(totals / want - 1).max() <= checks.CONSERVATION_RTOL
    if scaling:
        assert tr.rescaled.any()  # 1000 steps of +-0.3 %: the drift rule acts


def test_batch_path_stays_on_the_declared_total():
    """The GPU code path (evolve_batch, run here with numpy and scipy.ndimage) keeps the declared
    total too, and flags the same steps as the CPU path: both decide on the declared total."""
    n_steps, shape = 1000, (16, 24)
    draws = [long_draws(n_steps, s, shape) for s in (3, 4)]
    preset = Preset("turbulent", 180.0, 0.1, 1.5, 3)
    frames, _, rescaled = evolve_batch(
        np.stack([d[0] for d in draws]),
        np.stack([d[1] for d in draws]),
        np.stack([d[2] for d in draws]),
        np.stack([d[3] for d in draws]),
        [np.random.default_rng(10), np.random.default_rng(11)],
        preset,
        0.05,
        np,
        ndi,
    )
    for k, d in enumerate(draws):
        totals = frames[k].sum(axis=(-2, -1), dtype=np.float64)
        want = declared(shape[0] * shape[1], d[3], rescaled[k])
        assert np.abs(totals / want - 1).max() <= checks.CONSERVATION_RTOL
        tr = evolve(*d, np.random.default_rng(10 + k), preset, 0.05)
        assert np.array_equal(rescaled[k], tr.rescaled)
    assert rescaled.any()
