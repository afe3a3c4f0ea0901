"""The value objects the public API returns.

Frozen dataclasses with ``to_dict()`` giving the exact JSON shapes the CLI and the MCP tools
emit. Timestamps are timezone-aware UTC datetimes, serialised as ISO 8601 with a ``Z``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

SCOPES: tuple[str, ...] = ("global", "project", "committed")
DEFAULT_KIND = "note"
SEARCH_MODES: tuple[str, ...] = ("hybrid", "lexical", "semantic")


def utcnow() -> datetime:
    """Now, in UTC, to the millisecond (what ULIDs and the WAL keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with a trailing Z, or None."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """Parse ISO 8601 (a date, or a date-time with or without zone; naive means UTC)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """A memory's metadata without its body; what indexes and the snapshot keep.

    ``body_id`` names the stored body of this version (a new one for every replacement), so
    the storage backend never needs to know about memory ids or versions. ``supersedes`` and
    ``superseded_by`` link a memory and the newer ones that replace it (ADR 0023); records
    written before they existed read as neither.
    """

    id: str
    body_id: str
    title: str | None
    kind: str
    tags: tuple[str, ...]
    scope: str
    metadata: dict[str, Any]
    source: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    pinned: bool
    sha256: str
    size: int
    supersedes: tuple[str, ...] = ()
    superseded_by: str | None = None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or utcnow())

    def with_tags(self, tags: tuple[str, ...], updated_at: datetime) -> MemoryRecord:
        return replace(self, tags=tags, updated_at=updated_at)

    def to_dict(self) -> dict[str, Any]:
        """Every public field (no body_id) in the JSON shape of the API; the supersession
        links only when set."""
        data: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "tags": list(self.tags),
            "scope": self.scope,
            "metadata": self.metadata,
            "source": self.source,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "expires_at": iso(self.expires_at),
            "pinned": self.pinned,
            "sha256": self.sha256,
            "size": self.size,
        }
        if self.supersedes:
            data["supersedes"] = list(self.supersedes)
        if self.superseded_by is not None:
            data["superseded_by"] = self.superseded_by
        return data

    def to_state(self) -> dict[str, Any]:
        """The durable form (WAL and snapshot): the public fields plus body_id."""
        state = self.to_dict()
        state["body_id"] = self.body_id
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MemoryRecord:
        """A record from its durable form. Scopes keep every record in memory: the strings
        nearly all records repeat (kind, scope, tags) are interned and an ``updated_at``
        equal to ``created_at`` is the same object (~20 MB fewer at 100k memories)."""
        expires = state.get("expires_at")
        created = parse_iso(state["created_at"])
        updated = (created if state["updated_at"] == state["created_at"]
                   else parse_iso(state["updated_at"]))
        return cls(
            id=state["id"],
            body_id=state["body_id"],
            title=state.get("title"),
            kind=sys.intern(state.get("kind") or DEFAULT_KIND),
            tags=tuple(sys.intern(t) for t in state.get("tags") or ()),
            scope=sys.intern(state["scope"]),
            metadata=dict(state.get("metadata") or {}),
            source=state.get("source"),
            created_at=created,
            updated_at=updated,
            expires_at=parse_iso(expires) if expires else None,
            pinned=bool(state.get("pinned", False)),
            sha256=state["sha256"],
            size=int(state["size"]),
            supersedes=tuple(state.get("supersedes") or ()),
            superseded_by=state.get("superseded_by"),
        )


@dataclass(frozen=True, slots=True)
class Memory:
    """A memory with its exact text, as ``get`` returns it."""

    record: MemoryRecord
    text: str

    def __getattr__(self, name: str) -> Any:
        # Delegate field access (memory.id, memory.tags, ...) to the record.
        return getattr(self.record, name)

    def to_dict(self) -> dict[str, Any]:
        data = self.record.to_dict()
        data["text"] = self.text
        return data


@dataclass(frozen=True, slots=True)
class StoreResult:
    id: str
    deduplicated: bool
    scope: str
    sha256: str
    replaced: bool = False
    redactions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "deduplicated": self.deduplicated,
            "scope": self.scope,
            "sha256": self.sha256,
        }
        if self.replaced:
            data["replaced"] = True
        if self.redactions:
            data["redactions"] = list(self.redactions)
        return data


@dataclass(frozen=True, slots=True)
class SearchHit:
    id: str
    score: float
    title: str | None
    snippet: str
    tags: tuple[str, ...]
    kind: str
    scope: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": round(self.score, 6),
            "title": self.title,
            "snippet": self.snippet,
            "tags": list(self.tags),
            "kind": self.kind,
            "scope": self.scope,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class SearchResult:
    results: tuple[SearchHit, ...]
    next_cursor: str | None
    mode: str
    scopes: tuple[str, ...]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "results": [hit.to_dict() for hit in self.results],
            "next_cursor": self.next_cursor,
            "mode": self.mode,
            "scopes": list(self.scopes),
        }
        if self.note:
            data["note"] = self.note
        return data


@dataclass(frozen=True, slots=True)
class GetResult:
    memories: tuple[Memory, ...]
    missing: tuple[str, ...]
    damaged: tuple[Problem, ...] = ()  # found, but the body failed its checks (see verify)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "memories": [m.to_dict() for m in self.memories],
            "missing": list(self.missing),
        }
        if self.damaged:
            data["damaged"] = [{"id": p.memory_ids[0], "path": p.path, "message": p.message}
                               for p in self.damaged]
        return data


@dataclass(frozen=True, slots=True)
class ListResult:
    memories: tuple[MemoryRecord, ...]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "memories": [m.to_dict() for m in self.memories],
            "next_cursor": self.next_cursor,
        }


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of ``verify``: the damaged file and the memory ids it affects."""

    path: str
    message: str
    memory_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "message": self.message, "memory_ids": list(self.memory_ids)}


@dataclass(frozen=True, slots=True)
class Stats:
    scope: str
    memories: int
    text_bytes: int
    stored_bytes: int
    backend: str
    pending_bodies: int
    embedder: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "memories": self.memories,
            "text_bytes": self.text_bytes,
            "stored_bytes": self.stored_bytes,
            "backend": self.backend,
            "pending_bodies": self.pending_bodies,
            "embedder": self.embedder,
            **self.details,
        }
