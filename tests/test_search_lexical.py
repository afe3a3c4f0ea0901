"""LexicalIndex: read-your-writes, no ghosts, filters before the cut, persistence, hostility."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memvid_mcp.core.errors import CorruptionError, ReadOnlyError
from memvid_mcp.search.filters import SearchFilters
from memvid_mcp.search.lexical import SCHEMA_VERSION, LexicalDoc, LexicalIndex

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def doc(
    i: int | str,
    text: str,
    *,
    title: str | None = None,
    tags: tuple[str, ...] = (),
    kind: str = "note",
    days: int = 0,
    pinned: bool = False,
) -> LexicalDoc:
    return LexicalDoc(str(i), text, title, tags, kind, T0 + timedelta(days=days), pinned)


def ids(hits: list[tuple[str, float]]) -> list[str]:
    return [h for h, _ in hits]


@pytest.fixture
def index() -> LexicalIndex:
    return LexicalIndex(None)


def test_read_your_writes_before_commit(index: LexicalIndex) -> None:
    index.upsert([doc("a", "the running dogs chase cats")])
    assert ids(index.search("dog runs", 5)) == ["a"]  # stemmed, before any commit
    index.commit(1)
    index.upsert([doc("b", "a dog sleeps")])
    assert set(ids(index.search("dog", 5))) == {"a", "b"}
    assert len(index) == 2


def test_or_semantics_for_questions(index: LexicalIndex) -> None:
    index.upsert([doc(1, "Aspirin reduces fever"), doc(2, "Paris is the capital of France")])
    index.commit(1)
    assert ids(index.search("what reduces a fever in children?", 5))[0] == "1"
    assert ids(index.search("which city is France's capital", 5))[0] == "2"


def test_update_and_delete_leave_no_ghosts(index: LexicalIndex) -> None:
    index.upsert([doc("a", "alpha bravo"), doc("b", "alpha charlie")])
    index.commit(1)
    index.upsert([doc("a", "delta echo")])  # replaced, uncommitted
    index.delete(["b"])
    assert index.search("alpha", 5) == []
    assert ids(index.search("delta", 5)) == ["a"]
    assert len(index) == 1
    index.commit(2)
    assert index.search("alpha", 5) == []
    assert ids(index.search("delta", 5)) == ["a"]
    index.delete(["a", "missing"])
    assert index.search("delta", 5) == [] and len(index) == 0
    index.upsert([doc("a", "alpha again")])  # delete then re-add before a commit
    assert ids(index.search("alpha", 5)) == ["a"] and len(index) == 1
    index.commit(3)
    assert ids(index.search("alpha", 5)) == ["a"] and len(index) == 1


def test_tail_scores_match_committed_scores(index: LexicalIndex) -> None:
    corpus = [doc(i, f"memory {i} about topic{i % 7} and gardening tips") for i in range(60)]
    index.upsert(corpus[:50])
    index.commit(1)
    index.upsert(corpus[50:])
    before = dict(index.search("gardening topic3", 60))
    index.commit(2)
    after = dict(index.search("gardening topic3", 60))
    assert set(before) == set(after)
    tail = {str(i) for i in range(50, 60)}
    for key, score in after.items():  # the tail's scores use the statistics tantivy uses
        if key in tail:
            assert before[key] == pytest.approx(score, rel=0.05)


def test_filters_apply_before_the_cut(index: LexicalIndex) -> None:
    docs = [
        doc(i, "shared words about python", tags=("Py",) if i % 10 == 0 else ()) for i in range(100)
    ]
    docs += [doc("k", "shared words", kind="todo", days=5, pinned=True, tags=("py", "x"))]
    index.upsert(docs)
    index.commit(1)
    tagged = index.search("shared words", 5, SearchFilters(tags_any=("py",)))
    assert len(tagged) == 5
    assert all(h == "k" or int(h) % 10 == 0 for h in ids(tagged))
    assert ids(index.search("shared", 5, SearchFilters(kind="todo"))) == ["k"]
    assert ids(index.search("shared", 5, SearchFilters(pinned=True))) == ["k"]
    assert ids(index.search("shared", 5, SearchFilters(tags_all=("PY", "x")))) == ["k"]
    since = SearchFilters(since=T0 + timedelta(days=1))
    assert ids(index.search("shared", 50, since)) == ["k"]
    until = SearchFilters(until=T0 + timedelta(days=5))
    assert "k" not in ids(index.search("shared", 200, until))
    assert len(index.search("shared", 200, until)) == 100
    # the same filters over the uncommitted tail
    index.upsert([doc("t", "shared tail", kind="todo", tags=("PY",))])
    assert set(ids(index.search("shared", 5, SearchFilters(kind="todo")))) == {"k", "t"}
    assert "t" not in ids(index.search("shared", 500, SearchFilters(kind="note")))


def test_title_is_searched(index: LexicalIndex) -> None:
    index.upsert([doc("a", "body text", title="Quarterly planning"), doc("b", "other")])
    assert ids(index.search("planning", 5)) == ["a"]


def test_persistence_and_committed_seq(tmp_path: Path) -> None:
    path = tmp_path / "lex"
    index = LexicalIndex(path)
    assert index.committed_seq == -1
    index.upsert([doc("a", "persistent memory"), doc("b", "volatile memory")])
    index.commit(41)
    index.upsert([doc("c", "never committed memory")])
    index.close()
    again = LexicalIndex(path)
    assert again.committed_seq == 41
    assert set(ids(again.search("memory", 10))) == {"a", "b"}
    assert len(again) == 2
    assert again.maybe_commit(42) is False  # not dirty
    again.delete(["b"])
    assert again.maybe_commit(43, interval=0.0) is True
    again.close()
    third = LexicalIndex(path)
    assert third.committed_seq == 43 and ids(third.search("memory", 10)) == ["a"]
    third.clear()
    assert third.committed_seq == -1 and len(third) == 0 and third.search("memory", 5) == []
    third.close()


def test_corrupt_or_foreign_index_raises(tmp_path: Path) -> None:
    path = tmp_path / "lex"
    LexicalIndex(path).close()
    (path / "memvid_lexical.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CorruptionError):
        LexicalIndex(path)
    (path / "memvid_lexical.json").write_text('{"schema_version": 999, "committed_seq": 1}')
    with pytest.raises(CorruptionError):
        LexicalIndex(path)
    (path / "memvid_lexical.json").write_text(json.dumps(
        {"schema_version": SCHEMA_VERSION, "committed_seq": 1}))
    (path / "meta.json").write_text("garbage", encoding="utf-8")
    with pytest.raises(CorruptionError):
        LexicalIndex(path)


HOSTILE = [
    "",
    "   ",
    "AND OR NOT",
    'title:"unclosed',
    "a:(b OR",
    "field:[1 TO",
    "*?~^2 +-!",
    "\\",
    "\x00\x01",
    "id:x IN [a b]",
    "ünïcödé 東京 🚀",
    "a" * 5000,
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(index: LexicalIndex, query: str) -> None:
    index.upsert([doc("a", "title unclosed field ünïcödé 東京")])
    index.search(query, 5)
    index.search(query, 5, SearchFilters(tags_any=(query or "x",), kind=query))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_arbitrary_text_queries_never_raise(index: LexicalIndex, query: str) -> None:
    if len(index) == 0:
        index.upsert([doc("a", "some words to match against"), doc("b", "more words")])
        index.commit(1)
        index.upsert([doc("c", "tail words")])
    hits = index.search(query, 3)
    assert len(hits) <= 3
    if not index.analyze(query):
        assert hits == []


def test_concurrent_writer_and_searchers() -> None:
    index = LexicalIndex(None)
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                for doc_id, _ in index.search("common", 20):
                    assert doc_id.startswith("d")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(300):
        index.upsert([doc(f"d{i}", f"common text {i}")])
        if i % 7 == 0:
            index.delete([f"d{i - 3}"])
        if i % 50 == 0:
            index.commit(i)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    index.commit(300)
    assert len(index) == len(index.search("common", 1000))


def test_read_only_open_serves_committed_docs(tmp_path: Path) -> None:
    path = tmp_path / "lex"
    writer = LexicalIndex(path)
    writer.upsert([doc("a", "shared reader text")])
    writer.commit(5)
    reader = LexicalIndex(path, read_only=True)  # no writer lock taken
    assert reader.committed_seq == 5 and ids(reader.search("reader", 5)) == ["a"]
    with pytest.raises(ReadOnlyError):
        reader.upsert([doc("b", "nope")])
    with pytest.raises(ReadOnlyError):
        reader.commit(6)
    reader.close()
    writer.close()
    fresh = LexicalIndex(tmp_path / "missing", read_only=True)
    assert fresh.committed_seq == -1 and fresh.search("anything", 5) == []
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("committed", [False, True])
def test_function_words_do_not_match(committed: bool) -> None:
    """Issue 12: "when do we deploy?" ranked "We chose PostgreSQL ..." second, on "we" alone.
    Query function words are dropped; a query of nothing else still searches them."""
    ix = LexicalIndex(None)
    ix.upsert([doc(1, "We chose PostgreSQL for the billing database."),
               doc(2, "Deploys go out on Tuesdays after the release review."),
               doc(3, "To be or not to be.")])
    if committed:
        ix.commit(1)
    assert ids(ix.search("when do we deploy?", 10)) == ["2"]
    assert ix.query_terms("When do we deploy?") == ["deploy"]
    assert ids(ix.search("to be or not to be", 10)) == ["3"]


def test_index_stores_no_text(tmp_path: Path) -> None:
    """The body is indexed, never stored: snippets come from the body store (issue 11)."""
    ix = LexicalIndex(tmp_path / "lex")
    ix.upsert([doc(1, "Alice: quixotic marmalade ledger", title="a title", tags=("t",))])
    ix.commit(1)
    searcher = ix._index.searcher()
    (_, address), = searcher.search(ix._query(searcher, ["quixot"], None), 1).hits
    assert searcher.doc(address).to_dict() == {"id": ["1"]}
    ix.close()


WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
TAGS = ("red", "green", "blue", "grey")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8), min_size=1,
                   max_size=60),
    tag_picks=st.lists(st.sets(st.sampled_from(TAGS), max_size=2), min_size=60, max_size=60),
    query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),
    wanted=st.sets(st.sampled_from(TAGS), min_size=1, max_size=2),
    k=st.integers(1, 12),
    uncommitted=st.integers(0, 10),
)
def test_filtered_search_through_unfiltered_hits_is_exact(
        texts: list[list[str]], tag_picks: list[set[str]], query: list[str],
        wanted: set[str], k: int, uncommitted: int) -> None:
    """The unfiltered-first path (``allowed``) returns what the filtered query returns:
    the same ids with the same scores, committed documents and an uncommitted tail alike,
    whether few or many documents pass."""
    index = LexicalIndex(None)
    docs = [doc(i, " ".join(words), tags=tuple(sorted(tag_picks[i])))
            for i, words in enumerate(texts)]
    cut = max(0, len(docs) - uncommitted)
    index.upsert(docs[:cut])
    index.commit(1)
    index.upsert(docs[cut:])
    tags = {d.id: d.tags for d in docs}
    filters = SearchFilters(tags_any=tuple(sorted(wanted)))
    plain = index.search(" ".join(query), k, filters)
    through = index.search(" ".join(query), k, filters,
                           allowed=lambda i: bool(set(tags[i]) & wanted))
    assert [s for _, s in through] == pytest.approx([s for _, s in plain])
    if plain:  # ties at the cut may be broken either way; everything above it is the same
        above = plain[-1][1] + 1e-6
        assert [h for h, s in through if s > above] == [h for h, s in plain if s > above]


def test_filtered_search_falls_back_when_few_unfiltered_hits_pass(index: LexicalIndex) -> None:
    """The two memories that pass rank below forty that do not: the top unfiltered hits
    hold none of them, so the filtered query runs and still finds both."""
    index.upsert([doc(f"hot{i:02d}", "alpha alpha alpha", tags=("common",)) for i in range(40)])
    index.upsert([doc("rare1", "alpha and a much longer text about other things", tags=("rare",)),
                  doc("rare2", "alpha with other words in it too", tags=("rare",))])
    index.commit(1)
    filters = SearchFilters(tags_any=("rare",))
    found = index.search("alpha", 3, filters, allowed=lambda i: i.startswith("rare"))
    assert sorted(ids(found)) == ["rare1", "rare2"]
    assert found == index.search("alpha", 3, filters)


def test_tags_are_searchable_words(index: LexicalIndex) -> None:
    """A memory is found by its tag even when its text never says it (schema 3)."""
    index.upsert([doc("a", "we moved the nightly job to 02:00", tags=("cron", "Ops-Oncall")),
                  doc("b", "the oncall rota lives in the wiki")])
    assert ids(index.search("cron", 5)) == ["a"]  # uncommitted tail
    index.commit(1)
    assert ids(index.search("cron schedule", 5)) == ["a"]
    assert set(ids(index.search("oncall", 5))) == {"a", "b"}


def test_an_index_of_the_previous_schema_is_rebuilt_not_quarantined(tmp_path: Path) -> None:
    """Opening a schema-2 index for writing starts a fresh, empty one (committed_seq -1,
    so the scope replays its records into it); a reader gets CorruptionError and builds
    its own in memory, as before."""
    path = tmp_path / "lex"
    old = LexicalIndex(path)
    old.upsert([doc("a", "alpha")])
    old.commit(5)
    old.close()
    meta = path / "memvid_lexical.json"
    meta.write_text(json.dumps({"schema_version": SCHEMA_VERSION - 1, "committed_seq": 5}))
    with pytest.raises(CorruptionError):
        LexicalIndex(path, read_only=True)
    fresh = LexicalIndex(path)
    assert fresh.committed_seq == -1 and len(fresh) == 0
    assert json.loads(meta.read_text())["schema_version"] == SCHEMA_VERSION
    fresh.close()


def _speaker_corpus() -> list[LexicalDoc]:
    """Alice's deploy memory says "Alice" once, as do the two memories that only mention
    her; without the speaker weight the shorter mention outranks what she said."""
    return [
        doc("said", "Alice: we moved the deploy to Fridays after the outage review"),
        doc("about", "remember to ask Alice before the deploy goes out"),
        doc("other", "Bob: the deploy of the billing service is on hold"),
        *[doc(f"n{i}", f"Bob: note {i} on the office plants") for i in range(20)],
        *[doc(f"m{i}", f"Carol: note {i} on the quarterly budget") for i in range(20)],
    ]


@pytest.mark.parametrize("committed", [True, False])
def test_a_query_naming_a_speaker_ranks_that_speakers_memory_first(committed: bool) -> None:
    """Schema 4 scores a speaker-like prefix's name in a boosted field of its own (ADR 0035):
    "what did Alice say about the deploy" finds the memory Alice said first, where schema 3
    ranked a shorter memory merely mentioning her above it; committed or still in the
    uncommitted tail."""
    index = LexicalIndex(None)
    index.upsert(_speaker_corpus())
    if committed:
        index.commit(1)
    assert ids(index.search("what did Alice say about the deploy", 3))[0] == "said"


@pytest.mark.parametrize(
    "query", ["Alice deploy note", "what did Carol say about the budget", "Bob plants 12"])
def test_speaker_weighted_tail_scores_match_committed_scores(query: str) -> None:
    """The Python BM25 of the uncommitted tail scores the body and the boosted speaker field
    as tantivy does once they are committed."""
    index = LexicalIndex(None)
    corpus = [*_speaker_corpus(), doc("late", "Alice: the deploy freeze starts Monday")]
    index.upsert(corpus[:30])
    index.commit(1)
    index.upsert(corpus[30:])
    before = dict(index.search(query, 60))
    index.commit(2)
    after = dict(index.search(query, 60))
    assert set(before) == set(after)
    tail = {d.id for d in corpus[30:]} & set(after)
    assert tail
    for key in tail:
        assert before[key] == pytest.approx(after[key], rel=1e-4), key


def test_ubiquitous_speakers_do_not_change_rankings() -> None:
    """"User:" and "Assistant:" on every memory carry no weight (their idf is near zero): the
    ranking is the one the same dialogue gets without the speaker weight."""
    turns = [f"User: question {i} about {'plants' if i % 3 else 'budget'} and tea\n"
             f"Assistant: answer {i}" for i in range(30)]
    weighted = LexicalIndex(None)
    weighted.upsert([doc(i, t) for i, t in enumerate(turns)])
    weighted.commit(1)
    plain = LexicalIndex(None)
    plain.upsert([doc(i, t.replace("User:", "User").replace("Assistant:", "Assistant"))
                  for i, t in enumerate(turns)])
    plain.commit(1)
    for query in ("budget tea", "plants question 4", "user budget"):
        assert ids(weighted.search(query, 10)) == ids(plain.search(query, 10))
