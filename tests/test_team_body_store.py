"""The storage contract suite against the team engine's body storage (ADR 0031): bodies
pending in a real PostgreSQL, sealed into video segments in a real S3 API (moto's server),
the same behaviour the file and video backends are held to. Every test has its own database
and bucket prefix (``team_env``); ``make_store`` on the same root is a new instance with a
new local segment cache, as another process or host would be."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memvid_mcp.core.config import Settings
from memvid_mcp.storage.base import StorageAdapter
from memvid_mcp.team.body_store import TeamBodyStore
from memvid_mcp.team.database import Database
from memvid_mcp.team.segments import SegmentBucket
from memvid_mcp.testing import StorageContract
from team_fixtures import TeamEnv


class TestTeamBodyStoreContract(StorageContract):
    @pytest.fixture(autouse=True)
    def _team(self, team_env: TeamEnv) -> Iterator[None]:
        self.env = team_env
        self.db = Database(team_env.database_url)
        self.caches = 0
        yield
        self.db.close()

    def make_store(self, root: Path) -> StorageAdapter:
        settings = Settings.from_env(data_dir=root)
        self.caches += 1
        bucket = SegmentBucket(self.env.segment_url, root / f"cache-{self.caches}",
                               settings.segment_cache_bytes)
        return TeamBodyStore("contract", settings, self.db, bucket)


def test_put_many_seals_into_the_bucket_and_a_new_instance_reads_it_back(
        team_env: TeamEnv, tmp_path: Path) -> None:
    db = Database(team_env.database_url)
    try:
        settings = Settings.from_env(data_dir=tmp_path)
        first = TeamBodyStore("s", settings, db, SegmentBucket(team_env.segment_url,
                                                               tmp_path / "a", 1 << 20))
        first.put_many([(f"b{i}", f"body number {i}".encode()) for i in range(5)])
        stats = first.stats()
        assert stats.details["pending_bodies"] == 0 and stats.details["segments"] == 1
        assert stats.bodies == 5 and stats.stored_bytes == stats.details["sealed_bytes"] > 0
        other = TeamBodyStore("s", settings, db, SegmentBucket(team_env.segment_url,
                                                               tmp_path / "b", 1 << 20))
        assert other.get_many(["b0", "b4"]) == {"b0": b"body number 0", "b4": b"body number 4"}
        assert other.bucket.cached_bytes() > 0  # read from the bucket, not the first's cache
    finally:
        db.close()


def _delete_while_encoding(monkeypatch: pytest.MonkeyPatch, store: TeamBodyStore,
                           body_id: str) -> Any:
    """Make the next segment encoding delete ``body_id`` once encoded (before it is
    published); returns the real encoder, to put back."""
    import memvid_mcp.team.body_store as body_store

    real = body_store.seal_segment

    def seal_then_delete(*args: object, **kwargs: object) -> object:
        sealed = real(*args, **kwargs)
        assert store.delete_many([body_id]) == 1
        return sealed

    monkeypatch.setattr(body_store, "seal_segment", seal_then_delete)
    return real


def test_a_body_deleted_while_its_segment_is_encoded_is_tombstoned_in_the_new_segment(
        team_env: TeamEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import memvid_mcp.team.body_store as body_store

    db = Database(team_env.database_url)
    try:
        store = TeamBodyStore("s", Settings.from_env(data_dir=tmp_path), db,
                              SegmentBucket(team_env.segment_url, tmp_path / "c", 1 << 20))
        with db.transaction() as conn:
            for i in range(3):
                store.add_pending(conn, f"p{i}", f"pending body {i}".encode())
        real = _delete_while_encoding(monkeypatch, store, "p1")  # as another instance would
        assert store.seal(everything=True) == 3
        assert sorted(store.ids()) == ["p0", "p2"]
        with db.connection() as conn:
            tombstones = conn.execute("SELECT body_id FROM memvid_tombstones").fetchall()
        assert tombstones == [("p1",)]  # so purge will rewrite the segment holding it
        monkeypatch.setattr(body_store, "seal_segment", real)
        report = store.purge()
        assert report.segments_rewritten == 1 and report.bodies_moved == 2
        assert store.get_many(["p0", "p1", "p2"]) == {"p0": b"pending body 0",
                                                       "p2": b"pending body 2"}
        assert store.verify() == []
    finally:
        db.close()


def test_a_body_deleted_while_its_segment_is_rewritten_keeps_a_tombstone_in_the_new_one(
        team_env: TeamEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: publishing a rewrite inserted the new segment's tombstones before it
    dropped the retired segment's, so a body deleted during the rewrite kept only its old
    tombstone, which the same transaction deleted: its text stayed in the new segment with
    nothing left to make purge rewrite it."""
    import memvid_mcp.team.body_store as body_store

    db = Database(team_env.database_url)
    try:
        store = TeamBodyStore("s", Settings.from_env(data_dir=tmp_path), db,
                              SegmentBucket(team_env.segment_url, tmp_path / "c", 1 << 20))
        store.put_many([(f"r{i}", f"rewritten body {i}".encode()) for i in range(4)])
        assert store.delete_many(["r0"]) == 1
        real = _delete_while_encoding(monkeypatch, store, "r1")
        assert store.purge().segments_rewritten == 1  # rewrites the segment holding r0
        monkeypatch.setattr(body_store, "seal_segment", real)
        with db.connection() as conn:
            (new_seg,) = [r[0] for r in conn.execute("SELECT seg FROM memvid_segments")]
            tombstones = conn.execute("SELECT body_id, seg FROM memvid_tombstones").fetchall()
        assert tombstones == [("r1", new_seg)]
        report = store.purge()  # so the next purge finds the segment holding r1's text
        assert report.segments_rewritten == 1 and report.bodies_moved == 2
        assert sorted(store.ids()) == ["r2", "r3"]
        with db.connection() as conn:
            assert conn.execute("SELECT count(*) FROM memvid_tombstones").fetchone() == (0,)
    finally:
        db.close()


