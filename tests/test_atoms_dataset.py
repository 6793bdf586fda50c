"""atoms: the versioned dataset directory (``hpcgen dataset atoms``), the HDF5 run under 1/2/3
ranks, and ``hpcgen export --format dataset``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_data, run_hpcgen

from hpcgen.cli import build_parser, main
from hpcgen.errors import UserError
from hpcgen.generators.atoms.generator import AtomsGenerator
from hpcgen.generators.atoms.params import AtomsParams
from hpcgen.generators.atoms.split import assign_split
from hpcgen.generators.base import Chunk
from hpcgen.io.export import export
from hpcgen.io.reader import Reader
from hpcgen.verify import verify_file

SPLITS = ("train", "val", "test")
KEYS = {"images", "labels", "masks", "kinds", "index"}


class FakeStdin:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def dataset(*args: str) -> int:
    """``hpcgen dataset atoms ARGS`` in-process (the handler behind the real parser)."""
    ns = build_parser().parse_args(["dataset", "atoms", *args])
    return ns.func(ns)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path with a non-terminal stdin whose input() must never be called."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", FakeStdin(tty=False))

    def no_input(prompt: str = "") -> str:
        raise AssertionError("the command waited for input")

    monkeypatch.setattr("builtins.input", no_input)
    return tmp_path


def today_dir(root: Path, version: int) -> Path:
    return root / "datasets" / f"{dt.date.today().isoformat()}-v{version}"


def digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def load(path: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for s in SPLITS:
        with np.load(path / f"{s}.npz") as z:
            out[s] = {k: z[k] for k in z.files}
    return out


# --- the dataset command ------------------------------------------------------------------------


def test_dataset_holds_every_index_once_with_its_generated_rows(in_tmp: Path) -> None:
    n, seed, chunk = 437, 5, 100
    assert dataset("--num-images", str(n), "--seed", str(seed), "--chunk-size", str(chunk)) == 0
    out = today_dir(in_tmp, 1)
    assert sorted(p.name for p in out.iterdir()) == [
        "metadata.json",
        "test.npz",
        "train.npz",
        "val.npz",
        "validation_report.png",
    ]
    data = load(out)
    meta = json.loads((out / "metadata.json").read_text())
    # every index exactly once, in the split its (seed, index) hash says
    index = np.concatenate([data[s]["index"] for s in SPLITS])
    assert np.array_equal(np.sort(index), np.arange(n))
    want = assign_split(np.arange(n), seed)
    gen = AtomsGenerator(AtomsParams())
    rows = [gen.sample(Chunk(k, k * chunk, min(chunk, n - k * chunk), seed)) for k in range(5)]
    rows = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    for code, s in enumerate(SPLITS):
        d = data[s]
        assert set(d) == KEYS
        assert (want[d["index"]] == code).all()
        assert meta["dataset_info"][f"{s}_count"] == len(d["index"]) == int((want == code).sum())
        for k in KEYS - {"index"}:
            assert d[k].dtype == np.uint8, k
            assert np.array_equal(d[k], rows[k][d["index"]]), (s, k)
        with zipfile.ZipFile(out / f"{s}.npz") as z:  # np.savez_compressed's format
            assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    assert meta["dataset_info"]["total_count"] == n
    g = meta["generation_params"]
    assert (g["num_images"], g["seed"], g["grid_size"]) == (n, seed, 16)
    assert g["splits"] == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert meta["memory_info"]["total_bytes"] == n * meta["memory_info"]["bytes_per_image"]
    assert meta["memory_info"]["bytes_per_image"] == 256  # the spec's: the uint8 image alone
    assert meta["storage_info"]["bytes_per_sample"] == 2 * 256 + 1 + 4 + 8  # all five keys
    assert meta["file_format"] == {"dtype": "uint8", "compression": "npz"}
    prov = meta["provenance"]
    assert {"hpcgen_version", "python", "numpy", "host", "command"} <= set(prov)
    png = (out / "validation_report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_versions_count_up_and_nothing_is_overwritten(in_tmp: Path) -> None:
    assert dataset("--num-images", "30") == 0
    first = digest(today_dir(in_tmp, 1))
    assert dataset("--num-images", "30", "--seed", "1") == 0
    assert digest(today_dir(in_tmp, 1)) == first  # v1 untouched
    assert today_dir(in_tmp, 2).is_dir()
    today_dir(in_tmp, 7).mkdir()  # the next version is above the highest, gaps stay gaps
    (in_tmp / "datasets" / "2001-01-01-v9").mkdir()  # other dates do not count
    assert dataset("--num-images", "30") == 0
    assert (today_dir(in_tmp, 8) / "metadata.json").is_file()


def test_a_non_empty_output_dir_is_refused(in_tmp: Path) -> None:
    target = in_tmp / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty: refusing to overwrite"):
        dataset("--num-images", "30", "--output-dir", str(target))
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    empty = in_tmp / "empty"
    empty.mkdir()
    assert dataset("--num-images", "30", "--output-dir", str(empty)) == 0
    assert (empty / "metadata.json").is_file()


@pytest.mark.parametrize("n", ["0", "-3"])
def test_num_images_must_be_positive(in_tmp: Path, n: str) -> None:
    with pytest.raises(UserError, match=f"--num-images must be > 0, got {n}"):
        dataset("--num-images", n)
    assert not (in_tmp / "datasets").exists()


def test_a_terminal_is_asked_and_no_writes_nothing(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(tty=True))
    prompts = []
    answers = iter(["n", "y"])
    monkeypatch.setattr("builtins.input", lambda p="": prompts.append(p) or next(answers))
    assert dataset("--num-images", "40") == 1
    shown = capsys.readouterr().out
    assert "Images: 40" in shown and "Memory: 10.00 KB" in shown and "-v1" in shown
    assert "Cancelled" in shown and not (in_tmp / "datasets").exists()
    assert dataset("--num-images", "40") == 0
    assert len(prompts) == 2 and today_dir(in_tmp, 1).is_dir()


def test_yes_skips_the_question_on_a_terminal(in_tmp: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(tty=True))  # input() still raises
    assert dataset("--num-images", "20", "--yes") == 0


def test_without_a_terminal_the_command_never_asks(in_tmp: Path) -> None:
    assert dataset("--num-images", "20") == 0  # the fixture's input() raises if called


def test_cli_errors_are_one_line_and_a_pipe_never_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["dataset", "atoms", "--num-images", "0"]) == 2
    assert capsys.readouterr().err == "hpcgen: error: --num-images must be > 0, got 0\n"
    assert not (tmp_path / "datasets").exists()
    # stdin: an open pipe nobody writes to; waiting for an answer would hang until the timeout
    cmd = [sys.executable, "-m", "hpcgen", "dataset", "atoms", "--num-images", "25"]
    log = tmp_path / "log.txt"
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            proc.wait(timeout=120)
        finally:
            proc.kill()
            proc.stdin.close()
    out = err = log.read_text()
    assert proc.returncode == 0, err
    assert "not a terminal" in out
    assert (today_dir(tmp_path, 1) / "metadata.json").is_file()


# --- the HDF5 run and the exporter ------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The same small spec run on 1, 2 and 3 ranks (2,500 images in 7 chunks of 400)."""
    root = tmp_path_factory.mktemp("atoms_runs")
    spec = root / "atoms.toml"
    spec.write_text(
        'generator = "atoms"\nn_samples = 2500\nseed = 5\nchunk_size = 400\n'
        'output = "atoms.h5"\n\n[params]\nseparation = 1\n'
    )
    out = {}
    for ranks in (1, 2, 3):
        out[ranks] = root / f"r{ranks}.h5"
        run_hpcgen("run", spec, "--out", out[ranks], "--quiet", ranks=ranks, check=True)
    return out


