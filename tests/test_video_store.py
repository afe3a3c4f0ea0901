"""VideoStore: the shared contract, seal verification, compaction, determinism, verify."""

from __future__ import annotations

import contextlib
import random
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memvid_mcp.core.errors import (
    ClosedError,
    CorruptionError,
    MemvidError,
    NotFoundError,
    ValidationError,
)
from memvid_mcp.storage.base import StorageAdapter
from memvid_mcp.storage.video import VideoStore, codec, manifest
from memvid_mcp.storage.video import store as store_module
from memvid_mcp.testing import StorageContract


class TestVideoStoreContract(StorageContract):
    def make_store(self, root: Path) -> StorageAdapter:
        return VideoStore(root)


class TestPortableContract(StorageContract):
    def make_store(self, root: Path) -> StorageAdapter:
        return VideoStore(root, profile="portable")


def _text(i: int, size: int = 400) -> bytes:
    rng = random.Random(i)
    words = ["memory", "video", "frame", "seal", "agent", "käse", "数据", "token", "def", "()"]
    return " ".join(rng.choice(words) for _ in range(size)).encode()[:size]


def _files(root: Path, suffix: str) -> list[Path]:
    return sorted((root / "segments").glob(f"seg-*.{suffix}"))


def test_sealed_segment_is_the_only_copy(tmp_path: Path) -> None:
    store = VideoStore(tmp_path)
    marker = b"UNIQUE-MARKER-" * 3
    store.put_many([("m", marker + _text(1))])
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), path
    assert store.get("m").startswith(marker)
    store.close()


def test_one_segment_per_batch_and_manifest_fields(tmp_path: Path) -> None:
    store = VideoStore(tmp_path)
    store.put_many([(f"a{i}", _text(i)) for i in range(30)])
    store.put_many([("b", _text(99))])
    assert len(_files(tmp_path, "mp4")) == 2 and len(_files(tmp_path, "mvi")) == 2
    parsed = manifest.parse((tmp_path / manifest.FILE_NAME).read_bytes())
    assert parsed.problems == [] and not (tmp_path / manifest.LEGACY_NAME).exists()
    put = next(r for r in parsed.records if r["op"] == "put")
    for key in ("v", "body_id", "sha256", "len", "seg", "frame", "offset", "length", "frames"):
        assert key in put
    seg = next(r for r in parsed.records if r["op"] == "seg")
    assert seg["ts"].endswith("Z") and seg["ecc"] == "L" and len(seg["mp4_sha256"]) == 64
    assert len(put["sha256"]) == 2 * manifest.HASH_BYTES
    store.close()


def test_seal_retries_with_safer_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = codec.decode_payload
    calls = {"n": 0}

    def flaky(*args: object) -> bytes | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "decode_payload", flaky)
    store = VideoStore(tmp_path)
    store.put_many([("x", _text(5, 3000))])
    monkeypatch.setattr(codec, "decode_payload", real)
    (mvi_path,) = _files(tmp_path, "mvi")
    index = store_module.mvi.loads(mvi_path.read_bytes())
    assert (index.ecc, index.px_per_module) == ("M", 2)  # the second, safer rung
    assert store.get("x") == _text(5, 3000)
    assert VideoStore(tmp_path).get("x") == _text(5, 3000)


def test_seal_moves_on_when_an_encoder_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = codec.write_segment

    def refuse_first(path: Path, symbols: object, settings: codec.EncodeSettings) -> object:
        if settings.ecc == "L":
            raise store_module.StorageError("encoder refused these options")
        return real(path, symbols, settings)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "write_segment", refuse_first)
    store = VideoStore(tmp_path)
    store.put_many([("e", _text(8, 2000))])
    assert store.get("e") == _text(8, 2000)

    def refuse_all(*args: object) -> object:
        raise store_module.StorageError("no encoder at all")

    monkeypatch.setattr(codec, "write_segment", refuse_all)
    with pytest.raises(store_module.StorageError):
        store.put_many([("never", b"x")])
    assert not store.contains("never")


def test_seal_never_publishes_an_unreadable_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = VideoStore(tmp_path)
    store.put_many([("before", b"kept")])
    monkeypatch.setattr(codec, "decode_payload", lambda *args: b"wrong")
    with pytest.raises(CorruptionError):
        store.put_many([("doomed", _text(7))])
    monkeypatch.undo()
    assert not store.contains("doomed")
    assert len(_files(tmp_path, "mp4")) == 1
    assert not list((tmp_path / "segments").glob(".seg-*"))
    reopened = VideoStore(tmp_path)
    assert sorted(reopened.ids()) == ["before"] and reopened.get("before") == b"kept"


