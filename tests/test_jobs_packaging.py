"""The batch templates travel with the package: a wheel built from the project (``pip wheel .``,
or through an sdist) carries slurm/, condor/ and merge/ as ``hpcgen/_templates/...``, and an
hpcgen installed from that wheel renders jobs from a directory with no checkout in sight and
without ``HPCGEN_TEMPLATES``. ``HPCGEN_TEMPLATES`` still replaces the package's templates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT
from jobs_common import jobs, write_spec

TEMPLATE_DIRS = ("slurm", "condor", "merge")
#: what a build reads: the metadata files, the package, and the template folders it links to
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "hpcgen", *TEMPLATE_DIRS)


def templates() -> dict[str, bytes]:
    """Every template file of the checkout, by the name it must have in the wheel."""
    return {
        f"hpcgen/_templates/{d}/{p.name}": p.read_bytes()
        for d in TEMPLATE_DIRS
        for p in sorted((ROOT / d).iterdir())
        if p.is_file()
    }


def pip(*args: object, cwd: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *map(str, args), "-q", "--disable-pip-version-check"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def wheel_in(folder: Path) -> Path:
    (wheel,) = folder.glob("hpcgen-*.whl")
    return wheel


def in_wheel(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist() if n.startswith("hpcgen/_templates/")}


def copy_sources(src: Path) -> Path:
    """A copy of what the build reads, symlinks kept (as git checks them out), so that the
    build's own files (build/, *.egg-info) never land in the working tree."""
    src.mkdir(exist_ok=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(path, src / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy(path, src / name)
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel . --no-deps`` of the project."""
    src = copy_sources(tmp_path_factory.mktemp("src"))
    dist = tmp_path_factory.mktemp("dist")
    pip("wheel", ".", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, cwd=src)
    return wheel_in(dist)


def test_wheel_carries_every_template(wheel: Path) -> None:
    assert in_wheel(wheel) == templates()


def test_wheel_built_through_an_sdist_carries_every_template(tmp_path: Path) -> None:
    """``python -m build`` builds the sdist first, then the wheel from it: the sdist must hold
    the templates as files of its own (a symlink out of the package would dangle there)."""
    src = copy_sources(tmp_path / "src")
    proc = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; b.build_sdist('sdist')"],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (sdist,) = (src / "sdist").glob("hpcgen-*.tar.gz")
    pip("wheel", sdist, "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path, cwd=src)
    assert in_wheel(wheel_in(tmp_path)) == templates()


def test_installed_wheel_renders_jobs_without_a_checkout(wheel: Path, tmp_path: Path) -> None:
    """Installed from the wheel (its own folder first on the path, no HPCGEN_TEMPLATES), run
    from a directory outside the checkout: the templates come from the installed package."""
    site = tmp_path / "site"
    pip("install", "--no-deps", "--no-index", "--target", site, wheel, cwd=tmp_path)
    installed = site / "hpcgen" / "_templates"
    assert all(not (installed / d).is_symlink() for d in TEMPLATE_DIRS)
    work = tmp_path / "work"
    work.mkdir()
    write_spec(work, "t.toml", 'generator = "tracks"\nn_samples = 40\nchunk_size = 10\n')
    code = (
        "import sys, hpcgen, hpcgen.jobs.render as r\n"
        "from hpcgen.cli import main\n"
        "print(hpcgen.__file__)\n"
        "print(r.template_root())\n"
        "rc = main(['jobs', 'slurm', 't.toml', '--jobs', '2', '--out', 'sl', '--account', 'x'])\n"
        "rc += main(['jobs', 'condor', 't.toml', '--jobs', '2', '--out', 'co'])\n"
        "sys.exit(rc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HPCGEN_TEMPLATES"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=work,
        env={**env, "PYTHONPATH": str(site), "HDF5_USE_FILE_LOCKING": "FALSE"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    module, root = proc.stdout.splitlines()[:2]
    assert Path(module).is_relative_to(site) and Path(root) == installed
    assert not Path(root).resolve().is_relative_to(ROOT)
    for name in ("submit.sbatch", "array.sbatch", "merge.sbatch", "mpi.sbatch"):
        assert "#SBATCH --account=x" in (work / "sl" / name).read_text(), name
    for name in ("submit.sbatch", "array.sbatch", "merge.sbatch", "mpi.sbatch", "merge.sh"):
        assert "{{" not in (work / "sl" / name).read_text(), name
    for name in ("generate.sub", "node.sub", "merge.sub", "run.dag", "wrapper.sh", "merge.sh"):
        assert "{{" not in (work / "co" / name).read_text(), name


def test_templates_env_replaces_the_package_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "own"
    for d in TEMPLATE_DIRS:
        shutil.copytree(ROOT / d, own / d)
    array = own / "slurm" / "array.sbatch"
    array.write_text(
        array.read_text().replace("set -euo pipefail", "# site copy\nset -euo pipefail")
    )
    monkeypatch.setenv("HPCGEN_TEMPLATES", str(own))
    spec = write_spec(tmp_path, "t.toml", 'generator = "tracks"\nn_samples = 40\nchunk_size = 10\n')
    assert jobs("slurm", spec, "--jobs", 2, "--out", tmp_path / "a").returncode == 0
    assert "# site copy" in (tmp_path / "a" / "array.sbatch").read_text()
    monkeypatch.setenv("HPCGEN_TEMPLATES", str(tmp_path / "empty"))
    proc = jobs("slurm", spec, "--jobs", 2, "--out", tmp_path / "b")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"batch templates not found in {tmp_path / 'empty'}" in proc.stderr
    assert not (tmp_path / "b").exists()
