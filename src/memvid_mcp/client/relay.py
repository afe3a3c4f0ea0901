"""The stdio relay: what an MCP client launches as ``memvid-mcp``.

It passes the MCP stream between the client (stdin/stdout) and the data directory's service,
starting the service if none runs. It imports only the standard library and ``core`` so that
``initialize`` is answered by the warm service about as fast as the interpreter starts.

If the service dies (SIGKILL, OOM), the relay starts a new one, replays the client's
``initialize`` handshake to it (swallowing the second answer), and answers every request that
was in flight with one retryable error; the session itself stays alive. Stores are idempotent
(identical text folds into one memory), so retrying is safe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import selectors
import socket
import time
from typing import Any

from ..core import hops
from ..core.errors import ServiceError
from ..core.rundir import RunDir
from .connect import LineSocket, open_connection

log = logging.getLogger(__name__)

RESTART_ERROR_CODE = -32002  # in the implementation-defined server-error range
RESTARTS_PER_MINUTE = 5
ANSWER_WAIT_SECONDS = 120.0  # how long answers are awaited after the client closes its input
NOT_AN_ANSWER = object()  # what ``answer_id`` returns for requests and notifications

# How the SDK serialises what the service sends: an answer starts with its id, then "result"
# or "error". Matching that head avoids parsing every answer (search results are kilobytes);
# any other shape is parsed in full.
_ANSWER_HEAD = re.compile(rb'\{"jsonrpc":"2\.0","id":(-?[0-9]+|"[^"\\]*"),"(result|error|method)"')
_NOTIFICATION_HEAD = re.compile(rb'\{"jsonrpc":"2\.0","method":')


def answer_id(line: bytes) -> Any:
    """The id of the JSON-RPC answer on ``line``, or ``NOT_AN_ANSWER`` for anything else (a
    request or notification from the service, or a line that is not a JSON object)."""
    head = _ANSWER_HEAD.match(line)
    if head is not None:
        if head.group(2) == b"method":
            return NOT_AN_ANSWER
        raw = head.group(1)
        return raw[1:-1].decode("utf-8") if raw.startswith(b'"') else int(raw)
    if _NOTIFICATION_HEAD.match(line):
        return NOT_AN_ANSWER
    try:
        message = json.loads(line)
    except ValueError:
        return NOT_AN_ANSWER
    if isinstance(message, dict) and "id" in message and "method" not in message:
        return message["id"]
    return NOT_AN_ANSWER


class Relay:
    """One MCP session relayed between two pairs of file descriptors and the service."""

    def __init__(self, run: RunDir, project: str | None, *, stdin: int = 0,
                 stdout: int = 1) -> None:
        self.run_dir = run
        self.project = project
        self.stdin = stdin
        self.stdout = stdout
        self.conn: LineSocket | None = None
        self.in_buffer = b""  # client -> service, up to an incomplete line
        self.out_buffer = b""  # service -> client, up to an incomplete line
        self.pending: dict[Any, str] = {}  # request id -> method, awaiting an answer
        self.initialize: bytes | None = None  # the client's initialize request line
        self.initialized: bytes | None = None  # its notifications/initialized line
        self.swallow: set[Any] = set()  # ids of replayed requests whose answers we drop
        self.restarts: list[float] = []

    # ------------------------------------------------------------------ plumbing
    def _connect(self) -> None:
        found = open_connection(self.run_dir, "mcp", project=self.project)
        assert found is not None  # spawn=True never returns None
        self.conn, _ = found

    def _write_client(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.stdout, view)
            view = view[written:]

    def _answer_error(self, request_id: Any, message: str) -> None:
        error = {"jsonrpc": "2.0", "id": request_id,
                 "error": {"code": RESTART_ERROR_CODE, "message": message}}
        self._write_client(json.dumps(error).encode("utf-8") + b"\n")

    # ------------------------------------------------------------------ tracking
    def _track(self, line: bytes) -> Any:
        """Remember what a restart must replay or answer; the request id, if any."""
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if isinstance(message, dict):
            method = message.get("method")
            if "id" in message and method is not None:
                self.pending[message["id"]] = str(method)
                if method == "initialize":
                    self.initialize = line
                return message["id"]
            if method == "notifications/initialized":
                self.initialized = line
        return None

    def _from_service(self, chunk: bytes) -> None:
        """Pass on every whole line of ``chunk``, in one write (answers that arrive
        together leave together)."""
        hops.mark("relay.answer")
        self.out_buffer += chunk
        *lines, self.out_buffer = self.out_buffer.split(b"\n")
        out = []
        for line in lines:
            if not line:
                continue
            request_id = answer_id(line)
            if request_id is not NOT_AN_ANSWER:
                if request_id in self.swallow:
                    self.swallow.discard(request_id)
                    continue
                self.pending.pop(request_id, None)
            out.append(line)
        if out:
            self._write_client(b"\n".join(out) + b"\n")
            hops.mark("relay.write")

    # ------------------------------------------------------------------ restart
    def _restart(self) -> None:
        """The service went away: answer what was in flight, start anew, replay the handshake."""
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60.0] + [now]
        if len(self.restarts) > RESTARTS_PER_MINUTE:
            raise ServiceError("the memvid-mcp service keeps dying; see "
                               f"{self.run_dir.log}")
        if self.conn is not None:
            self.conn.close()
        log.warning("the memvid-mcp service went away; starting it again")
        for request_id, method in list(self.pending.items()):
            if method == "initialize":
                continue
            self._answer_error(request_id, f"the memvid-mcp service restarted while {method} "
                               "was in flight; retry the call (stores are idempotent)")
        init_id = None
        if self.initialize is not None:
            try:
                init_id = json.loads(self.initialize).get("id")
            except ValueError:
                init_id = None
        self.pending = {init_id: "initialize"} if init_id in self.pending else {}
        self.out_buffer = b""
        self._connect()
        assert self.conn is not None
        if self.initialize is not None and init_id not in self.pending:
            self.swallow.add(init_id)  # the client saw the first answer already
            self.conn.send(self.initialize + b"\n")
            if self.initialized is not None:
                self.conn.send(self.initialized + b"\n")
        elif self.initialize is not None:
            self.conn.send(self.initialize + b"\n")

    # ------------------------------------------------------------------ loop
    def serve(self) -> int:
        self._connect()
        selector = selectors.DefaultSelector()
        selector.register(self.stdin, selectors.EVENT_READ, "client")
        assert self.conn is not None
        selector.register(self.conn.sock, selectors.EVENT_READ, "service")
        client_open = True
        answers_due: float | None = None  # after the client's EOF: its answers, until then
        while True:
            timeout = None if answers_due is None else max(0.0, answers_due - time.monotonic())
            for key, _ in selector.select(timeout):
                if key.data == "client":
                    chunk = os.read(self.stdin, 65536)
                    if not chunk:
                        client_open = False
                        selector.unregister(self.stdin)
                        if self.in_buffer:
                            self._send_lines(self.in_buffer + b"\n", selector)
                        answers_due = time.monotonic() + ANSWER_WAIT_SECONDS
                        continue
                    self._send_lines(chunk, selector)
                else:
                    try:
                        chunk = self.conn.sock.recv(65536)
                    except OSError:
                        chunk = b""
                    if chunk:
                        self._from_service(chunk)
                        continue
                    if not client_open:
                        return 0  # the client finished; the service ended its session
                    selector.unregister(self.conn.sock)
                    self._restart()
                    selector.register(self.conn.sock, selectors.EVENT_READ, "service")
            # A client that closes its input right after its last request (a script piping
            # requests in) still gets every answer: end the session once none is due.
            if answers_due is not None and (not self.pending or time.monotonic() >= answers_due):
                self._half_close()
                answers_due = None

    def _send_lines(self, chunk: bytes, selector: selectors.BaseSelector) -> None:
        hops.mark("relay.read")
        self.in_buffer += chunk
        *lines, self.in_buffer = self.in_buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            request_id = self._track(line)
            conn = self.conn
            assert conn is not None
            try:
                hops.mark("relay.forward")  # before the send: the service may read it first
                conn.send(line + b"\n")
            except OSError:  # the service died before taking this line: restart, resend
                self.pending.pop(request_id, None)
                selector.unregister(conn.sock)
                self._restart()
                assert self.conn is not None
                selector.register(self.conn.sock, selectors.EVENT_READ, "service")
                self._track(line)
                self.conn.send(line + b"\n")

    def _half_close(self) -> None:
        assert self.conn is not None
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(socket.SHUT_WR)
