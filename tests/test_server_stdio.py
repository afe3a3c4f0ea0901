"""The stdio server as MCP clients launch it: ``python -m memvid_mcp --data-dir DIR``.

- The SDK's stdio client drives every tool and resource; any stdout line that is not a
  JSON-RPC message would reach the client's message handler as an exception.
- A raw pipe session checks the same byte for byte: every stdout line parses as JSON-RPC 2.0,
  while logs (including a logged tool failure) go to stderr.
- Two instances on one data directory: the second opens read-only (writes are refused with a
  readable tool error, reads work), and the store is intact afterwards.
- A client's mistakes over the real pipe: JSON-RPC -32602 for an unknown tool or prompt and for
  a cursor the server never issued, a one-sentence tool error for bad arguments, and no
  traceback on stderr however many bad requests arrive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from memvid_mcp.core.config import Settings
from memvid_mcp.manager import MemoryManager
from memvid_mcp.mcp.server import TOOL_NAME_PATTERN

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MEMVID_") or k in ("MEMVID_RUN_DIR", "MEMVID_SERVICE_IDLE")}
    env.update({"MEMVID_EMBEDDINGS": "0", **extra})
    return env


def _command(data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "memvid_mcp", "--data-dir", str(data_dir)]


def _params(tmp_path: Path, **env: str) -> StdioServerParameters:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    command = _command(tmp_path / "data")
    return StdioServerParameters(
        command=command[0], args=command[1:], env=_env(**env), cwd=str(work)
    )


class _Recorder:
    """Collects whatever reaches the client's message handler that is not a JSON-RPC message."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    async def __call__(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.errors.append(message)


