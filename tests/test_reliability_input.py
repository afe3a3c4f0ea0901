"""Hostile and malformed input (issue 6): only the package's own typed errors may escape.

Property-based over the Python API (store/search/get/delete/list), over import lines, and over
the six MCP tools through the SDK's in-memory client (a malformed call is a tool error, never a
protocol crash). Then path traversal through scope names, ids, resource URIs and export paths,
and secret redaction as the MCP store tool reports it. The WAL, manifest, .mvi and framing
parsers have their own property tests in tests/test_wal.py and tests/test_video_framing.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.shared.exceptions import MCPError

from memvid_mcp.core.config import Settings
from memvid_mcp.core.errors import MemvidError, ScopeError, StorageError, ValidationError
from memvid_mcp.importers import import_jsonl
from memvid_mcp.manager import MemoryManager
from memvid_mcp.mcp.server import build_server
from memvid_mcp.transfer import export_jsonl

# RELIABILITY_FUZZ_SCALE=20 runs 20x the examples (the figures in docs/reliability.md).
SCALE = int(os.environ.get("RELIABILITY_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=60 * SCALE, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
TOOL_FUZZ = settings(max_examples=12 * SCALE, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", " ", "../x", "../../etc/passwd", "global", "project", "committed",
                     "01ARZ3NDEKTSV4RRFFQ69G5FAV", "2026-01-01", "hybrid", "\ud800", "a,b",
                     "x" * 300, "memvid://memory/../../x", "/etc/passwd", "NaN"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)
STORE_FIELDS = ["title", "tags", "kind", "scope", "metadata", "id", "source", "ttl_seconds",
                "expires_at", "pinned"]
SEARCH_FIELDS = ["k", "scopes", "tags_any", "tags_all", "kind", "since", "until", "pinned",
                 "mode", "cursor", "snippet_chars"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryManager]:
    root = tmp_path_factory.mktemp("fuzz")
    work = root / "work"
    work.mkdir()
    with MemoryManager.open(root / "data", project=work, embeddings=False) as m:
        m.store("a seed memory about deployments on tuesday", tags=["ops"])
        yield m


def _only_typed_errors(call: Any) -> None:
    with contextlib.suppress(MemvidError):  # the package's own, typed, readable error
        call()


def _outside(root: Path, data_dir: Path) -> set[Path]:
    """Every path under ``root`` except the data directory: must not change."""
    return {p for p in root.rglob("*") if not p.is_relative_to(data_dir)}


# ---------------------------------------------------------------- Python API


@FUZZ
@given(text=values, fields=st.dictionaries(st.sampled_from(STORE_FIELDS), values, max_size=4))
def test_store_fuzz(shared: MemoryManager, text: Any, fields: dict[str, Any]) -> None:
    _only_typed_errors(lambda: shared.store(text, **fields))


@FUZZ
@given(query=values, fields=st.dictionaries(st.sampled_from(SEARCH_FIELDS), values, max_size=4))
def test_search_fuzz(shared: MemoryManager, query: Any, fields: dict[str, Any]) -> None:
    _only_typed_errors(lambda: shared.search(query, **fields))


@FUZZ
@given(ids=values, scopes=values)
def test_get_delete_fuzz(shared: MemoryManager, ids: Any, scopes: Any) -> None:
    _only_typed_errors(lambda: shared.get(ids, scopes=scopes))
    _only_typed_errors(lambda: shared.delete(ids, scopes=scopes))


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["scope", "limit", "cursor", "kind", "tags_any"]),
                              values, max_size=4))
def test_list_fuzz(shared: MemoryManager, fields: dict[str, Any]) -> None:
    _only_typed_errors(lambda: shared.list(**fields))


@FUZZ
@given(lines=st.lists(st.one_of(
    st.text(max_size=60),
    st.dictionaries(st.sampled_from(["text", "id", "title", "tags", "kind", "scope",
                                     "metadata", "created_at", "updated_at", "expires_at",
                                     "pinned", "source"]), values, max_size=6)
    .map(lambda d: json.dumps(d, ensure_ascii=False, allow_nan=True)),
    values.map(lambda v: json.dumps(v, allow_nan=True)),
), max_size=5))
def test_import_lines_fuzz(shared: MemoryManager, tmp_path_factory: pytest.TempPathFactory,
                           lines: list[str]) -> None:
    path = tmp_path_factory.mktemp("import") / "in.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    _only_typed_errors(lambda: import_jsonl(shared, path))


def test_import_of_non_utf8_and_missing_files_is_a_clear_error(tmp_path: Path,
                                                               manager: MemoryManager) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe{\"text\": 1}\n")
    with pytest.raises(ValidationError, match="UTF-8"):
        import_jsonl(manager, bad)
    with pytest.raises(StorageError, match=r"missing\.jsonl"):
        import_jsonl(manager, tmp_path / "missing.jsonl")
    with pytest.raises(ValidationError, match=r"in\.jsonl:2"):
        (tmp_path / "in.jsonl").write_text('{"text": "fine line"}\n{"text": 5}\n')
        import_jsonl(manager, tmp_path / "in.jsonl")


# ----------------------------------------------------------------- MCP tools

TOOL_ARGS = {
    "memory_store": ["text", "title", "tags", "kind", "scope", "metadata", "id", "ttl_seconds",
                     "pinned", "source", "expires_at"],
    "memory_search": ["query", "q", "k", "limit", "scopes", "tags", "kind", "since", "until",
                      "mode", "cursor", "max_chars", "pinned"],
    "memory_get": ["ids", "id", "scopes"],
    "memory_delete": ["ids", "id", "scopes"],
    "memory_list": ["scope", "limit", "cursor", "kind", "tags"],
    "memory_stats": ["scope"],
}
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
              st.sampled_from(["../x", "../../etc/passwd", "", "global", "x" * 400])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
tool_calls = st.sampled_from(sorted(TOOL_ARGS)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.dictionaries(st.sampled_from([*TOOL_ARGS[name], "bogus"]), json_values, max_size=4),
    )
)


@pytest.fixture(scope="module")
def tool_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("tools")
    (root / "work").mkdir()
    return Settings(data_dir=root / "data", embeddings=False, project=root / "work")


@pytest.fixture(scope="module")
def tool_manager(tool_settings: Settings) -> Iterator[MemoryManager]:
    m = MemoryManager(tool_settings)
    yield m
    m.close()


@TOOL_FUZZ
@given(calls=st.lists(tool_calls, min_size=1, max_size=12))
def test_tool_calls_fuzz(tool_settings: Settings, tool_manager: MemoryManager,
                         calls: list[tuple[str, dict[str, Any]]]) -> None:
    async def run() -> None:
        server = build_server(tool_settings, lambda: tool_manager)
        with anyio.fail_after(30):
            async with Client(server, mode="legacy") as client:
                for name, args in calls:
                    result = await client.call_tool(name, args)  # MCPError here = a crash
                    assert result.content, (name, args)
                    if not result.is_error:
                        assert result.structured_content is not None

    anyio.run(run)


def test_malformed_tool_calls_are_tool_errors(tool_settings: Settings,
                                              tool_manager: MemoryManager) -> None:
    async def run() -> list[str]:
        server = build_server(tool_settings, lambda: tool_manager)
        out = []
        async with Client(server, mode="legacy") as client:
            for name, args in [("memory_store", {}), ("memory_store", {"text": 5}),
                               ("memory_store", {"text": "x", "scope": "../x"}),
                               ("memory_get", {"ids": "../../etc/passwd"}),
                               ("memory_delete", {"ids": ["../../etc/passwd"]}),
                               ("memory_search", {"query": ""}),
                               ("memory_list", {"limit": -1})]:
                result = await client.call_tool(name, args)
                assert result.is_error, (name, args)
                out.append(result.content[0].text)  # type: ignore[union-attr]
            try:  # not a tool: a tool error or the protocol's own error, never a crash
                unknown = await client.call_tool("memory_format_disk", {})
                assert unknown.is_error
            except MCPError:
                pass
            assert (await client.list_tools()).tools  # the session is still alive
        return out

    messages = anyio.run(run)
    assert all(messages) and not any("Traceback" in m for m in messages)


# ------------------------------------------------------------- path traversal


@pytest.mark.parametrize("scope", ["../x", "../../etc", "/tmp", "global/../../x", "GLOBAL"])
def test_traversal_through_scope_names_is_refused(tmp_path: Path, manager: MemoryManager,
                                                  scope: str) -> None:
    before = _outside(tmp_path, manager.settings.data_dir)
    with pytest.raises((ScopeError, ValidationError)):
        manager.store("should not be written", scope=scope)
    with pytest.raises((ScopeError, ValidationError)):
        manager.search("anything", scopes=[scope])
    assert _outside(tmp_path, manager.settings.data_dir) == before


@pytest.mark.parametrize("memory_id", ["../../etc/passwd", "..", "01ARZ3NDEKTSV4RRFFQ69G5FA/",
                                       "/etc/passwd", "01ARZ3NDEKTSV4RRFFQ69G5FAV/../x"])
def test_traversal_through_ids_is_refused(tmp_path: Path, manager: MemoryManager,
                                          memory_id: str) -> None:
    manager.store("a memory that must survive")
    before = _outside(tmp_path, manager.settings.data_dir)
    for call in (lambda: manager.get(memory_id), lambda: manager.delete(memory_id),
                 lambda: manager.store("x", id=memory_id)):
        with pytest.raises(ValidationError, match="not a valid memory id"):
            call()
    assert _outside(tmp_path, manager.settings.data_dir) == before
    assert manager.stats()[0].memories == 1


def test_traversal_through_resource_uris_is_refused(tool_settings: Settings,
                                                    tool_manager: MemoryManager) -> None:
    async def run() -> None:
        server = build_server(tool_settings, lambda: tool_manager)
        async with Client(server, mode="legacy") as client:
            for uri in ("memvid://memory/../../x", "memvid://memory/..%2F..%2Fetc%2Fpasswd",
                        "memvid://memory/%2e%2e", "memvid://../../etc/passwd"):
                with pytest.raises(MCPError):
                    await client.read_resource(uri)
            assert (await client.list_tools()).tools

    anyio.run(run)


def test_export_into_a_missing_directory_is_a_clear_error(tmp_path: Path,
                                                          manager: MemoryManager) -> None:
    manager.store("exported memory")
    target = tmp_path / "no" / "such" / "dir" / "out.jsonl"
    with pytest.raises(StorageError, match=r"out\.jsonl"):
        export_jsonl(manager, target)
    assert not (tmp_path / "no").exists()


# ------------------------------------------------------------------ redaction


def test_store_tool_reports_redacted_secrets(tool_settings: Settings,
                                             tool_manager: MemoryManager) -> None:
    secret = "ghp_" + "A1b2C3d4" * 5
    key = "AKIA" + "ABCDEFGHIJKLMNOP"

    async def run() -> tuple[dict[str, Any], str]:
        server = build_server(tool_settings, lambda: tool_manager)
        async with Client(server, mode="legacy") as client:
            stored = await client.call_tool(
                "memory_store", {"text": f"deploy token {secret} and aws {key} for staging"})
            assert not stored.is_error and stored.structured_content is not None
            got = await client.call_tool("memory_get", {"ids": stored.structured_content["id"]})
            assert got.structured_content is not None
            return stored.structured_content, got.structured_content["memories"][0]["text"]

    stored, text = anyio.run(run)
    assert stored["redactions"] == ["aws_access_key", "github_token"]
    assert secret not in text and key not in text
    assert "[REDACTED:github_token]" in text and "[REDACTED:aws_access_key]" in text
    data = tool_settings.data_dir
    on_disk = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert secret.encode() not in on_disk and key.encode() not in on_disk


def test_redaction_can_be_turned_off(tmp_path: Path, outside_repo: Path) -> None:
    secret = "sk-" + "x" * 30
    with MemoryManager.open(tmp_path / "d", project=outside_repo, embeddings=False,
                            redact_secrets=False) as m:
        result = m.store(f"key {secret}")
        assert result.redactions == ()
        assert m.get(result.id).memories[0].text == f"key {secret}"
    assert os.environ.get("MEMVID_REDACT_SECRETS") is None


# ------------------------------------------------------------------------ HTTP

STORE_CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
              "params": {"name": "memory_store",
                         "arguments": {"text": "hostile-request-text-4f1e never stored"}}}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_hostile_http_requests_get_the_right_status_and_store_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, anyio_backend: str) -> None:
    import httpx
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from memvid_mcp.mcp.server import build_http_app
    from test_server_http import HEADERS, INITIALIZE, TOKEN, serve

    (tmp_path / "work").mkdir()
    manager = MemoryManager(Settings(data_dir=tmp_path / "data", embeddings=False,
                                     project=tmp_path / "work"))
    app = build_http_app(build_server(manager.settings, lambda: manager), host="0.0.0.0",
                         token=TOKEN, max_body_bytes=4096)
    auth = {**HEADERS, "Authorization": f"Bearer {TOKEN}"}
    secret_text = "durable-text-that-must-not-be-logged-91c3"
    try:
        with caplog.at_level(logging.DEBUG):
            async with serve(app) as url:
                async with httpx.AsyncClient(timeout=10) as http:
                    cases = [
                        ("no token", STORE_CALL, HEADERS, 401),
                        ("wrong token", STORE_CALL,
                         {**HEADERS, "Authorization": "Bearer not-the-token"}, 401),
                        ("token in the query", STORE_CALL, HEADERS, 401),
                        ("foreign Origin", STORE_CALL,
                         {**auth, "Origin": "https://evil.example"}, 403),
                        ("oversized body",
                         {**STORE_CALL, "params": {**STORE_CALL["params"],  # type: ignore[dict-item]
                                                   "pad": "x" * 8192}}, auth, 413),
                    ]
                    for label, body, headers, status in cases:
                        target = f"{url}?token={TOKEN}" if "query" in label else url
                        response = await http.post(target, json=body, headers=headers)
                        assert response.status_code == status, label
                    for raw in (b"{not json", b"[]", b'{"jsonrpc": "2.0"}', b"null",
                                b'{"jsonrpc": "1.0", "id": 1, "method": "initialize"}'):
                        response = await http.post(url, content=raw, headers=auth)
                        assert 400 <= response.status_code < 500, raw
                    ok = await http.post(url, json=INITIALIZE, headers=auth)
                    assert ok.status_code == 200  # the server is still healthy
                async with (
                    httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"},
                                       timeout=30) as http2,
                    Client(streamable_http_client(url, http_client=http2)) as client,
                ):
                    stored = await client.call_tool("memory_store", {"text": secret_text})
                    assert not stored.is_error
                    assert stored.structured_content is not None
                    got = await client.call_tool("memory_get",
                                                 {"ids": stored.structured_content["id"]})
                    assert not got.is_error
        memories = manager.list(limit=10).memories
        assert len(memories) == 1  # only the authorised store reached the store
        assert manager.get(memories[0].id).memories[0].text == secret_text
    finally:
        manager.close()
    client_side = ("httpx", "httpcore", "mcp.client")  # this test's own clients
    server_records = [r for r in caplog.records if not r.name.startswith(client_side)]
    assert any(r.name.startswith(("uvicorn", "mcp.server")) for r in server_records)
    logged = " ".join(f"{r.getMessage()} {r.args}" for r in server_records)
    assert TOKEN not in logged
    assert secret_text not in logged and "hostile-request-text" not in logged


# ---------------------------------------------- parsers not covered elsewhere


@FUZZ
@given(data=st.binary(max_size=600), flip=st.integers(0, 10_000), cut=st.integers(0, 10_000))
def test_snapshot_and_body_parsers_raise_only_corruption(
        tmp_path_factory: pytest.TempPathFactory, data: bytes, flip: int, cut: int) -> None:
    import zstandard

    from memvid_mcp.core.errors import CorruptionError
    from memvid_mcp.core.models import MemoryRecord
    from memvid_mcp.storage.filestore import decode_body, encode_body
    from memvid_mcp.store.snapshot import read_snapshot, write_snapshot

    root = tmp_path_factory.mktemp("parse")
    good = root / "good.zst"
    record = MemoryRecord.from_state({
        "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "body_id": "01ARZ3NDEKTSV4RRFFQ69G5FAW",
        "title": None, "kind": "note", "tags": [], "scope": "global", "metadata": {},
        "source": None, "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00", "expires_at": None, "pinned": False,
        "sha256": "0" * 64, "size": 1})
    write_snapshot(good, 3, [record])
    blobs = [data, zstandard.ZstdCompressor().compress(data)]
    sound = bytearray(good.read_bytes())
    sound[flip % len(sound)] ^= 0x5A
    blobs += [bytes(sound), good.read_bytes()[: cut % len(sound)]]
    body = bytearray(encode_body(data or b"x"))
    body[flip % len(body)] ^= 0x5A
    for blob in blobs:
        path = root / "snap.zst"
        path.write_bytes(blob)
        with contextlib.suppress(CorruptionError):
            read_snapshot(path)
    for blob in (data, bytes(body), encode_body(data)[: cut % (len(data) + 20)]):
        with contextlib.suppress(CorruptionError):
            decode_body(blob, "x.mvb")
