#!/usr/bin/env bash
# One set-up path for a fresh Debian/Ubuntu machine: MPICH + parallel HDF5 from the distribution,
# mpi4py and h5py built against them in a project venv (.venv), then hpcgen and its dependencies.
# Idempotent: a second run checks and returns in seconds.
#
# Environment:
#   VENV=path          venv location (default: .venv beside this script's project)
#   HPCGEN_NO_APT=1    skip the apt step (clusters: load your MPI/HDF5 modules instead, see README)
#   HPCGEN_EXTRAS=...  pip extras to install (default: dev)
#   HPCGEN_NO_WARM=1   skip building the compiled kernels' cache (the first run then compiles)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
EXTRAS="${HPCGEN_EXTRAS:-dev}"
PY="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. system packages: MPICH, parallel HDF5 (MPICH flavour), h5dump ------------------------
APT_PKGS=(mpich libmpich-dev libhdf5-mpich-dev hdf5-tools pkg-config slurm-wlm munge)
if [[ "${HPCGEN_NO_APT:-0}" != 1 ]]; then
    missing=()
    for p in "${APT_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing system packages: ${missing[*]}"
        SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# Pin to MPICH even if Open MPI appears later (it switches the mpicc/mpiexec alternatives).
MPICC="${MPICC:-$(command -v mpicc.mpich || command -v mpicc)}"
HDF5_PC="${HDF5_PKGCONFIG_NAME:-hdf5-mpich}"
pkg-config --exists "$HDF5_PC" 2>/dev/null || HDF5_PC=""

# --- 2. venv -------------------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
pipq() { "$VPY" -m pip install -q --disable-pip-version-check "$@"; }

# The venv's old setuptools breaks the h5py build ("project.license must be valid ...").
if ! "$VPY" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 70)' 2>/dev/null; then
    log "upgrading pip/setuptools/wheel"
    pipq -U pip setuptools wheel
fi

# --- 3. mpi4py and h5py built against the system MPI / parallel HDF5 ----------------------------
if ! "$VPY" -c 'import mpi4py.MPI as M; assert "MPICH" in M.Get_library_version() or True' 2>/dev/null; then
    log "building mpi4py against $MPICC (a few minutes)"
    pipq numpy Cython pkgconfig
    MPICC="$MPICC" pipq --no-binary=mpi4py mpi4py
fi
if ! "$VPY" -c 'import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)' 2>/dev/null; then
    log "building h5py against parallel HDF5 (a few minutes)"
    pipq numpy Cython pkgconfig
    "$VPY" -m pip uninstall -y -q h5py 2>/dev/null || true
    env CC="$MPICC" HDF5_MPI=ON ${HDF5_PC:+HDF5_PKGCONFIG_NAME=$HDF5_PC} \
        "$VPY" -m pip install -q --disable-pip-version-check --no-binary=h5py --no-build-isolation h5py
fi

# --- 4. torch for the `torch` and `well` extras ----------------------------------------------
# the-well and hpcgen.torch_data need torch, and a plain `pip install torch` on Linux fetches a
# CUDA build of several GB. HPCGEN_TORCH (default 2.13.0) is installed first where torch is
# missing; pip finds a local CPU build where one is provided (PIP_FIND_LINKS). If that fails the
# extras are left out, said loudly, and the tests that need torch skip.
if [[ ",$EXTRAS," == *",well,"* || ",$EXTRAS," == *",torch,"* ]] \
    && ! "$VPY" -c 'import torch' 2>/dev/null; then
    log "installing torch ${HPCGEN_TORCH:-2.13.0} for the torch/well extras"
    if ! pipq "torch==${HPCGEN_TORCH:-2.13.0}"; then
        log "WARNING: torch could not be installed; leaving out the torch and well extras"
        EXTRAS="$(echo ",$EXTRAS," | sed 's/,well,/,/; s/,torch,/,/; s/^,//; s/,$//')"
    fi
fi

# --- 5. hpcgen itself (editable) and the rest -----------------------------------------------------
STAMP="$VENV/.hpcgen-setup-stamp"
want="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" 2>/dev/null | sha256sum | cut -c1-16)-$EXTRAS"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]] || ! "$VPY" -c 'import hpcgen' 2>/dev/null; then
    if [[ -f "$ROOT/setup.cfg" ]]; then
        log "installing hpcgen[$EXTRAS] (editable)"
        pipq --no-build-isolation -e "$ROOT[$EXTRAS]"
        echo "$want" >"$STAMP"
    fi
fi

"$VPY" - <<'PY'
import h5py, mpi4py.MPI as MPI
assert h5py.get_config().mpi, "h5py was built without MPI support"
print(f"[setup] ok: h5py {h5py.__version__} (parallel HDF5 {'.'.join(map(str, h5py.version.hdf5_version_tuple))}), "
      f"mpi4py with {MPI.Get_library_version().splitlines()[0].strip()}")
PY

# --- 6. the compiled kernels: numba's cache built now, not by the first run -----------------------
# Every generator's kernels for every set of argument types the runs use (docs/compile.md): a few
# minutes the first time, seconds afterwards. A failure only means the first run compiles.
if [[ "${HPCGEN_NO_WARM:-0}" != 1 ]]; then
    log "building the compiled kernels' cache (python -m hpcgen.kernel_cache warm)"
    "$VPY" -m hpcgen.kernel_cache warm >&2 \
        || log "WARNING: some kernels were not pre-compiled; the first run compiles them"
fi
