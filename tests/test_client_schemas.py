"""tools/list as every MCP client accepts it, checked on the real answer.

Cursor's tool gateway rejects ``anyOf``/``oneOf``/``allOf``, Gemini rejects ``$ref``/``$defs``;
Claude Code defers schemas, so the whole answer stays small (<= 8 KB) and the server's
``instructions`` name what a model needs. Checked through the in-memory client (both
protocols) and once over stdio, as a client launches the server.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from memvid_mcp.client.stdio_peer import StdioPeer
from memvid_mcp.core.config import Settings
from memvid_mcp.mcp.portable import BANNED_KEYWORDS, banned_keywords, input_schema
from memvid_mcp.mcp.server import build_server

pytestmark = pytest.mark.anyio

MAX_TOOLS_LIST_BYTES = 8 * 1024
REQUIRED = {"memory_store": ["text"], "memory_search": ["query"], "memory_get": ["ids"],
            "memory_delete": ["ids"]}


def check_tools_list(result: dict[str, Any]) -> None:
    """Every rule a client imposes, on one tools/list result as sent on the wire."""
    wire = json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert len(wire) <= MAX_TOOLS_LIST_BYTES, f"tools/list is {len(wire)} bytes"
    assert banned_keywords(result) == []
    for keyword in BANNED_KEYWORDS:
        assert f'"{keyword}"' not in wire.decode()
    tools = {t["name"]: t for t in result["tools"]}
    for name, tool in tools.items():
        schema = tool["inputSchema"]
        assert schema.get("required", []) == REQUIRED.get(name, []), name
        for prop_name, prop in schema["properties"].items():
            # one plain type per argument: lists are lists, optional means not required
            assert isinstance(prop.get("type"), str), f"{name}.{prop_name}: {prop}"
            if prop["type"] == "array":
                assert prop["items"] == {"type": "string"}
            assert prop.get("description"), f"{name}.{prop_name} has no description"
        assert "outputSchema" in tool and tool["outputSchema"]["properties"]
    assert not {"q", "k"} & set(tools["memory_search"]["inputSchema"]["properties"])
    assert "k" not in tools["memory_list"]["inputSchema"]["properties"]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_tool_list_is_small_and_uses_nothing_a_client_rejects(
    tmp_path: Path, mode: str
) -> None:
    server = build_server(Settings(data_dir=tmp_path / "never-opened"))
    async with Client(server, mode=mode) as client:
        listed = await client.list_tools()
    check_tools_list(listed.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert not (tmp_path / "never-opened").exists()


def test_the_tool_list_over_stdio_is_the_same(tmp_path: Path) -> None:
    """The bytes a real client receives through the relay and the service."""
    (tmp_path / "work").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")
           or k in ("MEMVID_RUN_DIR", "MEMVID_SERVICE_IDLE")}
    env.update(MEMVID_EMBEDDINGS="0", PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    peer = StdioPeer([sys.executable, "-m", "memvid_mcp", "--data-dir", str(tmp_path / "d")],
                     env=env, cwd=tmp_path / "work")
    try:
        instructions = peer.initialize_reply["result"]["instructions"]
        reply = peer.request("tools/list", {})
    finally:
        peer.close()
    check_tools_list(reply["result"])
    # With schemas deferred a model starts from the tool names and these instructions.
    for needed in ("memory_search", "memory_store", "memory_get", "supersedes", "project",
                   "global", "session_context"):
        assert needed in instructions


def test_a_union_keeps_its_first_shape_and_references_are_inlined() -> None:
    schema = {
        "$defs": {"Inner": {"title": "Inner", "type": "object",
                            "properties": {"x": {"type": "integer", "title": "X"}}}},
        "properties": {
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                               {"type": "string"}, {"type": "null"}],
                     "default": None, "description": "d", "title": "Tags"},
            "inner": {"$ref": "#/$defs/Inner"},
            "q": {"type": "string"},
        },
        "required": [],
        "type": "object",
    }
    out = input_schema(schema, hidden={"q"}, required=["inner"])
    assert out == {"properties": {"tags": {"type": "array", "items": {"type": "string"},
                                           "description": "d"},
                                  "inner": {"type": "object",
                                            "properties": {"x": {"type": "integer"}}}},
                   "required": ["inner"], "type": "object"}
