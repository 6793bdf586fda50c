"""Tracks verify judges a file as a third party: the bending constant from scipy.constants, the
equations of motion from the Lorentz force, the field from the parameters (or the parsed map
grid), scipy's DOP853 on rows spread over the whole file, and cheap consistency over every row.

The corrupted files below are the ones a careful user made: Y as a 1000x too small bending
constant makes it, Y from a step controller that accepts every step, and 1 % of the rows with
q/p's sign flipped, P x 1000, Y.x + 1 mm or a straight-line Y. Each must fail verify naming its
check, and a clean file must pass. Bad inputs (non-finite or absurd) give one line on stderr and
exit 2."""

from __future__ import annotations

import ast
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import ROOT, run_hpcgen

from hpcgen.generators.base import Chunk, Device
from hpcgen.generators.tracks import independent
from hpcgen.generators.tracks.checks import SAMPLE_ROWS
from hpcgen.generators.tracks.fields import LEFT_VOLUME
from hpcgen.generators.tracks.generator import TracksGenerator
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.generators.tracks.propagate import Propagator
from hpcgen.generators.tracks.stepper import StepperSettings
from hpcgen.io.reader import Reader
from hpcgen.verify import verify_file

PKG = ROOT / "hpcgen" / "generators" / "tracks"
N = 4000
# the Gaussian dipole, forward and backward tracks of 1-8 m from z = 3 m, adaptive Cash-Karp
SPEC = f"""generator = "tracks"
n_samples = {N}
seed = 5
chunk_size = 500
output = "t.h5"

[params]
field = "gaussian"
dz_range = [1000.0, 8000.0]
both_directions = true
"""
REPROP = "independent re-propagation (DOP853)"
TURN = "turn of every row matches q/p and the field"
QOP_P = "|q/p| P = 1/1000 (every row)"
FLAGS = "status flags agree with the independent path"
NEW_CHECKS = (REPROP, TURN, QOP_P, FLAGS, "no map flags without a map")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tracks_verify")
    (d / "t.toml").write_text(SPEC)
    run_hpcgen("run", d / "t.toml", "--out", d / "t.h5", cwd=d, check=True)
    return d / "t.h5"


def corrupted(clean: Path, tmp_path: Path, edit: Callable[[h5py.File], None]) -> Path:
    bad = tmp_path / "bad.h5"
    shutil.copy(clean, bad)
    with h5py.File(bad, "r+") as f:
        edit(f)
    return bad


def results(path: Path) -> dict[str, bool]:
    """{check name: passed} of an in-process verify."""
    _, report = verify_file(path)
    return {c["name"]: c["passed"] for c in report["checks"]}


