"""The serving process's malloc arena cap (ADR 0034)."""

from __future__ import annotations

import ast
import inspect
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

PROBE = "from memvid_mcp.search.heap import limit_malloc_arenas; print(limit_malloc_arenas())"
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    return subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_a_server_caps_its_malloc_arenas_unless_the_user_chose_a_number() -> None:
    assert _probe() == "True"
    assert _probe(MALLOC_ARENA_MAX="4") == "False"  # the user's setting wins


def _calls(function: Callable[..., Any]) -> set[str]:
    """The names of the functions ``function``'s body calls (a commented-out call is none)."""
    tree = ast.parse(inspect.getsource(function).strip())
    return {node.func.id for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


def test_both_serving_entry_points_cap_the_arenas() -> None:
    from memvid_mcp.mcp import server
    from memvid_mcp.service import daemon

    assert "limit_malloc_arenas" in _calls(daemon.run_service)
    assert "limit_malloc_arenas" in _calls(server.run_server)