def test_the_file_is_the_same_on_1_2_and_3_ranks_and_verifies(runs: dict[int, Path]) -> None:
    assert_same_data(runs[1], runs[2])
    assert_same_data(runs[1], runs[3])
    passed, report = verify_file(runs[3])
    assert passed, [c for c in report["checks"] if not c["passed"]]
    names = [c["name"] for c in report["checks"]]
    assert any(n.startswith("split sizes") for n in names)
    assert "train/val/test leakage (identical images across splits)" in names


def test_export_writes_the_dataset_of_the_dataset_command(
    runs: dict[int, Path], in_tmp: Path
) -> None:
    exported = in_tmp / "exported"
    export(runs[2], "dataset", exported, {})
    assert (
        dataset(
            "--num-images",
            "2500",
            "--seed",
            "5",
            "--chunk-size",
            "400",
            "--set",
            "separation=1",
            "--output-dir",
            "direct",
        )
        == 0
    )
    a, b = load(exported), load(in_tmp / "direct")
    for s in SPLITS:
        for k in KEYS:
            assert np.array_equal(a[s][k], b[s][k]), (s, k)
    meta = json.loads((exported / "metadata.json").read_text())
    assert meta["dataset_info"]["total_count"] == 2500
    assert meta["provenance"]["source_file"] == str(runs[2].resolve())
    with pytest.raises(UserError):  # never over an existing dataset
        export(runs[2], "dataset", exported, {"overwrite": True})
    assert (exported / "metadata.json").read_text() == json.dumps(meta, indent=2) + "\n"


def test_plot_draws_train_images_from_the_file(runs: dict[int, Path], tmp_path: Path) -> None:
    out = tmp_path / "atoms.png"
    with Reader(runs[1]) as r:
        r.generator.plot(r, out, {})
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 20_000
