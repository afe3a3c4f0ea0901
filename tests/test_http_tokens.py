"""Named tokens with scopes, end to end: a real uvicorn server on a loopback port, the real
MCP SDK streamable-HTTP client, two tokens of different scopes on one store (ADR 0026).

alice may use only ``global``; bob may use every scope. The checks: who stored a memory is
recorded and shown; an explicit forbidden scope is a tool error naming scope and token; the
defaults shrink quietly to the permitted scopes; a memory in a forbidden scope is not found,
cannot be deleted and does not show in list, stats, resources or the session context; a
session opened by one token is refused to another.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from http_serving import HEADERS, INITIALIZE, serve
from memvid_mcp.core.config import Settings
from memvid_mcp.core.tokens import add_token
from memvid_mcp.manager import MemoryManager
from memvid_mcp.mcp.server import build_http_app, build_server

pytestmark = pytest.mark.anyio

@pytest.fixture
def manager(tmp_path: Path) -> Any:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)  # a repository: project, committed and global exist
    m = MemoryManager(Settings(data_dir=tmp_path / "data", embeddings=False, project=repo))
    yield m
    m.close()


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice", "global")
    bob = add_token(path, "bob", "*")
    return path, alice, bob


@asynccontextmanager
async def client_for(url: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


def _app(manager: Any, tokens_file: Path, **kwargs: Any) -> Any:
    return build_http_app(build_server(manager.settings, lambda: manager),
                          host="0.0.0.0", tokens_file=tokens_file, **kwargs)


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_two_tokens_see_only_their_scopes(manager: Any, tokens: Any, mode: str) -> None:
    path, alice, bob = tokens
    async with serve(_app(manager, path)) as url:
        async with client_for(url, bob, mode) as b:
            secret = await b.call_tool("memory_store", {"text": "bob's project plan: zebra",
                                                        "scope": "project"})
            assert not secret.is_error, _text(secret)
            assert secret.structured_content is not None
            secret_id = secret.structured_content["id"]
            shared = await b.call_tool("memory_store", {"text": "team fact: zebra crossing",
                                                        "scope": "global"})
            assert not shared.is_error
            assert shared.structured_content is not None
            shared_id = shared.structured_content["id"]

        async with client_for(url, alice, mode) as a:
            # a write with no scope goes to a permitted one (not the repository's project)
            mine = await a.call_tool("memory_store", {"text": "alice likes zebra stripes",
                                                      "metadata": {"stored_by": "mallory"}})
            assert not mine.is_error, _text(mine)
            assert mine.structured_content is not None
            assert mine.structured_content["scope"] == "global"
            mine_id = mine.structured_content["id"]

            # metadata as JSON text cannot carry a stored_by past the server either
            text_meta = await a.call_tool("memory_store", {
                "text": "alice writes json text", "metadata": '{"stored_by": "mallory", "k": 1}'})
            assert not text_meta.is_error, _text(text_meta)
            assert text_meta.structured_content is not None
            text_meta_id = text_meta.structured_content["id"]

            # explicit forbidden scopes: a tool error naming the scope and the token
            for tool, args in [
                ("memory_store", {"text": "x", "scope": "project"}),
                ("memory_search", {"query": "zebra", "scopes": ["project"]}),
                ("memory_get", {"ids": [secret_id], "scopes": ["project"]}),
                ("memory_delete", {"ids": [secret_id], "scopes": "committed"}),
                ("memory_list", {"scope": "project"}),
                ("memory_stats", {"scope": "committed"}),
            ]:
                denied = await a.call_tool(tool, args)
                assert denied.is_error, tool
                message = _text(denied)
                assert "'alice'" in message and ("'project'" in message or
                                                 "'committed'" in message), message
                assert "Traceback" not in message and "internal error" not in message

            # the defaults cover only global, quietly
            found = await a.call_tool("memory_search", {"query": "zebra", "limit": 10})
            assert not found.is_error, _text(found)
            assert found.structured_content is not None
            hits = {r["id"] for r in found.structured_content["results"]}
            assert hits == {shared_id, mine_id}  # "zebra" is not in the JSON-text one

            # a memory of a forbidden scope is simply not found, and stays
            got = await a.call_tool("memory_get", {"ids": [secret_id, shared_id]})
            assert got.structured_content is not None
            assert got.structured_content["missing"] == [secret_id]
            assert [m["id"] for m in got.structured_content["memories"]] == [shared_id]
            assert got.structured_content["memories"][0]["metadata"]["stored_by"] == "bob"
            gone = await a.call_tool("memory_delete", {"ids": [secret_id]})
            assert gone.structured_content is not None
            assert gone.structured_content["deleted"] == 0

            listed = await a.call_tool("memory_list", {})
            assert listed.structured_content is not None
            assert {m["id"] for m in listed.structured_content["memories"]} == {
                shared_id, mine_id, text_meta_id}
            assert listed.structured_content["scopes"] == ["global"]
            by = {m["id"]: m["metadata"].get("stored_by")
                  for m in listed.structured_content["memories"]}
            # the server's word, not mallory's, whatever form the metadata came in
            assert by == {shared_id: "bob", mine_id: "alice", text_meta_id: "alice"}
            kept = [m["metadata"] for m in listed.structured_content["memories"]
                    if m["id"] == text_meta_id]
            assert kept == [{"stored_by": "alice", "k": 1}]

            stats = await a.call_tool("memory_stats", {})
            assert stats.structured_content is not None
            assert [s["scope"] for s in stats.structured_content["scopes"]] == ["global"]
            scopes = json.loads(
                (await a.read_resource("memvid://scopes")).contents[0].text)  # type: ignore[union-attr]
            assert [s["name"] for s in scopes["scopes"]] == ["global"]
            context = (await a.read_resource("memvid://context")).contents[0].text  # type: ignore[union-attr]
            assert "bob's project plan" not in context and "team fact" in context

            # superseding a memory of a forbidden scope: as unknown as a missing id
            sneaky = await a.call_tool("memory_store", {"text": "replaced plan",
                                                        "supersedes": [secret_id]})
            assert sneaky.is_error and secret_id in _text(sneaky)

        async with client_for(url, bob, mode) as b:
            still = await b.call_tool("memory_get", {"ids": [secret_id]})
            assert still.structured_content is not None
            assert [m["id"] for m in still.structured_content["memories"]] == [secret_id]
            assert still.structured_content["memories"][0]["metadata"]["stored_by"] == "bob"
            everything = await b.call_tool("memory_search", {"query": "zebra"})
            assert everything.structured_content is not None
            assert secret_id in {r["id"] for r in everything.structured_content["results"]}


async def test_a_forbidden_memory_resource_reads_as_not_found(
        manager: Any, tokens: Any) -> None:
    path, alice, bob = tokens
    async with serve(_app(manager, path)) as url:
        async with client_for(url, bob) as b:
            stored = await b.call_tool("memory_store", {"text": "private", "scope": "project"})
            assert stored.structured_content is not None
            memory_id = stored.structured_content["id"]
            seen = await b.read_resource(f"memvid://memory/{memory_id}")
            assert memory_id in seen.contents[0].text  # type: ignore[union-attr]
        async with client_for(url, alice) as a:
            with pytest.raises(Exception, match="not found"):
                await a.read_resource(f"memvid://memory/{memory_id}")


async def test_a_session_answers_only_the_token_that_opened_it(
        manager: Any, tokens: Any) -> None:
    path, alice, bob = tokens
    async with serve(_app(manager, path)) as url, httpx.AsyncClient(timeout=10) as http:
        opened = await http.post(url, json=INITIALIZE,
                                 headers={**HEADERS, "Authorization": f"Bearer {bob}"})
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        for token, status in ((alice, 404), (bob, 200)):
            reply = await http.post(url, json=listing, headers={
                **HEADERS, "Authorization": f"Bearer {token}", "mcp-session-id": session,
                "mcp-protocol-version": "2025-06-18"})
            assert reply.status_code == status, reply.text


async def test_tokens_added_or_removed_while_serving_take_effect(
        manager: Any, tokens: Any) -> None:
    from memvid_mcp.core.tokens import remove_token

    path, alice, _ = tokens
    async with serve(_app(manager, path)) as url, httpx.AsyncClient(timeout=10) as http:
        carol = add_token(path, "carol", "global")
        for token, status in ((carol, 200), (alice, 200), ("nope", 401)):
            reply = await http.post(url, json=INITIALIZE, headers={
                **HEADERS, "Authorization": f"Bearer {token}"})
            assert reply.status_code == status
        assert remove_token(path, "alice")
        reply = await http.post(url, json=INITIALIZE, headers={
            **HEADERS, "Authorization": f"Bearer {alice}"})
        assert reply.status_code == 401


async def test_single_token_mode_is_default_with_every_scope(manager: Any) -> None:
    token = "one-shared-secret-7c1e"
    app = build_http_app(build_server(manager.settings, lambda: manager), host="0.0.0.0",
                         token=token)
    async with serve(app) as url, client_for(url, token) as client:
        stored = await client.call_tool("memory_store", {"text": "in the project",
                                                         "scope": "committed"})
        assert not stored.is_error, _text(stored)
        assert stored.structured_content is not None
        got = await client.call_tool("memory_get", {"ids": [stored.structured_content["id"]]})
        assert got.structured_content is not None
        assert got.structured_content["memories"][0]["metadata"]["stored_by"] == "default"


async def test_stateless_instances_answer_any_request_with_the_token_scopes(
        manager: Any, tokens: Any) -> None:
    """Two instances behind a round-robin proxy (docs/team.md): with ``stateless`` a request
    needs no session, so the second instance answers what the first one began."""
    path, alice, bob = tokens
    async with (
        serve(_app(manager, path, stateless=True)) as first,
        serve(_app(manager, path, stateless=True)) as second,
        httpx.AsyncClient(timeout=30) as http,
    ):
        auth = {**HEADERS, "Authorization": f"Bearer {alice}",
                "mcp-protocol-version": "2025-06-18"}
        opened = await http.post(first, json=INITIALIZE, headers=auth)
        assert opened.status_code == 200
        assert "mcp-session-id" not in opened.headers

        def call(n: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                    "params": {"name": name, "arguments": arguments}}

        stored = await http.post(second, headers=auth, json=call(
            2, "memory_store", {"text": "stateless works"}))
        assert stored.status_code == 200, stored.text
        result = stored.json()["result"]
        assert not result.get("isError"), result
        assert result["structuredContent"]["scope"] == "global"
        denied = await http.post(first, headers=auth, json=call(
            3, "memory_list", {"scope": "project"}))
        assert denied.json()["result"]["isError"] is True
        assert "'alice'" in denied.json()["result"]["content"][0]["text"]

        for url, mode in ((first, "legacy"), (second, "auto")):
            async with client_for(url, bob, mode) as b:
                got = await b.call_tool("memory_get", {"ids": [result["structuredContent"]["id"]]})
                assert got.structured_content is not None
                assert got.structured_content["memories"][0]["metadata"]["stored_by"] == "alice"


def test_stored_by_cannot_be_smuggled_in_metadata_given_as_json_text(manager: Any) -> None:
    """The MCP SDK turns JSON text into an object before the tool runs; the scoped manager
    must not rely on that (the manager itself accepts metadata as JSON text)."""
    from memvid_mcp.core.tokens import Access
    from memvid_mcp.mcp.access import ScopedManager

    scoped = ScopedManager(manager, Access("alice", ("global",)))
    stored = scoped.store("text", metadata='{"stored_by": "mallory", "k": 1}')
    (memory,) = manager.get(stored.id).memories
    assert memory.record.metadata == {"stored_by": "alice", "k": 1}
    blank = scoped.store("other text", metadata="")
    (memory,) = manager.get(blank.id).memories
    assert memory.record.metadata == {"stored_by": "alice"}
