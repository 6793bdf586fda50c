"""The tracks verifier passes correct physics and catches wrong physics: a wrong bending constant
(the 1000x unit error and a 1.5x one), an inaccurate integrator, outputs that do not belong to
their inputs, non-finite values, inconsistent status flags."""

from __future__ import annotations

import dataclasses

import numpy as np

from hpcgen.generators.base import Chunk, Device
from hpcgen.generators.tracks.checks import TracksVerifier
from hpcgen.generators.tracks.fields import SLOPE, GaussianDipole, UniformField
from hpcgen.generators.tracks.generator import TracksGenerator
from hpcgen.generators.tracks.params import TracksParams
from hpcgen.generators.tracks.propagate import Propagator
from hpcgen.generators.tracks.stepper import StepperSettings

PROBES = {
    "uniform field: closed-form helix (any ty)",
    "bending power: 10 GeV through the field",
    "stored Y reproduces from stored X",
    "forward then backward returns to the start",
}


def block(gen: TracksGenerator, n: int = 3000) -> dict:
    chunk = Chunk(0, 0, n, seed=1)
    inputs = gen.sample(chunk)
    return {**inputs, **gen.compute(inputs, chunk, Device("cpu", np))}


def results(v: TracksVerifier, data: dict) -> dict:
    v.update(data, 0)
    return {c.name: c for c in v.results()}


def failed(gen_or_verifier, data: dict) -> set[str]:
    v = gen_or_verifier.verifier() if hasattr(gen_or_verifier, "verifier") else gen_or_verifier
    return {name for name, c in results(v, data).items() if not c.passed}


def test_correct_physics_passes_every_check():
    gen = TracksGenerator(TracksParams())
    res = results(gen.verifier(), block(gen))
    assert {n for n, c in res.items() if not c.passed} == set()
    assert PROBES <= set(res)  # the probe checks ran
    assert "ok 3000 of 3000" in res["track status (counts)"].value


def test_correct_physics_passes_backward_and_with_rk4():
    for p in (TracksParams(dz_range=(-2500.0, 4000.0)), TracksParams(integrator="rk4", step=20.0)):
        gen = TracksGenerator(p)
        assert failed(gen, block(gen, 1000)) == set(), p


def test_fixed_rk4_one_step_per_cell_passes_with_a_step_above_the_cells(synth_path):
    """Fixed RK4 through a map in "cell" with `step` above the cells' sizes (the synthetic map's
    z cells are 80-160 mm) takes one step per cell and passes every check. The uniform-field
    probes take the steps the run takes where it has field, at most the widest z cell: with
    the run's 1 m steps the helix probe erred by 10 um over the demo's 10 m and failed a run
    that is within 0.1 um of the exact path through the map."""
    p = TracksParams(
        field="map", field_map=str(synth_path), integrator="rk4", grid_steps="cell",
        z_range=(0.0, 14000.0), dz_range=(1000.0, 10000.0),
    )  # fmt: skip
    for step, probe_step in ((200.0, 160.0), (1000.0, 160.0), (50.0, 50.0)):
        gen = TracksGenerator(dataclasses.replace(p, step=step))
        v = gen.verifier()
        assert v.make_uniform(UniformField(0.0, -1.0, 0.0)).settings.step == probe_step
        if step > 50.0:
            assert failed(v, block(gen, 1000)) == set(), step
    # Cash-Karp, or fixed steps not cut at the faces: the probes take the run's own settings
    for q in (
        dataclasses.replace(p, integrator="cashkarp"),
        dataclasses.replace(p, step=1000.0, grid_steps="xyz"),
    ):
        gen = TracksGenerator(q)
        assert gen.verifier().make_uniform(UniformField(0.0, -1.0, 0.0)).settings == gen.settings


def test_bending_too_strong_fails():
    p = TracksParams(p_min=20.0, p_max=100.0)
    strong = TracksGenerator(dataclasses.replace(p, b0=1.5 * p.b0))
    data = block(strong)
    assert "bending within the field's bound" in failed(TracksGenerator(p), data)


def test_the_1000x_unit_error_fails_the_probe_checks():
    """The public prior art's 2.99792458e-4 with q/p in 1/MeV: every field 1000x too weak."""
    gen = TracksGenerator(TracksParams())
    f = gen.field
    weak = GaussianDipole(f.b0 / 1000, f.zc, f.w)
    st = gen.settings
    v = TracksVerifier(
        f,
        propagate=Propagator(weak, st, "numba"),
        make_uniform=lambda u: Propagator(UniformField(u.bx, u.by / 1000, u.bz), st, "numba"),
        accuracy_mm=0.01,
    )
    bad = failed(v, block(gen, 500))
    assert {
        "uniform field: closed-form helix (any ty)",
        "bending power: 10 GeV through the field",
        "stored Y reproduces from stored X",
    } <= bad


def test_an_inaccurate_integrator_fails_the_closed_form_and_the_reverse_check():
    gen = TracksGenerator(TracksParams())
    data = block(gen, 500)
    coarse = StepperSettings(scheme="rk4", step=3000.0)
    v = TracksVerifier(
        gen.field,
        propagate=Propagator(gen.field, coarse, "numba"),
        make_uniform=lambda u: Propagator(u, coarse, "numba"),
        accuracy_mm=0.01,
    )
    bad = failed(v, data)
    assert "uniform field: closed-form helix (any ty)" in bad
    assert "forward then backward returns to the start" in bad


def test_outputs_that_do_not_belong_to_their_inputs_fail():
    gen = TracksGenerator(TracksParams())
    data = block(gen, 500)
    data["Y"][:, 0] += 1e-3  # 1 um: far below the physics checks, not below reproduction
    assert failed(gen, data) == {"stored Y reproduces from stored X"}


def test_nonfinite_and_bad_momentum_fail():
    gen = TracksGenerator(TracksParams())
    data = block(gen, 500)
    data["Y"][3, 1] = np.inf
    data["P"][4] = 0.0
    assert failed(gen, data) == {"all values finite", "P > 0"}


def test_stopped_tracks_must_have_nan_outputs_and_are_counted():
    gen = TracksGenerator(TracksParams())
    data = block(gen, 500)
    data["status"][:3] = SLOPE  # flagged as stopped, but Y holds numbers
    res = results(gen.verifier(), data)
    assert not res["stopped tracks have Y = NaN, others not"].passed
    assert res["stopped tracks have Y = NaN, others not"].value.startswith("3 ")
    assert "slope limit 3" in res["track status (counts)"].detail
    data["Y"][:3] = np.nan  # consistent now: NaN is what a stopped track stores
    # ... but the independent path of those three tracks never steepens: the flag is made up
    assert failed(gen, data) == {"status flags agree with the independent path"}


def test_same_sign_bending_fails():
    gen = TracksGenerator(TracksParams())
    data = block(gen, 2000)
    # flip the outputs of negative tracks as if they had positive charge
    neg = data["X"][:, 4] < 0
    straight = data["X"][:, 0] + data["X"][:, 2] * data["X"][:, 5]
    data["Y"][neg, 0] = straight[neg] - (data["Y"][neg, 0] - straight[neg])
    assert "charges bend opposite ways in x" in failed(gen, data)
