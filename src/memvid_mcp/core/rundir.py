"""Where a data directory's service listens, and the checks that keep other users out.

One run directory per user and data directory: ``$XDG_RUNTIME_DIR/memvid-mcp/<key>`` when the
runtime directory is the user's own, else ``<tmp>/memvid-mcp-<uid>/<key>`` (``MEMVID_RUN_DIR``
overrides the parent). ``<key>`` is a hash of the data directory's real path, so every launch
on the same data finds the same service. Every level we use must be owned by this user and
closed to everyone else (``0700``); anything else is refused, never "fixed", because a
directory someone else made could hold a socket that impersonates the service.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ServiceError

SOCKET_NAME = "service.sock"
ADDRESS_NAME = "service.addr"  # TCP fallback: "port token", mode 0600
SPAWN_LOCK_NAME = "spawn.lock"
LOG_NAME = "service.log"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, with the terminating NUL
PID_NAME = "service.pid"  # "<pid> <version>": for people and tests; the socket is the truth


def _base_dir() -> Path:
    override = os.environ.get("MEMVID_RUN_DIR")
    if override:
        return Path(override).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        try:
            info = os.stat(runtime)
            if info.st_uid == os.getuid() and not info.st_mode & 0o077:
                return Path(runtime) / "memvid-mcp"
        except OSError:
            pass
    return Path(tempfile.gettempdir()) / f"memvid-mcp-{os.getuid()}"


def check_private(path: Path, *, directory: bool) -> None:
    """Refuse a path that is a link, not ours, or open to group/others."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ServiceError(f"cannot inspect {path}: {exc.strerror}") from None
    kind_ok = stat.S_ISDIR(info.st_mode) if directory else not stat.S_ISLNK(info.st_mode)
    if not kind_ok:
        raise ServiceError(f"refusing {path}: not a {'directory' if directory else 'file'}")
    if info.st_uid != os.getuid():
        raise ServiceError(f"refusing {path}: owned by uid {info.st_uid}, not by this user "
                           f"({os.getuid()})")
    if info.st_mode & 0o077:
        raise ServiceError(f"refusing {path}: mode {stat.S_IMODE(info.st_mode):04o} lets other "
                           "users in (must be 0700 for a directory, 0600 for a file)")


def _private_dir(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=False)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ServiceError(f"cannot create the run directory {path}: {exc.strerror}") from None
    check_private(path, directory=True)
    return path


def _key(data_dir: Path) -> tuple[str, str]:
    real = os.path.realpath(os.path.expanduser(str(data_dir)))
    return real, hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def service_pid(data_dir: Path) -> int | None:
    """The pid of a service that owns ``data_dir`` and answers on its socket, else None.
    Creates nothing (the in-process API asks this before it opens a scope)."""
    path = _base_dir() / _key(data_dir)[1]
    sock_path = path / SOCKET_NAME
    if not sock_path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(sock_path))
    except OSError:
        return None
    try:
        return int((path / PID_NAME).read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return 0


@dataclass(frozen=True, slots=True)
class RunDir:
    """The private directory of one data directory's service."""

    path: Path
    data_dir: Path

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> RunDir:
        real, key = _key(data_dir)
        base = _base_dir()
        sock = base / key / SOCKET_NAME
        if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
            raise ServiceError(f"the service socket path {sock} is longer than a Unix socket "
                               f"allows ({MAX_SOCKET_PATH} bytes): set MEMVID_RUN_DIR to a "
                               "shorter directory")
        base.parent.mkdir(parents=True, exist_ok=True)
        _private_dir(base)
        return cls(_private_dir(base / key), Path(real))

    @property
    def socket(self) -> Path:
        return self.path / SOCKET_NAME

    @property
    def address_file(self) -> Path:
        return self.path / ADDRESS_NAME

    @property
    def spawn_lock(self) -> Path:
        return self.path / SPAWN_LOCK_NAME

    @property
    def log(self) -> Path:
        return self.path / LOG_NAME