async def _ok(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_session_with_the_sdk_client(tmp_path: Path, mode: str) -> None:
    recorder = _Recorder()
    with anyio.fail_after(60):
        async with Client(_params(tmp_path), mode=mode, message_handler=recorder) as client:
            assert (client.protocol_version == "2026-07-28") is (mode == "auto")
            tools = (await client.list_tools()).tools
            assert len(tools) == 6
            assert all(TOOL_NAME_PATTERN.fullmatch(t.name) for t in tools)

            stored = await _ok(client, "memory_store", {"text": "stdio works end to end"})
            assert stored["scope"] == "global"
            found = await _ok(client, "memory_search", {"q": "stdio end to end"})
            assert found["results"][0]["id"] == stored["id"]
            got = await _ok(client, "memory_get", {"ids": stored["id"]})
            assert got["memories"][0]["text"] == "stdio works end to end"
            listed = await _ok(client, "memory_list", {})
            assert [m["id"] for m in listed["memories"]] == [stored["id"]]
            stats = await _ok(client, "memory_stats", {})
            assert stats["scopes"][0]["memories"] == 1
            resource = await client.read_resource(f"memvid://memory/{stored['id']}")
            assert "stdio works" in resource.contents[0].text  # type: ignore[union-attr]
            bad = await client.call_tool("memory_search", {"query": "x", "limit": 1000})
            assert bad.is_error
            deleted = await _ok(client, "memory_delete", {"ids": [stored["id"]]})
            assert deleted["deleted"] == 1
    assert recorder.errors == []  # every stdout line was a JSON-RPC message


def _rpc(proc: subprocess.Popen[bytes], message: dict[str, Any]) -> dict[str, Any] | None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()
    if "id" not in message:
        return None
    line = proc.stdout.readline()
    reply: dict[str, Any] = json.loads(line)
    assert reply["jsonrpc"] == "2.0" and reply["id"] == message["id"]
    return reply


@pytest.mark.timeout(60)
def test_every_stdout_line_is_json_rpc_and_logs_go_to_stderr(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    proc = subprocess.Popen(
        _command(tmp_path / "data"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # the single-process server: through the service its logs go to the service's log
        env=_env(MEMVID_LOG_LEVEL="INFO", MEMVID_SERVICE="0"),
        cwd=tmp_path / "work",
    )
    try:
        init = _rpc(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            },
        )
        assert init is not None and init["result"]["serverInfo"]["name"] == "memvid-mcp"
        _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        listed = _rpc(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert listed is not None and len(listed["result"]["tools"]) == 6
        store = {"name": "memory_store", "arguments": {"text": "raw pipe"}}
        stored = _rpc(proc, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": store})
        assert stored is not None and stored["result"]["isError"] is False
        get = {"name": "memory_get", "arguments": {"ids": "bogus"}}
        bad = _rpc(proc, {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": get})
        assert bad is not None and bad["result"]["isError"] is True
        rest, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in rest.decode().splitlines():  # anything written after the last answer
        message = json.loads(line)
        assert message["jsonrpc"] == "2.0"
    assert proc.returncode == 0
    assert b"memory_get" in stderr  # the failed call was logged, on stderr


def _initialize(proc: subprocess.Popen[bytes]) -> None:
    init = _rpc(proc, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})  # fmt: skip
    assert init is not None and "result" in init
    _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})


@pytest.mark.timeout(60)
def test_client_mistakes_over_stdio_are_answered_without_tracebacks(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    proc = subprocess.Popen(_command(tmp_path / "data"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                            cwd=tmp_path / "work")  # fmt: skip
    bad_requests = [
        ("tools/call", {"name": "memory_serch", "arguments": {"query": "x"}}),
        ("prompts/get", {"name": "summarise"}),
        ("tools/list", {"cursor": "bogus"}),
        ("resources/list", {"cursor": "bogus"}),
        ("prompts/list", {"cursor": "bogus"}),
        ("resources/templates/list", {"cursor": "bogus"}),
    ]
    try:
        _initialize(proc)
        next_id = 1
        for _ in range(5):  # a burst: the log must not grow a traceback per request
            for method, params in bad_requests:
                reply = _rpc(proc, {"jsonrpc": "2.0", "id": next_id, "method": method,
                                    "params": params})  # fmt: skip
                next_id += 1
                assert reply is not None and reply["error"]["code"] == -32602, (method, reply)
            call = {"name": "memory_search", "arguments": {"query": "x", "limit": "ten"}}
            reply = _rpc(proc, {"jsonrpc": "2.0", "id": next_id, "method": "tools/call",
                                "params": call})  # fmt: skip
            next_id += 1
            assert reply is not None and reply["result"]["isError"] is True
            text = reply["result"]["content"][0]["text"]
            assert text == "limit must be an integer from 1 to 100 (got 'ten')"
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert b"Traceback" not in stderr and b"ERROR" not in stderr, stderr.decode()[-2000:]


async def test_a_second_client_on_the_same_store_writes_too(tmp_path: Path) -> None:
    """Through the service, every client of a data directory reads and writes (0.1.0 made
    the second one read-only)."""
    with anyio.fail_after(60):
        async with Client(_params(tmp_path), mode="legacy") as a:
            stored = await _ok(a, "memory_store", {"text": "written by the first client"})
            async with Client(_params(tmp_path), mode="legacy") as b:
                second = await _ok(b, "memory_store", {"text": "written by the second"})
                found = await _ok(b, "memory_search", {"query": "first client"})
                assert [h["id"] for h in found["results"]][:1] == [stored["id"]]
            got = await _ok(a, "memory_get", {"ids": second["id"]})
            assert got["memories"][0]["text"] == "written by the second"


async def test_without_the_service_a_second_instance_opens_read_only(tmp_path: Path) -> None:
    first = _params(tmp_path, MEMVID_SERVICE="0")
    second = _params(tmp_path, MEMVID_SERVICE="0", MEMVID_LOCK_TIMEOUT="0.5")
    with anyio.fail_after(60):
        async with Client(first, mode="legacy") as a:
            stored = await _ok(a, "memory_store", {"text": "written by the first instance"})
            async with Client(second, mode="legacy") as b:
                refused = await b.call_tool("memory_store", {"text": "from the second"})
                assert refused.is_error
                text = refused.content[0].text.lower()  # type: ignore[union-attr]
                assert "read-only" in text or "in use" in text
                found = await _ok(b, "memory_search", {"query": "first instance"})
                assert [h["id"] for h in found["results"]] == [stored["id"]]
            more = await _ok(a, "memory_store", {"text": "the first still writes"})
            assert more["deduplicated"] is False
    settings = Settings(data_dir=tmp_path / "data", embeddings=False, project=tmp_path / "work")
    with MemoryManager(settings) as manager:
        assert manager.stats("global")[0].memories == 2
