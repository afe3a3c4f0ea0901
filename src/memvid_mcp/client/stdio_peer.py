"""A minimal MCP client over a child process's stdio, standard library only.

It launches a command exactly as an MCP client config does and speaks newline-delimited
JSON-RPC to it: tests, benchmarks and scripts use it to drive ``memvid-mcp`` the way Claude
Code or Cursor do, without the SDK's client (and its start-up cost) in the measuring process.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = "2025-06-18"


class StdioPeer:
    """One MCP session with a launched server; thread-safe, one request at a time."""

    def __init__(self, command: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None, name: str = "stdio-peer",
                 initialize: bool = True) -> None:
        self.proc = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=None if cwd is None else str(cwd))
        self._next_id = 0
        self._lock = threading.Lock()
        self.initialize_reply: dict[str, Any] = {}
        if initialize:
            self.initialize_reply = self.request("initialize", {
                "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                "clientInfo": {"name": name, "version": "1"}})
            self.notify("notifications/initialized")

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return its whole JSON-RPC answer (result or error)."""
        with self._lock:
            self._next_id += 1
            self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method,
                        "params": params})
            assert self.proc.stdout is not None
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise ConnectionError(f"the server closed its output: {err[-2000:]}")
                reply: dict[str, Any] = json.loads(line)
                if reply.get("id") == self._next_id and "method" not in reply:
                    return reply

    def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def close(self, timeout: float = 30.0) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)


def structured(reply: dict[str, Any]) -> dict[str, Any]:
    """The structured result of a successful tool call; AssertionError otherwise."""
    assert "result" in reply, reply
    assert not reply["result"].get("isError"), reply
    data: dict[str, Any] = reply["result"]["structuredContent"]
    return data
