from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    """A small tracks spec: 2,500 tracks in 7 chunks (the last one short)."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        'generator = "tracks"\nn_samples = 2500\nseed = 7\nchunk_size = 400\n'
        'output = "tiny.h5"\n\n[params]\nfield = "gaussian"\nstep = 20.0\n'
        "dz_range = [-2000.0, 6000.0]\n"
    )
    return spec


@pytest.fixture
def toy_spec(tmp_path: Path) -> Path:
    """tiny_spec's run on the toy generator (tests/toy_generator.py): 2,500 samples in 7 chunks
    (the last one short), for tests of the engine and the CLI rather than of a generator's physics
    (subprocesses find the toy on PYTHONPATH through helpers.hpcgen_env)."""
    spec = tmp_path / "toy.toml"
    spec.write_text(
        'generator = "toy_generator:ToyGenerator"\nn_samples = 2500\nseed = 7\nchunk_size = 400\n'
        'output = "toy.h5"\n'
    )
    return spec


@pytest.fixture(scope="session")
def synth_path(tmp_path_factory) -> Path:
    """The synthetic LHCb-like field map with edge artefacts, written once per session; its first
    load parses the text and writes the binary cache."""
    from hpcgen.generators.tracks import fieldmap as fm
    from hpcgen.generators.tracks import synthmap as sm

    path = tmp_path_factory.getbasetemp() / "tracks-synth" / "synth_artefacts.txt"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        fm.write_text(path, sm.synth_map(artefacts=0.03))
    return path
