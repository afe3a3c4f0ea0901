"""One writer process per scope, enforced with an OS advisory lock (``flock`` on ``LOCK``).

The kernel drops the lock when the holder dies, even by SIGKILL, so a crash never leaves a
stale lock behind. A second process waits up to a timeout, then fails with a message naming
the holder's pid, or (when asked) carries on read-only.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..core.errors import StorageError, StoreLockedError
from ..core.fsutil import storage_error
from ..core.scopes import READ_ONLY_HINT

_POLL_SECONDS = 0.05


class ScopeLock:
    """An exclusive, process-wide lock on one scope directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "LOCK"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; StoreLockedError after that."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"{storage_error(self.path, exc)}; {READ_ONLY_HINT}") from exc
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise StoreLockedError(
                        f"{self.path.parent} is in use by another memvid-mcp process{holder}; "
                        f"waited {timeout:g}s. Close the other client, raise "
                        "MEMVID_LOCK_TIMEOUT, or open read-only (--read-only)"
                    ) from None
                time.sleep(_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