def one_percent(seed: int = 3) -> np.ndarray:
    """1 % of the rows, anywhere in the file."""
    return np.sort(np.random.default_rng(seed).choice(N, N // 100, replace=False))


def repropagated(path: Path, settings: StepperSettings | None, qop_scale: float = 1.0):
    """Y of the file's X, through its own field with other integrator settings or q/p."""
    with Reader(path) as r:
        gen = r.generator
    with h5py.File(path, "r") as f:
        X, Z = f["X"][...], f["Z"][...]
    state = X[:, :5].copy()
    state[:, 4] *= qop_scale
    prop = Propagator(gen.field, settings or gen.settings, "numba")
    Y, status, _ = prop(state, Z[:, 0], Z[:, 1])
    assert (status == 0).all()
    return Y


# --- the clean file ------------------------------------------------------------------------------


def test_clean_file_passes_every_check_including_the_independent_ones(clean: Path) -> None:
    proc = run_hpcgen("verify", clean)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in NEW_CHECKS:
        assert f"PASS  {name}" in proc.stdout, proc.stdout
    assert f"0 of {SAMPLE_ROWS} rows off" in proc.stdout, proc.stdout


# --- the generator's mistakes, as the file would hold them -------------------------------------


def test_a_1000x_too_small_bending_constant_fails(clean: Path, tmp_path: Path) -> None:
    """Y as the generator with C / 1000 would make it: q/p / 1000 in the propagation, X as drawn."""
    weak = repropagated(clean, None, qop_scale=1e-3)

    def store(f: h5py.File) -> None:
        f["Y"][...] = weak

    res = results(corrupted(clean, tmp_path, store))
    assert not res[REPROP]
    assert not res[TURN]


#: a controller that accepts every step: Cash-Karp held at 2 m steps (min_step = max_step: every
#: step is "forced" and accepted), and the extreme of it, one RK4 step over the whole dz
EVERY_STEP = {
    "accept-2m-steps": StepperSettings(min_step=2000.0, max_step=2000.0, initial_step=2000.0),
    "one-rk4-step": StepperSettings(scheme="rk4", step=1e6),
    "plus-300um": None,
}


@pytest.mark.parametrize("settings", EVERY_STEP.values(), ids=EVERY_STEP.keys())
def test_a_step_controller_that_accepts_every_step_fails(
    clean: Path, tmp_path: Path, settings: StepperSettings | None
) -> None:
    """Y as a controller that accepts every step makes it, and Y off by the few hundred um a lax
    controller leaves."""
    with h5py.File(clean, "r") as f:
        good = f["Y"][...]
    if settings is None:
        bad_y = good + np.array([0.3, 0.3, 0.0, 0.0])
    else:
        bad_y = repropagated(clean, settings)
        assert np.abs(bad_y[:, 0] - good[:, 0]).max() > 0.3  # the mistake is a real one

    def store(f: h5py.File) -> None:
        f["Y"][...] = bad_y

    res = results(corrupted(clean, tmp_path, store))
    assert not res[REPROP]
    assert res[QOP_P]


# --- rows corrupted here and there ----------------------------------------------------------------


def sign_flip(f: h5py.File, rows: np.ndarray) -> None:
    X = f["X"][...]
    X[rows, 4] *= -1.0
    f["X"][...] = X


def p_times_1000(f: h5py.File, rows: np.ndarray) -> None:
    P = f["P"][...]
    P[rows] *= 1000.0
    f["P"][...] = P


def x_plus_1mm(f: h5py.File, rows: np.ndarray) -> None:
    Y = f["Y"][...]
    Y[rows, 0] += 1.0
    f["Y"][...] = Y


def straight_line(f: h5py.File, rows: np.ndarray) -> None:
    X, Y = f["X"][...], f["Y"][...]
    Y[rows] = straight(X[rows])
    f["Y"][...] = Y


def straight(X: np.ndarray) -> np.ndarray:
    """Y of X carried along a straight line over its dz."""
    dz = X[:, 5]
    return np.stack([X[:, 0] + X[:, 2] * dz, X[:, 1] + X[:, 3] * dz, X[:, 2], X[:, 3]], axis=1)


@pytest.mark.parametrize(
    "edit,check",
    [
        (sign_flip, TURN),
        (p_times_1000, QOP_P),
        (x_plus_1mm, REPROP),
        (straight_line, TURN),
    ],
    ids=["qop-sign", "P-x1000", "Yx+1mm", "straight"],
)
def test_one_percent_of_rows_corrupted_fails(
    clean: Path, tmp_path: Path, edit: Callable[[h5py.File, np.ndarray], None], check: str
) -> None:
    rows = one_percent()
    res = results(corrupted(clean, tmp_path, lambda f: edit(f, rows)))
    assert not res[check], check


def test_corruption_at_the_end_of_the_file_is_sampled(clean: Path, tmp_path: Path) -> None:
    """The re-propagated rows are spread over the file: the last 1 % off by 1 mm is caught (the
    first 32 rows, as verify took before, would all be clean)."""
    res = results(corrupted(clean, tmp_path, lambda f: x_plus_1mm(f, np.arange(N - N // 100, N))))
    assert not res[REPROP]


def test_the_sample_is_spread_over_the_file_whatever_the_chunking() -> None:
    n = 20_000

    def draw(chunk: int) -> np.ndarray:
        s = independent.Sample(SAMPLE_ROWS, 7)
        for a in range(0, n, chunk):
            idx = np.arange(a, min(a + chunk, n))
            s.offer(idx, {"v": idx * 2})
        assert (s.get("v") == 2 * s.get("index")).all()
        return np.sort(s.get("index"))

    got = draw(1000)
    assert len(got) == SAMPLE_ROWS
    assert (draw(137) == got).all()
    # spread: every tenth of the file holds about a tenth of the sample
    per_tenth = np.bincount(got * 10 // n, minlength=10)
    assert per_tenth.min() >= SAMPLE_ROWS // 20, per_tenth
    # the sample size catches a 1 % corruption with probability > 0.99
    assert 0.99**SAMPLE_ROWS < 0.01


# --- a field map ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def map_block(synth_path: Path) -> tuple[TracksGenerator, dict]:
    """3000 tracks through the synthetic map (3 % edge artefacts, masked), from their own z_start
    over 1-10 m as the demo draws them."""
    p = TracksParams(
        field="map",
        field_map=str(synth_path),
        z_range=(0.0, 14000.0),
        dz_range=(1000.0, 10000.0),
    )
    gen = TracksGenerator(p)
    chunk = Chunk(0, 0, 3000, seed=11)
    inputs = gen.sample(chunk)
    return gen, {**inputs, **gen.compute(inputs, chunk, Device("cpu", np))}


def map_results(gen: TracksGenerator, data: dict) -> dict[str, bool]:
    v = gen.verifier(sample_rows=150, flag_rows=60)  # fewer than verify's: seconds, not ten
    v.update({k: np.array(a) for k, a in data.items()}, 0)
    return {c.name: c.passed for c in v.results()}


def test_map_file_passes_and_its_flags_are_judged(map_block) -> None:
    gen, data = map_block
    assert ((data["status"] & LEFT_VOLUME) != 0).sum() > 20  # the flag check has rows to judge
    res = map_results(gen, data)
    assert all(res.values()), {k for k, ok in res.items() if not ok}
    assert {REPROP, TURN, FLAGS} <= set(res)
    cleared = {**data, "status": data["status"] & np.uint8(~LEFT_VOLUME & 0xFF)}
    assert not map_results(gen, cleared)[FLAGS]


@pytest.mark.parametrize("corrupt", ["qop-sign", "straight"])
def test_map_rows_corrupted_fail_the_turn_check(map_block, corrupt: str) -> None:
    gen, data = map_block
    rows = np.random.default_rng(5).choice(3000, 30, replace=False)
    X, Y = data["X"].copy(), data["Y"].copy()
    if corrupt == "qop-sign":
        X[rows, 4] *= -1.0
    else:
        Y[rows] = straight(X[rows])
    assert not map_results(gen, {**data, "X": X, "Y": Y})[TURN]


# --- independence ---------------------------------------------------------------------------------


def test_verify_shares_no_constant_equation_or_integrator_with_the_generator() -> None:
    """checks.py and independent.py import neither constants.py (the constant) nor the stepper
    (the equations), tableaus or kernels; independent.py takes only the parsed map grid and the
    params class from the generator; the constant is c from scipy.constants."""
    from scipy import constants

    def imports(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        return names

    pkg = "hpcgen.generators.tracks"
    shared = tuple(
        f"{pkg}.{m}"
        for m in (
            "constants",
            "stepper",
            "tableaus",
            "kernels_numba",
            "kernels_cuda",
            "simd",
            "propagate",
        )
    )
    for name in ("checks.py", "independent.py"):
        got = imports(PKG / name)
        assert not {n for n in got if n.startswith(shared)}, (name, got)
    assert {n for n in imports(PKG / "independent.py") if n.startswith("hpcgen")} == {
        f"{pkg}.fieldmap.MapGrid",
        f"{pkg}.params.TracksParams",
        "hpcgen.kernel_cache.njit",  # numba's compile cache, no physics
    }
    assert independent.BENDING_CONSTANT == pytest.approx(constants.c / 1e9, rel=1e-15)


def test_warm_compiles_verify_helpers_on_a_tiny_map() -> None:
    independent.warm()  # what ``python -m hpcgen.kernel_cache warm`` can call at install
    g = independent.ReferenceField.from_params(
        TracksParams(field="map", polarity=-1),
        independent.MapGrid(
            np.array([0.0, 10.0]),
            np.array([0.0, 10.0]),
            np.array([0.0, 10.0]),
            np.ones((2, 2, 2, 3)),
        ),
    )
    # trilinear of a constant is the constant (polarity applied); zero outside the box
    b = g(np.array([5.0, 11.0]), np.array([5.0, 5.0]), np.array([5.0, 5.0]))
    assert b.tolist() == [[-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]]


# --- bad inputs -----------------------------------------------------------------------------------

BAD_PARAMS = [
    ("p_max = inf", "params.p_max must be finite"),
    ("dz_range = [0.0, inf]", "params.dz_range must be finite"),
    ("b0 = nan", "params.b0 must be finite"),
    ('field = "uniform"\nb_uniform = [0.0, nan, 0.0]', "params.b_uniform must be finite"),
    ("b0 = -10000.0", "params.b0: |B| = 10000 T is not a magnetic field"),
    ("x_range = [-1e300, 0.0]", "params.x_range must stay within"),
]


def tiny_map(path: Path, b_max: float) -> None:
    """A 2 x 2 x 3 map (x, y +-100 mm, z 0-2 m) of By = -1 T with one point at By = b_max."""
    rows = ["# x y z Bx By Bz"]
    for z in (0.0, 1000.0, 2000.0):
        for x in (-100.0, 100.0):
            for y in (-100.0, 100.0):
                by = b_max if (z, x, y) == (1000.0, 100.0, 100.0) else -1.0
                rows.append(f"{x} {y} {z} 0.0 {by} 0.0")
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize(
    "params,message",
    [
        *BAD_PARAMS,
        (
            'field = "map"\nfield_map = "big.txt"\nartefact_policy = "keep"\nz_end = 2000.0\n'
            "z_start = 0.0",
            "field map big.txt: |B| = 1e+30 T",
        ),
    ],
)
def test_non_finite_or_absurd_inputs_one_line_exit_2(
    tmp_path: Path, params: str, message: str
) -> None:
    tiny_map(tmp_path / "big.txt", 1e30)
    spec = tmp_path / "bad.toml"
    spec.write_text(f'generator = "tracks"\nn_samples = 10\n\n[params]\n{params}\n')
    proc = run_hpcgen("run", spec, "--out", tmp_path / "x.h5", "--yes", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.h5").exists()


def test_a_map_of_plausible_artefacts_is_still_read(tmp_path: Path) -> None:
    """The limit is on |B| no magnet makes: the real map's 2-4 T edge artefacts stay readable."""
    from hpcgen.generators.tracks.fieldmap import load_map

    tiny_map(tmp_path / "m.txt", 4.0)
    assert float(np.abs(load_map(tmp_path / "m.txt", use_cache=False).B).max()) == 4.0
