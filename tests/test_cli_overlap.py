"""``hpcgen run --overlap`` through the real CLI: the same bytes as a run without it, on one
process and on two ranks (the engine's own overlap tests are in test_run_overlap.py)."""

from __future__ import annotations

import pytest
from helpers import assert_same_data, run_hpcgen

SPEC = (
    'generator = "toy_generator:ToyGenerator"\nn_samples = 1000\nseed = 11\nchunk_size = 90\n'
    'output = "t.h5"\n\n[params]\nscale = 2.5\n'
)


@pytest.mark.parametrize("ranks", [0, 2])
def test_overlap_flag_writes_the_same_bytes(tmp_path, ranks):
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC)
    plain, overlapped = tmp_path / "plain.h5", tmp_path / "overlap.h5"
    run_hpcgen("run", spec, "--out", plain, "-q", ranks=ranks, check=True)
    run_hpcgen("run", spec, "--out", overlapped, "-q", "--overlap", ranks=ranks, check=True)
    assert_same_data(plain, overlapped)


def test_overlap_is_listed_in_run_help():
    out = run_hpcgen("run", "--help", check=True).stdout
    assert "--overlap" in out
