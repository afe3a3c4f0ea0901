"""Segment dictionaries (ADR 0029): a zstd dictionary trained on a segment's own bodies, stored
twice in its first frames, makes its frames a quarter fewer; a damaged copy costs nothing."""

from __future__ import annotations

import itertools
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from format_reader import segment_stream
from memvid_mcp.core.errors import CorruptionError
from memvid_mcp.storage.video import VideoStore, framing, mvi
from memvid_mcp.storage.video import store as store_module

_VOCAB = [f"{a}{b}" for a in ("re", "con", "trans", "pre", "de", "in", "ex", "sub", "inter")
          for b in ("port", "cept", "mit", "duct", "form", "tain", "vise", "struct", "ject",
                    "spect", "scribe", "press", "pose", "fer", "tend", "sist")]


def _note(rng: random.Random) -> bytes:
    """Agent-note-like text: sentences of a shared vocabulary, names and numbers."""
    words = []
    for _ in range(rng.randint(50, 180)):
        words.append(rng.choice(_VOCAB) if rng.random() < 0.8 else str(rng.randint(0, 10**6)))
    return (f"Note for user {rng.randint(1, 99)}: " + " ".join(words) + ".").encode()


def _notes(n: int, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    return [_note(rng) for _ in range(n)]


def _unpack(packed: framing.Packed, bodies: list[bytes]) -> list[bytes]:
    pieces = {i: framing.decode_frame(p) for i, p in enumerate(packed.payloads)
              if i < packed.dictionary_frames}
    dictionary = framing.assemble_dictionary(pieces, "x") if pieces else None
    frames = [framing.decode_frame(p, dictionary=dictionary) for p in packed.payloads]
    out = []
    for body, (frame, offset, count) in zip(bodies, packed.locations, strict=True):
        data = b"".join(frames[f].content for f in range(frame, frame + count))
        out.append(data[offset:offset + len(body)])
    return out


def test_a_dictionary_makes_a_large_segment_smaller_and_round_trips() -> None:
    """Regression (ADR 0029): every frame was compressed alone. (This random-word text gains
    little, ~5%: zstd alone nearly reaches its entropy; real agent notes gain ~28%, see
    bench_footprint.py.)"""
    bodies = _notes(500)
    plain = framing.Packer(2951, dictionaries=False).pack(bodies)
    packed = framing.Packer(2951).pack(bodies)
    assert plain.dictionary_frames == 0 and packed.dictionary_frames >= 2
    assert len(packed.payloads) < len(plain.payloads)  # its two copies included
    assert all(len(p) <= 2951 for p in packed.payloads)
    assert _unpack(packed, bodies) == bodies
    body_frame = framing.decode_frame(packed.payloads[packed.dictionary_frames],
                                      dictionary=_dictionary(packed))
    assert body_frame.flags & framing.FLAG_DICT
    with pytest.raises(framing.DictionaryNeeded):  # never read without it
        framing.decode_frame(packed.payloads[packed.dictionary_frames])


def _dictionary(packed: framing.Packed) -> framing.SegmentDictionary:
    return framing.assemble_dictionary(
        {i: framing.decode_frame(packed.payloads[i]) for i in range(packed.dictionary_frames)},
        "x")


def test_small_or_incompressible_streams_get_no_dictionary() -> None:
    assert framing.Packer(2951).pack(_notes(20)).dictionary_frames == 0  # under 128 KiB
    noise = [random.Random(i).randbytes(4000) for i in range(60)]
    assert framing.Packer(2951).pack(noise).dictionary_frames == 0  # it would not pay


@settings(max_examples=12, deadline=None)
@given(cuts=st.lists(st.integers(0, 200_000), max_size=6), seed=st.integers(0, 99),
       capacity=st.sampled_from([1271, 2951]))
def test_pack_with_a_dictionary_round_trips(cuts: list[int], seed: int, capacity: int) -> None:
    stream = b"".join(_notes(260, seed))
    points = sorted({0, len(stream), *(c % len(stream) for c in cuts)})
    bodies = [stream[a:b] for a, b in itertools.pairwise(points)] + [b""]
    packed = framing.Packer(capacity, level=3).pack(bodies)
    assert packed.dictionary_frames > 0
    assert all(len(p) <= capacity for p in packed.payloads)
    assert _unpack(packed, bodies) == bodies


def _zero_packet(root: Path, frame: int) -> None:
    (mp4,) = (root / "segments").glob("seg-*.mp4")
    index = mvi.loads(mp4.with_suffix(".mvi").read_bytes(), "x")
    entry = index.frames[frame]
    data = bytearray(mp4.read_bytes())
    data[entry.offset:entry.offset + entry.size] = bytes(entry.size)
    mp4.write_bytes(bytes(data))


def test_a_segment_with_a_dictionary_reads_back_and_survives_one_damaged_copy(
        tmp_path: Path) -> None:
    bodies = {f"b{i}": body for i, body in enumerate(_notes(300))}
    store = VideoStore(tmp_path)
    store.put_many(list(bodies.items()))
    store.close()
    (mp4,) = (tmp_path / "segments").glob("seg-*.mp4")
    stream = segment_stream(mp4)  # the reader written from docs/format.md alone
    assert all(body in stream for body in bodies.values())
    store = VideoStore(tmp_path)
    assert store.verify() == []
    store.close()
    index = mvi.loads(mp4.with_suffix(".mvi").read_bytes(), "x")
    first = store_module._payload_frame(mp4, index, 0, store_module._read_packet(
        mp4, index.frames[0]))
    assert first.flags & framing.FLAG_DICT_PIECE
    per_copy = first.first_ordinal
    _zero_packet(tmp_path, 0)  # the first copy's first slice is gone
    store = VideoStore(tmp_path)
    assert {b: store.get(b) for b in bodies} == bodies
    problems = store.verify()
    assert problems and all(not p.memory_ids for p in problems)  # reported, nothing lost
    store.close()
    _zero_packet(tmp_path, per_copy)  # and the second copy's: the dictionary is lost
    store = VideoStore(tmp_path)
    with pytest.raises(CorruptionError):
        store.get("b0")
    named = {i for p in store.verify() for i in p.memory_ids}
    assert named == set(bodies)  # every memory it held is named, none silently
    store.close()


def test_flipped_bytes_in_a_dictionary_segment_are_never_silent(tmp_path: Path) -> None:
    """Any flipped byte of the .mp4: each body reads back exact or fails, and verify names
    every body that fails (ADR 0029: the dictionary frames are new ground for damage)."""
    bodies = {f"b{i}": body for i, body in enumerate(_notes(260, seed=9))}
    store = VideoStore(tmp_path)
    store.put_many(list(bodies.items()))
    store.close()
    (mp4,) = (tmp_path / "segments").glob("seg-*.mp4")
    sound = mp4.read_bytes()
    index = mvi.loads(mp4.with_suffix(".mvi").read_bytes(), "x")
    first = store_module._payload_frame(mp4, index, 0, store_module._read_packet(
        mp4, index.frames[0]))
    assert first.flags & framing.FLAG_DICT_PIECE
    rng = random.Random(11)
    # half the flips land in the dictionary's two copies (and the first body frames)
    dictionary_end = index.frames[2 * first.first_ordinal + 1].offset
    for n in range(16):
        where = rng.randrange(index.frames[0].offset, dictionary_end if n % 2 else len(sound))
        damaged = bytearray(sound)
        damaged[where] ^= 1 << rng.randrange(8)
        mp4.write_bytes(bytes(damaged))
        store = VideoStore(tmp_path)
        failed = set()
        for body_id, body in bodies.items():
            try:
                assert store.get(body_id) == body, (where, body_id)
            except CorruptionError:
                failed.add(body_id)
        problems = store.verify()
        assert problems, where  # the file changed: always reported
        assert failed <= {i for p in problems for i in p.memory_ids}, where
        store.close()
    mp4.write_bytes(sound)


def test_recovery_reads_a_dictionary_segment_without_its_index(tmp_path: Path) -> None:
    """salvage rebuilds the bodies of a dictionary segment from its frames alone."""
    from memvid_mcp.storage.video import salvage

    bodies = _notes(260, seed=3)
    store = VideoStore(tmp_path)
    store.put_many([(f"b{i}", b) for i, b in enumerate(bodies)])
    store.close()
    (mp4,) = (tmp_path / "segments").glob("seg-*.mp4")
    index = mvi.loads(mp4.with_suffix(".mvi").read_bytes(), "x")
    first = store_module._payload_frame(mp4, index, 0, store_module._read_packet(
        mp4, index.frames[0]))
    assert first.flags & framing.FLAG_DICT_PIECE
    assert salvage.segment_bodies(mp4) == bodies


def test_purge_leaves_no_deleted_text_in_a_segment_dictionary(
        data_dir: Path, outside_repo: Path) -> None:
    """A dictionary is trained from the bodies, so it holds fragments of their text; after a
    purge no file, dictionary frames included, holds a deleted text's unique phrase."""
    from format_reader import every_file_text, segment_parts
    from memvid_mcp.manager import MemoryManager

    marker = b"zebra-quokka-marmalade telescope"
    secret = (marker.decode() + " ") * 40
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False,
                            backend="video", seal_min_bytes=1 << 22) as m:  # one segment
        m.store_many([{"text": t.decode()} for t in _notes(120, seed=4)])
        doomed = m.store(secret).id
        m.store_many([{"text": t.decode()} for t in _notes(120, seed=6)])
        m.flush(embed=False)
        scope = data_dir / "global"
        (mp4,) = (scope / "segments").glob("seg-*.mp4")
        dictionary, _bodies = segment_parts(mp4)
        assert marker in dictionary  # the dictionary learnt the phrase
        m.delete(doomed, purge=True)
        leaks = [p for p, data in every_file_text(scope).items() if marker in data]
        assert leaks == []
        assert len(m.list(limit=500).memories) == 240


def test_frames_of_one_segment_decode_side_by_side_with_one_dictionary() -> None:
    """Regression: a page's frames are decoded on several threads (ADR 0028) with the one
    ``SegmentDictionary`` the store keeps per segment; a shared zstandard decompressor is not
    thread-safe and garbled frames ("zstd: Data corruption detected" in a service's log)."""
    bodies = _notes(600, seed=11)
    packed = framing.Packer(2951).pack(bodies)
    dictionary = _dictionary(packed)
    payloads = packed.payloads[packed.dictionary_frames:]
    expected = [framing.decode_frame(p, dictionary=dictionary).content for p in payloads]
    start = threading.Barrier(8)

    def decode_all(offset: int) -> list[bytes]:
        start.wait()
        order = payloads[offset:] + payloads[:offset]
        got = [framing.decode_frame(p, dictionary=dictionary).content for _ in range(20)
               for p in order]
        return got[: len(order)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(decode_all, range(8)))
    for offset, got in enumerate(results):
        assert got == expected[offset:] + expected[:offset]
