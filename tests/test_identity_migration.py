"""Identity version 2 on 0.1.0 stores: rehashed once on open, indentation now tells memories
apart, unreadable bodies are kept and reported (issue 9, item 2; ADR 0011)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from memvid_mcp.manager import MemoryManager

FIXTURE = Path(__file__).with_name("fixtures") / "scopes-0.1.0.tar.gz"
CODE = "def area(r):\n    return 3.14159 * r * r\n"


def _v2(text: str) -> str:
    """The identity-2 hash written out here independently of the package."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _unpack(tmp_path: Path, name: str) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path / "fixtures", filter="data")
    return tmp_path / "fixtures" / name


def _open(data: Path, project: Path, backend: str | None = None) -> MemoryManager:
    return MemoryManager.open(data, project=project, embeddings=False, backend=backend)


@pytest.mark.parametrize("name", ["file", "video"])
def test_a_010_store_is_rehashed_once_and_keeps_indented_code_apart(
        tmp_path: Path, outside_repo: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _unpack(tmp_path, name)
    with _open(data, outside_repo) as m:
        memories = m.get([r.id for r in m.list().memories]).memories
        assert len(memories) == 4
        assert all(mem.record.sha256 == _v2(mem.text) for mem in memories)
        by_text = {mem.text: mem.record.id for mem in memories}
        flat = m.store("def area(r):\nreturn 3.14159 * r * r\n")  # indentation differs
        assert not flat.deduplicated
        same = m.store(CODE + "\n\n")
        assert same.deduplicated and same.id == by_text[CODE]
        folded = m.store("Line one\nline two")  # stored in 0.1.0 with CRLF and trailing spaces
        assert folded.deduplicated and folded.id == by_text["Line one  \r\nline two\r\n"]
    assert json.loads((data / "global" / "scope.json").read_text())["identity"] == 2
    from memvid_mcp.store import scope_store

    def must_not_run(self: object) -> None:
        raise AssertionError("rehashed a second time")

    monkeypatch.setattr(scope_store.ScopeStore, "_rehash", must_not_run)
    with _open(data, outside_repo) as m:
        memories = m.get([r.id for r in m.list().memories]).memories
        assert len(memories) == 5
        assert all(mem.record.sha256 == _v2(mem.text) for mem in memories)
        assert m.store(CODE).id == by_text[CODE]


def test_the_rehash_survives_a_crash_before_the_next_checkpoint(
        tmp_path: Path, outside_repo: Path) -> None:
    """It is one WAL record: a reopen replays it even though no snapshot holds it yet."""
    data = _unpack(tmp_path, "file")
    m = _open(data, outside_repo)
    store = m._scope("global")
    assert any(r.payload.get("op") == "rehash" for r in _wal_records(store))
    store._scope_lock.release()  # a crash: no close, no checkpoint
    store.lexical.close()
    m._stop.set()
    m._closed = True
    with _open(data, outside_repo) as again:
        memories = again.get([r.id for r in again.list().memories]).memories
        assert len(memories) == 4 and all(mem.record.sha256 == _v2(mem.text)
                                          for mem in memories)


def _wal_records(store: object) -> list:
    from memvid_mcp.store.wal import decode_records

    wal = store.wal  # type: ignore[attr-defined]
    return [r for path in wal.files() for r in decode_records(path.read_bytes(), str(path))[0]]


def test_an_unreadable_body_is_kept_and_reported_by_the_migration(
        tmp_path: Path, outside_repo: Path) -> None:
    data = _unpack(tmp_path, "file")
    victim_body = sorted((data / "global" / "bodies").glob("*/*.mvb"))[0]
    victim_body.write_bytes(b"MVB1 damaged beyond reading")
    with _open(data, outside_repo) as m:
        ids = [r.id for r in m.list().memories]
        assert len(ids) == 4  # kept
        got = m.get(ids)
        assert len(got.memories) == 3 and len(got.damaged) == 1
        (victim,) = got.damaged[0].memory_ids
        problems = [p for p in m.verify() if "rehashing" in p.message]
        assert [p.memory_ids for p in problems] == [(victim,)]
        assert all(mem.record.sha256 == _v2(mem.text) for mem in got.memories)
        report = m.repair()["global"]
        assert report["memories_unreadable"] == [victim]  # nowhere else in the scope
        assert m.verify() == []
