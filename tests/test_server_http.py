"""Streamable HTTP end to end: a real uvicorn server on an ephemeral loopback port.

Covers concurrent SDK clients on one store, the Origin allow-list, the bearer token required
off loopback, the request body cap, that the token never reaches the log, and that
``memvid-mcp serve --transport http`` says where it listens.
"""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from http_serving import HEADERS, INITIALIZE, serve, serve_process
from memvid_mcp.core.config import Settings
from memvid_mcp.core.errors import ValidationError
from memvid_mcp.manager import MemoryManager
from memvid_mcp.mcp.http_security import origin_allowed
from memvid_mcp.mcp.server import build_http_app, build_server

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-value-9f1c2d"
@pytest.fixture
def manager(tmp_path: Path) -> Any:
    work = tmp_path / "work"
    work.mkdir()
    m = MemoryManager(Settings(data_dir=tmp_path / "data", embeddings=False, project=work))
    yield m
    m.close()


def _server_app(manager: Any, **kwargs: Any) -> Any:
    return build_http_app(build_server(manager.settings, lambda: manager), **kwargs)


async def test_concurrent_clients_share_one_store_safely(manager: Any) -> None:
    async with serve(_server_app(manager)) as url:

        async def client_session(name: str, mode: str) -> None:
            async with Client(url, mode=mode) as client:
                modern = client.protocol_version == "2026-07-28"
                assert modern is (mode == "auto")  # legacy: initialize; auto: 2026-07-28
                for i in range(8):
                    result = await client.call_tool(
                        "memory_store", {"text": f"{name} remembers fact number {i}"}
                    )
                    assert not result.is_error, result.content
                found = await client.call_tool("memory_search", {"q": f"{name} fact", "k": 20})
                assert not found.is_error
                assert found.structured_content is not None
                assert len(found.structured_content["results"]) >= 8

        async with anyio.create_task_group() as tg:
            tg.start_soon(client_session, "alice", "auto")
            tg.start_soon(client_session, "bob", "legacy")
            tg.start_soon(client_session, "carol", "auto")

        async with Client(url) as client:
            tools = await client.list_tools()
            assert len(tools.tools) == 6
            stats = await client.call_tool("memory_stats", {})
            assert stats.structured_content is not None
            assert stats.structured_content["scopes"][0]["memories"] == 24
            scopes = await client.read_resource("memvid://scopes")
            assert "global" in scopes.contents[0].text  # type: ignore[union-attr]


async def test_a_foreign_origin_is_rejected(manager: Any) -> None:
    async with serve(_server_app(manager)) as url, httpx.AsyncClient(timeout=10) as http:
        evil = await http.post(
            url, json=INITIALIZE, headers={**HEADERS, "Origin": "http://evil.example"}
        )
        assert evil.status_code == 403
        null = await http.post(url, json=INITIALIZE, headers={**HEADERS, "Origin": "null"})
        assert null.status_code == 403
        local = await http.post(
            url, json=INITIALIZE, headers={**HEADERS, "Origin": "http://localhost:3000"}
        )
        assert local.status_code == 200


async def test_extra_origins_can_be_allowed(manager: Any) -> None:
    app = _server_app(manager, allowed_origins=["https://app.example.com"])
    async with serve(app) as url, httpx.AsyncClient(timeout=10) as http:
        allowed = await http.post(
            url, json=INITIALIZE, headers={**HEADERS, "Origin": "https://app.example.com"}
        )
        assert allowed.status_code == 200
        other = await http.post(
            url, json=INITIALIZE, headers={**HEADERS, "Origin": "https://other.example.com"}
        )
        assert other.status_code == 403


def test_binding_off_loopback_requires_a_token(manager: Any) -> None:
    server = build_server(manager.settings, lambda: manager)
    with pytest.raises(ValidationError, match="MEMVID_HTTP_TOKEN"):
        build_http_app(server, host="0.0.0.0")
    with pytest.raises(ValidationError, match="MEMVID_HTTP_TOKEN"):
        build_http_app(server, host="192.168.1.20", token="")
    build_http_app(build_server(manager.settings, lambda: manager), host="::1")


async def test_token_is_required_when_configured_and_never_logged(
    manager: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = _server_app(manager, host="0.0.0.0", token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        async with serve(app) as url:
            async with httpx.AsyncClient(timeout=10) as http:
                missing = await http.post(url, json=INITIALIZE, headers=HEADERS)
                assert missing.status_code == 401
                assert missing.headers["www-authenticate"] == "Bearer"
                wrong = await http.post(
                    url, json=INITIALIZE, headers={**HEADERS, "Authorization": "Bearer nope"}
                )
                assert wrong.status_code == 401
                basic = await http.post(
                    url, json=INITIALIZE, headers={**HEADERS, "Authorization": f"Basic {TOKEN}"}
                )
                assert basic.status_code == 401

            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=30) as http2,
                Client(streamable_http_client(url, http_client=http2)) as client,
            ):
                stored = await client.call_tool("memory_store", {"text": "token works"})
                assert not stored.is_error
                assert stored.structured_content is not None
                assert stored.structured_content["scope"] == "global"
    assert TOKEN not in caplog.text
    assert all(TOKEN not in str(r.args) for r in caplog.records)


async def test_request_bodies_are_capped(manager: Any) -> None:
    app = _server_app(manager, max_body_bytes=2048)
    async with serve(app) as url, httpx.AsyncClient(timeout=10) as http:
        big = {**INITIALIZE, "params": {**INITIALIZE["params"], "pad": "x" * 4096}}  # type: ignore[dict-item]
        declared = await http.post(url, json=big, headers=HEADERS)
        assert declared.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b" " * 1024

        streamed = await http.post(url, content=chunks(), headers=HEADERS)
        assert streamed.status_code == 413
        small = await http.post(url, json=INITIALIZE, headers=HEADERS)
        assert small.status_code == 200


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:5173", True),
        ("http://127.0.0.1", True),
        ("https://[::1]:8443", True),
        ("http://evil.example", False),
        ("http://localhost.evil.example", False),
        ("null", False),
        ("file://", False),
        ("http://localhost:notaport", False),
        ("https://app.example.com", True),
        ("https://app.example.com:8443", False),
        ("http://tools.example.com:9000", True),
    ],
)
def test_origin_allow_list(origin: str, allowed: bool) -> None:
    extra = ["https://app.example.com", "http://tools.example.com:*"]
    assert origin_allowed(origin, extra) is allowed


@pytest.mark.timeout(60)
def test_serve_http_says_where_it_listens_without_verbose(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    with serve_process(tmp_path / "data", cwd=tmp_path / "work") as (proc, line):
        match = re.fullmatch(
            r"memvid-mcp: serving MCP on (http://127\.0\.0\.1:(\d+)/mcp) \(Ctrl-C stops\)\n",
            line,
        )
        assert match, line
        assert int(match.group(2)) > 0  # the port the OS picked, not 0
        reply = httpx.post(match.group(1), json=INITIALIZE, headers=HEADERS, timeout=10)
        assert reply.status_code == 200  # it really listens there
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops
        assert proc.wait(timeout=30) in (0, 130)
