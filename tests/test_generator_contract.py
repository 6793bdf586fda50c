"""The contract every generator keeps with the engine (hpcgen.generators.base), checked for every
name in REGISTRY and for the toy generator of the engine tests: ``sample`` and ``compute`` give
exactly the fields ``fields()`` declares, with their per-sample shapes and dtypes (the spec's
float dtype included), the same bytes for the same chunk, units and descriptions on every field,
and static datasets of the shapes they declare. Cheapest settings, on the CPU.

Also the registry's "package.module:Class" names: a generator outside hpcgen runs through the
CLI, and each way such a name can be wrong is one line and exit 2."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import data_fields, run_hpcgen
from toy_generator import SPEC_NAME

from hpcgen.cli import main
from hpcgen.engine.device import select_device
from hpcgen.errors import SpecError
from hpcgen.generators import REGISTRY, get_generator_class
from hpcgen.generators.base import Chunk, Generator
from hpcgen.spec import RunSpec

#: the cheapest parameters of each generator (small images, few steps, no compilation)
CHEAP: dict[str, dict[str, Any]] = {
    "tracks": {
        "field": "uniform",
        "integrator": "rk4",
        "step": 500.0,
        "p_min": 50.0,
        "kernel": "numpy",
    },
    "atoms": {"grid_size": 8, "max_objects": 2},
    "illumination": {"level": 0},
    "energy": {"n_steps": 3, "height": 16, "width": 24},
    "ptycho": {"doses": [1000.0, 20000.0], "N": 8, "object_size": 24},
    SPEC_NAME: {"scale": 2.5},
}
NAMES = [*sorted(REGISTRY), SPEC_NAME]
CHUNK = Chunk(index=3, start=3 * 16, count=16, seed=11)


def test_every_registered_generator_has_cheap_settings():
    assert sorted(REGISTRY) == sorted(n for n in CHEAP if n != SPEC_NAME)


def make(name: str, dtype: str) -> Generator:
    spec = RunSpec.from_dict(
        {"generator": name, "n_samples": 1000, "seed": CHUNK.seed, "dtype": dtype,
         "chunk_size": CHUNK.count, "params": CHEAP[name]}
    )  # fmt: skip
    return spec.make_generator()


def one_chunk(gen: Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    inputs = gen.sample(CHUNK)
    outputs = gen.compute(inputs, CHUNK, select_device("cpu", gen))
    return inputs, outputs


@pytest.fixture(scope="module", params=NAMES)
def made(request) -> dict[str, Any]:
    """Per generator, per dtype: the generator and the chunk it made twice (fresh instances)."""
    out: dict[str, Any] = {"name": request.param}
    for dtype in ("float64", "float32"):
        gen = make(request.param, dtype)
        out[dtype] = (gen, one_chunk(gen), one_chunk(make(request.param, dtype)))
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_outputs_have_exactly_the_declared_fields(made, dtype):
    gen, (inputs, outputs), _ = made[dtype]
    specs = {fs.name: fs for fs in gen.fields()}
    assert len(specs) == len(gen.fields()), "a field is declared twice"
    assert not set(inputs) & set(outputs), "compute returned an input again"
    data = {**inputs, **outputs}
    assert sorted(data) == sorted(specs)
    for name, fs in specs.items():
        a = data[name]
        assert isinstance(a, np.ndarray), (name, type(a))  # host arrays
        assert a.shape == (CHUNK.count, *fs.shape), (name, a.shape, fs.shape)
        assert a.dtype == fs.resolved_dtype(dtype), (name, a.dtype, fs.dtype, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_same_chunk_gives_the_same_bytes(made, dtype):
    _, first, second = made[dtype]
    for a, b in zip(first, second):
        assert sorted(a) == sorted(b)
        for name in a:
            assert a[name].tobytes() == b[name].tobytes(), name


def test_the_float_dtype_changes_only_float_fields(made):
    gen64 = made["float64"][0]
    gen32 = made["float32"][0]
    for fs64, fs32 in zip(gen64.fields(), gen32.fields()):
        assert (fs64.name, fs64.shape, fs64.dtype) == (fs32.name, fs32.shape, fs32.dtype)


def test_every_field_has_units_and_a_description(made):
    for fs in made["float64"][0].fields():
        assert isinstance(fs.units, str) and fs.units.strip(), fs.name
        assert isinstance(fs.description, str) and fs.description.strip(), fs.name
        assert not fs.name.startswith(("/", "_hpcgen")) and not fs.name.endswith("/"), fs.name


def expected_static_shapes(name: str, gen: Generator) -> dict[str, tuple[int, ...]]:
    """The shapes the generators' docs and attributes give their static datasets."""
    p = CHEAP[name]
    if name == "ptycho":
        m, n = p["object_size"], p["N"]
        return {"objectGuess": (m, m), "probeGuess": (n, n)}
    if name == "energy":
        h, w, t = p["height"], p["width"], p["n_steps"]
        shapes = {"dimensions/time": (t,), "dimensions/x": (h,), "dimensions/y": (w,)}
        for dim, size in (("x", h), ("y", w)):
            shapes[f"boundary_conditions/{dim}_periodic/mask"] = (size,)
            shapes[f"boundary_conditions/{dim}_periodic/values"] = (2,)
        for scalar in gen.params.simulation_parameters():
            shapes[f"scalars/{scalar}"] = ()
        return shapes
    if name == "illumination":
        n_tri = len(gen.model.body_triangles()[1])
        return {"model_triangles": (n_tri, 3, 3), "model_triangle_face": (n_tri,)}
    if name == SPEC_NAME:
        return {"grid": (5,)}
    return {}  # tracks, atoms: none


