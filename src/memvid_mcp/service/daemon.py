"""The service process: a local socket, one MCP session per connection, one owner of the data.

Every connection starts with a hello (``client/protocol.py``). ``mcp`` connections run an MCP
session for the relay's project (project and committed scopes resolve per connection; the
global scope, the model and every lock are shared). ``control`` connections ask the service to
drain (a newer relay replaces it) or report its status.

The service exits when no client has been connected for ``idle_seconds``, on SIGTERM/SIGINT,
or after a drain: it stops listening at once, lets running calls finish, ends the sessions
(relays reconnect to the successor), flushes every scope and releases its locks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.from_thread
from anyio.streams.buffered import BufferedByteReceiveStream

from .. import __version__
from ..client import protocol
from ..client.connect import control, use_tcp
from ..core.config import Settings
from ..core.errors import MemvidError
from ..core.rundir import PID_NAME, RunDir
from ..core.scopes import ScopeLayout
from ..mcp.server import build_server, serve_http
from ..mcp.stream import serve_stream
from ..search.heap import limit_malloc_arenas
from .owner import OwnerLock

if TYPE_CHECKING:
    from ..manager import ManagerPool

log = logging.getLogger(__name__)

DEFAULT_IDLE_SECONDS = 600.0
HELLO_TIMEOUT = 10.0
DRAIN_GRACE_SECONDS = 2.0
MAX_CLI_REQUEST_BYTES = 256 * 1024 * 1024  # a command's standard input (store -, import -)
CliRunner = Callable[[dict[str, Any], Any, Callable[[dict[str, Any]], None]], int]


class Service:
    def __init__(self, settings: Settings, run: RunDir, *, idle_seconds: float,
                 cli_runner: CliRunner | None = None,
                 http: tuple[str, int] | None = None) -> None:
        self.settings = settings
        self.http = http
        self.cli_runner = cli_runner
        self.run_dir = run
        self.idle_seconds = idle_seconds
        self._pool: ManagerPool | None = None
        self._pool_lock = threading.Lock()
        self.servers: dict[str, Any] = {}
        self.connections = 0
        self.last_active = time.monotonic()
        self.stopping = False
        self.token = secrets.token_hex(16) if use_tcp() else None
        self._stop: anyio.Event | None = None
        self._listener: anyio.abc.Listener[Any] | None = None

    def pool(self) -> ManagerPool:
        """The managers, created on first use: the search and storage stack is imported
        after the socket listens, so a cold start answers ``initialize`` sooner. Blocks:
        call it from a worker thread."""
        with self._pool_lock:
            if self._pool is None:
                from ..manager import ManagerPool

                self._pool = ManagerPool(self.settings)
            return self._pool

    # ------------------------------------------------------------------ listening
    async def _listen(self) -> anyio.abc.Listener[Any]:
        if use_tcp():
            tcp: anyio.abc.Listener[Any] = await anyio.create_tcp_listener(
                local_host="127.0.0.1", local_port=0)
            port = tcp.extra(anyio.abc.SocketAttribute.local_port)
            tmp = self.run_dir.address_file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(f"{port} {self.token}\n")
            os.replace(tmp, self.run_dir.address_file)
            return tcp
        path = self.run_dir.socket
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead predecessor's socket: we hold the owner lock
        old_umask = os.umask(0o177)  # the socket is born 0600
        try:
            unix: anyio.abc.Listener[Any] = await anyio.create_unix_listener(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        return unix

    def _stop_listening(self) -> None:
        for path in (self.run_dir.socket, self.run_dir.address_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # ------------------------------------------------------------------ life
    async def serve(self) -> None:
        self._stop = anyio.Event()
        self._listener = await self._listen()
        pid_file = self.run_dir.path / PID_NAME
        pid_file.write_text(f"{os.getpid()} {__version__}\n", encoding="ascii")
        log.info("memvid-mcp %s service for %s listening in %s", __version__,
                 self.settings.data_dir, self.run_dir.path)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._accept, group)
                group.start_soon(self._watch_idle)
                group.start_soon(self._watch_signals)
                if self.http is not None:
                    group.start_soon(self._serve_http, *self.http)
                await self._stop.wait()
                self._stop_listening()
                await self._listener.aclose()
                with anyio.move_on_after(DRAIN_GRACE_SECONDS):
                    while self.connections:
                        await anyio.sleep(0.05)
                group.cancel_scope.cancel()
        finally:
            self._stop_listening()
            if self._pool is not None:
                await anyio.to_thread.run_sync(self._pool.close)
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()
            log.info("memvid-mcp service stopped")

    async def _serve_http(self, host: str, port: int) -> None:
        """The same sessions over streamable HTTP (``serve --transport http``): HTTP and
        stdio clients share this one owner. HTTP sessions use the service's own project."""
        assert self._stop is not None
        project = str(self.settings.project) if self.settings.project else None
        server = await anyio.to_thread.run_sync(self._server_for, project)
        try:
            await serve_http(server, host, port, stop=self._stop,
                             tokens_file=self.settings.tokens_file,
                             stateless=self.settings.http_stateless)
        finally:
            self.stop("the HTTP listener stopped")

    def stop(self, why: str) -> None:
        if not self.stopping:
            log.info("memvid-mcp service stopping: %s", why)
        self.stopping = True
        if self._stop is not None:
            self._stop.set()

    async def _accept(self, group: anyio.abc.TaskGroup) -> None:
        assert self._listener is not None
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._listener.serve(self._handle, task_group=group)

    async def _watch_idle(self) -> None:
        if self.idle_seconds == float("inf"):
            return
        while True:
            await anyio.sleep(min(1.0, max(self.idle_seconds / 4, 0.05)))
            if not self.connections and \
                    time.monotonic() - self.last_active >= self.idle_seconds:
                self.stop(f"no client for {self.idle_seconds:g} s")
                return

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self.stop(signal.Signals(signum).name)
                return

    # ------------------------------------------------------------------ connections
    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        self.connections += 1
        self.last_active = time.monotonic()
        try:
            reader = BufferedByteReceiveStream(stream)
            hello = await self._read_hello(reader, stream)
            if hello is None:
                return
            role = hello["role"]
            if role == "mcp":
                server = await anyio.to_thread.run_sync(self._server_for, hello.get("project"))
                await serve_stream(server, reader, stream)
            elif role == "control":
                await self._control(reader, stream)
            elif role == "cli":
                await self._cli(reader, stream, hello.get("project"))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream,
                anyio.IncompleteRead, ConnectionError):
            pass
        except Exception:
            log.exception("a connection to the service failed")
        finally:
            self.connections -= 1
            self.last_active = time.monotonic()
            await stream.aclose()

    async def _read_hello(self, reader: BufferedByteReceiveStream,
                          stream: anyio.abc.ByteStream) -> dict[str, Any] | None:
        async def refuse(code: str, error: str) -> None:
            await stream.send(protocol.encode({"ok": False, "code": code, "error": error}))

        try:
            with anyio.fail_after(HELLO_TIMEOUT):
                line = await reader.receive_until(b"\n", protocol.MAX_HELLO_BYTES)
            hello = protocol.decode(line)
        except (TimeoutError, ValueError, anyio.DelimiterNotFound):
            await refuse("bad-hello", "expected a memvid-mcp hello line")
            return None
        if hello.get("memvid") != protocol.PROTOCOL or hello.get("role") not in protocol.ROLES:
            await refuse("bad-hello", f"speak protocol {protocol.PROTOCOL} with a known role")
            return None
        if self.token is not None and not secrets.compare_digest(
                str(hello.get("token", "")), self.token):
            await refuse("auth", "wrong or missing token")
            return None
        if self.stopping:
            await refuse("draining", "this service is shutting down; connect again")
            return None
        await stream.send(protocol.encode({"ok": True, "version": __version__,
                                           "pid": os.getpid()}))
        log.info("%s connection from %s (pid %s, version %s, project %s)", hello["role"],
                 hello.get("client"), hello.get("pid"), hello.get("version"),
                 hello.get("project"))
        return hello

    async def _control(self, reader: BufferedByteReceiveStream,
                       stream: anyio.abc.ByteStream) -> None:
        line = await reader.receive_until(b"\n", protocol.MAX_HELLO_BYTES)
        command = protocol.decode(line)
        op = command.get("op")
        if op == "drain":
            await stream.send(protocol.encode({"ok": True}))
            self.stop("drained for a newer version")
        elif op == "status":
            await stream.send(protocol.encode({
                "ok": True, "version": __version__, "pid": os.getpid(),
                "connections": self.connections - 1, "data_dir": str(self.settings.data_dir),
                "projects": sorted(self.servers)}))
        else:
            await stream.send(protocol.encode({"ok": False, "error": f"unknown op {op!r}"}))

    async def _cli(self, reader: BufferedByteReceiveStream, stream: anyio.abc.ByteStream,
                   project: str | None) -> None:
        """Run one CLI command with the shared manager, streaming its output back."""
        line = await reader.receive_until(b"\n", MAX_CLI_REQUEST_BYTES)
        request = protocol.decode(line)
        if self.cli_runner is None:
            await stream.send(protocol.encode({"err": "memvid-mcp: error: this service runs "
                                               "no CLI commands\n"}))
            await stream.send(protocol.encode({"exit": 1}))
            return
        runner = self.cli_runner

        def send(message: dict[str, Any]) -> None:
            anyio.from_thread.run(stream.send, protocol.encode(message))

        def work() -> int:
            manager = self.pool().manager(self._repo_root(project))
            return runner(request, manager, send)

        code = await anyio.to_thread.run_sync(work)
        await stream.send(protocol.encode({"exit": code}))

    def _repo_root(self, project: str | None) -> Path | None:
        path = Path(project) if project else None
        try:
            return ScopeLayout.resolve(self.settings.data_dir, path).repo_root
        except (MemvidError, OSError):
            return None

    def _alone(self) -> bool:
        """Whether one connection is all this service serves now (no other session, CLI
        command or HTTP listener): then a search may run on the event loop (ADR 0030)."""
        return self.connections == 1 and self.http is None

    def _server_for(self, project: str | None) -> Any:
        """One MCP server per repository (they share the pool's scopes and model)."""
        root = self._repo_root(project)
        key = str(root) if root else ""
        server = self.servers.get(key)
        if server is None:
            settings = self.settings.replace(project=root)
            server = build_server(settings, lambda: self.pool().manager(root),
                                  inline=self._alone)
            self.servers[key] = server
        return server


def run_service(settings: Settings, *, idle_seconds: float | None = None,
                cli_runner: CliRunner | None = None, http: tuple[str, int] | None = None,
                replace_running: bool = False) -> int:
    """Own ``settings.data_dir`` until idle, signalled or drained. Exit status for the CLI.

    ``http``: also serve streamable HTTP there, in the foreground, with no idle exit.
    ``replace_running``: a service already running is asked to drain first (its relays move
    over to this one)."""
    limit_malloc_arenas()
    run = RunDir.for_data_dir(settings.data_dir)
    if replace_running:
        control(run, "drain")
    if http is not None:
        idle_seconds = float("inf")
    if idle_seconds is None:
        raw = os.environ.get("MEMVID_SERVICE_IDLE", "")
        idle_seconds = float(raw) if raw else DEFAULT_IDLE_SECONDS
    os.chdir("/")  # scopes resolve from each client's project, never from ours
    owner = OwnerLock(run.path)
    owner.acquire(timeout=120.0)  # a draining predecessor flushes first
    try:
        service = Service(settings, run, idle_seconds=idle_seconds, cli_runner=cli_runner,
                          http=http)
        anyio.run(service.serve)
    finally:
        owner.release()
    return 0


__all__ = ["Service", "run_service"]
