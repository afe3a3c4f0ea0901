"""The passage of a memory that best matches a query, for compact search results.

Plain Python on purpose: it runs on at most k texts per search. A word matches a query term
when their first five lowercase characters agree, a crude stem that lets "running" find
"runs" without a tokenizer dependency.
"""

from __future__ import annotations

import functools
import re
import string

_WORD = re.compile(r"\w+", re.UNICODE)
_STEM_CHARS = 5
_ELLIPSIS = "…"
_ASCII_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "_")


def _key(word: str) -> str:
    return word.casefold()[:_STEM_CHARS]


def best_snippet(text: str, query: str, max_chars: int = 240) -> str:
    """The window of ``text`` with the most query-term hits, cut at word boundaries.

    An ellipsis marks each end that was cut; whitespace runs collapse to one space; the
    result never exceeds ``max_chars``. Without any hit it is the beginning of the text.
    """
    flat = " ".join(text.split())
    if len(flat) <= max_chars:
        return flat
    if max_chars < 3:
        return flat[:max_chars]
    terms = _query_terms(query)
    budget = max_chars - 2  # room for both ellipses
    hits = _hits(flat, terms)
    # The best window starts at a hit: one starting at another word holds a subset of the
    # hits of the window starting at the next hit. Windows over the hits alone (ADR 0037):
    # a page's snippets cost ~70 us each when every word of the text was walked.
    best_left, best_score = 0, (0, 0)
    right, count = 0, 0
    distinct_terms: dict[str, int] = {}
    for left in range(len(hits)):
        right = max(right, left)
        while right < len(hits) and hits[right][1] - hits[left][0] <= budget:
            key = hits[right][2]
            count += 1
            distinct_terms[key] = distinct_terms.get(key, 0) + 1
            right += 1
        score = (len(distinct_terms), count)
        if score > best_score:
            best_score, best_left = score, left
        if left < right:
            key = hits[left][2]
            count -= 1
            distinct_terms[key] -= 1
            if not distinct_terms[key]:
                del distinct_terms[key]
    if best_score[1] <= 0:
        return _window(flat, 0, max_chars)
    # centre the hits of the best window: as much context before the first as after the last
    window_start = hits[best_left][0]
    span_start = window_start
    span_end = max(end for start, end, _ in hits[best_left:] if end - window_start <= budget)
    want = span_start - max(0, budget - (span_end - span_start)) // 2
    return _window(flat, _first_word_ending_after(flat, want), max_chars)


def _hits(flat: str, terms: frozenset[str]) -> list[tuple[int, int, str]]:
    """(start, end, key) of each word of ``flat`` whose key is a query term, in order.
    In ASCII text (lowercasing keeps its offsets, and casefold is lower there) each term is
    found with ``str.find`` and kept where a word starts; other text is walked word by
    word."""
    if not flat.isascii():
        return [(m.start(), m.end(), key) for m in _WORD.finditer(flat)
                if (key := _key(m.group())) in terms]
    lowered = flat.lower()
    hits = []
    for term in _ascii_terms(terms):
        at = lowered.find(term)
        while at >= 0:
            if at == 0 or lowered[at - 1] not in _ASCII_WORD_CHARS:
                end = at + len(term)
                if len(term) == _STEM_CHARS:  # a stem: the word may go on
                    word = _WORD.match(lowered, at)
                    end = word.end() if word is not None else end
                if end == len(lowered) or lowered[end] not in _ASCII_WORD_CHARS:
                    hits.append((at, end, term))
            at = lowered.find(term, at + 1)
    hits.sort()
    return hits


@functools.lru_cache(maxsize=64)
def _query_terms(query: str) -> frozenset[str]:
    return frozenset(_key(m.group()) for m in _WORD.finditer(query))


@functools.lru_cache(maxsize=64)
def _ascii_terms(terms: frozenset[str]) -> tuple[str, ...]:
    """The terms an ASCII word's key can equal (ASCII word characters only), in a fixed
    order."""
    return tuple(sorted(t for t in terms if t and set(t) <= _ASCII_WORD_CHARS))


def _first_word_ending_after(flat: str, position: int) -> int:
    """Where the first word of ``flat`` that ends after ``position`` starts."""
    position = max(0, position)
    while 0 < position < len(flat) and _WORD.fullmatch(flat[position - 1: position + 1]):
        position -= 1  # the word goes on before ``position``: back to its start
    found = _WORD.search(flat, position)
    return found.start() if found is not None else 0


def _window(flat: str, start: int, max_chars: int) -> str:
    """``flat`` from ``start``, at most ``max_chars`` long including ellipses."""
    if start > 0 and len(flat) - start < max_chars - 1:
        # near the end: slide left to use the whole budget, at a word boundary
        start = len(flat) - (max_chars - 1)
        space = flat.find(" ", start)
        start = space + 1 if 0 <= space < len(flat) - 1 else start
        if start <= 0:
            return flat[: max_chars - 1] + _ELLIPSIS
    prefix = _ELLIPSIS if start > 0 else ""
    rest = flat[start:]
    room = max_chars - len(prefix)
    if len(rest) <= room:
        return prefix + rest
    room -= 1
    piece = rest[:room]
    if rest[room] != " ":
        space = piece.rfind(" ")
        if space > 0:
            piece = piece[:space]
    return prefix + piece.rstrip() + _ELLIPSIS
