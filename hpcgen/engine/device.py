"""Pick where ``compute`` runs: numpy on the CPU or cupy on a CUDA GPU. Never silently."""

from __future__ import annotations

import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.base import Device, Generator


def gpu_available() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.is_available())
    except Exception:  # a broken CUDA install reads as "no GPU" for auto, an error for gpu
        return False


def select_device(requested: str, generator: Generator) -> Device:
    """``auto``: the GPU when cupy sees one and the generator has a GPU path, else the CPU.
    ``gpu``: the GPU or a UserError; ``cpu``: numpy."""
    if requested == "cpu":
        return Device("cpu", np)
    has_gpu = gpu_available()
    if requested == "gpu":
        if not has_gpu:
            raise UserError(
                "--device gpu: no usable CUDA GPU (cupy missing or cupy.is_available() is False)"
            )
        if not generator.supports_device("gpu"):
            raise UserError(f"--device gpu: the {generator.name} generator has no GPU path")
    if has_gpu and generator.supports_device("gpu"):
        import cupy

        return Device("gpu", cupy)
    return Device("cpu", np)
