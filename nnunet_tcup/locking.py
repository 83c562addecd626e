"""Locks on output folders: one writing run at a time, taken before the run looks at anything in its output.

:func:`exclusive_lock` holds a non-blocking ``flock`` on a lock file (a second live run fails at once with one line;
the kernel releases the lock of a killed run). :func:`locked_folder` creates an output folder, takes the lock in it,
and after a failure removes again the folder it created if nothing is in it. Lock files are removed by their holder
at the end, safely: a process that opened the file meanwhile notices and locks the new one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["exclusive_lock", "locked_folder"]


@contextlib.contextmanager
def exclusive_lock(lock_file: PathLike, what: str, *, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``lock_file`` (created if missing) for the ``with`` block.

    The kernel releases it when the process dies (even by SIGKILL), so a crashed run never blocks the next one; a
    second live run gets ``ValueError("LOCK_FILE: another process is writing WHAT ...")``. With ``remove`` the file
    is deleted (while still locked) at the end, so that a finished run leaves nothing behind: a process that opened
    the old file meanwhile sees that its descriptor no longer names ``lock_file`` and locks the new one instead.
    Worker processes must not inherit the descriptor (``nnunet_tcup.parallel`` spawns them, and the descriptor is
    not inheritable).
    """
    import fcntl

    lock_file = Path(lock_file)
    while True:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the folder was removed by the run that just ended: make it again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _names_open_file(lock_file, fd):
                break
        except BlockingIOError:
            os.close(fd)
            raise ValueError(f"{lock_file}: another process is writing {what} right now; wait for it to end") from None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # locked a file that its holder removed meanwhile: take the new one
    try:
        yield
    finally:
        if remove:
            with contextlib.suppress(FileNotFoundError):
                lock_file.unlink()
        os.close(fd)


def _names_open_file(path: Path, fd: int) -> bool:
    """True if ``path`` still names the file open as ``fd`` (same device and inode)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def locked_folder(folder: PathLike, lock_name: str, what: str) -> Iterator[Path]:
    """Hold :func:`exclusive_lock` on ``folder/lock_name`` (``folder`` created if missing) for the ``with`` block,
    so that a command takes its lock before it reads or checks anything in its output folder; yields ``folder``.

    The lock file is removed at the end. If the block fails and this call created ``folder``, the folders it made are
    removed again when they hold nothing (a failed run leaves no empty output folder behind); nothing else is ever
    deleted. ValueError naming ``folder`` if it exists and is not a folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder")
    created = not folder.exists()
    lock_file = folder / lock_name
    try:
        with exclusive_lock(lock_file, what, remove=True):
            yield folder
    except BaseException:
        if created:
            for level in [lock_file.parent, *lock_file.parent.parents]:  # innermost first, up to ``folder``
                try:
                    level.rmdir()  # only succeeds while empty
                except OSError:
                    break
                if level == folder:
                    break
        raise
