"""The MCP tools and resources, through the SDK's in-memory client.

Every test runs twice: once with the legacy ``initialize`` handshake (what Claude Desktop and
Cursor speak) and once with the stateless 2026-07-28 protocol.
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError as PydanticValidationError

from memvid_mcp.core.config import Settings
from memvid_mcp.core.errors import StoreLockedError, ValidationError
from memvid_mcp.core.models import SearchHit, SearchResult
from memvid_mcp.manager import MemoryManager
from memvid_mcp.mcp.arguments import invalid_arguments
from memvid_mcp.mcp.server import TOOL_NAME_PATTERN, build_server, tool_names

pytestmark = pytest.mark.anyio

TOOLS = {
    "memory_store",
    "memory_search",
    "memory_get",
    "memory_delete",
    "memory_list",
    "memory_stats",
}
MISSING_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.fixture(params=["legacy", "2026-07-28"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    outside_git = tmp_path / "work"
    outside_git.mkdir()
    return Settings(data_dir=tmp_path / "data", embeddings=False, project=outside_git)


@pytest.fixture
def manager(settings: Settings) -> Any:
    m = MemoryManager(settings)
    yield m
    m.close()


@asynccontextmanager
async def connect(
    settings: Settings, factory: Callable[[], Any], mode: str, **kwargs: Any
) -> AsyncIterator[Client]:
    server = build_server(settings, factory, **kwargs)
    with anyio.fail_after(20):
        async with Client(server, mode=mode) as client:
            yield client


async def ok(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; check structured content equals the JSON text block."""
    result = await client.call_tool(name, args)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    assert not result.is_error, text
    assert result.structured_content is not None
    assert json.loads(text) == result.structured_content
    return result.structured_content


async def fails(client: Client, name: str, args: dict[str, Any]) -> str:
    """Call a tool that must fail as a tool error (not a protocol error); return its text."""
    result = await client.call_tool(name, args)
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


# ------------------------------------------------------------------------------- listing


async def test_tools_have_titles_descriptions_annotations_and_schemas(
    manager: Any, mode: str
) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.title
        # When to call it, in one or two sentences (schemas may be deferred: be brief).
        assert tool.description and 40 < len(tool.description) <= 300
        assert tool.description.count(". ") <= 2
        assert tool.annotations is not None
        assert tool.annotations.open_world_hint is False
        assert tool.output_schema and tool.output_schema.get("properties")
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"
    for name in ("memory_search", "memory_get", "memory_list", "memory_stats"):
        hints = tools[name].annotations
        assert hints is not None and hints.read_only_hint is True
        assert hints.destructive_hint is False
    store = tools["memory_store"].annotations
    assert store is not None
    assert (store.read_only_hint, store.destructive_hint, store.idempotent_hint) == (
        False,
        False,
        True,
    )
    delete = tools["memory_delete"].annotations
    assert delete is not None and delete.destructive_hint is True
    search_props = tools["memory_search"].input_schema["properties"]
    assert {"query", "limit", "cursor", "max_chars"} <= set(search_props)
    assert not {"q", "k"} & set(search_props)  # aliases are accepted, never advertised
    assert tools["memory_search"].input_schema["required"] == ["query"]
    assert tools["memory_store"].input_schema["required"] == ["text"]
    assert {"results", "scopes", "next_cursor", "note"} <= set(
        tools["memory_search"].output_schema["properties"]  # type: ignore[index]
    )


def test_default_tool_names_match_the_strict_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMVID_TOOL_NAMES", raising=False)
    names = tool_names()
    assert set(names.values()) == TOOLS
    for name in names.values():
        assert TOOL_NAME_PATTERN.fullmatch(name)
        assert TOOL_NAME_PATTERN.pattern == r"^[a-zA-Z0-9_-]{1,64}$"


