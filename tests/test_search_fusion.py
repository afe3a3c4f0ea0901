"""Reciprocal rank fusion as a pure function, snippets, and filter semantics."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memvid_mcp.core.errors import ValidationError
from memvid_mcp.search.filters import SearchFilters
from memvid_mcp.search.fusion import rrf
from memvid_mcp.search.snippet import best_snippet

ids = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
rankings = st.lists(st.lists(ids, max_size=12), max_size=4)


def test_rrf_known_values() -> None:
    fused = rrf([["a", "b", "c"], ["b", "a", "d"]], k=60)
    scores = dict(fused)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["d"] == pytest.approx(1 / 63)
    assert [doc for doc, _ in fused][:2] == ["a", "b"]  # tie: first appearance wins
    assert [doc for doc, _ in fused][2:] == ["c", "d"]


def test_rrf_weights_and_errors() -> None:
    fused = rrf([["a"], ["b"]], k=0, weights=[1.0, 2.0])
    assert fused == [("b", 2.0), ("a", 1.0)]
    assert rrf([]) == []
    with pytest.raises(ValidationError):
        rrf([["a"]], weights=[1.0, 2.0])
    with pytest.raises(ValidationError):
        rrf([["a"]], k=-1)


@given(rankings)
def test_rrf_properties(runs: list[list[str]]) -> None:
    fused = rrf(runs)
    union = {doc for run in runs for doc in run}
    assert {doc for doc, _ in fused} == union
    assert len(fused) == len(union)
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)
    assert all(s > 0 for s in scores)
    assert rrf(runs) == fused  # deterministic
    bound = sum(1 / 61 for run in runs if run)
    assert all(s <= bound + 1e-12 for s in scores)


@given(rankings)
def test_rrf_single_ranking_keeps_order(runs: list[list[str]]) -> None:
    for run in runs:
        order = list(dict.fromkeys(run))
        assert [doc for doc, _ in rrf([run])] == order


def test_filters_semantics() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    f = SearchFilters(tags_any=("Work", "home"), tags_all=("urgent",), kind="todo")
    assert f.matches(("work", "URGENT"), "todo", t0, False)
    assert not f.matches(("work",), "todo", t0, False)  # tags_all missing
    assert not f.matches(("play", "urgent"), "todo", t0, False)  # no tag of tags_any
    assert not f.matches(("home", "urgent"), "note", t0, False)  # kind
    window = SearchFilters(since=t0, until=t0 + timedelta(days=1))
    assert window.matches((), "n", t0, False)  # since inclusive
    assert not window.matches((), "n", t0 + timedelta(days=1), False)  # until exclusive
    assert not window.matches((), "n", t0 - timedelta(seconds=1), False)
    naive = SearchFilters(since=datetime(2025, 1, 1))  # naive means UTC
    assert naive.matches((), "n", t0, False)
    assert SearchFilters(pinned=True).matches((), "n", t0, True)
    assert not SearchFilters(pinned=False).matches((), "n", t0, True)
    assert SearchFilters().empty and not f.empty
    assert SearchFilters().matches(("x",), "y", t0, True)


def test_snippet_window_and_limits() -> None:
    text = "filler words here. " * 40 + "Aspirin lowers fever in adults. " + "more filler. " * 40
    snip = best_snippet(text, "fever aspirin", 120)
    assert "Aspirin lowers fever" in snip
    assert len(snip) <= 120
    assert snip.startswith("…") and snip.endswith("…")
    assert best_snippet("short  text\n here", "x") == "short text here"
    head = best_snippet(text, "absent", 60)
    assert head.startswith("filler") and head.endswith("…") and len(head) <= 60


@given(st.text(max_size=600), st.text(max_size=40), st.integers(min_value=1, max_value=300))
def test_snippet_never_exceeds(text: str, query: str, limit: int) -> None:
    snip = best_snippet(text, query, limit)
    assert len(snip) <= limit


def _reference_snippet(text: str, query: str, max_chars: int = 240) -> str:
    """best_snippet as it was before ADR 0037: every word of the text walked as a window
    start. The faster one (windows over the hits only) must cut the same snippets."""
    from memvid_mcp.search.snippet import _WORD, _key, _window

    flat = " ".join(text.split())
    if len(flat) <= max_chars:
        return flat
    if max_chars < 3:
        return flat[:max_chars]
    terms = {_key(m.group()) for m in _WORD.finditer(query)}
    words = [(m.start(), m.end(), word if (word := _key(m.group())) in terms else None)
             for m in _WORD.finditer(flat)]
    budget = max_chars - 2
    best_left, best_score = 0, (-1, -1)
    right, hits = 0, 0
    distinct: dict[str, int] = {}
    for left in range(len(words)):
        right = max(right, left)
        while right < len(words) and words[right][1] - words[left][0] <= budget:
            key = words[right][2]
            if key is not None:
                hits += 1
                distinct[key] = distinct.get(key, 0) + 1
            right += 1
        score = (len(distinct), hits)
        if score > best_score:
            best_score, best_left = score, left
        key = words[left][2]
        if key is not None and left < right:
            hits -= 1
            distinct[key] -= 1
            if not distinct[key]:
                del distinct[key]
    if not words or best_score[1] <= 0:
        return _window(flat, 0, max_chars)
    in_window = [w for w in words[best_left:] if w[0] - words[best_left][0] <= budget]
    hit_words = [w for w in in_window if w[2] is not None and w[1] - words[best_left][0] <= budget]
    span_start, span_end = hit_words[0][0], hit_words[-1][1]
    want = span_start - max(0, budget - (span_end - span_start)) // 2
    start_word = next(i for i, w in enumerate(words) if w[1] > want)
    start_word = min(start_word, next(i for i, w in enumerate(words) if w[0] == span_start))
    return _window(flat, words[start_word][0], max_chars)


_WORDS = st.sampled_from(["Fever", "fevers", "aspirin", "ASPIRIN", "dose", "do", "a", "the",
                          "lowers", "lower", "slower", "Straße", "naïve", "run_time", "x1", "é"])
_GAPS = st.sampled_from([" ", "  ", ". ", ", ", "\n", " - ", "'", "…"])


@given(st.lists(st.tuples(_WORDS, _GAPS), max_size=120), st.lists(_WORDS, max_size=4),
       st.integers(min_value=1, max_value=200), st.booleans())
def test_snippet_cuts_what_the_word_by_word_walk_cut(
        parts: list[tuple[str, str]], query: list[str], limit: int, ascii_only: bool) -> None:
    """Windows over the query-term hits only (a regular expression finds them in ASCII
    text) choose the same snippet as walking every word (ADR 0037)."""
    text = "".join(w + g for w, g in parts)
    if ascii_only:
        text = text.encode("ascii", "ignore").decode()
    q = " ".join(query)
    assert best_snippet(text, q, limit) == _reference_snippet(text, q, limit)


@given(st.text(max_size=400), st.text(max_size=30), st.integers(min_value=1, max_value=200))
def test_snippet_of_any_text_is_the_word_by_word_one(text: str, query: str, limit: int) -> None:
    assert best_snippet(text, query, limit) == _reference_snippet(text, query, limit)


def test_recency_breaks_ties_and_can_be_turned_up() -> None:
    from memvid_mcp.search.fusion import recency_order

    ranked = [("old", 1.0, 100.0), ("new", 1.0, 300.0), ("best", 2.0, 200.0)]
    assert [i for i, _ in recency_order(sorted(ranked, key=lambda r: -r[1]))] == [
        "best", "new", "old"]
    rel = [("a", 3.0, 1.0), ("b", 2.0, 2.0), ("c", 1.0, 3.0)]
    assert [i for i, _ in recency_order(rel, 0.0)] == ["a", "b", "c"]
    assert [i for i, _ in recency_order(rel, 1.0)] == ["c", "b", "a"]
    assert dict(recency_order(rel, 1.0)) == {"a": 3.0, "b": 2.0, "c": 1.0}  # scores kept
    with pytest.raises(ValidationError):
        recency_order(rel, 1.5)


def test_manager_ties_go_to_the_newer_memory(manager: Any) -> None:
    """Two equally relevant decisions: the later one comes first; turned up, recency wins
    over a small relevance gap ("what did we decide last about the database?")."""
    # no "label:" prefix: it would be weighted as a speaker's name (ADR 0035)
    old = manager.import_record({"text": "the decision on the database is alpha",
                                 "created_at": "2024-01-01T00:00:00Z"}).id
    new = manager.import_record({"text": "the decision on the database is gamma",
                                 "created_at": "2025-01-01T00:00:00Z"}).id
    hits = manager.search("database decision", mode="lexical").results
    assert [h.id for h in hits] == [new, old]
    older = manager.import_record({"text": "decision database database", "created_at":
                                   "2023-01-01T00:00:00Z"}).id
    assert manager.search("database decision", mode="lexical").results[0].id == older
    assert manager.search("database decision", mode="lexical",
                          recency=1.0).results[0].id == new


def test_zscore_fusion_keeps_how_far_a_result_stands_out() -> None:
    from memvid_mcp.search.fusion import zscore

    # "b" is only second lexically, but far ahead semantically: it wins (RRF ties a and b)
    lexical = [("a", 10.0), ("b", 9.9), ("c", 1.0), ("d", 0.9)]
    semantic = [("b", 0.9), ("a", 0.3), ("d", 0.29), ("c", 0.28)]
    assert [i for i, _ in zscore([lexical, semantic])][:2] == ["b", "a"]
    assert rrf([[i for i, _ in lexical], [i for i, _ in semantic]])[0][1] == pytest.approx(
        rrf([[i for i, _ in lexical], [i for i, _ in semantic]])[1][1])
    # an id one list lacks counts as that list's lowest entry, not as its mean
    fused = dict(zscore([[("x", 3.0), ("y", 2.0), ("z", 1.0)], [("w", 0.5), ("x", 0.4)]]))
    assert fused["z"] == pytest.approx(-1.2247 + -1.0, abs=1e-3)
    assert zscore([[("only", 1.0)], []]) == [("only", 0.0)]
    with pytest.raises(ValidationError):
        zscore([[("a", 1.0)]], weights=[1.0, 2.0])


@given(st.lists(st.lists(st.tuples(ids, st.floats(-1e6, 1e6)), max_size=12), max_size=4))
def test_zscore_fusion_is_a_ranking_of_the_inputs(lists: list[list[tuple[str, float]]]) -> None:
    from memvid_mcp.search.fusion import zscore

    fused = zscore(lists)
    assert sorted(i for i, _ in fused) == sorted({i for lst in lists for i, _ in lst})
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)
    assert zscore(lists) == fused  # deterministic


def _reference_zscore(lists: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """The z-score rule spelt out: per list, each id's first entry as a standard score
    (an absent id: the list's lowest), summed; best first, ties in first-appearance order."""
    tables = []
    for lst in lists:
        first: dict[str, float] = {}
        for doc_id, score in lst:
            first.setdefault(doc_id, score)
        values = list(first.values())
        mean = sum(values) / len(values) if values else 0.0
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else 0
        z = {d: (v - mean) / spread if spread > 0 else 0.0 for d, v in first.items()}
        tables.append((z, min(z.values()) if z else 0.0))
    seen = list(dict.fromkeys(i for lst in lists for i, _ in lst))
    fused = {d: sum(z.get(d, low) for z, low in tables if z) for d in seen}
    return sorted(fused.items(), key=lambda kv: (-kv[1], seen.index(kv[0])))


@given(st.lists(st.lists(st.tuples(ids, st.floats(-1e3, 1e3) | st.sampled_from([1.0, 2.0])),
                         max_size=12), max_size=4))
def test_zscore_fusion_is_the_rule_spelt_out(lists: list[list[tuple[str, float]]]) -> None:
    """The one-pass fusion of two lists and the first-entry shortcut (ADR 0037) keep the
    rule: the same ids in the same order, the same scores."""
    from memvid_mcp.search.fusion import zscore

    fused, expected = zscore(lists), _reference_zscore(lists)
    assert [i for i, _ in fused] == [i for i, _ in expected]
    assert [s for _, s in fused] == pytest.approx([s for _, s in expected], abs=1e-9)


@given(st.lists(st.tuples(st.sampled_from([1.0, 2.0, 2.5, 3.0]),
                          st.sampled_from([10.0, 20.0, 30.0])), max_size=30), st.booleans())
def test_newest_first_on_ties_is_recency_at_weight_zero(
        items: list[tuple[float, float]], in_order: bool) -> None:
    """Relevance first, exact ties newest first, then in the given order: what recency_order
    does at weight 0, without a timestamp read outside a tie (ADR 0037)."""
    from memvid_mcp.search.fusion import newest_first_on_ties, recency_order

    if in_order:
        items = sorted(items, key=lambda item: -item[0])
    named = [(f"m{n}", score, created) for n, (score, created) in enumerate(items)]
    read: list[str] = []

    def created(item: tuple[str, float, float]) -> float:
        read.append(item[0])
        return item[2]

    got = newest_first_on_ties(named, lambda item: item[1], created)
    assert [i for i, _, _ in got] == [i for i, _ in recency_order(named, 0.0)]
    if in_order:  # only memories that tie with a neighbour have their time read
        scores = [s for _, s, _ in named]
        tied = {i for n, (i, s, _) in enumerate(named) if scores.count(s) > 1}
        assert set(read) <= tied