def test_an_idle_instance_asks_the_database_whether_to_seal_at_most_once_a_poll(
        team_env: TeamEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batcher asks ``due`` four times a second per scope. An instance that stored
    nothing asks the database at most every DUE_POLL_SECONDS (another instance's bodies are
    found at the next poll); one that stored a body asks at once; and the question reads at
    most ``batch_max_memories`` pending rows, which is enough to decide (ADR 0031)."""
    import memvid_mcp.team.body_store as body_store

    db = Database(team_env.database_url)
    try:
        settings = Settings.from_env(data_dir=tmp_path, seal_min_bytes=200,
                                     batch_max_memories=3)
        idle = TeamBodyStore("s", settings, db, SegmentBucket(team_env.segment_url,
                                                              tmp_path / "a", 1 << 20))
        busy = TeamBodyStore("s", settings, db, SegmentBucket(team_env.segment_url,
                                                              tmp_path / "b", 1 << 20))
        asked = []
        real = db.connection

        def counted():  # type: ignore[no-untyped-def]
            asked.append(1)
            return real()

        monkeypatch.setattr(db, "connection", counted)
        assert not idle.due()  # nothing waits
        with real() as conn:
            busy.add_pending(conn, "big", b"x" * 300)
        assert busy.due()  # its own body: asked at once
        asked.clear()
        assert not any(idle.due() for _ in range(20))  # within the poll: not asked again
        assert asked == []
        monkeypatch.setattr(body_store, "DUE_POLL_SECONDS", 0.0)
        assert idle.due() and asked == [1]  # the next poll finds the other's body
        with real() as conn:
            busy.retire(conn, ["big"])
            for i in range(3):
                busy.add_pending(conn, f"small{i}", b"tiny")
        assert idle.due()  # 3 bodies = batch_max_memories, though 12 bytes only
    finally:
        db.close()