async def test_dotted_names_are_an_opt_in(
    manager: Any, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMVID_TOOL_NAMES", "dotted")
    async with connect(manager.settings, lambda: manager, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {n.replace("_", ".", 1) for n in TOOLS}
        stored = await ok(client, "memory.store", {"text": "dotted names work"})
    assert stored["scope"] == "global"
    with pytest.raises(ValidationError, match="MEMVID_TOOL_NAMES"):
        tool_names("camel")


# ------------------------------------------------------------------------------- tools


async def test_store_search_get_round_trip_with_forgiving_inputs(manager: Any, mode: str) -> None:
    text = "The deploy key for staging lives in the vault at ops/deploy/staging."
    async with connect(manager.settings, lambda: manager, mode) as client:
        first = await ok(
            client, "memory_store", {"text": text, "tags": "ops, deploy", "kind": "fact"}
        )
        assert first["scope"] == "global" and first["deduplicated"] is False
        again = await ok(client, "memory_store", {"text": text, "tags": ["ops"]})
        assert again["deduplicated"] is True and again["id"] == first["id"]

        found = await ok(client, "memory_search", {"q": "where is the deploy key", "k": 5})
        assert found["scopes"] == ["global"]
        assert [hit["id"] for hit in found["results"]] == [first["id"]]
        hit = found["results"][0]
        assert "deploy" in hit["snippet"] and hit["tags"] == ["ops", "deploy"]
        assert hit["scope"] == "global"

        by_query = await ok(client, "memory_search", {"query": "vault staging", "limit": 3})
        assert by_query["results"][0]["id"] == first["id"]
        filtered = await ok(
            client, "memory_search", {"query": "vault", "tags_all": "ops,deploy", "kind": "fact"}
        )
        assert len(filtered["results"]) == 1
        none = await ok(client, "memory_search", {"query": "vault", "tags_any": ["other"]})
        assert none["results"] == []

        got = await ok(client, "memory_get", {"ids": first["id"]})
        assert got["missing"] == [] and got["scopes"] == ["global"]
        (memory,) = got["memories"]
        assert memory["text"] == text and memory["truncated"] is False
        assert memory["kind"] == "fact" and memory["scope"] == "global"

        both = await ok(client, "memory_get", {"ids": [first["id"], MISSING_ID]})
        assert [m["id"] for m in both["memories"]] == [first["id"]]
        assert both["missing"] == [MISSING_ID]
        csv = await ok(client, "memory_get", {"ids": f"{first['id']}, {MISSING_ID}"})
        assert csv["missing"] == [MISSING_ID]


async def test_store_accepts_all_optional_fields(manager: Any, mode: str) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        stored = await ok(
            client,
            "memory_store",
            {
                "text": "Prefer uv over pip for this project.",
                "title": "Tooling preference",
                "metadata": '{"origin": "chat"}',
                "source": "conversation",
                "ttl_seconds": 3600,
                "pinned": True,
                "scope": "global",
            },
        )
        got = await ok(client, "memory_get", {"ids": stored["id"]})
    memory = got["memories"][0]
    assert memory["title"] == "Tooling preference"
    assert memory["metadata"] == {"origin": "chat"}
    assert memory["source"] == "conversation" and memory["pinned"] is True
    assert memory["expires_at"] is not None


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("memory_search", {}, "query"),
        ("memory_search", {"query": "   "}, "query"),
        ("memory_search", {"query": "a", "q": "b"}, "query"),
        ("memory_search", {"query": "a", "limit": 101}, "limit"),
        ("memory_search", {"query": "a", "k": 0}, "limit"),
        ("memory_search", {"query": "a", "mode": "psychic"}, "mode"),
        ("memory_search", {"query": "a", "since": "last tuesday"}, "since"),
        ("memory_search", {"query": "a", "max_chars": 10}, "max_chars"),
        ("memory_search", {"query": "a", "scopes": "galaxy"}, "scope"),
        ("memory_store", {"text": ""}, "text"),
        ("memory_store", {"text": "x", "scope": "project"}, "scope"),
        ("memory_store", {"text": "x", "metadata": "[1, 2]"}, "metadata"),
        ("memory_get", {"ids": "not-an-id"}, "ids"),
        ("memory_get", {"ids": []}, "ids"),
        ("memory_get", {"ids": MISSING_ID, "offset": -1}, "offset"),
        ("memory_delete", {"ids": ""}, "ids"),
        ("memory_list", {"limit": 1000}, "limit"),
    ],
)
async def test_bad_input_is_a_tool_error_naming_the_field(
    manager: Any, mode: str, tool: str, args: dict[str, Any], field: str
) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        message = await fails(client, tool, args)
    assert field in message
    assert "internal error" not in message
    assert not message.startswith("Error executing tool")  # the SDK's prefix is dropped


