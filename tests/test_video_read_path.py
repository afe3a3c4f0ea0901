"""The video read path a search pays for (ADR 0032): the frame cache as QR payloads,
background warming that never evicts, one dictionary read per segment, damaged packets, and
background merges that wait for a pause in reads."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from memvid_mcp.core.errors import CorruptionError
from memvid_mcp.storage.video import VideoStore, codec, framing
from memvid_mcp.storage.video import store as store_module
from memvid_mcp.storage.video.cache import SizedLRU


def _text(i: int, size: int = 900) -> bytes:
    rng = random.Random(i)
    words = ["memory", "deploy", "frame", "postgres", "agent", "käse", "数据", "cron", "why"]
    return " ".join(rng.choice(words) for _ in range(size)).encode()[:size]


def _items(n: int, size: int = 900) -> list[tuple[str, bytes]]:
    return [(f"m{i:04d}", _text(i, size)) for i in range(n)]


def _body_frames(store: VideoStore) -> set[tuple[str, int]]:
    """Every frame that carries bodies (not a dictionary slice)."""
    out = set()
    for seg in store._segs.values():
        assert seg.index is not None
        for frame in range(len(seg.index.frames)):
            payload = store_module._checked_payload(
                store._mp4(seg.ulid), seg.index, frame,
                store_module._read_packet(store._mp4(seg.ulid), seg.index.frames[frame]))
            if not framing.is_dictionary_piece(payload):
                out.add((seg.ulid, frame))
    return out


def _wait_for(condition, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> bytes:
        raise AssertionError("a frame was decoded")

    monkeypatch.setattr(codec, "decode_payload", refuse)
    monkeypatch.setattr(codec, "decode_image", refuse)
    monkeypatch.setattr(codec._decoders, "decode", refuse)


def _thread_named(name: str) -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == name)


def test_a_warmed_store_reads_every_body_from_memory(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    items = _items(300)  # 270 KB: a segment with a dictionary (ADR 0029)
    with_dictionary = VideoStore(tmp_path)
    with_dictionary.put_many(items)
    with_dictionary.close()
    store = VideoStore(tmp_path, warm=True)
    assert store.stats().details["warming"] is True  # memory_stats shows it from the start
    frames = _body_frames(store)
    assert store._warmer is not None  # opening started it
    _wait_for(lambda: all(key in store._cache for key in frames) and len(store._dicts) == 1)
    _wait_for(lambda: not store.warming)
    assert store.stats().details["warming"] is False
    _no_decoding(monkeypatch)
    assert store.get_many([i for i, _ in items]) == dict(items)
    store.close()
    assert store._warmer is not None and not store._warmer.is_alive()


def test_a_store_without_warming_decodes_only_what_is_read(tmp_path: Path) -> None:
    items = _items(60)
    store = VideoStore(tmp_path)
    store.put_many(items)
    assert len(store._cache) == 0  # sealing caches nothing unless warming
    assert store.get(items[0][0]) == items[0][1]
    time.sleep(0.2)
    assert len(store._cache) == 1 and store._warmer is None
    store.close()


def test_sealed_and_compacted_frames_of_a_warm_store_read_without_decoding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = VideoStore(tmp_path, warm=True)
    items = _items(300)
    store.put_many(items[:150])
    store.put_many(items[150:])
    store.delete_many([i for i, _ in items[::2]])
    store.purge()  # rewrites both segments into one
    kept = dict(items[1::2])
    _no_decoding(monkeypatch)
    assert store.get_many(list(kept)) == kept
    store.close()


def test_the_warmer_fills_only_free_room_and_never_evicts_what_readers_use(
        tmp_path: Path) -> None:
    items = _items(300)
    VideoStore(tmp_path).put_many(items)
    probe = VideoStore(tmp_path)
    frame_bytes = max(f.payload_len for s in probe._segs.values() if s.index
                      for f in s.index.frames)
    frames = len(_body_frames(probe))
    probe.close()
    cap = 4 * frame_bytes
    assert frames > 8
    store = VideoStore(tmp_path, warm=True, cache_bytes=cap)
    last_id, last_body = items[-1]
    assert store.get(last_id) == last_body  # a reader's frame
    loc = store._loc[last_id]
    read_key = (loc.seg, loc.frame + loc.frames - 1)
    warmer = _thread_named("memvid-video-warm")
    _wait_for(lambda: not store._warm_wake.is_set() and len(store._dicts) == 1)
    time.sleep(0.5)
    assert read_key in store._cache and store._cache.size_bytes <= cap
    assert 1 < len(store._cache) < frames and warmer.is_alive()
    store.close()
    assert not warmer.is_alive()


def test_the_content_cache_keeps_the_frames_read_last_within_its_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = _items(300)
    VideoStore(tmp_path).put_many(items)
    monkeypatch.setattr(store_module, "DECODED_CACHE_BYTES", 20_000)  # ~3 frames of text
    store = VideoStore(tmp_path)
    assert store.get_many([i for i, _ in items]) == dict(items)
    assert 0 < store._decoded.size_bytes <= 20_000 and 1 <= len(store._decoded) <= 3
    last_id, last_body = items[-1]
    hits = store._decoded.hits
    assert store.get(last_id) == last_body  # its frame was read last: no decompression
    assert store._decoded.hits == hits + 1
    store.delete_many([i for i, _ in items[::2]])
    store.purge()  # a rewrite drops the old segments' frames from both caches
    assert len(store._decoded) == 0 and len(store._cache) == 0
    assert store.get(last_id) == last_body
    store.close()
    assert len(store._decoded) == 0


def test_a_frame_changed_in_the_payload_cache_is_not_read_as_another(tmp_path: Path) -> None:
    """Frames enter the payload cache checked (index, CRC32, header); a hit trusts that
    check and still checks each body's sha256, so a wrong entry is refused, not served."""
    items = _items(60)
    store = VideoStore(tmp_path)
    store.put_many(items)
    first, second = items[0][0], items[-1][0]
    assert store.get(first) and store.get(second)
    loc_a, loc_b = store._loc[first], store._loc[second]
    key_a, key_b = (loc_a.seg, loc_a.frame), (loc_b.seg, loc_b.frame)
    assert key_a != key_b
    store._cache.put(key_a, store._cache.get(key_b))  # type: ignore[arg-type]
    store._decoded.clear()
    with pytest.raises(CorruptionError):
        store.get(first)
    store.close()


