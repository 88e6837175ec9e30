"""Writing output files so that a reader never sees half of one.

Every file archcalc writes goes to a temporary file in the target's folder, is flushed and
fsynced, and only then renamed over the target (``os.replace``, atomic on POSIX and
Windows): a process killed mid-write leaves the old file, or none, never a truncated one.
A failed write deletes its temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, Any, TextIO, cast

MODES = ("w", "wb", "a", "ab")


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """A handle to write `path` through: the file is replaced only when the block ends
    without an exception. Mode "a"/"ab" starts from a copy of the existing contents."""
    with atomic_writes((path, mode), encoding=encoding) as (handle,):
        yield handle


@contextlib.contextmanager
def atomic_writes(*targets: tuple[str, str], encoding: str | None = "utf-8") -> Iterator[list[IO[Any]]]:
    """Handles to write several (path, mode) files together. On success each is synced, then
    they are renamed into place last first: list a file before the files it references (a
    model before its external-data file), so the reference never points at an old file.
    OSErrors name the target path, not the temporary one."""
    pending: list[tuple[str, str, IO[Any]]] = []  # (target, temporary, handle)
    try:
        for path, mode in targets:
            pending.append(_open_temporary(path, mode, encoding))
        yield [handle for _, _, handle in pending]
        for _, _, handle in pending:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        for target, temporary, _ in reversed(pending):
            os.replace(temporary, target)
            _sync_folder(os.path.dirname(target))
    except BaseException:
        for _, temporary, handle in pending:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
        raise


def _open_temporary(path: str, mode: str, encoding: str | None) -> tuple[str, str, IO[Any]]:
    if mode not in MODES:
        raise ValueError(f"atomic_write mode must be one of {MODES}, not {mode!r}")
    # Through a symlink, as open() would: the link stays and its target gets the new contents.
    target = os.path.realpath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    folder, name = os.path.split(target)
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise type(error)(error.errno, error.strerror, path) from None
    handle: IO[Any] | None = None
    try:
        os.chmod(temporary, _mode_for(target))
        binary = "b" in mode
        handle = os.fdopen(descriptor, "wb" if binary else "w", encoding=None if binary else encoding)
        if mode.startswith("a") and os.path.isfile(target):
            with open(target, "rb") as existing:
                # In text mode fdopen gives a TextIOWrapper, whose buffer takes the bytes.
                shutil.copyfileobj(existing, handle if binary else cast(TextIO, handle).buffer)
    except BaseException:
        if handle is not None:
            handle.close()
        else:
            os.close(descriptor)
        os.remove(temporary)
        raise
    return target, temporary, handle


def _mode_for(target: str) -> int:
    """The permissions the target has now, or those open() would give a new file (mkstemp's
    0600 would hide a report from the other users who could read it before)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _sync_folder(folder: str) -> None:
    """Make the rename itself durable; some systems cannot open a folder, which is fine."""
    try:
        descriptor = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
