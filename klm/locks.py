"""Exclusive OS locks on a lock file: one klm process writes a given folder at a time.

`flock` locks are released by the kernel when their process exits, however
it exits (SIGKILL included), so a killed run never leaves a stale lock.
"""

import os

from klm.errors import KlmError


class FolderInUse(KlmError):
    """Another process holds the lock."""


def acquire(lock_path, describe):
    """Takes the exclusive lock on `lock_path` (created if needed); returns its file descriptor.

    The lock file holds the holder's pid. If the file is replaced or removed
    between opening and locking (a holder cleaning up as it exits), the lock
    is taken again on the new file, so two processes never both hold it.

    Args:
        lock_path: the lock file.
        describe: `holder -> message` for the error when another process
            holds the lock (`holder` is the text the holder wrote, e.g.
            `"pid 1234"`).

    Raises:
        FolderInUse: another process holds the lock.
        OSError: the lock file cannot be created.
    """
    import fcntl

    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise FolderInUse(describe(holder)) from None
        try:
            same_file = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # locked a file that was removed meanwhile: lock the current one
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
    return fd


def release(fd, lock_path=None):
    """Releases a lock taken by `acquire`; with `lock_path`, removes the lock file first."""
    if lock_path is not None:
        try:
            os.unlink(lock_path)
        except FileNotFoundError:
            pass
    os.close(fd)
