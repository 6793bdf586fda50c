"""A toy generator for the engine's tests: no physics, no compilation, a few microseconds a chunk.

Spec: ``generator = "toy_generator:ToyGenerator"`` (tests/ is on the subprocesses' PYTHONPATH,
see helpers.hpcgen_env). Fields per sample: ``x`` (3 floats drawn from ``chunk.rng("x")``),
``y = scale * sum(x**2)`` (a float) and ``n`` (int32, how many of x are positive); one static
dataset ``grid``.

Test-only knobs:

- param ``delay_s``: every ``compute`` sleeps this long (part of the data identity, like any
  param; the data do not depend on it);
- environment ``HPCGEN_TOY_HOLD="K:GATE"``: once this process has computed K chunks, each
  further ``compute`` waits while the file GATE exists, until the process is sent SIGTERM (at
  most HOLD_MAX_S). On entering the wait it creates ``GATE.held.<pid>``, so a test knows
  that every earlier chunk is done and that the run holds its output lock. SIGTERM is passed on
  to the handler the engine installed. Outside the data identity: a ``--resume`` without it
  finishes the same file. It needs ``compute`` in the main thread (a signal handler is set
  there), as the engine's loop calls it unless ``RunOptions.overlap`` is on.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcgen.generators.base import (
    FLOAT,
    CheckResult,
    Chunk,
    Device,
    FieldSpec,
    Generator,
    StaticData,
    Verifier,
    require,
)

SPEC_NAME = "toy_generator:ToyGenerator"
HOLD_ENV = "HPCGEN_TOY_HOLD"
#: seconds a held chunk waits at most: a test that never releases it fails instead of hanging
HOLD_MAX_S = 100.0


@dataclass(frozen=True)
class ToyParams:
    scale: float = 1.0  # y = scale * sum(x**2); > 0
    delay_s: float = 0.0  # seconds each compute sleeps; >= 0

    def __post_init__(self) -> None:
        require(self.scale > 0, f"params.scale must be > 0, got {self.scale}")
        require(self.delay_s >= 0, f"params.delay_s must be >= 0, got {self.delay_s}")


class ToyGenerator(Generator):
    name = "toy"
    Params = ToyParams
    default_chunk_size = 100

    def __init__(self, params: ToyParams, float_dtype: str = "float64") -> None:
        super().__init__(params, float_dtype)
        self.computed = 0  # chunks computed by this process (the hold counts them)

    def fields(self) -> list[FieldSpec]:
        return [
            FieldSpec("x", (3,), FLOAT, "1", "standard normal draws", {"columns": ["a", "b", "c"]}),
            FieldSpec("y", (), FLOAT, "1", "scale * sum(x**2)"),
            FieldSpec("n", (), "int32", "1", "number of positive entries of x"),
        ]

    def static_datasets(self) -> dict[str, StaticData]:
        return {"grid": StaticData(np.linspace(0.0, 1.0, 5), {"units": "1"})}

    def sample(self, chunk: Chunk) -> dict[str, np.ndarray]:
        x = chunk.rng("x").standard_normal((chunk.count, 3))
        return {"x": x.astype(self.float_dtype)}

    def compute(
        self, inputs: Mapping[str, np.ndarray], chunk: Chunk, device: Device
    ) -> dict[str, np.ndarray]:
        hold(self.computed)
        self.computed += 1
        if self.params.delay_s:
            time.sleep(self.params.delay_s)
        x = device.to_host(inputs["x"])
        y = (self.float_dtype.type(self.params.scale) * (x * x).sum(axis=1)).astype(
            self.float_dtype
        )
        return {"y": y, "n": (x > 0).sum(axis=1).astype(np.int32)}

    def verifier(self) -> Verifier:
        return ToyVerifier(self.params.scale)


def hold(computed: int) -> None:
    """The wait of HOLD_ENV (see the module's docstring), for a process that has computed
    ``computed`` chunks so far."""
    value = os.environ.get(HOLD_ENV, "")
    if not value:
        return
    after, _, gate_name = value.partition(":")
    gate = Path(gate_name)
    if computed < int(after) or not gate.exists():
        return
    termed: list[int] = []
    previous: Any = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        termed.append(signum)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    try:
        # the marker only after the handler is in place: a SIGTERM sent once it exists is seen
        gate.with_name(f"{gate.name}.held.{os.getpid()}").touch()
        deadline = time.monotonic() + HOLD_MAX_S
        while gate.exists() and not termed and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if termed and previous == signal.SIG_DFL:
        signal.raise_signal(signal.SIGTERM)


class ToyVerifier(Verifier):
    """Every value finite, y > 0 (a sum of squares of continuous draws: rows of zeros, HDF5's fill
    value, fail), y and n consistent with x."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.finite = self.positive = self.consistent = True

    def update(self, data: Mapping[str, np.ndarray], start: int) -> None:
        x, y, n = data["x"], data["y"], data["n"]
        self.finite &= bool(np.isfinite(x).all() and np.isfinite(y).all())
        self.positive &= bool((y > 0).all())
        want = self.scale * (x.astype(np.float64) ** 2).sum(axis=1)
        close = np.isclose(y, want, rtol=1e-5, atol=0) | ~np.isfinite(want)
        self.consistent &= bool(close.all() and ((x > 0).sum(axis=1) == n).all())

    def results(self) -> list[CheckResult]:
        return [
            CheckResult("all values finite", self.finite, str(self.finite)),
            CheckResult("y > 0", self.positive, str(self.positive)),
            CheckResult("y and n agree with x", self.consistent, str(self.consistent)),
        ]
