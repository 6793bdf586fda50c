"""Global accuracy of the default step control: the error of Y at z_end against an independent
DOP853 integration (rtol 1e-11), not the error of one step.

Contract: with the default parameters, every propagated track of the default sampling (z 3000 ->
9000 mm) and every track the production spec keeps (jobs/tracks_10M.toml: z_start and dz drawn
per track, status 0 = inside the LHCb T-station box at z_end) is within 1 um of the exact path
in x and y, 2 GeV tracks over the longest dz included. docs/tracks.md, "What the tolerance
means"; the full figures: bench/bench_tracks_global.py.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace

import numpy as np
import pytest
from helpers import ROOT

from hpcgen.generators.base import build_params
from hpcgen.generators.tracks import independent
from hpcgen.generators.tracks.checks import outside_acceptance
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.generators.tracks.propagate import Propagator, make_field
from hpcgen.generators.tracks.sampling import sample_tracks
from hpcgen.generators.tracks.stepper import StepperSettings

#: mm: the global accuracy the defaults promise on x and y
GLOBAL_MM = 1e-3
#: LHCb's step control, the defaults before: 1 um per step, 5e-5 relative on slope changes
OLD = {"tolerance": 0.001, "rel_tolerance": 5e-5}


def production_params() -> TracksParams:
    """The 10M production spec's parameters (Gaussian field, per-track z, the acceptance box)."""
    values = tomllib.loads((ROOT / "jobs" / "tracks_10M.toml").read_text())["params"]
    assert values["field"] == "gaussian"
    return build_params(TracksParams, dict(values))


def tracks(p: TracksParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """40 tracks of p's sampling and 40 at its hardest corner: p_min (2 GeV) over the longest
    dz, every other input over its whole range. (X (n, 6), Z (n, 2))."""
    rng = np.random.default_rng(seed)
    longest = {"dz_range": (p.dz_range[1], p.dz_range[1])} if p.dz_range else {}
    corner = replace(p, p_max=p.p_min, **longest)
    a = sample_tracks(p, rng, 40)
    b = sample_tracks(corner, rng, 40)
    return np.concatenate([a["X"], b["X"]]), np.concatenate([a["Z"], b["Z"]])


def global_error_mm(p: TracksParams, X: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max(|dx|, |dy|) at z_end (mm) of the compiled CPU kernel against DOP853, and which tracks
    the file would mark status 0 (propagated, inside the acceptance box where p has one)."""
    Y, status, _ = Propagator(make_field(p), StepperSettings.from_params(p), "numba")(
        X[:, :5], Z[:, 0], Z[:, 1]
    )
    ok = status == 0
    if p.acceptance:
        ok &= ~outside_acceptance(Y, p.acceptance)
    ref = independent.propagate(
        independent.ReferenceField.from_params(p),
        X[:, :5],
        Z[:, 0],
        Z[:, 1],
        p.max_slope,
        rtol=1e-11,
        atol_mm=1e-9,
    )
    assert not ref.failed
    return np.abs(Y[:, :2] - ref.Y[:, :2]).max(axis=1), ok


CASES = {
    "default planes": (TracksParams, 3),
    "production spec": (production_params, 5),
}


@pytest.mark.parametrize("case", CASES)
def test_defaults_are_within_1_um_at_z_end(case):
    make, seed = CASES[case]
    p = make()
    X, Z = tracks(p, seed)
    err, ok = global_error_mm(p, X, Z)
    assert ok.sum() >= 30  # most tracks are judged (the spec's box drops the strongest turners)
    assert ok[40:].sum() >= 5  # 2 GeV over the longest dz among them
    worst = int(np.argmax(np.where(ok, err, -1.0)))
    assert err[ok].max() <= GLOBAL_MM, (
        f"{err[ok].max() * 1e3:.2f} um at X = {X[worst].tolist()}, Z = {Z[worst].tolist()}"
    )


@pytest.mark.parametrize("case", CASES)
def test_the_samples_catch_lhcbs_per_step_tolerance(case):
    """The same tracks under LHCb's 1 um per step (the old defaults) miss 1 um at z_end: the
    samples can tell a per-step tolerance from a global one."""
    make, seed = CASES[case]
    p = replace(make(), **OLD)
    X, Z = tracks(p, seed)
    err, ok = global_error_mm(p, X, Z)
    assert err[ok].max() > 1.2 * GLOBAL_MM
