"""Memories that replace memories, as a model and a person use them: memory_store's
``supersedes``, search leaving the old ones out (``include_superseded`` brings them back),
get showing the chain both ways, nothing destroyed; the same through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from memvid_mcp.core.errors import ValidationError
from memvid_mcp.manager import MemoryManager
from memvid_mcp.mcp.server import build_server

pytestmark = pytest.mark.usefixtures("engine")  # embedded and team engine (ADR 0025)


async def _call(manager: MemoryManager, calls: list[tuple[str, dict[str, Any]]]
                ) -> list[dict[str, Any]]:
    out = []
    async with Client(build_server(manager.settings, lambda: manager), mode="legacy") as client:
        for name, args in calls:
            result = await client.call_tool(name, args)
            assert not result.is_error, result.content
            assert result.structured_content is not None
            out.append(result.structured_content)
    return out


def test_a_model_replaces_a_memory_and_the_old_one_stays_reachable(
    manager: MemoryManager,
) -> None:
    old = manager.store("The team deploys on Tuesdays", kind="decision")
    (new, found, both, got) = anyio.run(_call, manager, [
        ("memory_store", {"text": "The team deploys on Thursdays since March",
                          "kind": "decision", "supersedes": [old.id]}),
        ("memory_search", {"query": "when does the team deploy"}),
        ("memory_search", {"query": "when does the team deploy", "include_superseded": True}),
        ("memory_get", {"ids": [old.id]}),
    ])
    assert [h["id"] for h in found["results"]] == [new["id"]]
    assert {h["id"] for h in both["results"]} == {old.id, new["id"]}
    assert got["memories"][0]["superseded_by"] == new["id"]  # kept, with its successor
    (newer,) = anyio.run(_call, manager, [("memory_get", {"ids": new["id"]})])
    assert newer["memories"][0]["supersedes"] == [old.id]


def test_the_new_memory_goes_to_the_scope_of_the_one_it_replaces(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with MemoryManager.open(tmp_path / "data", project=repo, embeddings=False) as m:
        old = m.store("prefers tabs", scope="global", kind="preference")
        new = m.store("prefers spaces now", supersedes=old.id)  # default would be project
        assert new.scope == "global"
        with pytest.raises(ValidationError, match="supersedes: memories of scope global"):
            m.store("prefers both", scope="project", supersedes=[new.id])
        with pytest.raises(ValidationError, match="supersedes: no memory"):
            m.store("x", supersedes="01ARZ3NDEKTSV4RRFFQ69G5FAV")
        assert [h.id for h in m.search("prefers", mode="lexical").results] == [new.id]


def test_the_cli_stores_a_replacement_and_searches_with_or_without_the_old(
    tmp_path: Path,
) -> None:
    (tmp_path / "work").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")
           or k in ("MEMVID_RUN_DIR", "MEMVID_SERVICE_IDLE")}
    env.update(MEMVID_EMBEDDINGS="0", PYTHONPATH=str(Path(__file__).parents[1] / "src"))

    def cli(*args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "memvid_mcp", "--data-dir",
                              str(tmp_path / "data"), "--json", *args], env=env,
                             cwd=tmp_path / "work", capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    old = cli("store", "lunch is at noon")["id"]
    new = cli("store", "lunch is at one", "--supersedes", old)["id"]
    assert [h["id"] for h in cli("search", "lunch", "--mode", "lexical")["results"]] == [new]
    everything = cli("search", "lunch", "--mode", "lexical", "--include-superseded")
    assert {h["id"] for h in everything["results"]} == {old, new}
    got = cli("get", old, new)["memories"]
    assert got[0]["superseded_by"] == new and got[1]["supersedes"] == [old]
