"""The service's wire protocol before the MCP stream: one JSON line each way.

A connection opens with the client's hello::

    {"memvid": 1, "version": "0.2.0", "role": "mcp" | "cli" | "control",
     "project": "/path" | null, "client": "relay", "pid": 123, "token": "..." (TCP only)}

and the service's answer ``{"ok": true, "version": ..., "pid": ...}`` or ``{"ok": false,
"code": "version" | "auth" | "draining" | "bad-hello", "error": "..."}``. After an ``mcp``
hello the connection carries newline-delimited JSON-RPC exactly as MCP's stdio transport does;
after a ``cli`` hello, one command (``cli/remote.py``: argv and stdin in, stdout, stderr and
the exit code streamed back); a ``control`` hello carries one command (``drain``, ``status``).
"""

from __future__ import annotations

import json
from typing import Any

from .. import __version__

PROTOCOL = 1
MAX_HELLO_BYTES = 64 * 1024
ROLES = ("mcp", "cli", "control")


def version_key(version: str) -> tuple[int, ...]:
    """``"0.10.2"`` -> ``(0, 10, 2)``; unparsable parts count as 0."""
    out = []
    for part in version.split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def hello(role: str, *, project: str | None = None, client: str = "relay",
          token: str | None = None, pid: int = 0, version: str = __version__) -> bytes:
    message: dict[str, Any] = {"memvid": PROTOCOL, "version": version, "role": role,
                               "project": project, "client": client, "pid": pid}
    if token is not None:
        message["token"] = token
    return encode(message)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One protocol line; ValueError when it is not a JSON object."""
    data = json.loads(line.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data
