"""Dedup folds a store only into a live memory: never into an expired or deleted one (issue 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memvid_mcp.manager import MemoryManager

pytestmark = pytest.mark.usefixtures("engine")  # embedded and team engine (ADR 0025)

PAST = "2000-01-01T00:00:00+00:00"
TEXT = "The release checklist lives in docs/release.md."
COPY, REPLACED, NOTE, IMPORTED = (f"01JA000000000000000000000{n}" for n in "ABCD")


def _open(data_dir: Path, project: Path) -> MemoryManager:
    return MemoryManager.open(data_dir, project=project, embeddings=False)


def test_store_identical_to_an_expired_memory_creates_a_live_one(data_dir: Path,
                                                                 outside_repo: Path) -> None:
    with _open(data_dir, outside_repo) as m:
        old = m.store(TEXT, expires_at=PAST)
        assert m.get(old.id).missing == (old.id,)
        new = m.store(TEXT, title="Release", pinned=True, tags=["ops"])
        assert not new.deduplicated and new.id != old.id
        (memory,) = m.get(new.id).memories
        assert (memory.record.title, memory.record.pinned, memory.record.expires_at) == (
            "Release", True, None)
        assert m.prune_expired() == 1  # the expired one goes; the new one stays
        assert m.get(new.id).memories and m.store(TEXT).id == new.id
    with _open(data_dir, outside_repo) as m:
        again = m.store(TEXT)
        assert again.deduplicated and again.id == new.id
        assert [h.id for h in m.search("release checklist").results] == [new.id]


def test_store_identical_to_a_deleted_memory_creates_a_live_one(manager: MemoryManager) -> None:
    old = manager.store(TEXT)
    assert manager.delete(old.id) == 1
    new = manager.store(TEXT)
    assert not new.deduplicated and new.id != old.id
    assert manager.get(new.id).memories


def test_dedup_still_finds_a_live_memory_when_a_sharer_of_its_hash_goes(
        manager: MemoryManager) -> None:
    live = manager.store(TEXT).id
    manager.store(TEXT, id=COPY)  # an explicit id makes a second memory, same hash
    manager.delete(COPY)
    assert manager.store(TEXT).id == live
    manager.store(TEXT, id=REPLACED)
    manager.store("the replaced copy now says something else", id=REPLACED)
    folded = manager.store(TEXT)
    assert folded.deduplicated and folded.id == live
    assert len(manager.list().memories) == 2


def test_explicit_id_of_an_expired_memory_revives_it(manager: MemoryManager) -> None:
    manager.store(TEXT, id=NOTE, expires_at=PAST)
    result = manager.store(TEXT, id=NOTE)
    assert result.id == NOTE and not result.deduplicated and result.replaced
    (memory,) = manager.get(NOTE).memories
    assert memory.record.expires_at is None and memory.text == TEXT


def test_import_does_not_fold_into_an_expired_memory(manager: MemoryManager) -> None:
    manager.store(TEXT, expires_at=PAST)
    result = manager.import_record({"text": TEXT, "id": IMPORTED, "title": "kept"})
    assert not result.deduplicated and result.id == IMPORTED
    (memory,) = manager.get(IMPORTED).memories
    assert memory.record.title == "kept"
