"""Disk space and memory: checks before a run, and blocks reserved before HDF5 writes.

A full disk inside parallel HDF5 is not an error but a hang: when one rank's metadata write fails
with ENOSPC, the ranks leave the collective flush at different points and wait for each other
forever. So the engine makes sure HDF5 never meets a full disk:

- ``hpcgen run`` first compares the plan's bytes with the free space of the output's file
  system (``check_free_space``);
- the file is created by one process, without MPI (an ENOSPC there is a plain Python error), and
  every block of it is allocated (``reserve``, fallocate(2)) before any rank writes rows into it;
- the final metadata is written by one process again, after a second ``reserve`` for its room.

Sizes are bytes throughout.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path
from typing import Any

#: room asked for HDF5's own metadata (superblock, object headers, attributes) of one file and
#: the sidecar metadata.json, on top of the data (bytes)
METADATA_ALLOWANCE = 256 * 1024
#: room reserved for the final metadata (provenance with timings) before it is written (bytes)
FINISH_ALLOWANCE = 64 * 1024
#: memory the engine holds per chunk of a run: done flag, checksum row, plan and pending lists
BOOKKEEPING_BYTES_PER_CHUNK = 128


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


# --- memory ---------------------------------------------------------------------------------------


def physical_memory() -> int:
    """Bytes of RAM of this machine (0 if unknown)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def check_chunk_count(n_samples: int, chunk_size: int, n_chunks: int) -> str:
    """ "" if the bookkeeping of ``n_chunks`` chunks fits in a quarter of this machine's memory,
    else the reason (one line). Checked before the done bitmap or the plan is allocated."""
    need = n_chunks * BOOKKEEPING_BYTES_PER_CHUNK
    have = physical_memory()
    if have and need > have // 4:
        return (
            f"{n_samples:,} samples in chunks of {chunk_size:,} make {n_chunks:,} chunks, whose "
            f"bookkeeping needs ~{human_bytes(need)} of memory ({human_bytes(have)} on this "
            "machine): use a larger chunk_size or fewer samples"
        )
    return ""


# --- file systems ---------------------------------------------------------------------------------


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the file system that holds ``path`` (or would hold it)."""
    p = Path(os.path.abspath(path))
    while not p.exists():
        p = p.parent
    p = p.resolve()
    while not os.path.ismount(p):
        p = p.parent
    return p


def fs_type(mount: Path) -> str:
    """The file system type of a mount point ("tmpfs", "ext4", "lustre" ...; "" if unknown)."""
    kind = ""
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[1].replace("\\040", " ") == str(mount):
                    kind = parts[2]  # the last entry wins: it is the one mounted on top
    except OSError:
        pass
    return kind


def where(path: str | os.PathLike) -> str:
    """``/scratch (lustre)``: the file system holding ``path``, for messages."""
    mount = mount_point(path)
    kind = fs_type(mount)
    return f"{mount} ({kind})" if kind else str(mount)


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path``."""
    st = os.statvfs(mount_point(path) if not Path(path).exists() else path)
    return st.f_bavail * st.f_frsize


def allocated_bytes(path: str | os.PathLike) -> int:
    """Bytes of disk blocks a file (or every file under a folder) holds; 0 if absent."""
    p = Path(path)
    if p.is_dir():
        return sum(allocated_bytes(q) for q in p.iterdir())
    try:
        return p.stat().st_blocks * 512
    except OSError:
        return 0


def no_space_message(path: str | os.PathLike, need: int, free: int | None = None) -> str:
    """One line naming the file system and the space needed."""
    free = free_bytes(Path(path).parent) if free is None else free
    return (
        f"not enough space on {where(Path(path).parent)} for {path}: needs "
        f"{human_bytes(need)}, {human_bytes(free)} free; free some space (or use another "
        "--out), then run again with --resume"
    )


def is_enospc(e: BaseException) -> bool:
    """An OSError from the OS or from HDF5 (h5py puts errno 28 in the message) for a full disk
    (or an exhausted quota)."""
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return "No space left" in text or "errno = 28" in text or "Disk quota exceeded" in text


# --- reserving blocks -----------------------------------------------------------------------------

#: the C library once loaded; False where it or its fallocate cannot be had
_libc: ctypes.CDLL | bool | None = None


def _fallocate_fn() -> Any:
    """libc's fallocate(2) as a ctypes function, or None where there is none."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        except (OSError, AttributeError):
            _libc = False
    return _libc.fallocate if isinstance(_libc, ctypes.CDLL) else None


def reserve(path: str | os.PathLike, size: int) -> bool:
    """Allocate the disk blocks of bytes [0, size) of ``path`` (fallocate(2), mode 0: the file
    grows to ``size`` if shorter; blocks already there are kept). Afterwards writes inside
    [0, size) cannot fail for lack of space. Returns False where the file system cannot reserve
    (no fallocate, e.g. some NFS); raises OSError (ENOSPC ...) where it cannot give the space.

    fallocate(2) rather than posix_fallocate(3): where the file system has no fallocate, glibc's
    posix_fallocate writes a byte into every block instead, which on a network file system takes
    as long as writing the file.
    """
    fn = _fallocate_fn()
    if fn is None or size <= 0:
        return False
    fd = os.open(path, os.O_WRONLY)
    try:
        if fn(fd, 0, 0, int(size)) != 0:
            err = ctypes.get_errno()
            if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return False
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
    return True


def fill_disk(path: str | os.PathLike) -> None:
    """Testing hook: write zeros to ``path`` until the file system is full (another job filling
    the disk). The caller removes the file to free the space."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for block in (1 << 20, 1 << 12, 1):
            buf = bytes(block)
            try:
                while True:
                    os.write(fd, buf)
            except OSError as e:
                if not is_enospc(e):
                    raise
    finally:
        os.close(fd)
