"""One writer per output: an exclusive lock on ``OUT.lock`` held for the whole run.

Two runs started on the same ``--out`` (two shells, a job resubmitted while the first still runs)
would otherwise both create, truncate or resume the file and interleave their writes. Rank 0
takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the sidecar ``OUT.lock`` before anything looks at
OUT, writes "pid N on host H" into it, and keeps it until the run ends; the run that does not get
it stops with one line naming the holder. The kernel drops the lock when its process dies
(SIGKILL, a crashed node's lease on NFS), so a stale ``OUT.lock`` file never blocks a rerun.

HDF5's own file locking cannot do this job: it is switched off (``HDF5_USE_FILE_LOCKING=FALSE``)
wherever the file system has no POSIX locks, and it is taken only when the file is opened, after
another run may already have truncated it.

On release the lock file is removed while still locked. A run that opened the old file just
before must notice that its lock is on a removed file: after locking, the path must still name
the locked inode, else it tries again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from hpcgen.errors import UserError

#: file systems without flock (Lustre mounted without -o flock, some NFS setups) answer so
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


class OutputLock:
    """``with OutputLock(out): ...`` or ``acquire()`` / ``release()``. Raises UserError if another
    process holds it."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = lock_path(self.out)
        self.fd: int | None = None

    def acquire(self) -> None:
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise UserError(f"cannot create the lock file {self.path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise UserError(
                    f"{self.out} is being written by another hpcgen run ({holder}); wait for it "
                    "to end or choose another --out"
                ) from None
            except OSError as e:
                os.close(fd)
                if e.errno in _NO_LOCKS:  # said once, and the run goes on unprotected
                    print(
                        f"hpcgen: warning: {self.path.parent} has no file locks ({e.strerror}): "
                        "nothing stops a second run on the same --out",
                        file=sys.stderr,
                    )
                    return
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # locked a lock file that its previous holder has just removed
                os.close(fd)
                continue
            text = f"pid {os.getpid()} on host {socket.gethostname()}\n".encode()
            os.pwrite(fd, text, 0)
            os.ftruncate(fd, len(text))
            self.fd = fd
            return
        raise UserError(f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # still locked: nobody can take a lock on it in between
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """What the holder wrote into the lock file ("pid N on host H"); it writes right after
    locking, so a reader that comes in between waits a moment."""
    for _ in range(20):
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return "pid and host unknown"
