"""hpcgen.kernel_cache: the compile notice, the lock around a compile, the fallbacks.

A tiny kernel module written into a temporary directory goes through the same decorator as the
generators' kernels; processes are real (the lock is between processes), each on a cache
directory of its own test. One slow test compiles the real tracks kernel in a copy of the
package (its __pycache__ cold).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hpcgen import kernel_cache

ROOT = Path(__file__).resolve().parents[1]

TINY = '''
import numpy as np

from hpcgen.kernel_cache import njit


@njit(cache=True, group="tiny")
def smooth(x):
    """A few passes of a three-point average with a nonlinear twist: some compile time."""
    out = x.copy()
    for _ in range(3):
        prev = out.copy()
        for i in range(1, len(x) - 1):
            out[i] = (prev[i - 1] + 2 * prev[i] + prev[i + 1]) / 4 + np.sin(prev[i]) ** 2
    return out
'''

#: imports the tiny module, waits for the go file (all processes then call at once), calls
#: smooth once per dtype in $TINY_DTYPES, prints the results' bytes and numba's cache counts
RUNNER = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np
import tiny
if len(sys.argv) > 2:
    go = Path(sys.argv[2])
    (go.parent / f"ready.{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.005)
out = []
for dtype in os.environ.get("TINY_DTYPES", "float64").split(","):
    out.append(tiny.smooth(np.linspace(0.0, 3.0, 257, dtype=dtype)).tobytes().hex())
st = tiny.smooth.stats
print(" ".join(out), sum(st.cache_hits.values()), sum(st.cache_misses.values()))
"""

COMPILING = "hpcgen: compiling tiny kernels"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without launcher ranks or a numba cache directory of its own."""
    env = {k: v for k, v in os.environ.items() if k not in kernel_cache.RANK_VARIABLES}
    env.pop("NUMBA_CACHE_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return {**env, **extra}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A directory holding tiny.py and runner.py."""
    d = tmp_path / "mod"
    d.mkdir()
    (d / "tiny.py").write_text(TINY)
    (d / "runner.py").write_text(RUNNER)
    return d


