"""Search filters shared by the lexical index, the vector index and the manager.

One definition of the semantics so every path (tantivy query, vector over-fetch, the
uncommitted tail, the manager's own checks) agrees: tags compare case-insensitively,
``since`` is inclusive and ``until`` exclusive, every set field must match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache


def norm_tag(tag: str) -> str:
    """The comparable form of a tag (case-insensitive, surrounding blanks ignored)."""
    return tag.strip().casefold()


@lru_cache(maxsize=4096)
def _comparable(tags: tuple[str, ...]) -> frozenset[str]:
    """The comparable forms of a memory's tags. Cached: a search checks the filters of up
    to hundreds of candidates, and memories share a handful of tag combinations."""
    return frozenset(norm_tag(t) for t in tags)


def as_utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC, like everywhere else in memvid-mcp."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class SearchFilters:
    """Restrictions applied before the top-k cut. Empty/None fields do not restrict."""

    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    kind: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    pinned: bool | None = None
    # the comparable forms, computed once: matches() runs for every candidate of a search
    _any: frozenset[str] = field(init=False, repr=False, compare=False)
    _all: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_any", frozenset(norm_tag(t) for t in self.tags_any))
        object.__setattr__(self, "_all", frozenset(norm_tag(t) for t in self.tags_all))

    @property
    def empty(self) -> bool:
        return (
            not self.tags_any
            and not self.tags_all
            and self.kind is None
            and self.since is None
            and self.until is None
            and self.pinned is None
        )

    def matches(self, tags: Iterable[str], kind: str, created_at: datetime, pinned: bool) -> bool:
        """True when a memory with these attributes passes every filter."""
        if self.kind is not None and kind != self.kind:
            return False
        if self.pinned is not None and bool(pinned) != self.pinned:
            return False
        if self.since is not None or self.until is not None:
            created = as_utc(created_at)
            if self.since is not None and created < as_utc(self.since):
                return False
            if self.until is not None and created >= as_utc(self.until):
                return False
        if self._any or self._all:
            have = _comparable(tags if isinstance(tags, tuple) else tuple(tags))
            if self._any and self._any.isdisjoint(have):
                return False
            if self._all and not self._all <= have:
                return False
        return True
