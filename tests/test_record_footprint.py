"""Records read back from the snapshot or WAL share what nearly all of them repeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memvid_mcp.core.models import MemoryRecord


def _state(n: int, updated: datetime) -> dict:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    return MemoryRecord(
        id=f"m{n}", body_id=f"b{n}", title=None, kind="".join(["no", "te"]),
        tags=("".join(["pro", "ject"]),), scope="".join(["glo", "bal"]), metadata={},
        source=None, created_at=created, updated_at=updated, expires_at=None, pinned=False,
        sha256="0" * 64, size=1).to_state()


def test_repeated_strings_and_equal_timestamps_are_shared() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    a = MemoryRecord.from_state(_state(1, created))
    b = MemoryRecord.from_state(_state(2, created))
    assert a.kind is b.kind and a.scope is b.scope and a.tags[0] is b.tags[0]
    assert a.updated_at is a.created_at
    later = MemoryRecord.from_state(_state(3, created + timedelta(seconds=5)))
    assert later.updated_at == created + timedelta(seconds=5)
    assert MemoryRecord.from_state(a.to_state()) == a  # still an exact round trip
