"""Compiled kernels: numba's on-disk cache, built at install, safe for many processes, said aloud.

Every numba kernel of hpcgen is declared with this module's :func:`njit` (numba's, with
``cache=True``): numba keeps the machine code of each (kernel, argument types, CPU) in its cache
(``__pycache__`` beside the source, or ``$NUMBA_CACHE_DIR``), and a later process loads it in
well under a second instead of compiling it again (the tracks kernel: 1-1.5 min per adaptive
integrator scheme on one core). What this module adds around numba's own compile step
(``Dispatcher.compile``, called only when a process meets argument types it has no machine code
for yet):

- **Pay at install.** ``python -m hpcgen.kernel_cache warm`` (run by ``scripts/setup.sh``; after
  ``pip install``, run it once) runs every generator's kernels on tiny inputs, once for each
  set of argument types the runs use (the numba specialisations: every tracks integrator, float32
  and float64 where a generator has both, ...), so that runs find the cache warm.
- **Say so.** Before a compile starts, rank 0 prints one line on stderr: ``hpcgen: compiling
  tracks kernels (~90 s, once; ...)``. A warm cache prints nothing. A miss is known before
  compiling: the cache is asked for the signature first, exactly as numba asks it.
- **Many processes at once.** numba's cache writes are atomic file by file, but its index is
  read, extended and rewritten: two processes compiling different signatures of one kernel at
  once can lose an entry, or make one index entry point at the other's machine code. A compile
  here holds an exclusive ``fcntl.flock`` on ``.hpcgen-compile.lock`` in the cache directory: one
  process compiles, the others wait, then load what it wrote (no 1000 concurrent compiles).
- **Read-only installs.** A process that cannot write the install's ``__pycache__`` still loads
  the machine code that ``warm`` put there (numba itself would ignore it and use the user's
  cache directory). With no writable cache at all, kernels compile in memory in every process,
  with a warning naming ``NUMBA_CACHE_DIR``.

Rank 0 is found from the launcher's environment (PMI_RANK, PMIX_RANK, OMPI_COMM_WORLD_RANK,
SLURM_PROCID), without importing mpi4py: a process with none of them is rank 0.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numba
from numba.core import caching, sigutils
from numba.core.dispatcher import Dispatcher

from hpcgen import compile_notices

#: rough cold-compile time of a generator's kernels on one core, for the notice (seconds; tracks:
#: one scheme, docs/compile.md)
COMPILE_SECONDS = {"tracks": 90, "energy": 10, "ptycho": 6, "atoms": 6, "illumination": 2}

#: the lock file, one per cache directory
LOCK_NAME = ".hpcgen-compile.lock"

#: environment variables that carry a process's MPI rank, in the order they are trusted
RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")

_local = threading.local()  # .depth: compile locks this thread holds (nested compiles)
_said: set[str] = set()  # notices already printed by this process
_warming = False  # warm() is running: the notice need not point to it


def is_rank0() -> bool:
    """Whether this process is rank 0 of its launch (or was not launched by MPI/SLURM)."""
    for var in RANK_VARIABLES:
        value = os.environ.get(var, "").strip()
        if value:
            return value == "0"
    return True


def _say(key: str, message: str) -> None:
    """Print ``message`` on stderr once per process (``key``), from rank 0 only."""
    if key in _said or not compile_notices.enabled or not is_rank0():
        return
    _said.add(key)
    print(message, file=sys.stderr, flush=True)


# --- where numba's cache is ----------------------------------------------------------------------


class _InstallLocator(caching.InTreeCacheLocator):
    """The ``__pycache__`` beside the source, for reading only (it need not be writable)."""

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        self = cls(py_func, py_file)
        return self if os.path.isdir(self.get_cache_path()) else None


class _InstallCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_InstallLocator]  # noqa: RUF012 - numba's own class attribute


class _InstallCache(caching.FunctionCache):
    """numba's cache of a function in the install's ``__pycache__``, only ever read."""

    _impl_class = _InstallCacheImpl


def _install_cache(py_func: Any, primary: Any) -> Any:
    """The read-only install cache of ``py_func`` when numba chose another directory to write
    (the install's ``__pycache__`` is not writable by this user), else None."""
    source = os.path.dirname(os.path.realpath(py_func.__code__.co_filename))
    install = os.path.join(source, "__pycache__")
    if primary is not None and os.path.realpath(primary.cache_path) == install:
        return None
    try:
        return _InstallCache(py_func)
    except (RuntimeError, OSError):  # no such directory, or the source is gone
        return None


class _GuardedCache:
    """Stands in for a dispatcher's numba cache (``Dispatcher._cache``): loads from the writable
    cache numba chose (``primary``, None if there is none) then from the read-only install
    cache; a failed write is a warning, not an error (the kernel stays in memory)."""

    def __init__(self, py_func: Any, group: str, primary: Any) -> None:
        self.group = group
        self._py_func = py_func
        self._primary = primary
        self._install: Any = False  # not looked for yet
        self._loaded: dict[Any, Any] = {}  # signature -> what peek() loaded, for compile()

    @property
    def cache_path(self) -> str:
        return self._primary.cache_path if self._primary is not None else ""

    @property
    def lock_path(self) -> str | None:
        return os.path.join(self.cache_path, LOCK_NAME) if self._primary is not None else None

    def enable(self) -> None:
        if self._primary is not None:
            self._primary.enable()

    def disable(self) -> None:
        if self._primary is not None:
            self._primary.disable()

    def flush(self) -> None:
        if self._primary is not None:
            self._primary.flush()

    def _caches(self) -> Iterator[Any]:
        if self._primary is not None:
            yield self._primary
        if self._install is False:
            self._install = _install_cache(self._py_func, self._primary)
        if self._install is not None:
            yield self._install

    def _load(self, sig: Any, target_context: Any) -> Any:
        for cache in self._caches():
            try:
                cres = cache.load_overload(sig, target_context)
            except Exception:  # an unreadable entry (truncated, foreign): compiled anew
                cres = None
            if cres is not None:
                return cres
        return None

    def peek(self, sig: Any, target_context: Any) -> bool:
        """Whether the machine code for ``sig`` is in a cache (loaded now, kept for the
        dispatcher's own load_overload that follows: it is read once)."""
        if sig in self._loaded:
            return True
        cres = self._load(sig, target_context)
        if cres is not None:
            self._loaded[sig] = cres
        return cres is not None

    def load_overload(self, sig: Any, target_context: Any) -> Any:
        if sig in self._loaded:
            return self._loaded.pop(sig)
        return self._load(sig, target_context)

    def save_overload(self, sig: Any, data: Any) -> None:
        if self._primary is None:
            return
        try:
            self._primary.save_overload(sig, data)
        except OSError as err:
            _say(
                f"write:{self.group}",
                f"hpcgen: warning: could not write the {self.group} kernels to numba's cache "
                f"{self.cache_path} ({err.strerror or err}): they stay in memory and the next "
                "process compiles them again; set NUMBA_CACHE_DIR to a writable directory",
            )


# --- the compile step ----------------------------------------------------------------------------


def _lock(path: str | None, group: str) -> int:
    """An open file descriptor holding the exclusive lock at ``path`` (waiting for it, and
    saying so, while another process holds it), or -1 where there can be no lock."""
    if path is None:
        return -1
    try:
        # read-only is enough for flock, and lets every user open a lock file someone else made
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:
        return -1  # the directory is not writable: numba cannot write there either
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(
                f"wait:{group}",
                f"hpcgen: waiting for the {group} kernels another process is compiling "
                f"({_about(group)}once)",
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as err:  # a file system without flock (Lustre mounted noflock, ...)
        os.close(fd)
        _say(
            f"nolock:{group}",
            f"hpcgen: warning: no file lock in {os.path.dirname(path)} ({err.strerror or err}): "
            "processes that start together may each compile; run "
            "`python -m hpcgen.kernel_cache warm` once before large jobs",
        )
        return -1
    return fd


@contextlib.contextmanager
def _compile_lock(path: str | None, group: str) -> Iterator[None]:
    """Hold the exclusive lock of a cache directory while this thread compiles (a kernel's
    callees compile inside its compile: they take no lock of their own)."""
    fd = _lock(path, group)
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        if fd >= 0:
            os.close(fd)  # releases the lock


def _about(group: str) -> str:
    """The notice's time: what one run compiles; warm compiles every tracks scheme (fixed RK4,
    with its "cell" loop, about as long as an adaptive one), so it says the time per scheme."""
    if group not in COMPILE_SECONDS:
        return ""
    if _warming and group == "tracks":
        return f"~{COMPILE_SECONDS[group]} s for each scheme, "
    return f"~{COMPILE_SECONDS[group]} s, "


def _announce(cache: _GuardedCache) -> None:
    """The one line before a compile (per generator and process, rank 0)."""
    group = cache.group
    about = _about(group)
    if cache.lock_path is None:
        _say(
            f"compile:{group}",
            f"hpcgen: compiling {group} kernels in memory ({about}every process: no writable "
            "numba cache; set NUMBA_CACHE_DIR to a writable directory to keep them)",
        )
    else:
        hint = "" if _warming else "; `python -m hpcgen.kernel_cache warm` does this at install"
        _say(
            f"compile:{group}",
            f"hpcgen: compiling {group} kernels ({about}once: cached in {cache.cache_path}{hint})",
        )


def _guarded_compile(dispatcher: Any, sig: Any) -> Any:
    """Dispatcher.compile with the notice and the lock (installed on each kernel's dispatcher:
    numba calls ``self.compile`` on every signature it has no machine code for in memory)."""
    compile_ = type(dispatcher).compile
    cache = dispatcher._cache
    if getattr(_local, "depth", 0) or not isinstance(cache, _GuardedCache):
        return compile_(dispatcher, sig)
    args, _ = sigutils.normalize_signature(sig)
    ctx = dispatcher.targetctx
    if tuple(args) in dispatcher.overloads or cache.peek(sig, ctx):
        return compile_(dispatcher, sig)
    with _compile_lock(cache.lock_path, cache.group):
        if not cache.peek(sig, ctx):  # another process may have written it while this one waited
            _announce(cache)
        return compile_(dispatcher, sig)


def _group_of(func: Callable[..., Any]) -> str:
    """hpcgen.generators.<name>.<module> -> <name>; anything else: its module's last name."""
    parts = (getattr(func, "__module__", None) or "kernels").split(".")
    if parts[:2] == ["hpcgen", "generators"] and len(parts) > 2:
        return parts[2]
    return parts[-1]


def njit(
    func: Callable[..., Any] | None = None,
    *,
    cache: bool = False,
    group: str | None = None,
    **options: Any,
) -> Any:
    """``numba.njit`` for hpcgen's kernels. With ``cache=True``: numba's disk cache, the compile
    notice and lock, and the read-only and no-cache fallbacks of this module. ``group``: the
    name in the notice (default: the generator the function's module belongs to)."""
    if func is None:
        return lambda f: njit(f, cache=cache, group=group, **options)
    if not cache:
        return numba.njit(**options)(func)
    primary = None  # numba's cache of the function, where it can write one
    try:
        dispatcher = numba.njit(cache=True, **options)(func)
        primary = getattr(dispatcher, "_cache", None)
    except RuntimeError as err:  # numba found no writable cache directory at all
        if "no locator available" not in str(err):
            raise
        dispatcher = numba.njit(**options)(func)
    if not isinstance(dispatcher, Dispatcher):  # NUMBA_DISABLE_JIT=1: the Python function
        return dispatcher
    dispatcher._cache = _GuardedCache(func, group or _group_of(func), primary)
    dispatcher.compile = _compile_method(dispatcher)
    return dispatcher


def _compile_method(dispatcher: Any) -> Callable[[Any], Any]:
    def compile(sig: Any) -> Any:
        return _guarded_compile(dispatcher, sig)

    return compile


# --- warm: build the cache at install ------------------------------------------------------------


def _warm_tracks() -> None:
    from hpcgen.api import generate
    from hpcgen.generators.tracks.tableaus import TABLEAUS

    # one kernel per integrator scheme (its tableau compiled in); every field passes the same
    # argument types (fields._no_map), so one field per scheme covers the map runs too
    for scheme in TABLEAUS:
        generate("tracks", n=16, field="uniform", integrator=scheme, kernel="numba", device="cpu")
    _warm_tracks_verify()


def _warm_tracks_verify() -> None:
    """verify's own compiled helpers (a map file's reference field and predicted turn: float64
    whatever the file's dtype), through the hook the verifier provides."""
    from hpcgen.generators.tracks import independent

    independent.warm()


def _warm_atoms() -> None:
    from hpcgen.api import generate

    generate("atoms", n=16)


def _warm_energy() -> None:
    from hpcgen.api import generate
    from hpcgen.generators.energy.params import DOMAINS

    # the domains take different paths: rotation or not, direct or FFT blur, noise or not
    for domain in DOMAINS:
        generate("energy", n=1, domain=domain, n_steps=3, height=32, width=32, dtype="float32")


def _warm_illumination() -> None:
    from hpcgen.api import generate

    # Embree rays are float32, the brute-force caster's float64: one ray-fill kernel each
    for backend in ("embree", "brute"):
        generate("illumination", n=4, level=1, backend=backend, device="cpu")


def _warm_ptycho() -> None:
    import numpy as np

    from hpcgen.api import generate
    from hpcgen.generators.ptycho.poisson import sample_amplitudes

    generate("ptycho", n=4, N=16, object_size=64, doses=(1e3, 1e6), device="cpu")
    # verify's re-draws use float64 intensities
    rng = np.random.default_rng(0)
    for method in ("direct", "split"):
        sample_amplitudes(np.ones((4, 4)), 1e4, rng, method)


#: generator -> what runs its kernels once with every set of argument types the runs use
WARM: dict[str, Callable[[], None]] = {
    "tracks": _warm_tracks,
    "atoms": _warm_atoms,
    "energy": _warm_energy,
    "illumination": _warm_illumination,
    "ptycho": _warm_ptycho,
}


def warm(generators: list[str] | None = None, out: Any = None) -> int:
    """Build the cache of the given generators' kernels (all by default); a line per generator
    on ``out`` (stdout). Returns 0, or 1 if one failed (its error on stderr; the others go on)."""
    global _warming
    out = out or sys.stdout
    status = 0
    _warming = True
    try:
        for name in generators or list(WARM):
            t0 = time.perf_counter()
            try:
                WARM[name]()
            except Exception as err:  # report and go on: a run compiles what is missing
                print(f"hpcgen: error: warming the {name} kernels failed: {err}", file=sys.stderr)
                status = 1
                continue
            print(f"hpcgen: {name} kernels ready ({time.perf_counter() - t0:.1f} s)", file=out)
    finally:
        _warming = False
    return status


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m hpcgen.kernel_cache",
        description="Build the numba cache of hpcgen's kernels (after install; idempotent).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("warm", help="compile what is missing from the cache (seconds when warm)")
    w.add_argument("generators", nargs="*", metavar="GENERATOR", help=f"of {', '.join(WARM)}")
    args = parser.parse_args(argv)
    unknown = [g for g in args.generators if g not in WARM]
    if unknown:
        print(
            f"hpcgen: error: no generator {unknown[0]!r} (have: {', '.join(WARM)})", file=sys.stderr
        )
        return 2
    return warm(args.generators or None)


if __name__ == "__main__":
    # the kernels import hpcgen.kernel_cache, not this __main__ copy: run that one's main, so
    # that its state (warming) is the one their compile step reads
    from hpcgen import kernel_cache

    raise SystemExit(kernel_cache.main())