def test_get_is_cached_and_bounded(tmp_path: Path) -> None:
    store = VideoStore(tmp_path, cache_bytes=8000)
    items = [(f"c{i}", _text(i, 2000)) for i in range(40)]
    store.put_many(items)
    store.close()
    store = VideoStore(tmp_path, cache_bytes=8000)
    for body_id, body in items:
        assert store.get(body_id) == body
    details = store.stats().details
    assert details["cache_bytes"] <= 8000 and details["cache_misses"] > 0
    assert store.get_many([i for i, _ in items[:3]]) == dict(items[:3])


def test_determinism_byte_identical_segments(tmp_path: Path) -> None:
    items = [(f"d{i}", _text(i, 700)) for i in range(50)]
    outputs = []
    for run in ("one", "two"):
        store = VideoStore(tmp_path / run)
        store.put_many([(f"{run}-{i}", body) for i, body in items])  # ids differ, content not
        outputs.append(
            [p.read_bytes() for p in _files(tmp_path / run, "mp4") + _files(tmp_path / run, "mvi")]
        )
        store.close()
    assert outputs[0] == outputs[1]


def test_compaction_under_deletes(tmp_path: Path) -> None:
    store = VideoStore(tmp_path)
    batches = [[(f"k{b}-{i}", _text(b * 100 + i, 900)) for i in range(20)] for b in range(4)]
    for batch in batches:
        store.put_many(batch)
    store.delete_many([f"k0-{i}" for i in range(20) if i % 4])  # 25% live: rewritten
    store.delete_many([f"k1-{i}" for i in range(20)])  # nothing live: removed
    seen: list[tuple[int, int]] = []
    report = store.compact(progress=lambda done, total: seen.append((done, total)))
    assert report.segments_removed >= 2 and report.bytes_reclaimed > 0
    assert report.to_dict()["bytes_reclaimed"] == report.bytes_reclaimed
    assert seen and seen[-1][0] == seen[-1][1]
    live = {i: b for batch in batches for i, b in batch if store.contains(i)}
    assert len(live) == 5 + 40
    assert len(_files(tmp_path, "mp4")) == 1  # small segments merged too
    reopened = VideoStore(tmp_path)
    for body_id, body in live.items():
        assert reopened.get(body_id) == body
    assert reopened.verify() == []
    assert reopened.compact().segments_removed == 0


