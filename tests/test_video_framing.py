"""Framing, .mvi and manifest formats: round trips, packing edge cases, hostile bytes."""

from __future__ import annotations

import contextlib
import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memvid_mcp.core.errors import CorruptionError, MemvidError
from memvid_mcp.storage.video import framing, manifest, mvi

CAP = 2951
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def unpack(packed: framing.Packed, bodies: list[bytes]) -> list[bytes]:
    frames = [framing.decode_frame(p) for p in packed.payloads]
    for i, frame in enumerate(frames):
        assert frame.index == i
    out = []
    for body, (frame, offset, count) in zip(bodies, packed.locations, strict=True):
        data = b"".join(frames[f].content for f in range(frame, frame + count))
        out.append(data[offset : offset + len(body)])
    return out


@FAST
@given(st.lists(st.binary(max_size=4000), max_size=12), st.sampled_from([64, 200, 1271, CAP]))
def test_pack_round_trip(bodies: list[bytes], capacity: int) -> None:
    packed = framing.Packer(capacity, level=3).pack(bodies)
    assert all(len(p) <= capacity for p in packed.payloads)
    assert unpack(packed, bodies) == bodies


def test_many_small_bodies_share_frames() -> None:
    bodies = [f"note {i}: the meeting moved to Thursday".encode() for i in range(200)]
    packed = framing.Packer(CAP).pack(bodies)
    assert len(packed.payloads) < 5
    assert unpack(packed, bodies) == bodies


def test_large_body_spans_many_frames() -> None:
    body = random.Random(7).randbytes(40_000)  # incompressible
    packed = framing.Packer(CAP).pack([b"head", body, b"tail"])
    frame, _offset, count = packed.locations[1]
    assert count > 10
    first = framing.decode_frame(packed.payloads[frame + 1])
    assert first.flags & framing.FLAG_CONT_IN and first.flags & framing.FLAG_CONT_OUT
    assert unpack(packed, [b"head", body, b"tail"]) == [b"head", body, b"tail"]


def test_body_exactly_filling_a_frame() -> None:
    packer = framing.Packer(200, level=3)
    random_ish = random.Random(3).randbytes(4000)
    header = len(framing.encode_frame(0, 0, 0, [200], b""))  # 2-byte length varint
    body = random_ish[: 200 - header]  # stored raw: the payload is exactly 200 bytes
    alone = packer.pack([body])
    assert [len(p) for p in alone.payloads] == [200]  # exactly full, no second frame
    packed = packer.pack([body, b"next"])
    assert all(180 <= len(p) <= 200 for p in packed.payloads[:-1])
    assert unpack(packed, [body, b"next"]) == [body, b"next"]


def test_empty_bodies_and_empty_segment() -> None:
    packed = framing.Packer(CAP).pack([b"", b"", b""])
    assert len(packed.payloads) == 1
    assert framing.decode_frame(packed.payloads[0]).content == b""
    packed = framing.Packer(CAP).pack([b"a", b"", b"b", b""])
    assert unpack(packed, [b"a", b"", b"b", b""]) == [b"a", b"", b"b", b""]


def test_non_ascii_and_binary_looking_text() -> None:
    bodies = ["Grüße 世界 🧠 שלום".encode() * 50, bytes(range(256)) * 20, b"\x00" * 3000]
    packed = framing.Packer(CAP).pack(bodies)
    assert unpack(packed, bodies) == bodies


@FAST
@given(st.lists(st.binary(max_size=4000), max_size=12), st.sampled_from([64, 200, 1271, CAP]))
def test_a_checked_frame_reads_the_content_decode_frame_gives(bodies: list[bytes],
                                                              capacity: int) -> None:
    """The read path's cache holds payloads checked once (ADR 0034): what it reads from one
    is what decoding the whole payload gives."""
    for n, payload in enumerate(framing.Packer(capacity, level=3).pack(bodies).payloads):
        checked = framing.check_frame(payload)
        decoded = framing.decode_frame(payload)
        assert checked.number == decoded.index == n
        assert checked.total == len(decoded.content)
        assert framing.frame_content(checked) == decoded.content


