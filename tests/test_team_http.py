"""benchmarks/bench_team_http.py --quick as a test (ADR 0025 addendum): two real
``memvid-mcp serve --transport http`` processes on the team engine, real MCP SDK clients on
each storing at once, then one instance SIGKILLed mid-seal. Asserts the benchmark's checks:
nothing acknowledged lost, identical texts one memory with one id, every memory readable from
both instances, the other instance completes the seal, a scope-limited token gets a clear
error."""

from __future__ import annotations

import sys
from pathlib import Path

from team_fixtures import TeamServers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_team_http


def test_two_http_instances_share_one_memory_and_survive_a_kill_mid_seal(
        team_servers: TeamServers, tmp_path: Path) -> None:
    res = bench_team_http.run(team_servers, tmp_path, memories=200, clients=3, shared=30,
                              max_seconds=280)
    assert res.failures() == []
    assert res.acknowledged == 400 and res.store_errors == []
    assert res.lost == {"a": 0, "b": 0}
    assert res.shared_same_id == 30 and res.rows == res.distinct_texts == 370
    assert res.killed_mid_seal and res.pending_at_kill > 0
    assert res.completed_by_other and res.lost_after_kill == 0
    assert "may not use scope 'project'" in res.scope_error
