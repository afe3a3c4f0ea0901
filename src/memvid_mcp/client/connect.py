"""Find the data directory's service, or start it: race-free, version-checked.

``open_connection`` is what every relay and CLI call goes through:

1. connect to the run directory's socket and say hello;
2. nobody there: take the spawn lock (``flock``), try again (another launch may have won), and
   only then start ``python -m memvid_mcp ... service`` detached, waiting until it answers;
3. a service of an older version: ask it to drain (it stops accepting, finishes what it is
   doing and exits) and start one of ours; a newer service is used as it is, since relays
   only pass MCP through.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.errors import ServiceError
from ..core.rundir import RunDir, check_private
from . import protocol

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
START_TIMEOUT = 60.0  # a cold service imports its stack and opens indexes before listening


def use_tcp() -> bool:
    """Unix sockets where the platform has them; a loopback port with a token elsewhere."""
    return not hasattr(socket, "AF_UNIX") or os.environ.get("MEMVID_SERVICE_TRANSPORT") == "tcp"


class LineSocket:
    """A socket with buffered line reads (the hello and call protocols are line based)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readline(self, limit: int = protocol.MAX_HELLO_BYTES) -> bytes:
        while b"\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise ServiceError("the service sent an over-long line")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("the service closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _read_address(run: RunDir) -> tuple[int, str] | None:
    try:
        check_private(run.address_file, directory=False)
        port, token = run.address_file.read_text(encoding="ascii").split()
        return int(port), token
    except (OSError, ValueError, ServiceError):
        return None


def _connect_raw(run: RunDir) -> tuple[socket.socket, str | None] | None:
    """A connected socket (and the TCP token), or None when no service listens."""
    try:
        if use_tcp():
            address = _read_address(run)
            if address is None:
                return None
            sock = socket.create_connection(("127.0.0.1", address[0]), timeout=CONNECT_TIMEOUT)
            return sock, address[1]
        if not run.socket.exists():
            return None
        check_private(run.socket, directory=False)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(str(run.socket))
        return sock, None
    except (ConnectionRefusedError, FileNotFoundError):
        return None
    except OSError as exc:
        log.debug("cannot connect to the service in %s: %s", run.path, exc)
        return None


def _say_hello(run: RunDir, role: str, project: str | None, client: str
               ) -> tuple[LineSocket, dict[str, Any]] | None:
    raw = _connect_raw(run)
    if raw is None:
        return None
    sock, token = raw
    conn = LineSocket(sock)
    try:
        conn.send(protocol.hello(role, project=project, client=client, token=token,
                                 pid=os.getpid()))
        reply = protocol.decode(conn.readline())
    except (OSError, ValueError):
        conn.close()
        return None
    sock.settimeout(None)
    return conn, reply


def control(run: RunDir, op: str) -> dict[str, Any] | None:
    """Send one control command (``drain``, ``status``); the answer, or None when no service
    answers."""
    found = _say_hello(run, "control", None, "cli")
    if found is None:
        return None
    conn, reply = found
    try:
        if not reply.get("ok"):
            return reply
        conn.send(protocol.encode({"op": op}))
        return protocol.decode(conn.readline())
    except (OSError, ValueError):
        return None
    finally:
        conn.close()


def _drain(run: RunDir) -> None:
    """Ask an older service to drain. Its successor waits on the owner lock until the old
    one has flushed and exited, so nothing here waits for it."""
    control(run, "drain")


def spawn_command(run: RunDir) -> list[str]:
    return [sys.executable, "-m", "memvid_mcp", "--data-dir", str(run.data_dir), "service"]


def _spawn(run: RunDir) -> None:
    """Start the service detached: double fork, so it is no child of ours (init reaps it)
    and outlives this relay; stdin and stdout are the null device, stderr its log."""
    command = spawn_command(run)
    null = os.open(os.devnull, os.O_RDWR)
    log_file = os.open(run.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child
            try:
                os.setsid()
                if os.fork() == 0:
                    os.dup2(null, 0)
                    os.dup2(null, 1)
                    os.dup2(log_file, 2)
                    os.closerange(3, 65536)
                    os.execv(command[0], command)
            finally:
                os._exit(0)
        os.waitpid(child, 0)
    finally:
        os.close(null)
        os.close(log_file)


class _SpawnLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> _SpawnLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def open_connection(run: RunDir, role: str, *, project: str | None = None,
                    client: str = "relay", spawn: bool = True
                    ) -> tuple[LineSocket, dict[str, Any]] | None:
    """A connection past the hello, starting (or replacing) the service as needed.

    Returns None only when ``spawn`` is False and no service runs.
    """
    for _ in range(3):
        found = _say_hello(run, role, project, client)
        if found is not None:
            conn, reply = found
            if reply.get("ok"):
                theirs = str(reply.get("version", ""))
                if protocol.version_key(theirs) >= protocol.version_key(__version__):
                    if theirs != __version__:
                        log.info("using the service of memvid-mcp %s (this is %s)", theirs,
                                 __version__)
                    return conn, reply
                conn.close()
                log.info("replacing the service of memvid-mcp %s with %s", theirs, __version__)
                with _SpawnLock(run.spawn_lock):
                    _drain(run)
                    _spawn(run)
                    _wait_listening(run)
                continue
            conn.close()
            if reply.get("code") == "draining":
                time.sleep(0.1)
                continue
            raise ServiceError(f"the service refused the connection: {reply.get('error')}")
        if not spawn:
            return None
        with _SpawnLock(run.spawn_lock):
            if _connect_raw(run) is None:  # nobody else started it while we waited
                _spawn(run)
                _wait_listening(run)
    raise ServiceError(f"cannot reach the memvid-mcp service in {run.path}; see {run.log}")


def _wait_listening(run: RunDir) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        raw = _connect_raw(run)
        if raw is not None:
            raw[0].close()
            return
        time.sleep(0.02)
    raise ServiceError(f"the memvid-mcp service did not start within {START_TIMEOUT:.0f} s; "
                       f"its log is {run.log}")
