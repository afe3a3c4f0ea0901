"""Whole-file checksums of sealed segments (ADR 0013): a flipped byte anywhere is found.

``verify`` compares both files of a segment with the SHA-256 recorded in its manifest line at
seal time, then decodes every frame: the memories it names are exactly the ones whose body can
no longer be read, and a change confined to container bytes names none and says so.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from memvid_mcp.core.errors import CorruptionError
from memvid_mcp.core.models import Problem
from memvid_mcp.manager import MemoryManager
from memvid_mcp.storage.video import VideoStore, manifest, mvi


def _body(i: int) -> bytes:
    rng = random.Random(i)
    words = ["segment", "checksum", "frame", "Δelta", "memory", "{x: 1}", "container"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(20, 400))).encode()


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("sealed")
    bodies = {f"b{i}": _body(i) for i in range(150)}  # several frames, bodies across them
    store = VideoStore(root)
    store.put_many(list(bodies.items()))
    store.close()
    return root, bodies


def _flip(path: Path, at: int) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[:at] + bytes([data[at] ^ 0x41]) + data[at + 1:])
    return data


def _unreadable(store: VideoStore, bodies: dict[str, bytes]) -> set[str]:
    bad = set()
    for body_id, body in bodies.items():
        try:
            if store.get(body_id) != body:
                bad.add(body_id)
        except CorruptionError:
            bad.add(body_id)
    return bad


def _positions(path: Path, index: mvi.SegmentIndex | None, rng: random.Random) -> list[int]:
    """Both ends, every packet's edges and middle, the gaps between packets, and random."""
    size = path.stat().st_size
    chosen = {0, 1, 4, 8, 16, 32, size - 1, size - 2, size - 8, size - 32}
    if index is not None:
        for entry in index.frames:
            chosen |= {entry.offset, entry.offset + entry.size // 2,
                       entry.offset + entry.size - 1, entry.offset + entry.size}
    chosen |= {rng.randrange(size) for _ in range(25)}
    return sorted(p for p in chosen if 0 <= p < size)


def test_a_flipped_byte_anywhere_in_the_mp4_is_found_and_names_exactly_the_damaged(
        sealed: tuple[Path, dict[str, bytes]]) -> None:
    root, bodies = sealed
    (mp4,) = (root / "segments").glob("seg-*.mp4")
    (mvi_path,) = (root / "segments").glob("seg-*.mvi")
    index = mvi.loads(mvi_path.read_bytes())
    seen_container_only = seen_damage = 0
    for at in _positions(mp4, index, random.Random(7)):
        original = _flip(mp4, at)
        try:
            store = VideoStore(root)
            problems = store.verify()
            assert problems, f"byte {at} of {mp4.name} flipped: verify said ok"
            assert any(p.path == str(mp4) and "SHA-256" in p.message for p in problems), at
            named = {i for p in problems for i in p.memory_ids}
            assert named == _unreadable(store, bodies), at
            if not named:
                seen_container_only += 1
                (summary,) = [p for p in problems if "SHA-256" in p.message]
                assert "no memory is damaged" in summary.message
            else:
                seen_damage += 1
            store.close()
        finally:
            mp4.write_bytes(original)
    assert seen_container_only and seen_damage  # both cases were exercised
    assert VideoStore(root).verify() == []


def test_a_flipped_byte_anywhere_in_the_mvi_is_found(
        sealed: tuple[Path, dict[str, bytes]]) -> None:
    root, bodies = sealed
    (mvi_path,) = (root / "segments").glob("seg-*.mvi")
    seg = mvi_path.name.removesuffix(".mvi")
    for at in _positions(mvi_path, None, random.Random(8)):
        original = _flip(mvi_path, at)
        try:
            store = VideoStore(root)
            problems = store.verify()
            assert any(Path(p.path).name.startswith(seg) for p in problems), at
            # Without its index the store reads nothing of the segment, and says so.
            assert {i for p in problems for i in p.memory_ids} == _unreadable(store, bodies)
            store.close()
        finally:
            mvi_path.write_bytes(original)


