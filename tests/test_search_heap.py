"""The serving process's malloc arena cap (ADR 0034)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "from memvid_mcp.search.heap import limit_malloc_arenas; print(limit_malloc_arenas())"


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    return subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env},
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_server_caps_its_malloc_arenas_unless_the_user_chose_a_number() -> None:
    assert _probe() == "True"
    assert _probe(MALLOC_ARENA_MAX="4") == "False"  # the user's setting wins


def test_both_serving_entry_points_cap_the_arenas() -> None:
    import inspect

    from memvid_mcp.mcp import server
    from memvid_mcp.service import daemon

    assert "limit_malloc_arenas()" in inspect.getsource(daemon.run_service)
    assert "limit_malloc_arenas()" in inspect.getsource(server.run_server)
