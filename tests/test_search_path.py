"""The hybrid search path (issue 12): what runs when, and what is read for a result page.

- the query is embedded while the lexical ranking is made, not after it;
- bodies are read for the returned page only.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from memvid_mcp.core.errors import CorruptionError
from memvid_mcp.manager import MemoryManager
from memvid_mcp.search import lexical

pytestmark = pytest.mark.model

NOTES = [
    "The staging deploy runs every Friday after the release review.",
    "Our tabby cat sleeps on the windowsill every morning.",
    "The API rate limit is 100 requests per minute per token.",
    "Grandma's apple pie recipe uses cinnamon and nutmeg.",
]


def _notes_manager(data_dir: Path, outside_repo: Path, onnx_model: str) -> MemoryManager:
    """A global scope holding NOTES, embedded and ready for hybrid search."""
    m = MemoryManager.open(data_dir, project=outside_repo, embed_model=onnx_model)
    for text in NOTES:
        m.store(text)
    m.flush()
    assert m.embedder.wait_ready(120), m.embedder.state
    return m


def test_hybrid_embeds_the_query_while_searching_lexically(
        data_dir: Path, outside_repo: Path, onnx_model: str) -> None:
    with _notes_manager(data_dir, outside_repo, onnx_model) as m:
        store = m._scopes["global"]
        lexical_started = threading.Event()
        overlapped: list[bool] = []
        real_embed, real_lexical = m.embedder.embed_query, store.lexical_search

        def embed_query(text: str):  # type: ignore[no-untyped-def]
            # sequential code would embed first and wait here in vain
            overlapped.append(lexical_started.wait(10))
            return real_embed(text)

        def lexical_search(*args, **kwargs):  # type: ignore[no-untyped-def]
            lexical_started.set()
            return real_lexical(*args, **kwargs)

        m.embedder.embed_query = embed_query  # type: ignore[method-assign]
        store.lexical_search = lexical_search  # type: ignore[method-assign]
        result = m.search("when is the staging deploy", k=2)
        assert result.mode == "hybrid", result
        assert overlapped == [True]
        assert "staging deploy" in result.results[0].snippet


def test_hybrid_reads_bodies_of_the_returned_page_only(
        data_dir: Path, outside_repo: Path, onnx_model: str) -> None:
    with _notes_manager(data_dir, outside_repo, onnx_model) as m:
        store = m._scopes["global"]
        read: list[str] = []
        real_read = store.read_body

        def read_body(record):  # type: ignore[no-untyped-def]
            read.append(record.id)
            return real_read(record)

        lexical_page = [h.id for h in m.search("deploy cat rate pie", k=2, mode="lexical").results]
        store.read_body = read_body  # type: ignore[method-assign]
        result = m.search("deploy cat rate pie", k=2)
        assert result.mode == "hybrid"
        # the page's bodies, and ahead of fusion those of the lexical page: each read once
        assert {h.id for h in result.results} <= set(read)
        assert set(read) <= {h.id for h in result.results} | set(lexical_page)
        assert len(read) == len(set(read))


def test_hybrid_cuts_the_lexical_page_snippets_while_the_query_is_embedded(
        data_dir: Path, outside_repo: Path, onnx_model: str) -> None:
    """Until the query is embedded one core is free: the lexical page's bodies are read and
    their snippets cut then, not after fusion; a body already read is not read again."""
    with _notes_manager(data_dir, outside_repo, onnx_model) as m:
        store = m._scopes["global"]
        read: list[str] = []
        two_read = threading.Event()
        real_read, real_embed = store.read_body, m.embedder.embed_query

        def read_body(record):  # type: ignore[no-untyped-def]
            read.append(record.id)
            if len(read) == 2:
                two_read.set()
            return real_read(record)

        def embed_query(text: str):  # type: ignore[no-untyped-def]
            # the lexical page's two bodies are read while this waits (after it: in vain)
            ahead.append(two_read.wait(10))
            return real_embed(text)

        ahead: list[bool] = []
        store.read_body = read_body  # type: ignore[method-assign]
        m.embedder.embed_query = embed_query  # type: ignore[method-assign]
        result = m.search("staging deploy near the windowsill", k=2)
        assert result.mode == "hybrid" and ahead == [True]
        assert len(read) == len(set(read)) and {h.id for h in result.results} <= set(read)
        assert {h.snippet for h in result.results} == {NOTES[0], NOTES[1]}


def test_lexical_pages_join_up_to_one_long_page(manager: MemoryManager) -> None:
    """A lexical search looks up only the page it returns (and one more, for the cursor);
    its pages still join up to the ranking of one long page."""
    for i in range(9):
        manager.store(f"paging note {i}: the backup rotation " + "rotation " * i)
    whole = manager.search("backup rotation", k=8, mode="lexical")
    first = manager.search("backup rotation", k=3, mode="lexical")
    assert first.next_cursor
    second = manager.search("backup rotation", k=5, mode="lexical", cursor=first.next_cursor)
    assert [h.id for h in first.results + second.results] == [h.id for h in whole.results]
    after = manager.search("backup rotation", k=8, mode="lexical").next_cursor
    last = manager.search("backup rotation", k=1, mode="lexical", cursor=after)
    assert len(last.results) == 1 and last.next_cursor is None


def test_a_short_lexical_page_keeps_ties_newest_first(manager: MemoryManager) -> None:
    """Thirty memories score the same and were stored oldest first, the order the index
    keeps among equal scores. A page of three still holds the three newest (ties go to the
    newer memory), exactly the top of a page of thirty."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in reversed(range(30)):  # oldest first
        manager.import_record({"text": f"tied note {i:02d} about the archive",
                               "created_at": (base - timedelta(hours=i)).isoformat()})
    short = manager.search("archive", k=3, mode="lexical")
    whole = manager.search("archive", k=30, mode="lexical")
    assert [h.id for h in short.results] == [h.id for h in whole.results[:3]]
    assert [h.created_at for h in short.results] == [base - timedelta(hours=i) for i in range(3)]


