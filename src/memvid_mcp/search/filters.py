"""Search filters shared by the lexical index, the vector index and the manager.

One definition of the semantics so every path (tantivy query, vector over-fetch, the
uncommitted tail, the manager's own checks) agrees: tags compare case-insensitively,
``since`` is inclusive and ``until`` exclusive, every set field must match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime


def norm_tag(tag: str) -> str:
    """The comparable form of a tag (case-insensitive, surrounding blanks ignored)."""
    return tag.strip().casefold()


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
        if self.tags_any or self.tags_all:
            have = {norm_tag(t) for t in tags}
            if self.tags_any and not any(norm_tag(t) in have for t in self.tags_any):
                return False
            if self.tags_all and not all(norm_tag(t) in have for t in self.tags_all):
                return False
        return True
