"""Session-start context: the selection, its budget, the MCP prompt and resource, and the
Claude Code plugin shipped in the repository (its files and the hook command's output)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from mcp import Client

from memvid_mcp.manager import MemoryManager
from memvid_mcp.mcp.budget import estimate_tokens
from memvid_mcp.mcp.context import EMPTY, session_context
from memvid_mcp.mcp.server import build_server

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "integrations" / "claude-code"


@pytest.fixture
def project(tmp_path: Path) -> Any:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with MemoryManager.open(tmp_path / "data", project=repo, embeddings=False) as m:
        ids = {
            "note": m.store("an old note about the build").id,
            "decision": m.store("We release from the main branch", kind="decision").id,
            "pinned": m.store("Never force-push to main", kind="note", pinned=True).id,
            "global": m.store("The user writes British English", kind="preference",
                              scope="global").id,
        }
        old = m.store("Tests run with pytest -x", kind="decision").id
        ids["newer"] = m.store("Tests run with pytest -q", kind="decision", supersedes=old).id
        ids["old"] = old
        yield m, ids, repo


def test_pinned_first_then_decisions_and_preferences_then_the_rest(project: Any) -> None:
    manager, ids, _ = project
    result = session_context(manager, 1500)
    order = [ids[k] for k in ("pinned", "newer", "global", "decision", "note")]
    assert list(result.ids) == order  # newest first within decisions and preferences
    assert ids["old"] not in result.text  # superseded: left out
    assert "Never force-push to main" in result.text and result.truncated is False


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    with MemoryManager.open(tmp_path / "d", project=tmp_path, embeddings=False) as m:
        assert session_context(m).text == EMPTY


@settings_(max_examples=40, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget=st.integers(100, 3000))
def test_the_context_fits_its_budget(project: Any, budget: int) -> None:
    manager, ids, _ = project
    for n in range(3):  # pad with long memories so small budgets must cut
        manager.store(f"long memory {n} " + "データ and words " * 200, kind="decision")
    result = session_context(manager, budget)
    assert estimate_tokens(result.text) <= budget
    assert result.ids[0] == ids["pinned"]


async def _prompt_and_resource(manager: MemoryManager) -> tuple[list[str], str, str]:
    async with Client(build_server(manager.settings, lambda: manager), mode="legacy") as c:
        prompts = [p.name for p in (await c.list_prompts()).prompts]
        prompt = await c.get_prompt("session_context", {"max_tokens": "800"})
        resource = await c.read_resource("memvid://context")
    return (prompts, prompt.messages[0].content.text,  # type: ignore[union-attr]
            resource.contents[0].text)  # type: ignore[union-attr]


def test_the_same_context_as_an_mcp_prompt_and_resource(project: Any) -> None:
    manager, ids, _ = project
    prompts, prompt, resource = anyio.run(_prompt_and_resource, manager)
    assert prompts == ["session_context"]
    assert prompt == session_context(manager, 800).text
    assert resource == session_context(manager).text and ids["pinned"] in resource


# ------------------------------------------------------------------------- the plugin


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _hook_command() -> str:
    hooks = _json(PLUGIN / "hooks" / "hooks.json")["hooks"]["SessionStart"]
    (entry,) = [h for group in hooks for h in group["hooks"]]
    assert entry["type"] == "command" and entry["timeout"] > 0
    return str(entry["command"])


def test_the_plugin_files_are_valid() -> None:
    manifest = _json(PLUGIN / ".claude-plugin" / "plugin.json")
    assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", manifest["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"]) and manifest["description"]
    servers = _json(PLUGIN / ".mcp.json")["mcpServers"]
    assert servers["memory"]["command"] == "memvid-mcp"
    words = shlex.split(_hook_command())
    assert words[:2] == ["memvid-mcp", "context"]  # the server's own program, same version
    assert shutil.which(words[0]) is not None
    market = _json(ROOT / ".claude-plugin" / "marketplace.json")
    (entry,) = market["plugins"]
    assert market["owner"]["name"] and entry["name"] == manifest["name"]
    assert (ROOT / entry["source"] / ".claude-plugin" / "plugin.json").is_file()


def test_the_session_start_hook_prints_the_project_context(project: Any, tmp_path: Path
                                                           ) -> None:
    manager, ids, repo = project
    expected = session_context(manager, 1500).text
    data_dir = manager.settings.data_dir
    manager.close()  # the hook's process opens the store itself
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")
           or k in ("MEMVID_RUN_DIR", "MEMVID_SERVICE_IDLE")}
    env.update(CLAUDE_PROJECT_DIR=str(repo), MEMVID_DATA_DIR=str(data_dir),
               MEMVID_EMBEDDINGS="0", PYTHONPATH=str(ROOT / "src"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(["bash", "-c", _hook_command()], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected
    assert ids["pinned"] in out.stdout and ids["global"] in out.stdout


def test_context_through_the_running_service_looks_at_the_project_asked(tmp_path: Path
                                                                         ) -> None:
    """With a client connected the CLI runs in the service, whose manager serves the CLI's
    working directory: ``--project`` must still pick the repository asked for."""
    import sys

    from memvid_mcp.client.stdio_peer import StdioPeer, structured

    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / ".git").mkdir(parents=True)
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")
           or k in ("MEMVID_RUN_DIR", "MEMVID_SERVICE_IDLE")}
    env.update(MEMVID_EMBEDDINGS="0", PYTHONPATH=str(ROOT / "src"))
    command = [sys.executable, "-m", "memvid_mcp", "--data-dir", str(tmp_path / "data")]
    peer = StdioPeer(command, env=env, cwd=repo)
    try:
        stored = structured(peer.tool("memory_store", text="the repo uses tabs",
                                      kind="preference", pinned=True))
        assert stored["scope"] == "project"
        out = subprocess.run([*command, "--json", "context", "--project", str(repo)], env=env,
                             cwd=elsewhere, capture_output=True, text=True, timeout=60)
        status = subprocess.run([*command, "--json", "service", "--status"], env=env,
                                capture_output=True, text=True, timeout=60)
    finally:
        peer.close()
    assert json.loads(status.stdout)["running"] is True  # the command went through it
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ids"] == [stored["id"]] and "project" in data["scopes"]