def test_in_memory_says_whether_a_read_would_decode_video(tmp_path: Path) -> None:
    items = _items(60)
    VideoStore(tmp_path).put_many(items)
    store = VideoStore(tmp_path)
    first, last = items[0][0], items[-1][0]
    assert not store.in_memory([first])  # nothing read yet: a read decodes its frame
    assert store.get(first) == items[0][1]
    assert store.in_memory([first]) and not store.in_memory([first, last])
    assert not store.in_memory(["no such body"])
    store.get(last)
    assert store.in_memory([first, last]) and store.in_memory([])
    store.close()


def test_a_sized_lru_bounds_values_by_their_sizeof() -> None:
    lru: SizedLRU[tuple[str, int]] = SizedLRU(100, sizeof=lambda value: value[1])
    lru.put("a", ("a", 40))
    lru.put("b", ("b", 40))
    assert lru.get("a") == ("a", 40)  # "b" is now the least recently used
    lru.put("c", ("c", 40))
    assert "b" not in lru and "a" in lru and lru.size_bytes == 80
    assert not lru.put_if_room("d", ("d", 30)) and lru.put_if_room("e", ("e", 20))
    lru.put("a", ("a", 10))  # replacing a value counts its new size
    assert lru.size_bytes == 70
    lru.discard_where(lambda key: key in ("a", "e"))
    assert lru.size_bytes == 40 and len(lru) == 1


def test_a_segment_dictionary_is_read_once_by_concurrent_readers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = _items(300)
    VideoStore(tmp_path).put_many(items)
    store = VideoStore(tmp_path, cache_bytes=0)
    reads: list[int] = []
    real = store_module._read_dictionary

    def slow_read(path: Path, index: object) -> framing.SegmentDictionary:
        reads.append(1)
        time.sleep(0.2)  # widen the window in which other readers want it too
        return real(path, index)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "_read_dictionary", slow_read)
    chosen = items[100:108]
    results: dict[str, bytes] = {}
    threads = [threading.Thread(target=lambda i=i: results.update({i: store.get(i)}))
               for i, _ in chosen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == dict(chosen) and len(reads) == 1
    store.close()


def test_a_damaged_packet_never_decodes_to_another_frames_payload(tmp_path: Path) -> None:
    """A reused FFV1 decoder conceals a damaged packet with the picture it decoded before
    (measured while trying decoder reuse, ADR 0032): every decode starts from nothing."""
    store = VideoStore(tmp_path)
    store.put_many(_items(40, 400))
    seg = next(iter(store._segs.values()))
    assert seg.index is not None
    index = seg.index
    packet = store_module._read_packet(store._mp4(seg.ulid), index.frames[0])
    args = (index.codec, index.extradata, index.width, index.height)
    assert codec.decode_payload(*args, packet, index.px_per_module) is not None
    assert codec.decode_payload(*args, b"\x00" * 64, index.px_per_module) is None
    store.close()


def test_a_background_merge_waits_while_searches_read_and_a_purge_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = _items(40, 400)
    store = VideoStore(tmp_path, tier_base=1 << 10, purge_after=60.0)
    for start in range(0, 40, 10):
        store.put_many(items[start:start + 10])  # four small segments: a merge to do
    segments = len(store._segs)
    assert store.get("m0000") == items[0][1]  # one read is not searches reading
    quiet = store.compact_step()
    assert quiet is not None and quiet.segments_removed >= 2
    for start in range(0, 40, 10):  # more small segments, and searches reading them
        store.put_many([(f"n{i}", body) for i, body in items[start:start + 10]])
    segments = len(store._segs)
    for body_id, body in items[:store_module.MERGE_BUSY_READS]:
        assert store.get(body_id) == body
    assert store.compact_step() is None and len(store._segs) == segments  # the merge waits
    monkeypatch.setattr(store_module, "MERGE_MAX_WAIT_SECONDS", 0.0)
    waited = store.compact_step()  # it has waited long enough: it runs although reads go on
    assert waited is not None and waited.segments_removed >= 2
    monkeypatch.setattr(store_module, "MERGE_MAX_WAIT_SECONDS", 120.0)
    store.delete_many(["m0002"])
    for body_id, body in items[3:3 + store_module.MERGE_BUSY_READS]:
        assert store.get(body_id) == body
    purged = store.compact_step(now=time.time() + 61)  # deleted text past its deadline
    assert purged is not None and purged.segments_removed >= 1
    assert not store.contains("m0002") and store.get("m0039") == items[39][1]
    store.close()
