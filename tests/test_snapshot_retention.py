"""Snapshot retention (ADR 0019): the snapshot and its previous copy are the fallback for a
damaged snapshot (ADR 0003); a close that changed nothing rewrites neither."""

from __future__ import annotations

from pathlib import Path

from memvid_mcp.manager import MemoryManager


def _open(data: Path, project: Path) -> MemoryManager:
    return MemoryManager.open(data, project=project, embeddings=False)


def _state(meta: Path) -> list[tuple[str, int, int, bytes]]:
    return [(p.name, p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(meta.glob("snapshot*"))]


def test_an_unchanged_close_rewrites_no_snapshot_and_the_fallback_still_works(
        data_dir: Path, outside_repo: Path) -> None:
    with _open(data_dir, outside_repo) as m:
        texts = {m.store(f"note {i} about retention").id: f"note {i} about retention"
                 for i in range(20)}
    for _ in range(2):  # the second close makes the pair (the WAL back to it is dropped)
        with _open(data_dir, outside_repo) as m:
            assert len(m.list(limit=100).memories) == 20
    meta = data_dir / "global" / "meta"
    before = _state(meta)
    assert [name for name, *_ in before] == ["snapshot.jsonl.zst", "snapshot.prev.jsonl.zst"]
    with _open(data_dir, outside_repo) as m:
        assert len(m.list(limit=100).memories) == 20
    assert _state(meta) == before  # same inodes, times and bytes: nothing rewritten
    current = meta / "snapshot.jsonl.zst"
    current.write_bytes(current.read_bytes()[:-9] + b"\0" * 9)
    with _open(data_dir, outside_repo) as m:
        got = m.get(list(texts))
        assert {x.id: x.text for x in got.memories} == texts
        assert any("snapshot" in p.path for p in m.verify())
        m.repair()
        assert m.verify() == []
    with _open(data_dir, outside_repo) as m:
        m.store("a change: the next close writes a new snapshot")
    assert _state(meta) != before