# ------------------------------------------------------------------------------- client mistakes


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("memory_search", {"query": "x", "limit": "ten"},
         "limit must be an integer from 1 to 100 (got 'ten')"),
        ("memory_search", {"query": "x", "k": [3]}, "k must be an integer from 1 to 100 (got [3])"),
        ("memory_search", {"query": "x", "pinned": "maybe"},
         "pinned must be true or false (got 'maybe')"),
        ("memory_search", {"query": "x", "max_chars": "lots"},
         "max_chars must be an integer from 200 to 200000 (got 'lots')"),
        ("memory_store", {}, "text is required (a string)"),
        ("memory_store", {"text": 42}, "text must be a string (got 42)"),
        ("memory_store", {"text": "x", "tags": [1, 2]},
         "tags must be a list of strings or a string (got [1, 2])"),
        ("memory_store", {"text": "x", "metadata": 7},
         "metadata must be a JSON object or a string (got 7)"),
        ("memory_get", {"ids": 5}, "ids must be a list of strings or a string (got 5)"),
        ("memory_get", {}, "ids is required (a list of strings or a string)"),
        ("memory_get", {"ids": MISSING_ID, "offset": "start"},
         "offset must be an integer of at least 0 (got 'start')"),
    ],
)  # fmt: skip
async def test_mistyped_or_missing_arguments_are_one_sentence_naming_the_argument(
    manager: Any, mode: str, tool: str, args: dict[str, Any], message: str
) -> None:
    """Not pydantic's multi-line text with a documentation URL."""
    async with connect(manager.settings, lambda: manager, mode) as client:
        assert await fails(client, tool, args) == message


async def test_unknown_arguments_are_rejected_with_a_suggestion(manager: Any, mode: str) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        typo = await fails(client, "memory_search", {"qurey": "deploy"})
        assert typo == "unknown argument 'qurey'; did you mean 'query'?"
        stray = await fails(client, "memory_store", {"text": "blue", "colour": "red"})
        assert stray.startswith("unknown argument 'colour'; memory_store takes text, title,")
        assert (await ok(client, "memory_stats", {}))["scopes"] == []  # nothing was stored
        limit_typo = await fails(client, "memory_list", {"limt": 5})
        assert limit_typo == "unknown argument 'limt'; did you mean 'limit'?"
        await ok(client, "memory_store", {"text": "aliases still work"})
        found = await ok(client, "memory_search", {"q": "aliases", "k": 1})  # documented aliases
        assert len(found["results"]) == 1


async def _protocol_error(call: Any) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await call
    return caught.value


async def test_unknown_tool_and_prompt_are_invalid_params(manager: Any, mode: str) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        tool = await _protocol_error(client.call_tool("memory_serch", {"query": "x"}))
        assert tool.error.code == -32602
        assert tool.error.message == "unknown tool 'memory_serch'; did you mean 'memory_search'?"
        other = await _protocol_error(client.call_tool("fetch_url", {}))
        assert other.error.code == -32602 and "memory_store, memory_search" in other.error.message
        prompt = await _protocol_error(client.get_prompt("summarise"))
        assert prompt.error.code == -32602
        assert prompt.error.message == "unknown prompt 'summarise'; the prompts are session_context"


