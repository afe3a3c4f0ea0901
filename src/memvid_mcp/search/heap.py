"""Hands freed heap pages back to the system once a burst of allocations is over.

Why: glibc keeps freed pages of its heap (its mmap threshold rises after the first large free,
so later large blocks come from the heap too): onnxruntime's activations for document batches
and the temporary buffers of opening an index stayed resident, ~30 MB after a bulk import and
~18 MB after opening 20k vectors. ``malloc_trim`` (~7 ms) after each idle spell gives them
back; during a burst it never runs, since each piece of work restarts the wait (ADR 0027).
Elsewhere than glibc/Linux this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any

TRIM_IDLE_SECONDS = 2.0
# A serving process's malloc arenas (ADR 0034). glibc gives each thread that allocates while
# others do an arena of its own, up to 8 per core; a server's ~10 threads (search and scope
# pools, warmer, embedder, event loop) spread the same memory over more of them. Two: 6 MB
# less RSS at 100k memories (394-395 MB against 400-401, video), searches no slower.
SERVING_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


def _find_malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None (other C libraries, other systems)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def limit_malloc_arenas(count: int = SERVING_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process, called as a server starts (arenas made
    before stay). A ``MALLOC_ARENA_MAX`` the user set wins. Whether the cap was set."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, count))


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` ``idle`` seconds after the last ``poke``."""

    def __init__(self, trim: Any = None, idle: float = TRIM_IDLE_SECONDS) -> None:
        self._trim = trim if trim is not None else _find_malloc_trim()
        self._idle = idle
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def poke(self) -> None:
        """Work just happened: trim ``idle`` seconds from now unless more work comes."""
        if self._trim is None:
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._idle, self._trim, args=(0,))
            self._timer.daemon = True
            self._timer.start()


_shared = HeapTrimmer()


def trim_soon() -> None:
    """Work that freed memory just ended: trim once the process has been idle a moment."""
    _shared.poke()
