# The two commands of README.md. Both do the set-up (scripts/setup.sh) when needed; it is
# idempotent and takes seconds once done.
VENV ?= .venv
BIN := $(VENV)/bin
NP ?= 2
export HDF5_USE_FILE_LOCKING ?= FALSE
# worker processes of the serial suite (pytest-xdist): the CPU count, at most 4; 0 runs it in
# make's own pytest process
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n > 4 ? 4 : n )))

.PHONY: setup demo test test-serial test-mpi lint bench clean

setup:
	@bash scripts/setup.sh

## make demo: set up, run the main job (tracks demo) on $(NP) ranks, verify it, export it
demo: setup
	@test -f fieldmaps/synth.txt || (mkdir -p fieldmaps && $(BIN)/hpcgen fieldmap synth --out fieldmaps/synth.txt)
	$(BIN)/hpcgen plan jobs/tracks_demo.toml --ranks $(NP)
	mpiexec.mpich -n $(NP) $(BIN)/hpcgen run jobs/tracks_demo.toml --out tracks_demo.h5 --overwrite --yes
	$(BIN)/hpcgen verify tracks_demo.h5
	$(BIN)/hpcgen export tracks_demo.h5 --format npz --only-ok --out tracks_demo.npz --overwrite

## make test: set up, lint, the serial suite, then the MPI suite under 2 and 3 ranks
test: setup lint test-serial test-mpi

lint:
	$(BIN)/ruff check hpcgen tests bench
	$(BIN)/ruff format --check hpcgen tests bench
	$(BIN)/mypy

# --dist loadfile: a module's tests share a worker, so that its module-scoped fixtures (runs,
# exports, the SLURM cluster) are built once
test-serial:
	$(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile

# only the modules that hold MPI tests are collected: every rank collecting the whole suite (its
# imports) took longer than the tests
MPI_TESTS = $(shell grep -l "mark\.mpi" tests/test_*.py)

test-mpi:
	mpiexec.mpich -n 2 $(BIN)/python -m pytest -q -ra --with-mpi -m mpi -p no:cacheprovider $(MPI_TESTS)
	mpiexec.mpich -n 3 $(BIN)/python -m pytest -q -ra --with-mpi -m mpi -p no:cacheprovider $(MPI_TESTS)

## make bench: every benchmark, one after the other (minutes; results: docs/benchmarks.md)
bench: setup
	$(BIN)/python bench/bench_engine.py tracks
	mpiexec.mpich -n 2 $(BIN)/python bench/bench_engine.py io
	$(BIN)/python bench/bench_tracks.py
	$(BIN)/python bench/bench_illumination.py
	$(BIN)/python bench/bench_atoms.py
	$(BIN)/python bench/bench_ptycho.py
	$(BIN)/python bench/bench_energy.py

clean:
	rm -rf tracks_demo.h5 tracks_demo.npz tracks_demo.metadata.json tracks_demo.verify.json