def test_files_changed_under_an_open_store_are_found(tmp_path: Path) -> None:
    bodies = {f"b{i}": _body(i) for i in range(10)}
    store = VideoStore(tmp_path)
    store.put_many(list(bodies.items()))
    (mp4,) = (tmp_path / "segments").glob("seg-*.mp4")
    (mvi_path,) = (tmp_path / "segments").glob("seg-*.mvi")
    _flip(mvi_path, 10)  # the index in memory still reads every frame
    (problem,) = store.verify()
    assert problem == Problem(str(mvi_path), problem.message, ())
    assert "no memory is damaged yet" in problem.message
    _flip(mp4, 2)  # inside the mp4's first box header: container bytes only
    problems = store.verify()
    assert {p.path for p in problems} == {str(mp4), str(mvi_path)}
    assert all(p.memory_ids == () for p in problems)
    report = store.compact()  # rewrites the changed segment from its intact bodies
    assert report.segments_rewritten == 1
    assert store.verify() == []
    assert {k: store.get(k) for k in bodies} == bodies


def test_segments_sealed_before_checksums_are_read_and_get_them_at_the_next_verify(
        tmp_path: Path) -> None:
    bodies = {f"b{i}": _body(i) for i in range(10)}
    store = VideoStore(tmp_path)
    store.put_many(list(bodies.items()))
    store.close()
    compact = tmp_path / manifest.FILE_NAME
    path = tmp_path / manifest.LEGACY_NAME
    old_lines = []  # rewrite the manifest as 0.1.0 wrote it: v1 seg lines, no checksums
    for record in manifest.parse(compact.read_bytes()).records:
        record.pop("mp4_sha256", None)
        record.pop("mvi_sha256", None)
        record["v"] = 1
        crc = f"{manifest.zlib.crc32(manifest._canonical(record).encode()):08x}"
        old_lines.append(manifest._canonical({**record, "crc": crc}).encode() + b"\n")
    compact.unlink()
    path.write_bytes(b"".join(old_lines))
    assert b'"v":2' not in path.read_bytes()

    reader = VideoStore(tmp_path, read_only=True)
    assert {k: reader.get(k) for k in bodies} == bodies
    assert reader.verify() == []
    assert b"mp4_sha256" not in path.read_bytes()  # a reader records (and converts) nothing
    assert not compact.exists()
    writer = VideoStore(tmp_path)  # converts the 0.1.0 manifest to the compact one
    assert not path.exists()

    def recorded() -> int:
        return sum(1 for r in manifest.parse(compact.read_bytes()).records
                   if r["op"] == "seg" and "mp4_sha256" in r)

    assert recorded() == 0
    assert writer.verify() == []
    assert recorded() == 1  # recorded once, in a seg record with checksums
    writer.close()
    (mp4,) = (tmp_path / "segments").glob("seg-*.mp4")
    _flip(mp4, 3)
    problems = VideoStore(tmp_path).verify()
    assert [p.path for p in problems] == [str(mp4)] and "SHA-256" in problems[0].message


def test_repair_through_the_manager_clears_a_container_only_change(tmp_path: Path) -> None:
    data, project = tmp_path / "data", tmp_path / "work"
    project.mkdir()
    with MemoryManager.open(data, backend="video", project=project, embeddings=False) as m:
        texts = {m.store(f"memory {i} about segment checksums").id: f"memory {i} about "
                 "segment checksums" for i in range(6)}
    (mp4,) = (data / "global" / "segments").glob("seg-*.mp4")
    _flip(mp4, 5)
    with MemoryManager.open(data, backend="video", project=project, embeddings=False,
                            read_only=True) as reader:
        (problem,) = reader.verify()
        assert problem.path == str(mp4) and problem.memory_ids == ()
    with MemoryManager.open(data, backend="video", project=project, embeddings=False) as m:
        report = m.repair()["global"]
        assert report["memories_unreadable"] == []
        assert m.verify() == []
        assert {x.id: x.text for x in m.get(list(texts)).memories} == texts
