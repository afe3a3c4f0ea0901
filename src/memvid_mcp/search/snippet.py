"""The passage of a memory that best matches a query, for compact search results.

Plain Python on purpose: it runs on at most k texts per search. A word matches a query term
when their first five lowercase characters agree, a crude stem that lets "running" find
"runs" without a tokenizer dependency.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_STEM_CHARS = 5
_ELLIPSIS = "…"


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
    terms = {_key(m.group()) for m in _WORD.finditer(query)}
    # each word once: (start, end, its key when it matches a query term, else None)
    words = [(m.start(), m.end(), word if (word := _key(m.group())) in terms else None)
             for m in _WORD.finditer(flat)]
    budget = max_chars - 2  # room for both ellipses
    best_left, best_score = 0, (-1, -1)
    right, hits = 0, 0
    distinct_terms: dict[str, int] = {}
    for left in range(len(words)):
        right = max(right, left)
        while right < len(words) and words[right][1] - words[left][0] <= budget:
            key = words[right][2]
            if key is not None:
                hits += 1
                distinct_terms[key] = distinct_terms.get(key, 0) + 1
            right += 1
        score = (len(distinct_terms), hits)
        if score > best_score:
            best_score, best_left = score, left
        key = words[left][2]
        if key is not None and left < right:
            hits -= 1
            distinct_terms[key] -= 1
            if not distinct_terms[key]:
                del distinct_terms[key]
    if not words or best_score[1] <= 0:
        return _window(flat, 0, max_chars)
    # centre the hits of the best window: as much context before the first as after the last
    in_window = [w for w in words[best_left:] if w[0] - words[best_left][0] <= budget]
    hit_words = [w for w in in_window if w[2] is not None and w[1] - words[best_left][0] <= budget]
    span_start, span_end = hit_words[0][0], hit_words[-1][1]
    want = span_start - max(0, budget - (span_end - span_start)) // 2
    start_word = next(i for i, w in enumerate(words) if w[1] > want)
    start_word = min(start_word, next(i for i, w in enumerate(words) if w[0] == span_start))
    return _window(flat, words[start_word][0], max_chars)


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
