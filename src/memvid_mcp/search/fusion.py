"""Fusing the lexical and the semantic ranking into one.

BM25 scores and cosines live on different scales. The default, ``zscore``, puts each list on
its own scale (standard scores over the candidates it returned; a candidate a list did not
return gets that list's lowest) and adds them with equal weights: it keeps how far a
result stands out, which rank-only RRF throws away. Measured through the manager (ADR 0022):
SciFact nDCG@10 0.729-0.735 against 0.714 for RRF(60), and on MemoryBank never below the
better single list. ``rrf`` stays available (``Settings.fusion``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import chain, pairwise
from operator import itemgetter
from typing import TypeVar

from ..core.errors import ValidationError


def rrf(
    rankings: Sequence[Sequence[str]],
    *,
    k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """Fuse best-first rankings into ``[(id, score)]`` best first.

    score(id) = sum over rankings of weight / (k + rank), rank starting at 1. An id repeated
    within one ranking counts at its best rank only. Ties break by first appearance (earlier
    rankings first), so the result is deterministic.
    """
    if k < 0:
        raise ValidationError("k", "must be >= 0")
    if weights is None:
        weights = [1.0] * len(rankings)
    elif len(weights) != len(rankings):
        raise ValidationError("weights", "needs one weight per ranking")
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[str] = set()
        for rank, doc_id in enumerate(ranking, start=1):
            if doc_id in seen:
                continue
            seen.add(doc_id)
            scores[doc_id] = scores.get(doc_id, 0.0) + weight / (k + rank)
    order = {doc_id: i for i, doc_id in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


def zscore(
    rankings: Sequence[Sequence[tuple[str, float]]],
    *,
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """Fuse best-first ``(id, score)`` lists into ``[(id, score)]`` best first.

    Per list: z = (score - mean) / standard deviation over that list's entries (all 0 when
    they are equal); an id the list lacks counts as that list's lowest z. The fused score is
    the weighted sum. An id repeated within one list counts at its first entry. Ties break by
    first appearance (earlier lists first), so the result is deterministic.
    """
    return fuse_standard_scores([standard_scores(r) for r in rankings], weights=weights)


def standard_scores(ranking: Sequence[tuple[str, float]]) -> dict[str, float]:
    """One list's z-scores by id (a repeated id at its first entry), in list order: the
    part of ``zscore`` that needs only this list, so that a caller can make it while the
    other list is still being ranked (ADR 0037)."""
    table = {doc_id: float(score) for doc_id, score in ranking}
    if len(table) != len(ranking):  # an id repeated: its first entry counts
        table = {}
        for doc_id, score in ranking:
            if doc_id not in table:
                table[doc_id] = float(score)
    if not table:
        return table
    values = list(table.values())
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return ({d: (v - mean) / spread for d, v in table.items()} if spread > 0
            else dict.fromkeys(table, 0.0))


def fuse_standard_scores(tables: Sequence[dict[str, float]], *,
                         weights: Sequence[float] | None = None) -> list[tuple[str, float]]:
    """``zscore`` of the lists whose ``standard_scores`` are ``tables``."""
    if weights is None:
        weights = [1.0] * len(tables)
    elif len(weights) != len(tables):
        raise ValidationError("weights", "needs one weight per ranking")
    order = dict.fromkeys(chain.from_iterable(tables))  # first appearance, earlier lists first
    used = [(table, min(table.values()), w) for table, w in zip(tables, weights, strict=True)
            if table]
    if len(used) == 2:  # the hybrid search's case, in one pass (ADR 0037)
        (first, low1, w1), (second, low2, w2) = used
        get1, get2 = first.get, second.get
        fused = {d: w1 * get1(d, low1) + w2 * get2(d, low2) for d in order}
    else:
        fused = dict.fromkeys(order, 0.0)
        for table, floor, w in used:
            for doc_id in fused:  # in first-appearance order, as the sum always was
                fused[doc_id] += w * table.get(doc_id, floor)
    # a stable sort (reverse keeps it stable): ties stay in first-appearance order
    return sorted(fused.items(), key=itemgetter(1), reverse=True)


def recency_order(
    ranked: Sequence[tuple[str, float, float]], weight: float = 0.0
) -> list[tuple[str, float]]:
    """Reorder ``(id, score, created timestamp)`` best first with recency mixed in.

    ``weight`` 0: relevance decides and recency only breaks exact ties (newer first).
    ``weight`` w in (0, 1]: each item's place is (1 - w) * relevance + w * recency, both as
    fractions of the list (1 = best / newest), so the rule needs no knowledge of the score
    scale; for "what did we decide last?" questions a caller turns it up. Scores returned
    are unchanged (they stay the ranking's own).
    """
    if not 0.0 <= weight <= 1.0:
        raise ValidationError("recency", "must be between 0 and 1")
    n = len(ranked)
    if n < 2:
        return [(i, s) for i, s, _ in ranked]
    if weight == 0.0:
        order = sorted(range(n), key=lambda j: (-ranked[j][1], -ranked[j][2], j))
        return [(ranked[j][0], ranked[j][1]) for j in order]
    by_age = sorted(range(n), key=lambda j: (ranked[j][2], -j))  # oldest first
    newness = {j: pos / (n - 1) for pos, j in enumerate(by_age)}
    place = {j: (1.0 - weight) * (1.0 - j / (n - 1)) + weight * newness[j] for j in range(n)}
    order = sorted(range(n), key=lambda j: (-place[j], j))
    return [(ranked[j][0], ranked[j][1]) for j in order]


_Item = TypeVar("_Item")


def newest_first_on_ties(items: Sequence[_Item], score: Callable[[_Item], float],
                         created: Callable[[_Item], float]) -> list[_Item]:
    """``items`` best score first, exact ties newest first (then in their given order):
    ``recency_order`` at weight 0, reading ``created`` only inside a tie. A list already
    in score order, as every ranking the manager makes is, costs one pass (ADR 0037)."""
    scores = [score(item) for item in items]
    if any(a < b for a, b in pairwise(scores)):
        order = sorted(range(len(items)), key=lambda j: (-scores[j], -created(items[j]), j))
        return [items[j] for j in order]
    out = list(items)
    start = 0
    while start < len(out):
        end = start + 1
        while end < len(out) and scores[end] == scores[start]:
            end += 1
        if end - start > 1:  # a stable sort: equal times keep their order
            out[start:end] = sorted(out[start:end], key=created, reverse=True)
        start = end
    return out
