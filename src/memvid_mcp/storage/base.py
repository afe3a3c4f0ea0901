"""The contract every body-storage backend meets.

A backend stores opaque bodies (UTF-8 text as bytes) under a ``body_id`` (a ULID string the
manager makes, one per memory version). It knows nothing of memory ids, tags or search: the
manager owns metadata, the write-ahead log and the indexes. Bodies reach a backend in batches
from the background batcher, after the WAL has made them durable, so a backend may be slow to
write (the video backend encodes a whole segment per batch) but must be durable when
``put_many`` returns. ``tests/`` runs the one shared contract suite (``memvid_mcp.testing``)
against every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..core.models import Problem

ProgressCallback = Callable[[int, int], None]
"""Called as progress(done, total) during long operations (compaction, verify)."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, so the manager and CLI adapt instead of guessing."""

    name: str
    immutable_segments: bool = False  # bodies are sealed in batches into immutable files
    compaction: bool = False  # compact() reclaims space from deleted bodies
    prefers_batches: bool = False  # put_many is much cheaper per body with large batches


@dataclass(frozen=True, slots=True)
class CompactReport:
    segments_rewritten: int = 0
    segments_removed: int = 0
    bodies_moved: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def bytes_reclaimed(self) -> int:
        return max(0, self.bytes_before - self.bytes_after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "segments_rewritten": self.segments_rewritten,
            "segments_removed": self.segments_removed,
            "bodies_moved": self.bodies_moved,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "bytes_reclaimed": self.bytes_reclaimed,
        }


@dataclass(frozen=True, slots=True)
class StorageStats:
    bodies: int
    body_bytes: int  # raw body bytes of live bodies
    stored_bytes: int  # bytes on disk for bodies (segments, files)
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class StorageAdapter(Protocol):
    """Durable, immutable-body storage keyed by body_id."""

    capabilities: Capabilities

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store bodies; durable (fsynced) when this returns. Re-putting an id is a no-op."""

    def get(self, body_id: str) -> bytes:
        """The exact body bytes. Raises NotFoundError, or CorruptionError if unreadable."""

    def get_many(self, body_ids: Sequence[str]) -> dict[str, bytes]:
        """Bodies of the ids that exist (missing ids are simply absent from the result)."""

    def contains(self, body_id: str) -> bool:
        """Whether a live (not deleted) body exists."""

    def delete_many(self, body_ids: Iterable[str]) -> int:
        """Tombstone bodies durably; returns how many existed. Unknown ids are ignored."""

    def ids(self) -> Iterator[str]:
        """Every live body id."""

    def verify(self, progress: ProgressCallback | None = None) -> list[Problem]:
        """Check every stored byte (checksums; decode for video). Empty list when sound.

        ``Problem.memory_ids`` holds body ids here; the manager maps them to memory ids.
        """

    def compact(self, progress: ProgressCallback | None = None) -> CompactReport:
        """Reclaim space from deleted bodies; a crash at any point loses nothing live."""

    def compact_step(self, now: float | None = None) -> CompactReport | None:
        """One bounded unit of background compaction, or None when nothing is due."""

    def purge(self, progress: ProgressCallback | None = None) -> CompactReport:
        """Physically remove the bytes of every deleted body now (crash safe like compact)."""

    def stats(self) -> StorageStats:
        """Counts and sizes for ``stats`` and benchmarks."""

    def close(self) -> None:
        """Release files and background resources. Idempotent."""