async def test_a_list_cursor_the_server_never_issued_is_invalid_params(
    manager: Any, mode: str
) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        for listing in (client.list_tools, client.list_resources, client.list_prompts,
                        client.list_resource_templates):  # fmt: skip
            error = await _protocol_error(listing(cursor="not-a-cursor"))
            assert error.error.code == -32602 and "invalid cursor" in error.error.message
        assert len((await client.list_tools()).tools) == 6  # without a cursor: one full page
        assert len((await client.list_tools(cursor="")).tools) == 6  # an empty one reads as none


async def test_a_burst_of_client_mistakes_logs_no_traceback(
    manager: Any, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Anything a client sent is answered, not logged as a crash: a client cannot fill the log."""
    with caplog.at_level(logging.DEBUG):
        async with connect(manager.settings, lambda: manager, mode) as client:
            for _ in range(10):
                await fails(client, "memory_search", {"query": "x", "limit": "ten"})
                await fails(client, "memory_search", {"qurey": "x"})
                await fails(client, "memory_get", {"ids": "not-an-id"})
                await _protocol_error(client.call_tool("nope", {}))
                await _protocol_error(client.get_prompt("nope"))
                await _protocol_error(client.list_tools(cursor="zz"))
                await _protocol_error(client.read_resource(f"memvid://memory/{MISSING_ID}"))
    assert [r for r in caplog.records if r.exc_info] == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "Traceback" not in caplog.text


async def test_responses_are_bounded_by_max_chars(manager: Any, mode: str) -> None:
    long_text = " ".join(f"word{i} alpha" for i in range(1200))  # ~13k characters
    async with connect(manager.settings, lambda: manager, mode) as client:
        a = await ok(client, "memory_store", {"text": long_text})
        b = await ok(client, "memory_store", {"text": "alpha beta " + long_text})
        got = await ok(client, "memory_get", {"ids": [a["id"], b["id"]], "max_chars": 1000})
        (memory,) = got["memories"]
        assert len(memory["text"]) == 1000 and memory["truncated"] is True
        assert memory["text_chars"] == len(long_text)
        assert got["omitted"] == [b["id"]] and got["truncated"] is True
        rest = await ok(client, "memory_get", {"ids": a["id"], "offset": 1000, "max_chars": 200000})
        assert rest["memories"][0]["text"] == long_text[1000:]
        assert rest["memories"][0]["offset"] == 1000

        found = await ok(client, "memory_search", {"query": "alpha", "max_chars": 400})
        assert len(found["results"]) == 2
        assert all(len(hit["snippet"]) <= 200 for hit in found["results"])


async def test_search_and_list_paginate_with_cursors(manager: Any, mode: str) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        ids = [
            (await ok(client, "memory_store", {"text": f"release note {i}: shipped feature {i}"}))[
                "id"
            ]
            for i in range(5)
        ]
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            args: dict[str, Any] = {"limit": 2}
            if cursor:
                args["cursor"] = cursor
            page = await ok(client, "memory_list", args)
            assert page["scopes"] == ["global"] and len(page["memories"]) <= 2
            seen += [m["id"] for m in page["memories"]]
            assert all("text" not in m for m in page["memories"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))

        hits: list[str] = []
        cursor = None
        for _ in range(5):
            args = {"query": "release note shipped", "k": 2}
            if cursor:
                args["cursor"] = cursor
            page = await ok(client, "memory_search", args)
            hits += [h["id"] for h in page["results"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(hits) == sorted(ids)


async def test_list_is_bounded_by_max_chars_with_an_exact_cursor(manager: Any, mode: str) -> None:
    big = {"blob": "x" * 20_000}
    async with connect(manager.settings, lambda: manager, mode) as client:
        for i in range(3):
            await ok(client, "memory_store", {"text": f"memory {i}", "metadata": big})
        page = await ok(client, "memory_list", {"limit": 3, "max_chars": 30_000})
        assert len(page["memories"]) == 1 and page["next_cursor"]
        rest = await ok(
            client, "memory_list", {"limit": 3, "cursor": page["next_cursor"], "max_chars": 90_000}
        )
        assert len(rest["memories"]) == 2


async def test_delete_is_immediate_and_idempotent(manager: Any, mode: str) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        keep = await ok(client, "memory_store", {"text": "keep the blue deployment"})
        drop = await ok(client, "memory_store", {"text": "drop the green deployment"})
        deleted = await ok(client, "memory_delete", {"ids": drop["id"]})
        assert deleted == {"deleted": 1, "ids": [drop["id"]], "scopes": ["global"],
                           "purged": False}
        again = await ok(client, "memory_delete", {"ids": [drop["id"]]})
        assert again["deleted"] == 0
        found = await ok(client, "memory_search", {"query": "deployment"})
        assert [h["id"] for h in found["results"]] == [keep["id"]]
        got = await ok(client, "memory_get", {"ids": drop["id"]})
        assert got["missing"] == [drop["id"]]


async def test_stats_reports_each_scope(manager: Any, mode: str) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        await ok(client, "memory_store", {"text": "one"})
        await ok(client, "memory_store", {"text": "two"})
        stats = await ok(client, "memory_stats", {})
        (scope,) = stats["scopes"]
        assert scope["scope"] == "global" and scope["memories"] == 2
        assert scope["backend"] == manager.settings.backend == "video"  # the default
        only = await ok(client, "memory_stats", {"scope": "global"})
        assert only["scopes"][0]["memories"] == 2


async def test_project_scope_inside_a_git_repository(tmp_path: Path, mode: str) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    settings = Settings(data_dir=tmp_path / "data", embeddings=False, project=repo)
    with MemoryManager(settings) as manager:
        async with connect(settings, lambda: manager, mode) as client:
            local = await ok(client, "memory_store", {"text": "this repo uses tabs"})
            assert local["scope"] == "project"
            shared = await ok(
                client, "memory_store", {"text": "user likes tabs", "scope": "global"}
            )
            assert shared["scope"] == "global"
            found = await ok(client, "memory_search", {"query": "tabs"})
            assert set(found["scopes"]) == {"project", "global"}
            assert {h["scope"] for h in found["results"]} == {"project", "global"}
            only = await ok(client, "memory_search", {"query": "tabs", "scopes": "global"})
            assert only["scopes"] == ["global"] and len(only["results"]) == 1
            listed = await ok(client, "memory_list", {"scope": "project"})
            assert listed["scopes"] == ["project"] and len(listed["memories"]) == 1
            got = await ok(client, "memory_get", {"ids": local["id"]})
            assert got["scopes"] == ["global", "project", "committed"]
            assert got["memories"][0]["scope"] == "project"
            both = await ok(client, "memory_list", {})
            assert both["scopes"] == ["project", "global"] and len(both["memories"]) == 2


# ------------------------------------------------------------------------------- resources


async def test_resources(manager: Any, mode: str) -> None:
    async with connect(manager.settings, lambda: manager, mode) as client:
        stored = await ok(client, "memory_store", {"text": "resource text", "title": "R"})
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"memvid://stats", "memvid://scopes"} <= uris
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["memvid://memory/{id}"]

        stats = json.loads((await client.read_resource("memvid://stats")).contents[0].text)  # type: ignore[union-attr]
        assert stats["scopes"][0]["memories"] == 1
        scopes = json.loads((await client.read_resource("memvid://scopes")).contents[0].text)  # type: ignore[union-attr]
        names = {s["name"]: s for s in scopes["scopes"]}
        assert names["global"]["available"] is True and names["global"]["default"] is True
        assert names["project"]["available"] is False

        one = await client.read_resource(f"memvid://memory/{stored['id']}")
        memory = json.loads(one.contents[0].text)  # type: ignore[union-attr]
        assert memory["text"] == "resource text" and memory["title"] == "R"
        assert one.contents[0].mime_type == "application/json"
        with pytest.raises(MCPError, match="not found"):
            await client.read_resource(f"memvid://memory/{MISSING_ID}")


# ------------------------------------------------------------------------------- failures


class _FailingManager:
    """Just enough of a MemoryManager to make tools fail in chosen ways."""

    search_scopes = ("global",)
    default_scope = "global"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def search(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    def stats(self, scope: str | None = None) -> list[Any]:
        return []

    def close(self) -> None:
        pass


async def test_internal_errors_are_logged_and_reported_briefly(
    settings: Settings, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = _FailingManager(RuntimeError("disk exploded at /secret/path"))
    with caplog.at_level(logging.ERROR, logger="memvid_mcp.mcp.server"):
        async with connect(settings, lambda: fake, mode) as client:
            message = await fails(client, "memory_search", {"query": "anything"})
    assert "internal error in memory_search" in message
    assert "/secret/path" not in message
    (record,) = [r for r in caplog.records if r.name == "memvid_mcp.mcp.server"]
    assert record.exc_info is not None and "disk exploded" in str(record.exc_info[1])


async def test_domain_errors_reach_the_model_verbatim(settings: Settings, mode: str) -> None:
    fake = _FailingManager(StoreLockedError("global is in use by another memvid-mcp process"))
    async with connect(settings, lambda: fake, mode) as client:
        message = await fails(client, "memory_search", {"query": "anything"})
    assert "in use by another memvid-mcp process" in message


class _LoadingManager(_FailingManager):
    """A manager whose embedding model is still loading: search answers lexically."""

    def __init__(self) -> None:
        super().__init__(RuntimeError("unused"))

    def search(self, query: str, **kwargs: Any) -> SearchResult:
        hit = SearchHit("01ARZ3NDEKTSV4RRFFQ69G5FAW", 1.0, None, "a lexical hit", (), "note",
                        "global", datetime.now(UTC))  # fmt: skip
        note = "semantic search unavailable (model loading); lexical results"
        return SearchResult((hit,), None, "lexical", ("global",), note)


async def test_search_before_the_model_is_ready_answers_and_says_so(
    settings: Settings, mode: str
) -> None:
    async with connect(settings, _LoadingManager, mode) as client:
        found = await ok(client, "memory_search", {"query": "anything"})
    assert found["mode"] == "lexical" and len(found["results"]) == 1
    assert "model loading" in found["note"]


async def test_handshake_and_listing_never_wait_for_the_manager(
    settings: Settings, mode: str, manager: Any
) -> None:
    release = threading.Event()
    calls: list[int] = []

    def slow_factory() -> Any:
        calls.append(1)
        release.wait(30)  # a store that takes "forever" to open
        return manager

    try:
        async with connect(settings, slow_factory, mode) as client:
            with anyio.fail_after(5):  # answered while the manager is still opening
                tools = await client.list_tools()
                assert len(tools.tools) == 6
                await client.list_resources()
            release.set()
            stored = await ok(client, "memory_store", {"text": "after the slow open"})
            assert stored["scope"] == "global"
    finally:
        release.set()
    assert len(calls) == 1  # one manager, shared by the warm-up and the tool call


async def test_search_without_a_ready_model_is_lexical_with_a_note(
    tmp_path: Path, mode: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    settings = Settings(
        data_dir=tmp_path / "data",
        embeddings=True,
        embed_model=str(tmp_path / "no-such-model"),  # loading, then unavailable: never ready
        project=work,
    )
    with MemoryManager(settings) as manager:
        async with connect(settings, lambda: manager, mode) as client:
            await ok(client, "memory_store", {"text": "lexical fallback keeps working"})
            found = await ok(client, "memory_search", {"query": "lexical fallback"})
    assert found["mode"] == "lexical" and len(found["results"]) == 1
    assert "semantic search unavailable" in found["note"]


def test_building_the_server_loads_nothing_slow(tmp_path: Path) -> None:
    """Importing and building the server (and the CLI) loads no manager, search or storage
    code, no model runtime, and opens no store."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from memvid_mcp.core.config import Settings\n"
        "import memvid_mcp.cli.main\n"
        "from memvid_mcp.mcp.server import build_server\n"
        f"build_server(Settings(data_dir=Path({str(tmp_path / 'data')!r})))\n"
        "heavy = ['memvid_mcp.manager', 'numpy', 'tantivy', 'onnxruntime', 'tokenizers',\n"
        "         'huggingface_hub', 'torch', 'usearch', 'av', 'zxingcpp', 'rich']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""
    assert not (tmp_path / "data").exists()  # no scope was opened, no index loaded


async def test_the_client_docs_cover_every_tool_argument_and_resource(manager: Any) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "mcp-clients.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in docs.splitlines()
            if line.startswith("| `memory_")}  # fmt: skip
    async with connect(manager.settings, lambda: manager, "legacy") as client:
        tools = (await client.list_tools()).tools
        templates = (await client.list_resource_templates()).resource_templates
        resources = (await client.list_resources()).resources
    for tool in tools:
        assert tool.name in rows, f"{tool.name} is not in docs/mcp-clients.md"
        for argument in tool.input_schema["properties"]:
            assert f"`{argument}`" in rows[tool.name], f"{tool.name}.{argument} undocumented"
    for uri in [t.uri_template for t in templates] + [str(r.uri) for r in resources]:
        assert f"`{uri}`" in docs


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=3),
    max_leaves=6,
)


