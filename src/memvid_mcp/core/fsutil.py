"""Durable file operations: fsync'd appends, atomic temp-then-replace writes.

Every promise of durability in the package goes through these few functions, so the rules
(fsync the file, then the directory that names it) live in one place.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import StorageError


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        if sync_dir:
            fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(path, exc) from exc


def ensure_dir(path: Path) -> Path:
    """Create a directory (and parents), turning OS errors into a clear StorageError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(path, exc) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise StorageError(f"{path}: directory is not writable")
    return path


def storage_error(path: Path, exc: OSError) -> StorageError:
    """A one-line, actionable StorageError for an OSError on ``path``."""
    if exc.errno == errno.ENOSPC:
        return StorageError(f"{path}: no space left on device; nothing was written")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"{path}: not writable ({exc.strerror})")
    return StorageError(f"{path}: {exc.strerror or exc}")
