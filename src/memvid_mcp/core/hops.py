"""Timestamps of each request's hops through the client, the relay and the service.

A stdio round trip crosses three processes (client, relay, service) and two threads in the
service; ``benchmarks/bench_roundtrip.py --hops`` splits its time into those hops. Off unless
``MEMVID_HOP_TRACE`` names a directory: then every process appends ``<ns> <label>`` lines to
``<dir>/<pid>.hops``, with ``CLOCK_MONOTONIC`` nanoseconds, one clock for every process of
the machine, so the lines of all processes sort into one timeline. Off, a mark costs one
attribute test.
"""

from __future__ import annotations

import os
import threading
import time

ENV = "MEMVID_HOP_TRACE"
SUFFIX = ".hops"

_directory: str | None = os.environ.get(ENV) or None
_fd: int | None = None
_fd_pid = 0
_lock = threading.Lock()


def configure(directory: str | os.PathLike[str] | None) -> None:
    """Trace into ``directory`` from now on (None: stop). The environment sets it at start."""
    global _directory, _fd
    with _lock:
        if _fd is not None:
            os.close(_fd)
        _directory, _fd = (os.fspath(directory) if directory else None), None


def enabled() -> bool:
    return _directory is not None


def mark(label: str) -> None:
    """Note that this process reached ``label`` now (one ``write``; nothing when off)."""
    if not enabled():
        return
    global _fd, _fd_pid
    with _lock:
        directory = _directory
        if directory is None:  # switched off meanwhile
            return
        pid = os.getpid()
        if _fd is None or _fd_pid != pid:  # a forked child writes its own file
            _fd = os.open(os.path.join(directory, f"{pid}{SUFFIX}"),
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            _fd_pid = pid
        os.write(_fd, f"{time.monotonic_ns()} {label}\n".encode("ascii"))


def read(directory: str | os.PathLike[str]) -> list[tuple[int, int, str]]:
    """Every mark under ``directory`` as ``(ns, pid, label)``, in time order."""
    events = []
    for name in os.listdir(directory):
        if not name.endswith(SUFFIX):
            continue
        pid = int(name[: -len(SUFFIX)])
        with open(os.path.join(directory, name), encoding="ascii") as lines:
            for line in lines:
                stamp, _, label = line.rstrip("\n").partition(" ")
                events.append((int(stamp), pid, label))
    return sorted(events)