@functools.cache
def _registered_tools() -> dict[str, Any]:
    """The SDK's tool objects (argument model and published schema); no store is opened."""
    server = build_server(Settings(data_dir=Path("/nonexistent/never-opened")))
    return {t.name: t for t in server._tool_manager.list_tools()}  # type: ignore[attr-defined]


@settings_(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_rejected_argument_value_is_one_sentence_naming_it(data: Any) -> None:
    """Whatever JSON a client sends for an argument, a rejection is one line naming it."""
    tools = _registered_tools()
    tool = tools[data.draw(st.sampled_from(sorted(tools)))]
    props = sorted(tool.parameters["properties"])
    field = data.draw(st.sampled_from(props))
    arguments = {"text": "x", "ids": "x"} if field not in ("text", "ids") else {}
    arguments = {k: v for k, v in arguments.items() if k in props}
    arguments[field] = data.draw(_json_values)
    try:
        tool.fn_metadata.validate_arguments(arguments)
    except PydanticValidationError as exc:
        message = invalid_arguments(tool.parameters, arguments, exc.errors())
        assert message.startswith(f"{field} must be ") and "\n" not in message
        assert "errors.pydantic.dev" not in message and "validation error" not in message


async def test_store_redacts_secrets_in_every_field_and_names_where(manager: Any,
                                                                   mode: str) -> None:
    key = "AKIA" + "ABCDEFGHIJKLMNOP"
    token = "ghp_" + "A1b2C3d4" * 5
    async with connect(manager.settings, lambda: manager, mode) as client:
        stored = await ok(client, "memory_store", {
            "text": f"the deploy uses {key}",
            "title": f"token {token}",
            "tags": "deploy",
            "metadata": json.dumps({"env": {"AWS_KEY": key}}),
            "source": f"shell history: export GH={token}",
        })
        # Still a list of strings: a plain kind for the text, kind:field elsewhere.
        assert stored["redactions"] == ["aws_access_key", "aws_access_key:metadata.env.AWS_KEY",
                                        "github_token:source", "github_token:title"]
        got = await ok(client, "memory_get", {"ids": stored["id"]})
    (memory,) = got["memories"]
    shown = json.dumps(memory)
    assert key not in shown and token not in shown
    assert memory["title"] == "token [REDACTED:github_token]"
    assert memory["metadata"] == {"env": {"AWS_KEY": "[REDACTED:aws_access_key]"}}
    assert memory["source"] == "shell history: export GH=[REDACTED:github_token]"


# ------------------------------------------------------------------------------- threads


class _ThreadRecorder:
    """The manager, noting which thread ran each search and store."""

    def __init__(self, manager: Any) -> None:
        self._manager = manager
        self.threads: list[tuple[str, threading.Thread]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.append(("search", threading.current_thread()))
        return self._manager.search(*args, **kwargs)

    def store(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.append(("store", threading.current_thread()))
        return self._manager.store(*args, **kwargs)


@pytest.mark.parametrize("alone", [True, False])
async def test_a_warm_search_runs_on_the_event_loop_only_when_the_owner_allows(
    manager: Any, alone: bool
) -> None:
    """ADR 0030: with ``inline`` saying the loop has nothing else to serve, a lexical search on
    a warm manager (scopes opened by the warm-up or a search in a worker thread) skips the
    thread hop; hybrid and semantic searches and stores never do, and when ``inline`` says
    no, nothing runs on the loop."""
    recorder = _ThreadRecorder(manager)
    loop_thread = threading.current_thread()
    asked: list[bool] = []

    def inline() -> bool:
        asked.append(alone)
        return alone

    async with connect(manager.settings, lambda: recorder, "legacy", inline=inline) as client:
        await ok(client, "memory_store", {"text": "the deploy runs on Fridays"})
        for mode in ("lexical", "Lexical", "lexical", "hybrid", "semantic"):
            found = await ok(client, "memory_search", {"query": "deploy", "mode": mode})
            assert found["results"][0]["snippet"] == "the deploy runs on Fridays"
        await ok(client, "memory_store", {"text": "the release train leaves on Mondays"})
    on_loop = [(call, thread is loop_thread) for call, thread in recorder.threads]
    # the first search may find the manager warm already (the warm-up after initialize)
    assert on_loop[0] == on_loop[-1] == ("store", False)
    assert on_loop[2:6] == [("search", alone), ("search", alone), ("search", False),
                            ("search", False)]
    assert asked  # consulted for lexical searches once the manager is warm


async def test_a_hybrid_search_keeps_its_worker_thread_with_the_model_loaded(
    data_dir: Path, outside_repo: Path, onnx_model: str
) -> None:
    """ADR 0036: on the event loop a hybrid search lost 0.1-2.8 ms p50 under load, so even
    with the session alone and the vectors loaded by an earlier search it runs in a worker
    thread; the lexical search after it still runs on the loop."""
    with MemoryManager.open(data_dir, project=outside_repo, embed_model=onnx_model) as manager:
        manager.store("the deploy runs on Fridays")
        manager.flush()
        assert manager.embedder.wait_ready(120), manager.embedder.state
        recorder = _ThreadRecorder(manager)
        loop_thread = threading.current_thread()
        async with connect(manager.settings, lambda: recorder, "legacy",
                           inline=lambda: True) as client:
            for mode in ("hybrid", "hybrid", "semantic", "lexical"):
                found = await ok(client, "memory_search", {"query": "deploy", "mode": mode})
                assert found["mode"] == mode
    on_loop = [thread is loop_thread for call, thread in recorder.threads if call == "search"]
    assert on_loop == [False, False, False, True]


async def test_without_inline_every_call_runs_in_a_worker_thread(manager: Any) -> None:
    recorder = _ThreadRecorder(manager)
    loop_thread = threading.current_thread()
    async with connect(manager.settings, lambda: recorder, "legacy") as client:
        for _ in range(3):
            await ok(client, "memory_search", {"query": "anything"})
    assert [thread is loop_thread for _, thread in recorder.threads] == [False] * 3