def start(mod: Path, env: dict[str, str], go: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, str(mod / "runner.py"), str(mod)] + ([str(go)] if go else [])
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> tuple[list[str], int, int, list[str]]:
    """(result hex per dtype, cache hits, cache misses, stderr lines) of a finished runner."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    *results, hits, misses = out.split()
    return results, int(hits), int(misses), err.splitlines()


def run_once(mod: Path, env: dict[str, str]) -> tuple[list[str], int, int, list[str]]:
    return finish(start(mod, env))


def run_together(mod: Path, envs: list[dict[str, str]], tmp: Path) -> list[tuple]:
    """Start one runner per env, release them at once when all have imported numba and tiny."""
    gate = tmp / "gate"
    gate.mkdir()
    go = gate / "go"
    procs = [start(mod, env, go) for env in envs]
    deadline = time.monotonic() + 60
    while len(list(gate.glob("ready.*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    return [finish(p) for p in procs]


def compiling_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(COMPILING)]


def test_cold_cache_four_processes_at_once_one_compiles(tiny: Path, tmp_path: Path):
    env = clean_env(NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = run_together(tiny, [env] * 4, tmp_path)
    notices = [line for r in runs for line in compiling_lines(r[3])]
    assert len(notices) == 1, [r[3] for r in runs]
    for r in runs:  # the others say at most that they wait
        others = [line for line in r[3] if not line.startswith(COMPILING)]
        assert all(line.startswith("hpcgen: waiting for the tiny kernels") for line in others)
    assert sum(r[2] for r in runs) == 1  # numba's own count: one compile in all
    assert sum(r[1] for r in runs) == 3  # the others loaded what it wrote
    assert len({r[0][0] for r in runs}) == 1  # identical results
    expected = np.linspace(0.0, 3.0, 257)
    for _ in range(3):
        prev = expected.copy()
        expected[1:-1] = (prev[:-2] + 2 * prev[1:-1] + prev[2:]) / 4 + np.sin(prev[1:-1]) ** 2
    got = np.frombuffer(bytes.fromhex(runs[0][0][0]), np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # the index is whole: the next process loads without compiling, and says nothing
    results, hits, misses, err = run_once(tiny, env)
    assert (hits, misses) == (1, 0) and not compiling_lines(err), err
    assert results == runs[0][0]
    assert list((tmp_path / "cache").rglob(kernel_cache.LOCK_NAME))  # the lock is in the cache


def test_two_signatures_compiled_at_once_both_stay_in_the_index(tiny: Path, tmp_path: Path):
    # numba rewrites the whole index on each save: unlocked, concurrent compiles of float32 and
    # float64 lose one entry (or point it at the other's machine code)
    cache = str(tmp_path / "cache")
    envs = [clean_env(NUMBA_CACHE_DIR=cache, TINY_DTYPES=d) for d in ("float32", "float64") * 2]
    runs = run_together(tiny, envs, tmp_path)
    assert sum(r[2] for r in runs) == 2  # one compile per signature
    assert len({r[0][0] for r in runs[0::2]}) == 1 and len({r[0][0] for r in runs[1::2]}) == 1
    results, hits, misses, err = run_once(
        tiny, clean_env(NUMBA_CACHE_DIR=cache, TINY_DTYPES="float32,float64")
    )
    assert (hits, misses) == (2, 0), err
    assert results == [runs[0][0][0], runs[1][0][0]]  # each signature's own machine code


def test_only_rank_0_says_it_compiles(tiny: Path, tmp_path: Path):
    _, _, misses, err = run_once(
        tiny, clean_env(NUMBA_CACHE_DIR=str(tmp_path / "c1"), PMI_RANK="1")
    )
    assert misses == 1 and err == []
    _, _, misses, err = run_once(
        tiny, clean_env(NUMBA_CACHE_DIR=str(tmp_path / "c2"), SLURM_PROCID="0")
    )
    assert misses == 1 and len(compiling_lines(err)) == 1
    assert str(tmp_path / "c2") in compiling_lines(err)[0]  # where the cache is


@pytest.mark.parametrize(
    ("env", "rank0"),
    [
        ({}, True),
        ({"PMI_RANK": "0"}, True),
        ({"PMI_RANK": "3"}, False),
        ({"OMPI_COMM_WORLD_RANK": "2"}, False),
        ({"SLURM_PROCID": "1"}, False),
        ({"PMI_RANK": "0", "SLURM_PROCID": "5"}, True),  # the MPI launcher's rank wins
    ],
)
def test_rank0_from_the_launchers_environment(monkeypatch, env, rank0):
    for var in kernel_cache.RANK_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert kernel_cache.is_rank0() is rank0


def test_a_warm_install_cache_is_read_when_numba_writes_elsewhere(tiny: Path, tmp_path: Path):
    # warm puts the machine code beside the sources; a user who cannot write there gets another
    # cache directory from numba (here: NUMBA_CACHE_DIR) and still loads the install's
    _, _, misses, err = run_once(tiny, clean_env())
    assert misses == 1 and (tiny / "__pycache__").is_dir()
    _results, hits, misses, err = run_once(tiny, clean_env(NUMBA_CACHE_DIR=str(tmp_path / "u")))
    assert (hits, misses) == (1, 0) and err == []


def test_no_writable_cache_compiles_in_memory_with_a_warning(tiny: Path, tmp_path: Path):
    # no directory numba could write: __pycache__ is a file, NUMBA_CACHE_DIR and the user
    # cache lie under a file
    (tiny / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    env = clean_env(NUMBA_CACHE_DIR=str(blocker / "n"), XDG_CACHE_HOME=str(blocker / "x"))
    first = run_once(tiny, env)
    second = run_once(tiny, env)
    for _results, hits, misses, err in (first, second):
        assert misses == 1 and hits == 0  # every process compiles
        (line,) = compiling_lines(err)
        assert "in memory" in line and "NUMBA_CACHE_DIR" in line
    assert first[0] == second[0]


def test_warm_names_an_unknown_generator_in_one_line(capsys):
    assert kernel_cache.main(["warm", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpcgen: error: no generator 'nope' (have: tracks, atoms")
    assert err.count("\n") == 1


def test_warm_reports_a_failure_and_goes_on(monkeypatch, capsys):
    done = []

    def broken() -> None:
        raise ValueError("no such parameter")

    monkeypatch.setattr(kernel_cache, "WARM", {"a": broken, "b": lambda: done.append("b")})
    assert kernel_cache.warm() == 1
    out, err = capsys.readouterr()
    assert done == ["b"] and out.startswith("hpcgen: b kernels ready (")
    assert err == "hpcgen: error: warming the a kernels failed: no such parameter\n"


def test_tracks_fields_share_one_kernel_signature():
    """warm compiles one tracks kernel per scheme with a uniform field: the Gaussian field and
    maps (with and without a mask) must pass the same argument types, or runs would compile."""
    from numba import typeof

    from hpcgen.generators.tracks import fields
    from hpcgen.generators.tracks.fieldmap import MapGrid

    # a parsed map is float64 (text); FieldMap keeps its own float32 nodes
    xs, ys, zs = np.linspace(-1e3, 1e3, 5), np.linspace(-1e3, 1e3, 4), np.linspace(0, 1e4, 6)
    grid = MapGrid(xs, ys, zs, np.full((5, 4, 6, 3), 0.5))
    variants = [
        fields.UniformField(0.0, -1.0, 0.0),
        fields.GaussianDipole(1.0, 5000.0, 1000.0),
        fields.FieldMap(grid),
        fields.FieldMap(grid, -1, grid.masked_cells(0.1)),
    ]
    types = [tuple(typeof(a) for a in f.kernel_args()) for f in variants]
    assert len(set(types)) == 1, types


@pytest.mark.slow
def test_real_tracks_kernel_says_compiling_only_on_a_cold_cache(tmp_path: Path):
    # a copy of the package without its __pycache__ directories: a fresh install
    shutil.copytree(
        ROOT / "hpcgen", tmp_path / "hpcgen", ignore=shutil.ignore_patterns("__pycache__")
    )
    code = (
        "import numpy as np\n"
        "from hpcgen.generators.tracks.fields import UniformField\n"
        "from hpcgen.generators.tracks.kernels_numba import propagate_numba\n"
        "from hpcgen.generators.tracks.stepper import StepperSettings\n"
        "state = np.tile([[0.0, 0.0, 0.1, -0.05, 1e-3]], (9, 1))\n"
        "state[:, 4] *= np.arange(1, 10)\n"
        "y, st, n = propagate_numba(state, np.zeros(9), np.full(9, 2000.0),\n"
        "                           UniformField(0.0, -1.0, 0.0), StepperSettings(scheme='rk4'))\n"
        "import hpcgen.generators.tracks.kernels_numba as k\n"
        "print(y.tobytes().hex(), k.__file__)\n"
    )
    env = clean_env()
    env["PYTHONPATH"] = str(tmp_path)
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,  # "-c" puts the working directory first on sys.path
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for _ in range(2)
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
    notices = [ln for ln in runs[0].stderr.splitlines() if ln.startswith("hpcgen: compiling")]
    assert len(notices) == 1 and "tracks kernels" in notices[0], runs[0].stderr
    assert str(tmp_path / "hpcgen" / "generators" / "tracks") in notices[0]
    assert runs[1].stderr == ""
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.split()[-1].startswith(str(tmp_path))  # the copy's kernels ran


def test_the_warm_notice_gives_the_tracks_time_per_scheme(monkeypatch):
    # warm compiles every tracks scheme: one run's "~90 s" would understate it four times over
    from hpcgen import kernel_cache

    assert kernel_cache._about("tracks") == "~90 s, "
    monkeypatch.setattr(kernel_cache, "_warming", True)
    assert kernel_cache._about("tracks") == "~90 s for each scheme, "
    assert kernel_cache._about("energy") == "~10 s, "
