"""Snapshot format 2 (ADR 0029): columnar records, a lean spare, format 1 still read."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from ulid import ULID

from format_reader import copy_live_tree
from memvid_mcp.core.errors import CorruptionError
from memvid_mcp.core.models import MemoryRecord
from memvid_mcp.manager import MemoryManager
from memvid_mcp.store.snapshot import FORMAT, encode_snapshot, load_snapshot_file
from memvid_mcp.store.snapshot_columns import UNKNOWN_SHA

_T0 = datetime(2020, 1, 1, tzinfo=UTC)
_ms = st.integers(0, 400 * 365 * 86_400_000).map(lambda n: _T0 + timedelta(milliseconds=n))
_text = st.text(max_size=12)
_ulid = st.builds(lambda n: str(ULID.from_int(n)), st.integers(0, (1 << 128) - 1))
_id = st.one_of(_ulid, _text.filter(bool), _ulid.map(str.lower))
_sha = st.one_of(st.binary(min_size=32, max_size=32).map(bytes.hex), _text)


@st.composite
def records(draw: st.DrawFn) -> MemoryRecord:
    memory_id = draw(_id)
    near = _ulid_near(memory_id, draw(st.integers(-3, 3)))
    body_id = draw(st.one_of(_id, st.just(near)) if near else _id)
    created = draw(_ms)
    return MemoryRecord(
        id=memory_id, body_id=body_id, title=draw(st.none() | _text),
        kind=draw(st.sampled_from(["note", "fact", "x"])),
        tags=tuple(draw(st.lists(_text, max_size=3))),
        scope=draw(st.sampled_from(["global", "project", "other"])),
        metadata=draw(st.dictionaries(_text, st.integers() | _text, max_size=2)),
        source=draw(st.none() | _text), created_at=created,
        updated_at=draw(st.one_of(st.just(created), _ms)),
        expires_at=draw(st.none() | _ms), pinned=draw(st.booleans()), sha256=draw(_sha),
        size=draw(st.integers(0, 1 << 40)),
        supersedes=tuple(draw(st.lists(_id, max_size=2))),
        superseded_by=draw(st.none() | _id))


def _ulid_near(text: str, delta: int) -> str | None:
    try:
        value = int(ULID.from_str(text)) + delta
    except ValueError:
        return None
    return str(ULID.from_int(value)) if 0 <= value < 1 << 128 else None


def _states(items: list[MemoryRecord], *, spare: bool = False) -> list[dict]:
    out = []
    for record in items:
        state = record.to_state()
        if spare:
            state.update(sha256=UNKNOWN_SHA, size=0)
        out.append(state)
    return out


@settings(max_examples=150, deadline=None)
@given(items=st.lists(records(), max_size=8), seq=st.integers(0, 1 << 40), spare=st.booleans())
def test_every_record_round_trips_through_format_2(tmp_path_factory: pytest.TempPathFactory,
                                                     items: list[MemoryRecord], seq: int,
                                                     spare: bool) -> None:
    path = tmp_path_factory.mktemp("snap") / "snapshot.jsonl.zst"
    path.write_bytes(encode_snapshot(seq, items, previous_seq=seq // 2, spare=spare))
    snap = load_snapshot_file(path)
    assert (snap.seq, snap.previous_seq, snap.format, snap.spare) == (seq, seq // 2, 2, spare)
    assert _states(snap.records) == _states(items, spare=spare)


@settings(max_examples=150, deadline=None)
@given(items=st.lists(records(), min_size=1, max_size=4), where=st.integers(0, 1 << 20),
       bit=st.integers(0, 7))
def test_any_flipped_bit_is_a_corruption_error(tmp_path_factory: pytest.TempPathFactory,
                                               items: list[MemoryRecord], where: int,
                                               bit: int) -> None:
    raw = bytearray(zstandard.ZstdDecompressor().decompress(encode_snapshot(7, items)))
    raw[where % len(raw)] ^= 1 << bit
    path = tmp_path_factory.mktemp("snap") / "snapshot.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(bytes(raw)))
    with pytest.raises(CorruptionError):
        load_snapshot_file(path)


def _format_1(seq: int, previous_seq: int, items: list[MemoryRecord]) -> bytes:
    """A snapshot as format 1 (ADR 0003 to ADR 0019) wrote it."""
    lines = [json.dumps({"format": 1, "kind": "memvid-snapshot", "seq": seq,
                         "previous_seq": previous_seq, "count": len(items)})]
    lines += [json.dumps(r.to_state(), ensure_ascii=False, separators=(",", ":"))
              for r in items]
    body = ("\n".join(lines) + "\n").encode()
    trailer = json.dumps({"crc32": zlib.crc32(body)}).encode() + b"\n"
    return zstandard.ZstdCompressor(level=3).compress(body + trailer)


def _open(data: Path, project: Path, backend: str = "file") -> MemoryManager:
    return MemoryManager.open(data, project=project, embeddings=False, backend=backend)


def test_format_1_snapshots_are_read_and_the_next_close_writes_format_2(
        data_dir: Path, outside_repo: Path) -> None:
    with _open(data_dir, outside_repo) as m:
        texts = {m.store(f"migrated note {i}").id: f"migrated note {i}" for i in range(12)}
    meta = data_dir / "global" / "meta"
    snap = load_snapshot_file(meta / "snapshot.jsonl.zst")
    (meta / "snapshot.jsonl.zst").write_bytes(_format_1(snap.seq, snap.seq, snap.records))
    (meta / "snapshot.prev.jsonl.zst").write_bytes(_format_1(snap.seq, snap.seq, snap.records))
    assert load_snapshot_file(meta / "snapshot.jsonl.zst").format == 1
    with _open(data_dir, outside_repo) as m:  # nothing changed, but the format is old
        got = m.get(list(texts)).memories
        assert {g.id: g.text for g in got} == texts
    current = load_snapshot_file(meta / "snapshot.jsonl.zst")
    spare = load_snapshot_file(meta / "snapshot.prev.jsonl.zst")
    assert (current.format, current.spare, spare.format, spare.spare) == (FORMAT, False,
                                                                          FORMAT, True)
    assert _states(current.records) == _states(snap.records)


@pytest.mark.parametrize("backend", ["file", "video"])
def test_the_spare_is_small_and_a_fallback_to_it_recomputes_every_hash(
        data_dir: Path, outside_repo: Path, backend: str) -> None:
    """Regression (ADR 0029): the fallback copy was a second full snapshot of the same size;
    now it is a spare without hashes, which the fallback recomputes from the bodies."""
    texts = [f"note {i}: the spare snapshot keeps ids, times and tags " * (1 + i % 5)
             for i in range(60)]
    with _open(data_dir, outside_repo, backend) as m:
        stored = {m.store(t, tags=[f"t{i % 3}"]).id: t for i, t in enumerate(texts)}
        wanted = {g.id: g.to_dict() for g in m.get(list(stored)).memories}
    meta = data_dir / "global" / "meta"
    current, spare = meta / "snapshot.jsonl.zst", meta / "snapshot.prev.jsonl.zst"
    assert spare.stat().st_size < 0.5 * current.stat().st_size
    assert load_snapshot_file(spare).seq == load_snapshot_file(current).seq
    assert not list((data_dir / "global" / "wal").glob("*.log")) or all(
        p.stat().st_size <= 16 for p in (data_dir / "global" / "wal").glob("*.log"))
    damaged = bytearray(current.read_bytes())
    damaged[len(damaged) // 2] ^= 0x40
    current.write_bytes(bytes(damaged))
    with _open(data_dir, outside_repo, backend) as m:
        got = {g.id: g.to_dict() for g in m.get(list(stored)).memories}
        assert got == wanted  # texts, tags, times and hashes, all as before
        assert any("snapshot" in p.path for p in m.verify())
        assert m.search("spare snapshot", mode="lexical").results
        m.repair()
        assert m.verify() == []
    with _open(data_dir, outside_repo, backend) as m:
        assert {g.id: g.to_dict() for g in m.get(list(stored)).memories} == wanted
    assert not load_snapshot_file(current).spare


def test_a_damaged_spare_is_reported_and_repair_writes_a_fresh_one(
        data_dir: Path, outside_repo: Path) -> None:
    """Regression (ADR 0029): nothing checked the fallback copy until it was needed."""
    with _open(data_dir, outside_repo) as m:
        texts = {m.store(f"spare check {i}").id: f"spare check {i}" for i in range(10)}
    spare = data_dir / "global" / "meta" / "snapshot.prev.jsonl.zst"
    spare.write_bytes(spare.read_bytes()[:-5] + b"\0" * 5)
    with _open(data_dir, outside_repo) as m:
        assert [p.path for p in m.verify()] == [str(spare)]
        m.repair()
        assert m.verify() == []
        assert {g.id: g.text for g in m.get(list(texts)).memories} == texts
    assert load_snapshot_file(spare).spare


@pytest.mark.parametrize("snapshot_damaged", [False, True])
def test_a_crash_between_the_spare_and_the_snapshot_loses_nothing(
        tmp_path: Path, outside_repo: Path, snapshot_damaged: bool) -> None:
    """A checkpoint writes the spare, then the snapshot, then drops WAL files. Killed after
    the spare: the old snapshot rules with the WAL back to it; and if that snapshot is then
    damaged, the newer spare plus the WAL after it still hold every memory."""

    data = tmp_path / "data"
    with _open(data, outside_repo) as m:
        texts = {m.store(f"first session {i}").id: f"first session {i}" for i in range(5)}
    image = tmp_path / "image"
    with _open(data, outside_repo) as m:
        texts |= {m.store(f"second session {i}").id: f"second session {i}" for i in range(5)}
        scope = m._scope("global")
        records, seq = list(scope._records.values()), scope.wal.last_seq
        copy_live_tree(data, image)  # killed here
    meta = image / "global" / "meta"
    (meta / "snapshot.prev.jsonl.zst").write_bytes(  # the spare of the checkpoint that died
        encode_snapshot(seq, records, previous_seq=seq, spare=True))
    if snapshot_damaged:
        current = meta / "snapshot.jsonl.zst"
        current.write_bytes(current.read_bytes()[:-3] + b"\0\0\0")
    with _open(image, outside_repo) as m:
        got = {g.id: g for g in m.get(list(texts)).memories}
        assert {i: g.text for i, g in got.items()} == texts
        assert all(g.sha256 == r.sha256 for r in records for i, g in got.items() if i == r.id)
        assert bool(m.verify()) == snapshot_damaged
    with _open(image, outside_repo) as m:
        assert {g.id: g.text for g in m.get(list(texts)).memories} == texts
        assert m.verify() == []
