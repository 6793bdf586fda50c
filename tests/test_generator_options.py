"""Generators declare the ``hpcgen plot`` / ``hpcgen export`` options their hooks read
(hpcgen/generators/options.py): what each declares, the union a parser gets, that building it
imports no generator kernels, and that a parsed option reaches the hook."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, hpcgen_env, run_hpcgen

from hpcgen.errors import UserError
from hpcgen.generators import REGISTRY, get_generator_class, options
from hpcgen.generators.base import Option
from hpcgen.io.reader import Reader

#: what each registered generator declares
DECLARED = {
    ("atoms", "export"): ["--dedup"],
    ("atoms", "plot"): [],
    ("energy", "export"): ["--split"],
    ("energy", "plot"): ["--domain", "--sample"],
    ("illumination", "export"): [],
    ("illumination", "plot"): ["--face"],
    ("ptycho", "export"): [],
    ("ptycho", "plot"): ["--sample"],
    ("tracks", "export"): ["--only-ok"],
    ("tracks", "plot"): [],
}


@pytest.mark.parametrize(("gen", "command"), sorted(DECLARED))
def test_each_generator_lists_its_options(gen, command):
    assert [o.flag for o in options.generator_options(gen, command)] == DECLARED[gen, command]


@pytest.mark.parametrize(("gen", "command"), sorted(DECLARED))
def test_the_light_module_is_what_the_generator_class_declares(gen, command):
    """The CLI reads <package>.options; the class (what the hooks belong to) must agree."""
    cls = get_generator_class(gen)
    assert cls.cli_options(command) == options.generator_options(gen, command)


def test_unknown_command_is_refused():
    with pytest.raises(ValueError, match="no generator options for command 'run'"):
        options.generator_options("atoms", "run")


def test_option_keys_and_argparse_arguments():
    flag = Option("--only-ok", "drop flagged rows", action="store_true")
    assert flag.dest == "only_ok"
    assert flag.argparse_kwargs() == {
        "help": "drop flagged rows",
        "action": "store_true",
        "dest": "only_ok",
    }
    value = Option("--sample", "row", type=int, default=0, metavar="I", aliases=("-s",))
    assert value.flags == ("--sample", "-s")
    assert value.argparse_kwargs() == {
        "help": "row",
        "action": "store",
        "dest": "sample",
        "default": 0,
        "type": int,
        "metavar": "I",
    }


def test_a_parser_gets_the_union_once_per_flag():
    p = argparse.ArgumentParser()
    added = options.add_generator_options(p, "plot")
    flags = [o.flag for o in added]
    assert len(flags) == len(set(flags))
    assert {"--face", "--domain", "--sample"} <= set(flags)
    sample = next(o for o in added if o.flag == "--sample")
    assert sample.help.startswith("energy: trajectory index") and "; ptycho: pattern" in sample.help
    args = p.parse_args(["--face", "+X", "--sample", "3"])
    assert (args.face, args.sample, args.domain) == ("+X", 3, None)
    assert p.parse_args([]).sample == 0
    text = p.format_help()
    assert "illumination: face name" in text and "--domain" in text

    e = argparse.ArgumentParser()
    options.add_generator_options(e, "export")
    args = e.parse_args(["--dedup", "--split", "0.5,0.25,0.25"])
    assert args.dedup is True and args.split == "0.5,0.25,0.25"
    assert e.parse_args([]).dedup is False


def test_two_generators_declaring_one_flag_differently_is_an_error(monkeypatch):
    table = {
        "atoms": [Option("--sample", "a", type=int, default=0)],
        "energy": [Option("--sample", "b", type=int, default=1)],
    }
    monkeypatch.setattr(options, "generator_options", lambda name, cmd: table.get(name, []))
    with pytest.raises(ValueError, match="generators atoms and energy declare --sample"):
        options.merged_options("plot")


def test_building_the_options_imports_no_generator_module():
    """--help must stay quick: only the light ``options`` modules are imported."""
    light = list(REGISTRY)
    code = (
        "import json, sys\n"
        "from hpcgen.generators import options\n"
        f"for g in {light!r}:\n"
        "    for c in options.COMMANDS:\n"
        "        options.generator_options(g, c)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('hpcgen.generators.'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=hpcgen_env(), capture_output=True, text=True, check=True
    ).stdout
    loaded = json.loads(out)
    assert sorted(loaded) == sorted(
        ["hpcgen.generators.base", "hpcgen.generators.options"]
        + [f"hpcgen.generators.{g}" for g in light]
        + [f"hpcgen.generators.{g}.options" for g in light]
    )


# --- the options reach the hooks ----------------------------------------------------------------


def parsed(command: str, argv: list[str]) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--overwrite", action="store_true")
    options.add_generator_options(p, command)
    return vars(p.parse_args(argv))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("options")
    out = {"illumination": d / "illumination.h5", "atoms": d / "atoms.h5"}
    q = ["--quiet", "--overwrite"]
    run_hpcgen(
        "run", ROOT / "jobs" / "illumination_demo.toml", "--out", out["illumination"],
        "--n", 40, "--chunk-size", 20, "--set", "level=1", *q, check=True,
    )  # fmt: skip
    run_hpcgen(
        "run", ROOT / "jobs" / "atoms_demo.toml", "--out", out["atoms"],
        "--n", 300, "--chunk-size", 100, *q, check=True,
    )  # fmt: skip
    return out


def test_face_reaches_the_illumination_plot(files, tmp_path):
    with Reader(files["illumination"]) as r:
        faces = [str(n) for n in r.dataset_attrs("lit_fractions")["face_names"]]
        with pytest.raises(UserError, match="no face 'no-such-face'"):
            r.generator.plot(r, tmp_path / "x.png", parsed("plot", ["--face", "no-such-face"]))
        with pytest.raises(UserError, match="plot needs --face NAME"):
            r.generator.plot(r, tmp_path / "x.png", parsed("plot", []))
        r.generator.plot(r, tmp_path / "sky.png", parsed("plot", ["--face", faces[0]]))
    assert (tmp_path / "sky.png").stat().st_size > 0


def test_dedup_reaches_the_atoms_export(files, tmp_path):
    with Reader(files["atoms"]) as r:
        export = r.generator.exporters()["dataset"]
        export(r, tmp_path / "plain", parsed("export", []))
        export(r, tmp_path / "dedup", parsed("export", ["--dedup"]))
    plain = json.loads((tmp_path / "plain" / "metadata.json").read_text())
    dedup = json.loads((tmp_path / "dedup" / "metadata.json").read_text())
    assert plain["dedup"] == {"enabled": False}
    assert dedup["dedup"]["enabled"] is True and len(dedup["dedup"]) > 1