def test_static_datasets_have_their_declared_shapes(made):
    gen = made["float64"][0]
    static = gen.static_datasets()
    shapes = {k: np.asarray(v.data).shape for k, v in static.items()}
    assert shapes == expected_static_shapes(made["name"], gen)
    fields = {fs.name for fs in gen.fields()}
    for key, sd in static.items():
        assert key not in fields and not key.startswith("_hpcgen"), key
        assert isinstance(sd.data, np.ndarray) and sd.data.dtype != object, key
        assert isinstance(sd.attrs, Mapping), key
    again = gen.static_datasets()  # the engine calls it more than once (check, then create)
    assert all(again[k].data.tobytes() == static[k].data.tobytes() for k in static)


# --- "package.module:Class" ----------------------------------------------------------------------


def toy_spec(d: Path, generator: str = SPEC_NAME) -> Path:
    spec = d / "toy.toml"
    spec.write_text(
        f'generator = "{generator}"\nn_samples = 50\nseed = 1\nchunk_size = 20\n'
        'output = "toy.h5"\n\n[params]\nscale = 2.0\n'
    )
    return spec


def test_a_generator_outside_hpcgen_runs_by_module_and_class(tmp_path):
    out = tmp_path / "toy.h5"
    run_hpcgen("run", toy_spec(tmp_path), "--out", out, "-q", check=True)
    data = data_fields(out)
    assert sorted(data) == ["n", "x", "y"] and data["x"].shape == (50, 3)
    np.testing.assert_array_equal(data["y"], 2.0 * (data["x"] ** 2).sum(axis=1))
    assert run_hpcgen("verify", out).returncode == 0
    assert get_generator_class(SPEC_NAME).__name__ == "ToyGenerator"


@pytest.mark.parametrize(
    ("generator", "message"),
    [
        (
            "no_such_module_here:Gen",
            "generator 'no_such_module_here:Gen': cannot import 'no_such_module_here': no module "
            "named 'no_such_module_here' (run from the folder that holds it or add that folder "
            "to PYTHONPATH)",
        ),
        (
            "toy_generator:NoSuchClass",
            "generator 'toy_generator:NoSuchClass': module 'toy_generator' has no 'NoSuchClass'",
        ),
        (
            "toy_generator:ToyParams",
            "generator 'toy_generator:ToyParams': 'ToyParams' is not a subclass of "
            "hpcgen.generators.base.Generator",
        ),
        (
            "toy_generator:HOLD_ENV",
            "generator 'toy_generator:HOLD_ENV': 'HOLD_ENV' is not a subclass of "
            "hpcgen.generators.base.Generator",
        ),
        ("toy_generator:", "generator 'toy_generator:': expected \"package.module:Class\""),
        (
            "toys",
            "unknown generator 'toys' (known: atoms, energy, illumination, ptycho, tracks, "
            'or "package.module:Class" for your own)',
        ),
    ],
)
def test_a_bad_generator_name_is_one_line(tmp_path, capsys, generator, message):
    """The CLI's own main(), in this process (test_a_generator_module_in_the_working_directory
    runs the real command on two more bad names)."""
    assert main(["run", str(toy_spec(tmp_path, generator)), "--out", str(tmp_path / "x.h5")]) == 2
    assert capsys.readouterr().err == f"hpcgen: error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.toml"]
    with pytest.raises(SpecError) as e:
        get_generator_class(generator)
    assert str(e.value) == message


def test_a_generator_module_in_the_working_directory(tmp_path):
    """``python -m hpcgen`` finds modules in its working directory, as users run it."""
    (tmp_path / "mygen.py").write_text(
        "from hpcgen.generators.base import Generator\n"
        "from toy_generator import ToyGenerator as Mine\n\n"
        "class NoParams(Generator):\n    Params = dict\n"
    )
    (tmp_path / "broken.py").write_text("import no_such_dependency_here\n")
    out = tmp_path / "mine.h5"
    spec = toy_spec(tmp_path, "mygen:Mine")
    # a process of its own: its working directory on sys.path is what is tested
    run_hpcgen("run", spec, "--out", out, "-q", cwd=tmp_path, check=True, subprocess_=True)
    ref = tmp_path / "ref.h5"
    run_hpcgen("run", toy_spec(tmp_path), "--out", ref, "-q", check=True)
    assert data_fields(out)["y"].tobytes() == data_fields(ref)["y"].tobytes()
    for generator, message in (
        ("mygen:NoParams", "generator 'mygen:NoParams': NoParams.Params must be a dataclass"),
        (
            "broken:Gen",
            "generator 'broken:Gen': cannot import 'broken': no module named "
            "'no_such_dependency_here' (run from the folder that holds it or add that folder "
            "to PYTHONPATH)",
        ),
    ):
        proc = run_hpcgen(
            "run", toy_spec(tmp_path, generator), "--out", "x.h5", cwd=tmp_path, subprocess_=True
        )
        assert (proc.returncode, proc.stderr) == (2, f"hpcgen: error: {message}\n")
