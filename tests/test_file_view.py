"""The FileView contract: what a generator's hooks (file_checks, plot, exporters) see of a file.

hpcgen.io.reader.Reader implements it; each member is checked against the same file read with
h5py directly, on a small illumination file written by ``hpcgen run`` (three chunks, the last
one short), and on a copy with a chunk not marked done.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import ROOT, run_hpcgen

from hpcgen.errors import UserError
from hpcgen.generators.base import FileView, Node
from hpcgen.io.reader import Reader

N, CHUNK = 50, 20  # chunks of 20, 20 and 10 rows


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("view") / "illumination.h5"
    run_hpcgen(
        "run",
        ROOT / "jobs" / "illumination_demo.toml",
        "--out",
        out,
        "--n",
        N,
        "--chunk-size",
        CHUNK,
        "--set",
        "level=1",
        "--quiet",
        check=True,
    )
    return out


@pytest.fixture()
def view(path):
    with Reader(path) as r:
        yield r


def test_reader_is_a_file_view(view):
    assert isinstance(view, FileView)


def test_a_namespace_without_the_members_is_not_a_file_view():
    class Partial:
        path = Path("x.h5")

        def read(self, name, rows=slice(None)):
            return np.zeros(0)

    assert not isinstance(Partial(), FileView)


def test_what_the_file_is(view, path):
    assert view.path == path
    assert view.spec.generator == "illumination"
    assert view.spec.n_samples == N and view.spec.chunk_size == CHUNK
    assert view.generator.name == "illumination"
    assert [f.name for f in view.fields] == [f.name for f in view.generator.fields()]
    assert view.n_rows == N
    assert view.row_range == (0, N)
    assert view.chunk_range == (0, 3)
    np.testing.assert_array_equal(view.done, [True, True, True])
    assert view.done.dtype == bool
    assert view.complete is True


def test_the_engine_attributes_come_through_named_properties(view, path):
    with h5py.File(path, "r") as f:
        want_hash = f.attrs["hpcgen_data_hash"]
        want_prov = json.loads(f.attrs["hpcgen_provenance"])
    assert isinstance(view.data_hash, str) and len(view.data_hash) == 64
    assert view.data_hash == want_hash
    assert view.provenance == want_prov


def test_root_and_dataset_attributes_are_the_stored_values(view, path):
    with h5py.File(path, "r") as f:
        root = dict(f.attrs)
        lit = dict(f["lit_fractions"].attrs)
    assert set(view.attrs) == set(root)
    assert view.attrs["illumination_ray_offset_m"] == root["illumination_ray_offset_m"]
    assert view.attrs["illumination_model"] == root["illumination_model"]
    assert view.group_attrs("/").keys() == root.keys()
    assert view.group_attrs("").keys() == root.keys()
    got = view.dataset_attrs("lit_fractions")
    assert set(got) == set(lit)
    assert [str(n) for n in got["face_names"]] == [str(n) for n in lit["face_names"]]
    assert got["units"] == "1"


def test_missing_groups_and_datasets_are_user_errors(view):
    with pytest.raises(UserError, match="no group 'nowhere'"):
        view.group_attrs("nowhere")
    with pytest.raises(UserError, match="no group 'lit_fractions'"):
        view.group_attrs("lit_fractions")  # a dataset, not a group
    with pytest.raises(UserError, match="no dataset 'nothing'"):
        view.dataset_attrs("nothing")
    with pytest.raises(UserError, match="no dataset 'nothing'"):
        view.read("nothing")


def test_nodes_describe_groups_and_datasets(view, path):
    root = view.node("/")
    assert isinstance(root, Node) and root.kind == "group" and root.path == ""
    with h5py.File(path, "r") as f:
        names = sorted(k for k in f.keys() if k != "_hpcgen")
        assert "_hpcgen" in f  # the engine's bookkeeping exists on disk ...
        shape, dtype = f["lit_fractions"].shape, f["lit_fractions"].dtype
    assert root.children == tuple(names)  # ... but is not part of the view
    assert view.node("_hpcgen") is None and view.node("_hpcgen/done") is None
    lit = view.node("lit_fractions")
    assert lit.kind == "dataset" and lit.path == "lit_fractions"
    assert lit.shape == shape == (N, len(view.dataset_attrs("lit_fractions")["face_names"]))
    assert lit.dtype == dtype and lit.virtual is False and lit.children == ()
    assert lit.attrs.keys() == view.dataset_attrs("lit_fractions").keys()
    assert view.node("nothing") is None


def test_read_takes_slices_ints_and_index_lists_in_any_order(view, path):
    with h5py.File(path, "r") as f:
        sun = f["sun_vectors"][...]
    np.testing.assert_array_equal(view.read("sun_vectors"), sun)
    np.testing.assert_array_equal(view.read("sun_vectors", slice(5, 9)), sun[5:9])
    np.testing.assert_array_equal(view.read("sun_vectors", 7), sun[7])
    rows = [9, 2, 2, -1, 0]
    np.testing.assert_array_equal(view.read("sun_vectors", rows), sun[rows])
    np.testing.assert_array_equal(view.read("sun_vectors", np.array(rows)), sun[rows])
    assert view.read("sun_vectors", []).shape == (0, 3)
    with pytest.raises(IndexError, match="out of range for 50 rows"):
        view.read("sun_vectors", [0, N])
    with pytest.raises(UserError, match="1-d sequence of ints"):
        view.read("sun_vectors", [0.5])


def test_iter_rows_streams_every_row_in_blocks(view, path):
    with h5py.File(path, "r") as f:
        sun, lit = f["sun_vectors"][...], f["lit_fractions"][...]
    blocks = list(view.iter_rows(["sun_vectors", "lit_fractions"]))
    assert [s for s, _ in blocks] == [0, 20, 40]  # the run's chunk size by default
    assert [len(b["sun_vectors"]) for _, b in blocks] == [20, 20, 10]
    np.testing.assert_array_equal(np.concatenate([b["sun_vectors"] for _, b in blocks]), sun)
    np.testing.assert_array_equal(np.concatenate([b["lit_fractions"] for _, b in blocks]), lit)
    small = list(view.iter_rows(["sun_vectors"], block=16))
    assert [s for s, _ in small] == [0, 16, 32, 48]
    everything = next(iter(view.iter_rows()))[1]
    assert sorted(everything) == sorted(f.name for f in view.fields)


def test_static_datasets_by_name(view, path):
    with h5py.File(path, "r") as f:
        tris = f["model_triangles"][...]
    np.testing.assert_array_equal(view.static("model_triangles"), tris)
    assert view.static("model_triangle_face").dtype == np.int32
    for name in ("lit_fractions", "_hpcgen/done", "nothing"):  # a field, the engine's, absent
        with pytest.raises(UserError, match="no static dataset"):
            view.static(name)


def test_done_and_complete_of_an_unfinished_file(path, tmp_path):
    part = tmp_path / "part.h5"
    shutil.copy(path, part)
    with h5py.File(part, "r+") as f:  # as an interrupted run leaves it: chunk 1 not done
        f["_hpcgen/done"][1] = 0
    with Reader(part) as r:
        np.testing.assert_array_equal(r.done, [True, False, True])
        assert r.complete is False
