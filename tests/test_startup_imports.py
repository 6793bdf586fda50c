"""What `hpcgen run` loads before its first chunk: only what the run needs. Every rank of every
job pays its imports at start (and the test suite pays them for every CLI call): a generator
without compiled kernels does not load numba, and a tracks run does not load verify's
independent reference (scipy's constants and its own integrator)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import hpcgen_env

PROBE = """
import json, sys
from hpcgen.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""


def modules_of_run(spec: Path, *args: str) -> set[str]:
    cmd = [sys.executable, "-c", PROBE, "run", str(spec), "--quiet", "--yes", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=hpcgen_env(), cwd=spec.parent)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.splitlines()[-1])
    assert out["rc"] == 0
    return set(out["modules"])


def test_a_generator_without_kernels_runs_without_numba(toy_spec: Path) -> None:
    loaded = modules_of_run(toy_spec)
    assert "toy_generator" in loaded
    assert "numba" not in loaded and "hpcgen.kernel_cache" not in loaded


def test_a_tracks_run_does_not_load_verify_s_reference(tmp_path: Path) -> None:
    spec = tmp_path / "t.toml"
    spec.write_text('generator = "tracks"\nn_samples = 200\nseed = 1\noutput = "t.h5"\n')
    loaded = modules_of_run(spec)
    assert "hpcgen.generators.tracks.kernels_numba" in loaded  # the run did propagate
    assert "hpcgen.generators.tracks.independent" not in loaded
    assert "hpcgen.generators.tracks.checks" not in loaded
    assert "scipy.constants" not in loaded