def test_check_frame_refuses_what_decode_frame_refuses() -> None:
    payload = framing.Packer(CAP).pack([b"hello world" * 40]).payloads[0]
    damaged = bytearray(payload)
    damaged[12] ^= 0x01
    with pytest.raises(CorruptionError, match="checksum"):
        framing.check_frame(bytes(damaged), "seg#frame=0")
    short = framing.check_frame(payload)._replace(total=5)  # a piece table saying otherwise
    with pytest.raises(CorruptionError):
        framing.frame_content(short)


def test_payload_checksum_catches_a_flipped_bit() -> None:
    payload = framing.Packer(CAP).pack([b"hello world" * 40]).payloads[0]
    damaged = bytearray(payload)
    damaged[12] ^= 0x01
    with pytest.raises(CorruptionError):
        framing.decode_frame(bytes(damaged))


@FAST
@given(st.binary(max_size=600))
def test_random_frame_bytes_raise_only_memvid_errors(data: bytes) -> None:
    for candidate in (data, b"MV\x01" + data, _with_crc(b"MV\x01" + data)):
        with contextlib.suppress(MemvidError):
            framing.decode_frame(candidate)


def _with_crc(data: bytes) -> bytes:
    return data + zlib.crc32(data).to_bytes(4, "little")


def _index(frames: int) -> mvi.SegmentIndex:
    return mvi.SegmentIndex(
        profile="archival",
        codec="ffv1",
        pix_fmt="gray",
        width=186,
        height=186,
        px_per_module=1,
        ecc="L",
        time_base=(1, 10240),
        mp4_size=123456,
        extradata=b"\x01\x02extra",
        frames=tuple(
            mvi.FrameEntry(44 + 4000 * i, 4000, i * 1024, i * 7, 2951, i * 13, 40)
            for i in range(frames)
        ),
    )


@FAST
@given(st.integers(min_value=0, max_value=50))
def test_mvi_round_trip(frames: int) -> None:
    index = _index(frames)
    assert mvi.loads(mvi.dumps(index)) == index


@FAST
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=2000))
def test_mvi_hostile_bytes(noise: bytes, where: int) -> None:
    good = bytearray(mvi.dumps(_index(3)))
    for candidate in (noise, bytes(good[: where % len(good)]), mvi.MAGIC + noise):
        with contextlib.suppress(MemvidError):
            mvi.loads(bytes(candidate))
    good[where % len(good)] ^= 0x10
    with pytest.raises(CorruptionError):
        mvi.loads(bytes(good))


records = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["put", "del", "seg", "drop"]),
        "body_id": st.text(max_size=30),
        "len": st.integers(min_value=0, max_value=1 << 40),
        "ids": st.lists(st.text(max_size=5), max_size=3),
    }
)


@FAST
@given(st.lists(records, max_size=8))
def test_manifest_round_trip(recs: list[dict[str, object]]) -> None:
    data = b"".join(manifest.encode_line(r) for r in recs)
    parsed = manifest.parse(data)
    assert parsed.problems == []
    assert [{k: v for k, v in r.items() if k != "v"} for r in parsed.records] == recs
    assert parsed.good_size == len(data)


@FAST
@given(st.lists(records, min_size=1, max_size=5), st.data())
def test_manifest_torn_tail_is_skipped(recs: list[dict[str, object]], data: st.DataObject) -> None:
    whole = b"".join(manifest.encode_line(r) for r in recs)
    last = manifest.encode_line(recs[-1])
    cut = data.draw(st.integers(min_value=1, max_value=len(last) - 1))
    parsed = manifest.parse(whole[: len(whole) - cut])
    assert len(parsed.records) == len(recs) - 1
    assert parsed.torn_tail and len(parsed.problems) == 1


@FAST
@given(st.binary(max_size=2000))
def test_manifest_random_bytes_never_raise(data: bytes) -> None:
    parsed = manifest.parse(data)
    assert parsed.good_size <= len(data)
    parsed = manifest.parse(b"[" * 5000 + b"\n" + data)  # deep nesting is only a bad line
    assert parsed.problems


def test_manifest_damaged_middle_line_is_reported_not_fatal() -> None:
    lines = [manifest.encode_line({"op": "del", "ids": [str(i)]}) for i in range(3)]
    damaged = lines[1].replace(b'"1"', b'"7"')
    parsed = manifest.parse(lines[0] + damaged + lines[2])
    assert [r["ids"] for r in parsed.records] == [["0"], ["2"]]
    assert "line 2" in parsed.problems[0]