def test_verify_detects_flipped_byte(tmp_path: Path) -> None:
    store = VideoStore(tmp_path)
    items = [(f"f{i}", _text(i, 1500)) for i in range(20)]
    store.put_many(items)
    (mp4,) = _files(tmp_path, "mp4")
    index = store_module.mvi.loads(_files(tmp_path, "mvi")[0].read_bytes())
    entry = index.frames[1]
    data = bytearray(mp4.read_bytes())
    data[entry.offset + entry.size // 2] ^= 0x5A
    mp4.write_bytes(bytes(data))
    store = VideoStore(tmp_path)
    problems = store.verify()
    assert problems and all(p.path == str(mp4) for p in problems)
    assert "frame 1" in problems[0].message
    affected = set(problems[0].memory_ids)
    assert affected and affected <= {i for i, _ in items}
    broken = sorted(affected)[0]
    with pytest.raises(CorruptionError):
        store.get(broken)
    untouched = [i for i, _ in items if i not in affected]
    assert store.get(untouched[0]) == dict(items)[untouched[0]]


def test_verify_reports_damaged_index_and_manifest(tmp_path: Path) -> None:
    store = VideoStore(tmp_path)
    store.put_many([("i1", _text(1)), ("i2", _text(2))])
    (mvi_path,) = _files(tmp_path, "mvi")
    mvi_path.write_bytes(mvi_path.read_bytes()[:-1] + b"\x00")
    with open(tmp_path / manifest.FILE_NAME, "ab") as fh:
        fh.write(b"P\x40\x01torn")  # a put record cut short by a crash
    store = VideoStore(tmp_path)
    problems = store.verify()
    assert any(p.path == str(mvi_path) and set(p.memory_ids) == {"i1", "i2"} for p in problems)
    assert any("torn" in p.message for p in problems)
    with pytest.raises(CorruptionError):
        store.get("i1")
    store.put_many([("i3", b"after the torn tail")])  # the torn tail is cut, not glued to
    assert VideoStore(tmp_path).get("i3") == b"after the torn tail"


def test_validation_and_close(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        VideoStore(tmp_path, profile="vhs")
    store = VideoStore(tmp_path)
    with pytest.raises(ValidationError):
        store.put_many([("x", "not bytes")])  # type: ignore[list-item]
    store.put_many([])
    store.close()
    with pytest.raises(ClosedError):
        store.get("x")


def test_concurrent_readers_during_writes_and_compaction(tmp_path: Path) -> None:
    store = VideoStore(tmp_path, cache_bytes=0)
    first = [(f"r{i}", _text(i, 600)) for i in range(30)]
    store.put_many(first)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        rng = random.Random(threading.get_ident())
        while not stop.is_set():
            body_id, body = rng.choice(first[::2])
            try:
                assert store.get(body_id) == body
            except BaseException as exc:  # collected and re-raised in the main thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(3):
            store.put_many([(f"w{n}-{i}", _text(1000 + i)) for i in range(10)])
        store.delete_many([i for i, _ in first[1::2]])
        store.compact()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    with pytest.raises(NotFoundError):
        store.get("r1")


def test_lost_segment_line_is_rebuilt_and_never_collected(tmp_path: Path) -> None:
    store = VideoStore(tmp_path)
    store.put_many([("s1", _text(1)), ("s2", _text(2))])
    store.put_many([("s3", _text(3))])
    path = tmp_path / manifest.FILE_NAME
    data = bytearray(path.read_bytes())
    assert data[len(manifest.HEADER)] == ord("S")  # the first record describes the segment
    data[len(manifest.HEADER) + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    store = VideoStore(tmp_path)
    assert any("rebuilt" in p.message for p in store.verify())
    store.compact()  # must not take the segment for an orphan
    for i in (1, 2, 3):
        assert VideoStore(tmp_path).get(f"s{i}") == _text(i)


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.text(max_size=8),
    st.lists(st.text(max_size=4)),
    st.just("01M7XW0BNPEG748ZKFAMK5MJ1K"),  # a well-formed segment id with no files
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"op": st.sampled_from(["seg", "put", "del", "drop"])},
            optional={
                k: _values
                for k in (
                    "seg",
                    "body_id",
                    "frame",
                    "offset",
                    "len",
                    "frames",
                    "sha256",
                    "ids",
                    "raw",
                    "bytes",
                    "mvi_bytes",
                )
            },
        ),
        max_size=8,
    )
)
def test_checksummed_nonsense_in_the_manifest_raises_only_memvid_errors(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, object]]
) -> None:
    root = tmp_path_factory.mktemp("nonsense")
    if len(records) % 2:  # a 0.1.0 manifest (converted on open) or a compact one
        (root / manifest.LEGACY_NAME).write_bytes(
            b"".join(manifest.encode_line(r) for r in records))
    else:
        (root / manifest.FILE_NAME).write_bytes(manifest.HEADER
                                                + manifest.encode_records(records))
    try:
        store = VideoStore(root)
        for body_id in list(store.ids()):
            with contextlib.suppress(MemvidError):
                store.get(body_id)
        store.stats()
        store.verify()
        store.compact()
    except MemvidError:
        pass


def test_huge_batch_seals_several_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "SEGMENT_RAW_LIMIT", 5000)
    store = VideoStore(tmp_path)
    items = [(f"h{i}", _text(i, 1200)) for i in range(12)]
    store.put_many(items)
    assert len(_files(tmp_path, "mp4")) >= 3
    reopened = VideoStore(tmp_path)
    assert all(reopened.get(i) == b for i, b in items)


def test_a_second_reader_follows_the_writer(tmp_path: Path) -> None:
    writer = VideoStore(tmp_path)
    items = [(f"w{i}", _text(i, 500)) for i in range(40)]
    writer.put_many(items[:20])
    writer.put_many(items[20:])
    reader = VideoStore(tmp_path, cache_bytes=0)  # another process, in effect
    writer.put_many([("late", b"sealed after the reader opened")])
    writer.delete_many([f"w{i}" for i in range(20) if i % 5])
    writer.compact()  # moves the survivors, deletes the old segment files
    assert reader.get("late") == b"sealed after the reader opened"
    for body_id, body in items:
        if writer.contains(body_id):
            assert reader.get(body_id) == body
    assert not reader.contains("w1")
