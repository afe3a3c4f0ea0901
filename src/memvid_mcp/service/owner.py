"""At most one service per data directory: an exclusive ``flock`` held for its whole life.

The lock dies with the process (SIGKILL included), so a crashed service never blocks the next
one; a draining service keeps it until it has flushed and released every scope lock, so its
successor's first open never races it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..core.errors import ServiceError

OWNER_LOCK_NAME = "owner.lock"


class OwnerLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / OWNER_LOCK_NAME
        self.fd = -1

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (a predecessor may be draining)."""
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = -1
                    raise ServiceError("another memvid-mcp service owns this data directory"
                                       ) from None
                time.sleep(0.05)

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
