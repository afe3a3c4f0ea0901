"""Memories that replace memories, in one scope's durable state (ADR 0023).

A ``supersede`` WAL record links both ends at once; superseded memories leave search (they
are kept, and come back when asked for or when the newer memory is deleted); the links
survive WAL replay and a snapshot; records written before the fields existed read as not
superseded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memvid_mcp.core.config import Settings
from memvid_mcp.core.errors import ValidationError
from memvid_mcp.core.models import MemoryRecord
from memvid_mcp.core.validation import validate_store
from memvid_mcp.search.filters import SearchFilters
from memvid_mcp.store.scope_store import ScopeStore

NO_FILTER = SearchFilters()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, embeddings=False)


def _open(settings: Settings) -> ScopeStore:
    return ScopeStore("global", settings.data_dir / "g", settings)


def _put(scope: ScopeStore, settings: Settings, text: str, supersedes: tuple[str, ...] = ()
         ) -> MemoryRecord:
    record, _, _ = scope.store(validate_store(settings, text), supersedes=supersedes)
    return record


def _ids(scope: ScopeStore, query: str, *, include: bool = False) -> list[str]:
    return [r.id for r, _ in scope.lexical_search(query, 10, NO_FILTER,
                                                  include_superseded=include)]


def test_a_record_written_before_supersession_existed_reads_as_not_superseded() -> None:
    state = {"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "body_id": "01ARZ3NDEKTSV4RRFFQ69G5FAW",
             "title": None, "kind": "note", "tags": [], "scope": "global", "metadata": {},
             "source": None, "created_at": "2026-01-01T00:00:00.000Z",
             "updated_at": "2026-01-01T00:00:00.000Z", "expires_at": None, "pinned": False,
             "sha256": "0" * 64, "size": 1}
    record = MemoryRecord.from_state(state)
    assert (record.supersedes, record.superseded_by) == ((), None)
    assert "supersedes" not in record.to_dict() and "superseded_by" not in record.to_dict()


def test_superseded_memories_leave_search_and_keep_their_links_across_reopens(
    settings: Settings,
) -> None:
    scope = _open(settings)
    old = _put(scope, settings, "deploys go out on tuesdays")
    new = _put(scope, settings, "deploys go out on thursdays now", supersedes=(old.id,))
    assert new.supersedes == (old.id,)
    assert scope.record(old.id).superseded_by == new.id  # type: ignore[union-attr]
    assert _ids(scope, "deploys") == [new.id]
    assert set(_ids(scope, "deploys", include=True)) == {old.id, new.id}
    scope.close()

    scope = _open(settings)  # WAL replay
    assert _ids(scope, "deploys") == [new.id]
    assert scope.record(new.id).supersedes == (old.id,)  # type: ignore[union-attr]
    scope.write_batch(everything=True)
    assert scope.checkpoint(force=True)
    scope.close()

    scope = _open(settings)  # from the snapshot
    assert scope.record(old.id).superseded_by == new.id  # type: ignore[union-attr]
    assert _ids(scope, "deploys") == [new.id]
    scope.delete([new.id])  # nothing is destroyed: the older memory is back
    assert _ids(scope, "deploys") == [old.id]
    scope.close()


def test_a_bad_supersedes_writes_nothing(settings: Settings) -> None:
    scope = _open(settings)
    first = _put(scope, settings, "first version")
    second = _put(scope, settings, "second version", supersedes=(first.id,))
    seq = scope.wal.last_seq
    with pytest.raises(ValidationError, match="supersedes: no memory 01ARZ3NDEKTSV4RRFFQ69G5FAV"):
        _put(scope, settings, "orphan", supersedes=("01ARZ3NDEKTSV4RRFFQ69G5FAV",))
    with pytest.raises(ValidationError, match=f"already superseded by {second.id}"):
        _put(scope, settings, "third version", supersedes=(first.id,))
    assert scope.wal.last_seq == seq
    assert len(list(scope.records())) == 2
    scope.close()


def test_many_superseded_matches_never_crowd_out_the_live_ones(settings: Settings) -> None:
    """The index ranks the superseded versions first; the top k must still be full."""
    scope = _open(settings)
    live = []
    for n in range(30):
        old = _put(scope, settings, f"alpha alpha alpha alpha version {n}")
        live.append(_put(scope, settings, f"alpha and some other words {n}",
                         supersedes=(old.id,)).id)
    found = scope.lexical_search("alpha", 5, NO_FILTER)
    assert len(found) == 5 and {r.id for r, _ in found} <= set(live)
    scope.close()
