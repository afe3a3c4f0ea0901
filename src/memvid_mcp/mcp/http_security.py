"""HTTP transport security: Origin allow-list, bearer token, request body cap (plain ASGI).

Wraps the MCP streamable-HTTP app. Checks run before the app sees a request, in this order:

1. ``Origin``: absent is fine (non-browser clients send none); present, it must be a loopback
   origin (``http(s)://127.0.0.1|localhost|[::1][:port]``) or listed in ``allowed_origins``
   (exact, or ``scheme://host:*`` for any port). Otherwise 403. This stops web pages from
   driving a local server (DNS rebinding, cross-site requests).
2. Bearer token, when any is configured (``MEMVID_HTTP_TOKEN``, a tokens file, or both):
   ``Authorization: Bearer <token>``, its SHA-256 compared in constant time with every known
   token's. Otherwise 401 with ``WWW-Authenticate: Bearer``. The token only ever travels in
   that header and is never logged. An accepted token's name and scopes (``Access``) go into
   the ASGI scope: as ``memvid.access`` for the tools (``access.py``), and as the SDK's
   ``user`` so a session answers only the token that opened it (404 to any other).
3. Body size: a declared ``Content-Length`` over the cap, or a streamed body growing past
   it, gets 413 before the app runs.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.tokens import Access, TokenTable

logger = logging.getLogger(__name__)

__all__ = ["ACCESS_KEY", "HTTPSecurity", "origin_allowed"]

ACCESS_KEY = "memvid.access"  # where an authenticated request's Access sits in the ASGI scope


def _loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_allowed(origin: str, allowed: Sequence[str] = ()) -> bool:
    """Whether a browser ``Origin`` may talk to this server."""
    origin = origin.strip()
    if not origin or origin == "null":
        return False
    if origin in allowed:
        return True
    try:
        parts = urlsplit(origin)
        hostname = parts.hostname or ""
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not hostname:
        return False
    if _loopback_host(hostname):
        return True
    netloc_host = f"[{hostname}]" if ":" in hostname else hostname
    return f"{parts.scheme}://{netloc_host}:*" in allowed


async def _reject(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw.extend((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class HTTPSecurity:
    """ASGI middleware enforcing Origin, bearer token and body size limits."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None = None,
        tokens_file: Path | None = None,
        allowed_origins: Sequence[str] = (),
        max_body_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.app = app
        self._tokens = TokenTable(path=tokens_file, single=token or None)
        self.allowed_origins = tuple(allowed_origins)
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:  # never show a token
        return f"HTTPSecurity(tokens={self._tokens!r}, origins={self.allowed_origins})"

    def _authenticate(self, headers: Headers) -> Access | None:
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return None
        return self._tokens.authenticate(credential.strip())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope.get("client")
        peer = f"{client[0]}" if client else "?"

        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, self.allowed_origins):
            logger.warning("rejected a request from %s: Origin not allowed", peer)
            await _reject(send, 403, "Origin not allowed")
            return

        if self._tokens.configured:
            access = self._authenticate(headers)
            if access is None:
                logger.warning("rejected a request from %s: missing or wrong bearer token", peer)
                await _reject(
                    send, 401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
                )
                return
            scope = {**scope, ACCESS_KEY: access, "user": AuthenticatedUser(AccessToken(
                token=f"memvid:{access.name}", client_id=access.name,
                scopes=list(access.scopes)))}

        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body_bytes
            except ValueError:
                await _reject(send, 400, "invalid Content-Length")
                return
            if too_big:
                await _reject(send, 413, f"request body over {self.max_body_bytes} bytes")
                return

        # A streamed (chunked) body is buffered up to the cap, then replayed to the app.
        body = bytearray()
        pending: list[Message] = []
        if scope.get("method", "GET") in ("POST", "PUT", "PATCH", "DELETE"):
            got_request = False
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    pending.append(message)
                    break
                got_request = True
                body.extend(message.get("body", b""))
                if len(body) > self.max_body_bytes:
                    await _reject(send, 413, f"request body over {self.max_body_bytes} bytes")
                    return
                if not message.get("more_body", False):
                    break
            if got_request:
                pending.insert(0, {"type": "http.request", "body": bytes(body), "more_body": False})

        async def replay() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        await self.app(scope, replay, send)
