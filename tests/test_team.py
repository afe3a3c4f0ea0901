"""The team engine (ADR 0025) against real servers: PostgreSQL 18 + pgvector and an S3 API.

Several instances (managers with their own data directories, as on different hosts; real
processes where it matters) share one memory: what one stores the others read and find at
once, identical texts stored concurrently become one memory, and an instance killed mid-seal
loses nothing acknowledged while another completes the seal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from memvid_mcp.core.errors import StorageError
from memvid_mcp.manager import MemoryManager
from memvid_mcp.search.filters import SearchFilters
from team_fixtures import TeamEnv

WORKER = Path(__file__).with_name("team_worker.py")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _open(data_dir: Path, **overrides: object) -> MemoryManager:
    return MemoryManager.open(data_dir, project=data_dir, embeddings=False, **overrides)


def _psql(env: TeamEnv, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(env.database_url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def _worker(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_the_team_engine_serves_global_scope_with_nothing_but_a_cache_on_disk(
        team_env: TeamEnv, tmp_path: Path) -> None:
    with _open(tmp_path / "a") as m:
        stored = m.store("the team engine keeps records in PostgreSQL")
        m.flush()
        (stats,) = m.stats()
        assert stats.backend == "team" and stats.memories == 1 and stats.pending_bodies == 0
        assert stats.details["segments"] == 1
    assert _psql(team_env, "SELECT version FROM memvid_schema") == [(4,)]
    assert _psql(team_env, "SELECT count(*) FROM memvid_pending") == [(0,)]
    files = {p.relative_to(tmp_path / "a").parts[0] for p in (tmp_path / "a").rglob("*")
             if p.is_file()}
    assert files == {"team-cache"}  # no WAL, snapshot or index: only cached segment files
    with _open(tmp_path / "a") as m:  # reopening finds the schema in place
        assert m.get(stored.id).memories[0].text.startswith("the team engine")


def test_a_memory_stored_by_one_instance_is_read_and_found_by_another(
        team_env: TeamEnv, tmp_path: Path) -> None:
    with _open(tmp_path / "host-a") as a, _open(tmp_path / "host-b") as b:
        stored = a.store("Postgres failover drill happens every second Thursday",
                         tags=["ops"], title="drill")
        # at once, before any seal: the body is still pending in the database
        assert b.get(stored.id).memories[0].text.startswith("Postgres failover drill")
        assert [h.id for h in b.search("failover drill", mode="lexical").results] == [
            stored.id]
        assert [h.id for h in b.search("drill", tags_any="ops").results] == [stored.id]
        assert b.search("drill", tags_any="other").results == ()
        unread = a.store("Backups are restored to the scratch cluster on Mondays")
        a.flush()  # sealed into a segment in the bucket
        assert _psql(team_env, "SELECT count(*) FROM memvid_segments") == [(1,)]
        # host b has no copy of the segment: it downloads it on the first read
        assert not list((tmp_path / "host-b").rglob("seg-*"))
        assert b.get(unread.id).memories[0].text.startswith("Backups are restored")
        assert list((tmp_path / "host-b").rglob("seg-*.mp4"))
        assert b.get(stored.id).memories[0].text.startswith("Postgres failover drill")
        assert b.delete(stored.id) == 1
        assert a.get(stored.id).missing == (stored.id,)
        assert a.search("failover drill").results == ()


def test_identical_texts_stored_concurrently_by_two_processes_become_one_memory(
        team_env: TeamEnv, tmp_path: Path) -> None:
    n = 60
    workers = [_worker("store", str(tmp_path / name), str(n), name) for name in ("a", "b")]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
        outputs.append([line.split() for line in out.splitlines() if line.startswith("S ")])
    assert [len(o) for o in outputs] == [n, n]  # every store acknowledged in both
    ids_a = {int(i): memory_id for _, i, memory_id, _ in outputs[0]}
    ids_b = {int(i): memory_id for _, i, memory_id, _ in outputs[1]}
    assert ids_a == ids_b  # both were told the same memory for the same text
    folded = sum(int(d) for o in outputs for *_, d in o)
    assert folded == n  # each text: one store created it, the other folded into it
    assert _psql(team_env, "SELECT count(*), count(DISTINCT sha256) FROM memvid_memories") \
        == [(n, n)]
    with _open(tmp_path / "c") as m:
        got = m.get(list(ids_a.values()))
        assert len(got.memories) == n
        assert all(set(mem.record.tags) == {"a", "b"} for mem in got.memories)


def test_an_instance_killed_mid_seal_loses_nothing_and_another_completes_the_seal(
        team_env: TeamEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = _worker("seal-and-hang", str(tmp_path / "killed"), "25")
    acknowledged: list[str] = []
    assert worker.stdout is not None
    deadline = time.monotonic() + 240
    for line in worker.stdout:
        if line.startswith("S "):
            acknowledged.append(line.split()[1])
        if line.strip() == "UPLOADED" or time.monotonic() > deadline:
            break
    assert len(acknowledged) == 25
    worker.send_signal(signal.SIGKILL)  # uploaded one object, published nothing
    worker.wait(timeout=30)
    assert _psql(team_env, "SELECT count(*) FROM memvid_pending") == [(25,)]
    assert _psql(team_env, "SELECT count(*) FROM memvid_segments") == [(0,)]
    with _open(tmp_path / "survivor") as m:
        assert len(m.get(acknowledged).memories) == 25  # served from the pending bodies
        m.flush()  # the killed instance's advisory lock died with its connection
        assert _psql(team_env, "SELECT count(*) FROM memvid_pending") == [(0,)]
        assert _psql(team_env, "SELECT count(*), sum(bodies) FROM memvid_segments") == [
            (1, 25)]
        texts = {mem.id: mem.text for mem in m.get(acknowledged).memories}
        assert len(texts) == 25 and all(t.startswith("acknowledged") for t in texts.values())
        assert m.verify() == []
        store = m._scope("global")
        names = set(store.bucket.names(store.key))  # type: ignore[attr-defined]
        assert len(names) == 3  # the new segment's two objects + the killed seal's orphan
        import memvid_mcp.team.body_store as team_bodies

        monkeypatch.setattr(team_bodies, "ORPHAN_AGE_SECONDS", 0)
        m.compact()
        assert len(store.bucket.names(store.key)) == 2  # type: ignore[attr-defined]
        assert len(m.get(acknowledged).memories) == 25


def test_purge_rewrites_segments_holding_deleted_text(team_env: TeamEnv,
                                                      tmp_path: Path) -> None:
    with _open(tmp_path / "a") as m:
        ids = [m.store(f"segment purge candidate number {i}").id for i in range(6)]
        m.flush()
        (before,) = _psql(team_env, "SELECT seg FROM memvid_segments")
        assert m.delete(ids[:2], purge=True) == 2
        segs = _psql(team_env, "SELECT seg, bodies FROM memvid_segments")
        assert len(segs) == 1 and segs[0][0] != before[0] and segs[0][1] == 4
        assert _psql(team_env, "SELECT count(*) FROM memvid_tombstones") == [(0,)]
        store = m._scope("global")
        names = set(store.bucket.names(store.key))  # type: ignore[attr-defined]
        assert names == {f"seg-{segs[0][0]}.mp4", f"seg-{segs[0][0]}.mvi"}
        assert [mem.text for mem in m.get(ids[2:]).memories] == [
            f"segment purge candidate number {i}" for i in range(2, 6)]
        assert m.verify() == []


def test_background_compaction_removes_deleted_text_once_it_has_aged(
        team_env: TeamEnv, tmp_path: Path) -> None:
    with _open(tmp_path / "a", purge_after_seconds=3600, auto_compact=False) as m:
        ids = [m.store(f"compaction candidate {i}").id for i in range(4)]
        m.flush()
        store = m._scope("global")
        m.delete(ids[0])
        assert store.compact_step() is None  # deleted a moment ago: not yet due
        _psql(team_env, "UPDATE memvid_tombstones SET deleted_at = now() - interval '2 hours'")
        report = store.compact_step()
        assert report is not None and report.segments_rewritten == 1
        assert report.bodies_moved == 3
        assert store.compact_step() is None
        assert _psql(team_env, "SELECT count(*) FROM memvid_tombstones") == [(0,)]
        assert len(m.get(ids[1:]).memories) == 3 and m.verify() == []


def test_sealing_waits_for_a_segment_worth_writing(team_env: TeamEnv, tmp_path: Path) -> None:
    with _open(tmp_path / "a", seal_min_bytes=200, seal_max_seconds=900) as m:
        store = m._scope("global")
        m.store("short")
        assert not store.due()  # 5 bytes wait: the database holds them durably
        m.store("x" * 300)
        assert store.due()


def test_semantic_and_hybrid_search_through_pgvector(
        team_env: TeamEnv, tmp_path: Path, converted_model: tuple[str, Path]) -> None:
    model, cache = converted_model
    with MemoryManager.open(tmp_path / "a", project=tmp_path, embed_model=model,
                            cache_dir=cache) as m:
        cat = m.store("The cat sat on the warm windowsill all afternoon")
        m.store("Quarterly revenue grew by twelve percent")
        m.store("Kubernetes pods restart when the liveness probe fails")
        m.flush()
        assert _psql(team_env, "SELECT count(embedding) FROM memvid_memories") == [(3,)]
        result = m.search("a kitten resting by the window", mode="semantic", k=1)
        assert result.mode == "semantic" and [h.id for h in result.results] == [cat.id]
        assert m.search("feline sunbathing", k=1).results[0].id == cat.id


def test_project_and_global_team_scopes_are_searched_side_by_side(
        team_env: TeamEnv, tmp_path: Path, converted_model: tuple[str, Path],
        repository: Path) -> None:
    """Each team scope's list is a database query; the manager asks them at once, on their
    own connections, and merges them as before."""
    import threading

    model, cache = converted_model
    with MemoryManager.open(tmp_path / "a", project=repository, embed_model=model,
                            cache_dir=cache) as m:
        cat = m.store("The cat sat on the warm windowsill all afternoon", scope="project")
        dog = m.store("A dog dozed on the sunny windowsill", scope="global")
        m.store("Quarterly revenue grew by twelve percent", scope="global")
        m.flush()
        threads: set[str] = set()
        for store in m._scopes.values():
            for name in ("lexical_search", "vector_search"):
                method = getattr(store, name)

                def spy(*args: object, _method: object = method, **kwargs: object) -> object:
                    threads.add(threading.current_thread().name)
                    return _method(*args, **kwargs)  # type: ignore[operator]

                setattr(store, name, spy)
        for mode in ("lexical", "semantic", "hybrid"):
            result = m.search("windowsill pet resting", mode=mode, k=2)
            assert result.mode == mode
            assert {h.id for h in result.results} == {cat.id, dog.id}
            assert {h.scope for h in result.results} == {"project", "global"}
        assert threads and all(t.startswith("memvid-scope") for t in threads)


def test_an_unreachable_database_or_bucket_is_a_clear_error(
        team_env: TeamEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    monkeypatch.setenv("MEMVID_DATABASE_URL",
                       f"postgresql://nobody:secret@127.0.0.1:{port}/memvid?connect_timeout=1")
    with _open(tmp_path / "a") as m, pytest.raises(StorageError, match="unreachable") as exc:
        m.store("never stored")
    assert "secret" not in str(exc.value)
    monkeypatch.setenv("MEMVID_DATABASE_URL", team_env.database_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with _open(tmp_path / "b") as m, pytest.raises(StorageError, match="segment store"):
        m.store("never stored either")


@pytest.mark.parametrize(("url", "named"), [
    ("postgresql://nobody:s3cretpw@127.0.0.1:notaport/memvid", "port 'notaport'"),
    ("postgresql://nobody:s3cretpw@127.0.0.1/memvid?sslmod=off", 'parameter: "sslmod"'),
])
def test_a_malformed_database_url_fails_at_once_naming_the_fault(
        team_env: TeamEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, url: str, named: str) -> None:
    """Issue 14: the pool used to retry a malformed URL, a warning per attempt, then call it
    "unreachable"; now it is one error naming what is wrong, without the password."""
    monkeypatch.setenv("MEMVID_DATABASE_URL", url)
    with _open(tmp_path / "a") as m, pytest.raises(StorageError, match="malformed") as exc:
        m.store("never stored")
    assert named in str(exc.value) and "s3cretpw" not in str(exc.value)
    assert not [r for r in caplog.records if r.name.startswith("psycopg")]


def test_a_wrong_user_is_one_clear_error_without_the_password(
        team_env: TeamEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import re

    wrong = re.sub(r"://[^@/]*@", "://nobody:s3cretpw@", team_env.database_url)
    if "@" not in wrong:
        wrong = wrong.replace("://", "://nobody:s3cretpw@", 1)
    monkeypatch.setenv("MEMVID_DATABASE_URL", wrong)
    with _open(tmp_path / "a") as m, pytest.raises(StorageError, match="unreachable") as exc:
        m.store("never stored")
    assert "nobody" in str(exc.value) and "s3cretpw" not in str(exc.value)
    assert not [r for r in caplog.records if r.name.startswith("psycopg")]


def test_full_text_ranking_weights_rare_words_and_takes_any_query(
        team_env: TeamEnv, tmp_path: Path) -> None:
    with _open(tmp_path / "a") as m:
        for i in range(8):
            m.store(f"deployment notes number {i}: deployment went fine, deployment again")
        rare = m.store("the zeppelin hangar opens at noon")
        hits = m.search("deployment zeppelin", mode="lexical").results
        assert hits[0].id == rare.id  # one rare word outweighs a common word said thrice
        assert len(hits) == 9  # any word matches (not every word)
        for odd in ("o'brien's \\ back\\slash 'quoted' & | ! <->", "the of and", "'''"):
            assert isinstance(m.search(odd, mode="lexical").results, tuple)


def test_full_text_search_finds_new_memories_while_word_counts_are_cached(
        team_env: TeamEnv, tmp_path: Path) -> None:
    """Document counts per word are kept in memory (ADR 0025, search speed at 100k): a
    memory stored since, by this or another instance, is still found at once."""
    with _open(tmp_path / "a") as a, _open(tmp_path / "b") as b:
        first = a.store("the zeppelin hangar opens at noon")
        assert [h.id for h in b.search("zeppelin blimp", mode="lexical").results] == [first.id]
        second = a.store("a second zeppelin moored by the hangar")
        blimp = a.store("the blimp landed in the rain")  # a word counted 0 a moment ago
        found = {h.id for h in b.search("zeppelin blimp", mode="lexical").results}
        assert found == {first.id, second.id, blimp.id}
        hits = b.search("blimp", mode="lexical").results
        assert [h.id for h in hits] == [blimp.id] and "blimp landed" in hits[0].snippet


def test_the_page_records_are_full_and_bring_their_pending_text_so_snippets_need_no_query(
        team_env: TeamEnv, tmp_path: Path) -> None:
    # ADR 0031: ranking hits carry only their columns; the page's records come in one query
    # with their pending bodies, so reading the snippets after it needs the database no more
    with _open(tmp_path / "a") as a, _open(tmp_path / "b") as b:
        stored = {a.store(f"lighthouse keeper log entry {i}: the lamp was trimmed",
                          title=f"log {i}", metadata={"n": i}, source="logbook").id
                  for i in range(5)}
        b.search("warm up", mode="lexical")
        (store,) = [s for s in b._scopes.values() if s.name == "global"]
        hits = [r for r, _ in store.lexical_search("lighthouse lamp", 10, SearchFilters())]
        assert {r.id for r in hits} == stored
        assert all(r.title and r.title.startswith("log ") for r in hits)
        full = store.page_records([r.id for r in hits])
        assert {i: (r.metadata, r.source) for i, r in full.items()} == {
            i: (store.record(i).metadata, "logbook") for i in stored}
        assert {r.metadata["n"] for r in full.values()} == set(range(5))
        store.db.pool.close()  # any query from now on fails: the texts came with the page
        texts = store.read_bodies(list(full.values()))
        assert all(t.startswith("lighthouse keeper log entry") for t in texts.values())


def test_search_shows_full_records_and_drops_a_hit_deleted_before_its_page_is_read(
        team_env: TeamEnv, tmp_path: Path) -> None:
    with _open(tmp_path / "a") as a:
        kept = a.store("the heron stood in the shallow river", title="heron",
                       metadata={"bird": True})
        gone = a.store("the heron flew over the river mouth")
        result = a.search("heron river", mode="lexical")
        assert {h.id for h in result.results} == {kept.id, gone.id}
        assert [h.title for h in result.results if h.id == kept.id] == ["heron"]
        (store,) = [s for s in a._scopes.values() if s.name == "global"]
        ranked = [(r, 1.0) for r, _ in store.lexical_search("heron river", 10,
                                                            SearchFilters())]
        a.delete(gone.id)
        page = a._full_page(ranked, {"global": store})
        assert [r.id for r, _ in page] == [kept.id]
        assert page[0][0] == store.record(kept.id)  # metadata and all, not the ranking row


def test_vector_coverage_counts_the_scope_anew_while_memories_wait_for_vectors(
        team_env: TeamEnv, tmp_path: Path) -> None:
    with _open(tmp_path / "a") as a:
        first = a.store("a first memory so the scope exists")
        (store,) = [s for s in a._scopes.values() if s.name == "global"]
        body_id = store.record(first.id).body_id
        store.add_vectors([body_id], np.ones((1, 384), dtype=np.float32))
        store._coverage = None
        assert store.vector_coverage() == (1, 1)
        for i in range(3):  # stored directly: nothing embeds them
            a.store(f"an unembedded memory number {i}", scope="global")
        store._coverage = None
        store._df_total = (time.monotonic(), 1)  # a scope size counted before those stores
        assert store.vector_coverage() == (1, 4)


def test_a_version_1_database_migrates_to_the_scoped_full_text_index_on_open(
        team_env: TeamEnv, tmp_path: Path) -> None:
    from memvid_mcp.team.schema import MIGRATIONS, scope_index_name

    _psql(team_env, MIGRATIONS[1] + "CREATE TABLE memvid_schema (version integer NOT NULL);"
          "INSERT INTO memvid_schema VALUES (1);")
    _psql(team_env, "INSERT INTO memvid_memories (scope, id, body_id, sha256, live_sha, state, "
          "kind, tags, created_at, updated_at, pinned, tsv, size) SELECT 'global', id, b, "
          "'s', 's', jsonb_build_object('id', id), 'note', '{}', now(), now(), false, "
          "to_tsvector('english', 'old row'), 7 FROM (VALUES ('01J0000000000000000000000A', "
          "'01J0000000000000000000000B')) AS v(id, b)")
    with _open(tmp_path / "a") as m:
        stored = m.store("a kestrel hovered over the old quarry")
        assert [h.id for h in m.search("kestrel", mode="lexical").results] == [stored.id]
    assert _psql(team_env, "SELECT version FROM memvid_schema") == [(4,)]
    indexes = {r[0] for r in _psql(team_env, "SELECT indexname FROM pg_indexes WHERE "
                                   "tablename = 'memvid_memories'")}
    assert "memvid_memories_scope_tsv" in indexes and "memvid_memories_tsv" not in indexes
    assert scope_index_name("global") in indexes and "memvid_memories_vec" not in indexes
    assert _psql(team_env, "SELECT count(*) FROM memvid_memories") == [(2,)]


def test_a_version_3_database_with_sealed_and_pending_bodies_migrates_to_the_body_table(
        team_env: TeamEnv, tmp_path: Path) -> None:
    """Schema 4 (ADR 0031): sealed bodies' locators move from the memory rows to
    memvid_bodies; pending bodies stay; every text reads back and verify finds nothing."""
    with _open(tmp_path / "a") as m:
        sealed = [m.store(f"sealed before the upgrade {i}").id for i in range(3)]
        m.flush()
        deleted = m.store("sealed and then deleted before the upgrade").id
        m.flush()
        m.delete(deleted)
        pending = m.store("still pending at the upgrade").id
    # the same data as schema version 3 laid it out: locators on the memory rows
    _psql(team_env, """
        ALTER TABLE memvid_memories ADD COLUMN seg text, ADD COLUMN frame integer,
            ADD COLUMN frame_offset integer, ADD COLUMN frames integer,
            ADD COLUMN body_sha256 text;
        UPDATE memvid_memories m SET seg = b.seg, frame = b.frame,
            frame_offset = b.frame_offset, frames = b.frames, body_sha256 = b.sha256
            FROM memvid_bodies b WHERE b.body_id = m.body_id;
        CREATE INDEX memvid_memories_seg ON memvid_memories (seg);
        DROP TABLE memvid_bodies;
        ALTER TABLE memvid_pending ADD CONSTRAINT memvid_pending_body_id_fkey FOREIGN KEY
            (body_id) REFERENCES memvid_memories (body_id) ON DELETE CASCADE;
        UPDATE memvid_schema SET version = 3;""")
    assert _psql(team_env, "SELECT count(*) FROM memvid_memories WHERE seg IS NOT NULL") == [
        (3,)]
    assert _psql(team_env, "SELECT count(*) FROM memvid_pending") == [(1,)]
    assert _psql(team_env, "SELECT count(*) FROM memvid_tombstones") == [(1,)]
    with _open(tmp_path / "b") as m:
        assert [x.text for x in m.get([*sealed, pending]).memories] == [
            *(f"sealed before the upgrade {i}" for i in range(3)), "still pending at the upgrade"]
        assert m.verify() == []
        assert m.delete(sealed[0], purge=True) == 1
        assert [x.text for x in m.get(sealed[1:]).memories] == [
            f"sealed before the upgrade {i}" for i in (1, 2)]
    assert _psql(team_env, "SELECT version FROM memvid_schema") == [(4,)]
    assert _psql(team_env, "SELECT count(*) FROM memvid_bodies") == [(3,)]  # purge sealed all
    assert _psql(team_env, "SELECT count(*) FROM memvid_tombstones") == [(0,)]
    columns = {r[0] for r in _psql(team_env, "SELECT column_name FROM information_schema."
                                   "columns WHERE table_name = 'memvid_memories'")}
    assert not columns & {"seg", "frame", "frame_offset", "frames", "body_sha256"}


def test_each_scope_has_its_own_vector_index_and_semantic_search_uses_it(
        team_env: TeamEnv, tmp_path: Path, converted_model: tuple[str, Path],
        repository: Path) -> None:
    """Schema 3 (ADR 0025): one partial halfvec HNSW index per scope, made on first open; a
    filtered scan no longer walks the other scopes' vectors (semantic p50 at 100k)."""
    from memvid_mcp.team.schema import scope_index_name

    model, cache = converted_model
    with MemoryManager.open(tmp_path / "a", project=repository, embed_model=model,
                            cache_dir=cache) as m:
        m.store("the kestrel hovered over the quarry", scope="global")
        m.store("a heron waited by the weir", scope="project")
        m.flush()
        keys = {s.key for s in m._scopes.values()}
        assert len(keys) == 2
        indexes = {r[0] for r in _psql(team_env, "SELECT indexname FROM pg_indexes WHERE "
                                       "tablename = 'memvid_memories'")}
        assert {scope_index_name(k) for k in keys} <= indexes
        assert "memvid_memories_vec" not in indexes

        for mode in ("semantic", "hybrid"):
            result = m.search("a bird of prey hovering", mode=mode, k=2)
            assert result.mode == mode and len(result.results) == 2
        vector = m.embedder.embed_query("a bird of prey hovering")
        for store in m._scopes.values():
            # a two-row table is scanned whole by choice; forbidding that shows the query
            # matches its scope's index (the planner uses it at 100k), filters and all
            sql, params = store.vector_query(vector, 10, SearchFilters(tags_any=("x", "y")))
            with store.db.transaction() as conn:
                conn.execute("SET LOCAL enable_seqscan = off")
                conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                plan = " ".join(r[0] for r in conn.execute("EXPLAIN " + sql, params))
            assert f"Index Scan using {scope_index_name(store.key)}" in plan, plan


def test_a_common_words_count_stops_at_the_rare_share_of_the_scope(
        team_env: TeamEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A word's document count reads every row holding it (~8 ms for a word in a fifth of
    50k memories): it is read only up to the count that makes a word common (RARE_SHARE of
    the scope, at least CANDIDATES); a common word weighs as if it were in exactly that many.
    Rare words are counted exactly, and search still ranks the rare match first."""
    import memvid_mcp.team.scope_store as team_store

    monkeypatch.setattr(team_store, "CANDIDATES", 3)
    monkeypatch.setattr(team_store, "RARE_SHARE", 0.1)
    with _open(tmp_path / "a") as m:
        for i in range(12):
            m.store(f"the deploy pipeline note number {i}" + (" with a flaky canary" if i == 5
                                                                else ""))
        store = m._scope("global")
        with store.db.connection() as conn:
            total, counts = store._document_counts(conn, ["deploy", "canari"])
        assert total == 12
        assert counts == {"deploy": 3, "canari": 1}  # 12 rows hold "deploy": read up to 3
        hits = m.search("flaky canary deploy", k=3, mode="lexical").results
        assert "canary" in hits[0].snippet
