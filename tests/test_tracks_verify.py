"""The tracks verifier passes correct physics and catches a wrong bending constant."""

from __future__ import annotations

import numpy as np

import hpcgen.generators.tracks.rk4 as rk4
from hpcgen.generators.base import Chunk, Device
from hpcgen.generators.tracks.generator import TracksGenerator
from hpcgen.generators.tracks.params import TracksParams


def block(gen: TracksGenerator, n: int = 3000) -> dict:
    chunk = Chunk(0, 0, n, seed=1)
    inputs = gen.sample(chunk)
    return {**inputs, **gen.compute(inputs, chunk, Device("cpu", np))}


def failed(gen: TracksGenerator, data: dict) -> set[str]:
    v = gen.verifier()
    v.update(data, 0)
    return {c.name for c in v.results() if not c.passed}


def test_correct_physics_passes():
    gen = TracksGenerator(TracksParams(step=20.0))
    assert failed(gen, block(gen)) == set()


def test_bending_too_strong_fails(monkeypatch):
    gen = TracksGenerator(TracksParams(step=20.0, p_min=20.0, p_max=100.0))
    monkeypatch.setattr(rk4, "C_LIGHT", 0.299792458 * 1.5)
    data = block(gen)
    monkeypatch.undo()
    bad = failed(gen, data)
    assert "bending within the field's bound" in bad


def test_nonfinite_and_bad_momentum_fail():
    gen = TracksGenerator(TracksParams(step=20.0))
    data = block(gen, 500)
    data["Y"][3, 1] = np.inf
    data["P"][4] = 0.0
    assert failed(gen, data) == {"all values finite", "P > 0"}


def test_same_sign_bending_fails():
    gen = TracksGenerator(TracksParams(step=20.0))
    data = block(gen, 2000)
    # flip the outputs of negative tracks as if they had positive charge
    neg = data["X"][:, 4] < 0
    straight = data["X"][:, 0] + data["X"][:, 2] * data["X"][:, 5]
    data["Y"][neg, 0] = straight[neg] - (data["Y"][neg, 0] - straight[neg])
    assert "charges bend opposite ways in x" in failed(gen, data)
