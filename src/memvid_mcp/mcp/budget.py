"""Token budgets: a search answer that fits what the model can afford (no ``mcp`` import).

The model sees a tool result as its structured content, its text block, or both; the text
block is the same JSON, so an answer costs twice the estimate of its JSON. The estimate is
deliberately pessimistic: 0.3 token per ASCII character (the usual 4 characters per token,
plus a 20% margin for ids, digits and punctuation, which tokenize worse than prose) and one
token per other character (CJK, emoji, accents).

``fit_search`` cuts, in this order, until the answer fits: snippet text (every hit keeps at
least ``MIN_SHARE`` characters), then the fields a model can do without (score, tags, kind,
scope, dates, mode, scopes, note: each hit keeps id, title and snippet), then whole results
from the end, and at last everything but one result's id and a snippet cut to what is left.
At least one result always comes back, and ``truncated`` says the budget cut something
(``omitted``: how many results of this page were left out).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

MIN_TOKENS = 50
MAX_TOKENS = 100_000
MIN_SHARE = 60  # snippet characters each hit keeps before whole results are dropped
LEAN_HIT_FIELDS = ("id", "title", "snippet")
LEAN_TOP_FIELDS = ("next_cursor",)


def estimate_tokens(text: str) -> int:
    """Pessimistic token count of ``text`` (see the module docstring)."""
    other = len(text) - len(text.encode("ascii", "ignore"))
    return (3 * (len(text) - other) + 9) // 10 + other


def answer_tokens(data: Mapping[str, Any]) -> int:
    """What a tool result carrying ``data`` costs: its JSON as structured content and again
    as the text block."""
    return 2 * estimate_tokens(compact_json(data))


def compact_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, an ellipsis marking a cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…" if limit > 0 else ""


def fit_search(data: Mapping[str, Any], max_tokens: int) -> tuple[dict[str, Any], int]:
    """The search answer ``data`` cut to ``max_tokens``; returns it and how many of its
    results it kept (always at least one when there were any)."""
    hits: Sequence[Mapping[str, Any]] = data["results"]
    if answer_tokens(data) <= max_tokens or not hits:
        return dict(data), len(hits)
    for n in range(len(hits), 0, -1):
        for lean in (False, True):
            fitted = _fit_snippets(data, n, lean, max_tokens, MIN_SHARE if n > 1 else 0)
            if fitted is not None:
                return fitted, n
    return _tightest(data, max_tokens), 1


def _omitted(data: Mapping[str, Any]) -> int:
    """Results already left out before this cut (a shorter page asked again)."""
    return int(data.get("omitted") or 0)


def _shape(data: Mapping[str, Any], n: int, lean: bool, snippet_limit: int) -> dict[str, Any]:
    hits = []
    for hit in data["results"][:n]:
        kept = {k: v for k, v in hit.items() if not lean or k in LEAN_HIT_FIELDS}
        kept["snippet"] = cut(str(hit.get("snippet", "")), snippet_limit)
        if lean and kept.get("title") is None:
            kept.pop("title", None)
        hits.append(kept)
    out: dict[str, Any] = {"results": hits}
    for key, value in data.items():
        if key != "results" and (not lean or (key in LEAN_TOP_FIELDS and value is not None)):
            out[key] = value
    out["truncated"] = True
    dropped = _omitted(data) + len(data["results"]) - n
    if dropped:
        out["omitted"] = dropped
    return out


def _fit_snippets(
    data: Mapping[str, Any], n: int, lean: bool, max_tokens: int, min_share: int
) -> dict[str, Any] | None:
    """``n`` hits with snippets cut to one common length, or None when even ``min_share``
    characters each do not fit."""
    longest = max(len(str(h.get("snippet", ""))) for h in data["results"][:n])
    low = min(min_share, longest)
    if answer_tokens(_shape(data, n, lean, low)) > max_tokens:
        return None
    high = longest  # binary search for the longest common snippet length that fits
    while low < high:
        mid = (low + high + 1) // 2
        if answer_tokens(_shape(data, n, lean, mid)) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return _shape(data, n, lean, low)


def _tightest(data: Mapping[str, Any], max_tokens: int) -> dict[str, Any]:
    """One result's id and as much of its snippet as fits (the floor: never empty)."""
    hit = data["results"][0]
    snippet = str(hit.get("snippet", ""))
    dropped = _omitted(data) + len(data["results"]) - 1

    def shape(limit: int, with_count: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"results": [{"id": hit["id"], "snippet": cut(snippet, limit)}],
                               "truncated": True}
        if with_count and dropped:
            out["omitted"] = dropped
        return out

    with_count = answer_tokens(shape(0, True)) <= max_tokens
    low, high = 0, len(snippet)
    while low < high:
        mid = (low + high + 1) // 2
        if answer_tokens(shape(mid, with_count)) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return shape(low, with_count)