def test_a_store_with_the_previous_lexical_schema_reindexes_on_open(
        data_dir: Path, outside_repo: Path) -> None:
    """Schema 3 indexes tags as words: a scope written with schema 2 rebuilds its lexical
    index from its records on open (derived data, nothing quarantined), and its memories
    are then found by their tags."""
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        stored = m.store("we moved the nightly job to two in the morning", tags=["cron"])
    metas = list(data_dir.rglob("memvid_lexical.json"))
    assert len(metas) == 1
    meta = json.loads(metas[0].read_text())
    metas[0].write_text(json.dumps({**meta, "schema_version": 2}))
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        found = m.search("cron", mode="lexical")
        assert [h.id for h in found.results] == [stored.id]
    assert json.loads(metas[0].read_text())["schema_version"] == lexical.SCHEMA_VERSION
    assert not list(data_dir.rglob("quarantine*"))


def test_a_lexical_rebuild_commits_as_it_goes_and_loses_nothing(
        data_dir: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild commits every REBUILD_COMMIT_DOCS documents as -1 (a crash midway rebuilds
    again), so the index never holds every document's term counts in Python at once; every
    memory is still found afterwards."""
    from memvid_mcp.store import scope_store

    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        ids = {m.store(f"rebuild note {i} word{i}").id: i for i in range(1100)}
    metas = list(data_dir.rglob("memvid_lexical.json"))
    metas[0].write_text(json.dumps({**json.loads(metas[0].read_text()), "schema_version": 2}))
    monkeypatch.setattr(scope_store, "REBUILD_COMMIT_DOCS", 500)
    commits: list[int] = []
    real_commit = lexical.LexicalIndex.commit

    def commit(self, seq):  # type: ignore[no-untyped-def]
        commits.append(seq)
        return real_commit(self, seq)

    monkeypatch.setattr(lexical.LexicalIndex, "commit", commit)
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        for memory_id, i in list(ids.items())[::100]:  # the first search opens the scope
            assert [h.id for h in m.search(f"word{i}", mode="lexical").results] == [memory_id]
        assert commits[:2] == [-1, -1]  # 1,100 documents in batches of 512: two on the way


def test_a_store_with_the_previous_lexical_schema_finds_by_speaker_after_reopening(
        data_dir: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema 4 weights speaker-like prefixes (ADR 0035): a scope indexed as schema 3 ranked
    (no speaker weight) is rebuilt from its records on open, and a query naming a speaker then
    ranks what that speaker said above a memory that only mentions them."""
    with monkeypatch.context() as old:
        old.setattr(lexical, "SCHEMA_VERSION", 3)
        old.setattr(lexical, "SPEAKER_BOOST", 0.0)  # the speaker field scores nothing
        with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
            said = m.store("Alice: we moved the deploy to Fridays after the outage review")
            m.store("remember to ask Alice before the deploy goes out")
            for i in range(20):
                m.store(f"Bob: note {i} on the office plants")
            m.flush()
            first = m.search("what did Alice say about the deploy", mode="lexical").results
            assert first[0].id != said.id  # schema 3 ranks the mention first
    metas = list(data_dir.rglob("memvid_lexical.json"))
    assert [json.loads(p.read_text())["schema_version"] for p in metas] == [3]
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        found = m.search("what did Alice say about the deploy", mode="lexical")
        assert found.results[0].id == said.id
    assert json.loads(metas[0].read_text())["schema_version"] == lexical.SCHEMA_VERSION


def _sealed_video_notes(m: MemoryManager) -> tuple[dict[str, str], Any]:
    """Six notes sealed into the global scope's video store: their texts by id, the scope."""
    texts = [f"the archive rotation happens on day {i}" for i in range(6)]
    ids = {m.store(t).id: t for t in texts}
    m.flush()
    store = m._scopes["global"]
    assert store.backend_name == "video"
    return ids, store


def test_video_page_snippets_come_from_their_own_bodies(
        data_dir: Path, outside_repo: Path) -> None:
    """Each hit of a video store's page carries its own memory's text, and an unreadable
    body empties only its own snippet."""
    with MemoryManager.open(data_dir, project=outside_repo, backend="video",
                            embeddings=False) as m:
        ids, store = _sealed_video_notes(m)
        real_read = store.read_body
        broken = sorted(ids)[0]

        def read_body(record):  # type: ignore[no-untyped-def]
            if record.id == broken:
                raise CorruptionError("segment", "damaged for the test")
            return real_read(record)

        store.read_body = read_body  # type: ignore[method-assign]
        found = m.search("archive rotation", k=6, mode="lexical")
    assert {h.id for h in found.results} == set(ids)
    for hit in found.results:
        assert hit.snippet == ("" if hit.id == broken else ids[hit.id])


def test_a_video_page_goes_to_the_pool_only_when_reading_it_decodes_video(
        data_dir: Path, outside_repo: Path) -> None:
    """Bodies whose frames are cached are read in a loop (a hand-off to the pool cost more
    than the reads); a page that must decode frames is read side by side (ADR 0034)."""
    with MemoryManager.open(data_dir, project=outside_repo, backend="video",
                            embeddings=False) as m:
        ids, store = _sealed_video_notes(m)
        pages: list[int] = []
        real_map = m._search_pool.map

        def pool_map(fn, items, *args, **kwargs):  # type: ignore[no-untyped-def]
            pages.append(len(items))
            return real_map(fn, items, *args, **kwargs)

        m._search_pool.map = pool_map  # type: ignore[method-assign]
        warm = m.search("archive rotation", k=6, mode="lexical")
        assert pages == []  # the frames just sealed are in the cache
        store.backend._cache.clear()  # type: ignore[attr-defined]
        store.backend._decoded.clear()  # type: ignore[attr-defined]
        cold = m.search("archive rotation day", k=6, mode="lexical")
        assert pages == [6]
    for found in (warm, cold):
        assert {h.id: h.snippet for h in found.results} == ids


def test_a_filtered_semantic_page_asks_each_scope_for_the_page_only(
        data_dir: Path, outside_repo: Path, onnx_model: str) -> None:
    """Semantic mode without recency fuses nothing: each scope is asked for the page and one
    more (not FUSION_DEPTH candidates, each checked by the filter), and its pages still join
    up to the ranking of one long page."""
    with MemoryManager.open(data_dir, project=outside_repo, embed_model=onnx_model) as m:
        for i in range(12):
            m.store(f"{NOTES[i % 4]} (note {i})", tags=["kept" if i % 2 else "other"])
        m.flush()
        assert m.embedder.wait_ready(120), m.embedder.state
        store = m._scopes["global"]
        asked: list[int] = []
        real = store.vector_search

        def vector_search(vector, k, *args, **kwargs):  # type: ignore[no-untyped-def]
            asked.append(k)
            return real(vector, k, *args, **kwargs)

        store.vector_search = vector_search  # type: ignore[method-assign]
        whole = m.search("pets sleeping", k=6, mode="semantic", tags_any=["kept"])
        assert len(whole.results) == 6 and all(h.tags == ("kept",) for h in whole.results)
        asked.clear()
        first = m.search("pets sleeping", k=2, mode="semantic", tags_any=["kept"])
        assert asked == [3]  # was 100
        second = m.search("pets sleeping", k=4, mode="semantic", tags_any=["kept"],
                          cursor=first.next_cursor)
        assert [h.id for h in first.results + second.results] == [h.id for h in whole.results]


def _two_scope_manager(repository: Path, data_dir: Path, onnx_model: str) -> MemoryManager:
    m = MemoryManager.open(data_dir, project=repository, embed_model=onnx_model)
    for i in range(12):
        m.store(f"{NOTES[i % 4]} (note {i})", scope="project" if i % 2 else "global")
    m.flush()
    assert m.embedder.wait_ready(120), m.embedder.state
    assert m.search_scopes == ("project", "global")
    return m


def test_the_scopes_vector_searches_run_side_by_side(
        repository: Path, data_dir: Path, onnx_model: str) -> None:
    """Each scope's graph walk releases the GIL: the second scope's search runs on the other
    core while the first one's does, not after it (ADR 0033)."""
    with _two_scope_manager(repository, data_dir, onnx_model) as m:
        started = {name: threading.Event() for name in ("project", "global")}
        overlapped: dict[str, bool] = {}
        for name, other in (("project", "global"), ("global", "project")):
            store = m._scopes[name]

            def vector_search(*args, _real=store.vector_search, _me=name, _other=other,
                              **kwargs):  # type: ignore[no-untyped-def]
                started[_me].set()
                # in turn, the first scope would wait here in vain for the second
                overlapped[_me] = started[_other].wait(10)
                return _real(*args, **kwargs)

            store.vector_search = vector_search  # type: ignore[method-assign]
        result = m.search("pets sleeping on the windowsill", k=4)
        assert result.mode == "hybrid", result
        assert overlapped == {"project": True, "global": True}
        assert {h.scope for h in result.results} == {"project", "global"}


def test_the_fusion_depth_is_shared_by_the_scopes_searched(
        repository: Path, data_dir: Path, onnx_model: str) -> None:
    """Two scopes each give half of FUSION_DEPTH candidates per list, so a fused list is as
    long as with one scope; a deep page still gets twice its end from each (ADR 0033)."""
    from memvid_mcp.manager import FUSION_DEPTH

    with _two_scope_manager(repository, data_dir, onnx_model) as m:
        asked: list[tuple[str, str, int]] = []
        for name in ("project", "global"):
            store = m._scopes[name]

            def lexical_search(query, k, *args, _real=store.lexical_search, _me=name,
                               **kwargs):  # type: ignore[no-untyped-def]
                asked.append(("lexical", _me, k))
                return _real(query, k, *args, **kwargs)

            def vector_search(vector, k, *args, _real=store.vector_search, _me=name,
                              **kwargs):  # type: ignore[no-untyped-def]
                asked.append(("vector", _me, k))
                return _real(vector, k, *args, **kwargs)

            store.lexical_search = lexical_search  # type: ignore[method-assign]
            store.vector_search = vector_search  # type: ignore[method-assign]
        m.search("staging deploy", k=5)
        assert sorted(asked) == sorted((kind, scope, FUSION_DEPTH // 2)
                                       for kind in ("lexical", "vector")
                                       for scope in ("project", "global"))
        asked.clear()
        m.search("staging deploy", k=5, scopes=["global"])
        assert sorted(asked) == [("lexical", "global", FUSION_DEPTH),
                                 ("vector", "global", FUSION_DEPTH)]
        asked.clear()
        m.search("staging deploy", k=40)
        assert {k for _, _, k in asked} == {80}


def test_a_vector_search_looks_each_candidate_up_once(
        data_dir: Path, outside_repo: Path, onnx_model: str) -> None:
    """The records the filter passed are the hits' records: a hit is not looked up a second
    time after the index answers (ADR 0037), and a filter still applies before the cut."""
    from memvid_mcp.search.filters import SearchFilters

    with _notes_manager(data_dir, outside_repo, onnx_model) as m:
        store = m._scopes["global"]
        looked_up: list[str] = []
        real = store.memory_for_body

        def memory_for_body(body_id: str):  # type: ignore[no-untyped-def]
            looked_up.append(body_id)
            return real(body_id)

        store.memory_for_body = memory_for_body  # type: ignore[method-assign]
        vector = m.embedder.embed_query("a cat sleeping")
        hits = store.vector_search(vector, 4, SearchFilters())
        assert len(hits) == 4 and store.read_body(hits[0][0]).startswith("Our tabby cat")
        assert sorted(looked_up) == sorted({r.body_id for r, _ in hits})  # was each twice
        assert store.vector_search(vector, 4, SearchFilters(kind="none-such")) == []


def test_the_lexical_half_of_the_fusion_is_made_while_the_vectors_are_searched(
        data_dir: Path, outside_repo: Path, onnx_model: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lexical list's standard scores are made while the vector search runs, not after
    the semantic ranking returns (ADR 0037); the fused page is the one zscore gives."""
    import memvid_mcp.manager as manager_module
    from memvid_mcp.search.fusion import zscore

    with _notes_manager(data_dir, outside_repo, onnx_model) as m:
        made = threading.Event()
        real_scores = manager_module.standard_scores

        def standard_scores(ranking):  # type: ignore[no-untyped-def]
            made.set()
            return real_scores(ranking)

        monkeypatch.setattr(manager_module, "standard_scores", standard_scores)
        store = m._scopes["global"]
        real_search = store.vector_search
        waited: list[bool] = []
        lists: dict[str, list[tuple[str, float]]] = {}

        def vector_search(*args, **kwargs):  # type: ignore[no-untyped-def]
            # made after the semantic ranking, the lexical half would be waited for in vain
            waited.append(made.wait(10))
            hits = real_search(*args, **kwargs)
            lists["semantic"] = [(r.id, s) for r, s in hits]
            return hits

        store.vector_search = vector_search  # type: ignore[method-assign]
        result = m.search("when is the staging deploy", k=4)
        assert result.mode == "hybrid", result
        assert waited == [True]
        lexical = [(r.id, s) for r, s in store.lexical_search(
            "when is the staging deploy", 100, manager_module.SearchFilters())]
        expected = [i for i, _ in zscore([lexical, lists["semantic"]])][:4]
        assert [h.id for h in result.results] == expected
