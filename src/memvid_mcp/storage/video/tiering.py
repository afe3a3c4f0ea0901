"""Which segments background compaction rewrites next (ADR 0018). Pure: no files, no clock.

Size-tiered merging: a segment's tier is set by its live text bytes: tier 0 below ``base``,
tier ``t`` from ``base * fanout**(t-1)`` up to ``base * fanout**t``. A merge takes the oldest
segments of one tier until their live bytes reach the next tier's floor, so every byte it moves
lands at least one tier higher. Merges stop below ``cap / 2`` (the output of one merge is less
than twice the floor it reached, so it never needs splitting), which bounds how often a byte is
rewritten by merges: ``merge_rewrite_bound(base, cap, fanout)`` times over its life (3 with the
defaults 64 KiB, 4 MiB, 4). Only deletions lower a segment's tier again.

Two more reasons rewrite a segment, both caused by deletions: its live share fell under the
threshold, or it still holds the text of a body deleted before ``purge_before``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FANOUT = 4


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    ulid: str  # ULIDs sort by creation time: oldest first
    raw: int  # text bytes sealed into it
    live: int  # text bytes of its bodies still live
    dead_since: float | None = None  # when its oldest deleted body was deleted; None: none


@dataclass(frozen=True, slots=True)
class Plan:
    reason: str  # "merge", "live-share" or "purge"
    segments: tuple[str, ...]


def tier(live: int, base: int, fanout: int = FANOUT) -> int:
    if live < base:
        return 0
    t, floor = 1, base * fanout
    while live >= floor:
        t, floor = t + 1, floor * fanout
    return t


def next_floor(t: int, base: int, fanout: int = FANOUT) -> int:
    """The fewest live bytes of a segment of tier ``t + 1``."""
    return int(base * fanout**t)


def merge_rewrite_bound(base: int, cap: int, fanout: int = FANOUT) -> int:
    """How many times merges can rewrite one byte (the number of tiers that merge)."""
    return sum(1 for t in range(64) if 2 * next_floor(t, base, fanout) <= cap)


def plan(segments: Sequence[SegmentInfo], *, base: int, cap: int, live_threshold: float,
         purge_before: float | None, fanout: int = FANOUT) -> list[Plan]:
    """Rewrites to do, most urgent first: deleted text past its purge time and mostly-dead
    segments (rewritten together), then one merge per tier that has enough to merge."""
    plans: list[Plan] = []
    doomed = [s for s in segments
              if s.dead_since is not None and purge_before is not None
              and s.dead_since <= purge_before]
    sparse = [s for s in segments if s not in doomed and s.raw
              and s.live / s.raw < live_threshold]
    if doomed:
        plans.append(Plan("purge", tuple(s.ulid for s in doomed + sparse)))
    elif sparse:
        plans.append(Plan("live-share", tuple(s.ulid for s in sparse)))
    rewritten = {u for p in plans for u in p.segments}
    by_tier: dict[int, list[SegmentInfo]] = {}
    for seg in sorted(segments, key=lambda s: s.ulid):
        if seg.ulid not in rewritten and seg.live > 0:
            by_tier.setdefault(tier(seg.live, base, fanout), []).append(seg)
    for t in sorted(by_tier):
        floor = next_floor(t, base, fanout)
        if 2 * floor > cap:
            continue  # big enough: merging it could only make a segment past the cap
        group: list[SegmentInfo] = []
        total = 0
        for seg in by_tier[t]:
            group.append(seg)
            total += seg.live
            if total >= floor:
                break
        if total >= floor and len(group) >= 2:
            plans.append(Plan("merge", tuple(s.ulid for s in group)))
    return plans
