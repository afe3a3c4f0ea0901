"""``memvid-mcp migrate --to-database / --from-database`` (ADR 0025 addendum) against the real
servers: a local scope moves into the team engine and back with every field, supersede link
and vector kept, the source untouched, and a migration SIGKILLed midway completed by a rerun
with nothing lost and nothing duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memvid_mcp.manager import MemoryManager
from memvid_mcp.team_migrate import migrate_from_database, migrate_to_database
from team_fixtures import BUCKET, TeamServers, create_database

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _psql(url: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def _fresh(servers: TeamServers, tag: str) -> tuple[str, str]:
    name = f"mig_{tag}_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    return create_database(servers, name), f"s3://{BUCKET}/{name}"


def _fields(m: MemoryManager) -> dict[str, tuple[object, ...]]:
    out = {}
    for record in m._scope("global").records():
        out[record.id] = (record.sha256, record.created_at, record.updated_at, record.tags,
                          record.pinned, record.expires_at, record.supersedes,
                          record.superseded_by, record.title, record.kind, record.metadata)
    return out


def test_a_scope_moves_into_the_team_engine_and_back_with_fields_links_and_vectors(
        team_servers: TeamServers, converted_model: tuple[str, Path], tmp_path: Path) -> None:
    model, cache = converted_model
    database, segments = _fresh(team_servers, "rt")
    local = dict(project=tmp_path, embed_model=model, cache_dir=cache)
    with MemoryManager.open(tmp_path / "local", backend="video", **local) as m:
        old = m.store("the deploy runs on Fridays", tags=["ops"], title="deploy")
        new = m.store("the deploy runs on Tuesdays", supersedes=[old.id])
        pinned = m.store("never force-push main", pinned=True, kind="rule")
        soon = m.store("the freeze ends next week",
                       expires_at=(datetime.now(UTC) + timedelta(days=7)).isoformat())
        for i in range(40):
            m.store(f"runbook step {i}: check the dashboards for service {i}")
        m.flush()  # vectors and a sealed segment
        files = {p: p.stat().st_mtime_ns for p in (tmp_path / "local").rglob("*")
                 if p.is_file() and "segments" in p.parts}

    with MemoryManager.open(tmp_path / "local", background_embedding=False, **local) as m:
        before = _fields(m)  # as stored on disk
        assert len(before) == 44
        report = migrate_to_database(m, database, segments, scope="global")
        assert (report.memories, report.copied, report.already_there) == (44, 44, 0)
        assert report.vectors_copied == 44  # carried over: no model was loaded here
        assert m.embedder.state != "ready"
        assert "unchanged" in report.source_next and "delete" in report.source_next
        again = migrate_to_database(m, database, segments, scope="global")
        assert (again.copied, again.already_there, again.vectors_copied) == (0, 44, 0)
    assert _psql(database, "SELECT count(*), count(embedding), count(DISTINCT sha256) FROM "
                 "memvid_memories") == [(44, 44, 44)]
    assert _psql(database, "SELECT count(*) FROM memvid_pending") == [(0,)]  # sealed
    assert {p: p.stat().st_mtime_ns for p in files} == files  # the source's segments untouched

    team = dict(database_url=database, segment_url=segments, embeddings=False)
    with MemoryManager.open(tmp_path / "host", project=tmp_path, **team) as t:
        assert _fields(t) == before
        assert t.get(new.id).memories[0].text == "the deploy runs on Tuesdays"
        assert t.get(old.id).memories[0].superseded_by == new.id
        assert t.get(pinned.id).memories[0].pinned
        assert t.get(soon.id).memories[0].expires_at is not None

    with MemoryManager.open(tmp_path / "back", background_embedding=False, **local) as m:
        report = migrate_from_database(m, database, segments, scope="global")
        assert (report.memories, report.copied, report.vectors_copied) == (44, 44, 44)
        assert _fields(m) == before
        store = m._scope("global")
        assert all(store.vectors.has(r.body_id) for r in store.records())
        assert m.get(pinned.id).memories[0].text == "never force-push main"

    # edited in the team after the move: migrating the stale local copy again keeps the edit
    with MemoryManager.open(tmp_path / "host", project=tmp_path, **team) as t:
        t.store("never force-push main or release branches", id=pinned.id, pinned=True,
                kind="rule")
    with MemoryManager.open(tmp_path / "local", background_embedding=False, **local) as m:
        again = migrate_to_database(m, database, segments, scope="global")
        assert (again.copied, again.kept_newer, again.already_there) == (0, 1, 43)
    with MemoryManager.open(tmp_path / "host", project=tmp_path, **team) as t:
        assert t.get(pinned.id).memories[0].text.endswith("or release branches")


def test_migrate_refuses_unclear_options_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": SRC, "MEMVID_DATA_DIR": str(tmp_path / "d")}
    (tmp_path / "d").mkdir()
    for args in (["--to-database", "postgresql://x/y"],
                 ["--to", "file", "--to-database", "postgresql://x/y", "--segments", "s3://b/p"],
                 ["--to", "file", "--segments", "s3://b/p"]):
        done = subprocess.run([sys.executable, "-m", "memvid_mcp", "migrate", *args],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 1
        assert done.stderr.count("\n") == 1 and "memvid-mcp: error:" in done.stderr


@pytest.mark.parametrize("backend", ["video"])
def test_a_migration_killed_midway_is_completed_by_a_rerun_without_loss_or_duplicates(
        team_servers: TeamServers, tmp_path: Path, backend: str) -> None:
    database, segments = _fresh(team_servers, "kill")
    data = tmp_path / "data"
    count = 600
    with MemoryManager.open(data, project=tmp_path, embeddings=False, backend=backend) as m:
        m.store_many([{"text": f"incident {i}: the queue backed up behind shard {i % 7}",
                       "tags": [f"t{i % 5}"]} for i in range(count)])
        ids = {r.id: r.sha256 for r in m._scope("global").records()}
    env = {**os.environ, "PYTHONPATH": SRC, "MEMVID_DATA_DIR": str(data),
           "MEMVID_PROJECT": str(tmp_path), "MEMVID_EMBEDDINGS": "0"}
    argv = [sys.executable, "-m", "memvid_mcp", "--scope", "global", "migrate",
            "--to-database", database, "--segments", segments]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    copied = 0
    while time.monotonic() < deadline and proc.poll() is None:
        copied = int(_psql(database, "SELECT count(*) FROM memvid_memories")[0][0]
                     if _psql(database, "SELECT to_regclass('memvid_memories')")[0][0]
                     else 0)
        if copied >= 60:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert 0 < copied < count, "the kill must land midway"

    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{count} memories verified" in done.stdout
    assert "already there" in done.stdout and "next:" in done.stdout
    rows = _psql(database, "SELECT id, sha256 FROM memvid_memories")
    assert dict(rows) == ids  # every id, once, with its text's hash
    assert _psql(database, "SELECT count(*) FROM memvid_pending") == [(0,)]
    with MemoryManager.open(data, project=tmp_path, embeddings=False) as m:
        assert {r.id: r.sha256 for r in m._scope("global").records()} == ids  # source kept


def test_a_copy_out_killed_midway_is_completed_by_a_rerun_without_loss_or_duplicates(
        team_servers: TeamServers, tmp_path: Path) -> None:
    database, segments = _fresh(team_servers, "out")
    count = 600
    team = dict(database_url=database, segment_url=segments, embeddings=False)
    with MemoryManager.open(tmp_path / "host", project=tmp_path, **team) as t:
        t.store_many([{"text": f"postmortem {i}: the cache stampede on node {i % 9}",
                       "pinned": i % 50 == 0} for i in range(count)])
        t.flush()  # sealed: the copy reads the segments from the bucket
        ids = {r.id: r.sha256 for r in t._scope("global").records()}
    data = tmp_path / "data"
    data.mkdir()
    env = {**os.environ, "PYTHONPATH": SRC, "MEMVID_DATA_DIR": str(data),
           "MEMVID_PROJECT": str(tmp_path), "MEMVID_EMBEDDINGS": "0"}
    argv = [sys.executable, "-m", "memvid_mcp", "--scope", "global", "migrate",
            "--from-database", database, "--segments", segments]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wal = data / "global" / "wal"
    deadline = time.monotonic() + 300
    written = 0
    while time.monotonic() < deadline and proc.poll() is None:
        written = sum(p.stat().st_size for p in wal.glob("*") if p.is_file()) \
            if wal.is_dir() else 0
        if written >= 8000:  # some tens of memories stored in the local scope
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    with MemoryManager.open(data, project=tmp_path, embeddings=False) as m:
        partial = len(list(m._scope("global").records()))
    assert 0 < partial < count, "the kill must land midway"

    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{count} memories verified" in done.stdout and "next:" in done.stdout
    with MemoryManager.open(data, project=tmp_path, embeddings=False) as m:
        records = list(m._scope("global").records())
        assert {r.id: r.sha256 for r in records} == ids and len(records) == count
        assert m.verify() == []
    assert _psql(database, "SELECT count(*) FROM memvid_memories") == [(count,)]  # untouched
