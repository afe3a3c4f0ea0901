"""The grid reader (ADR 0032) against zxing-cpp's writer, and the checked read path that falls
back to the standard reader whenever the grid read does not match the frame index."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memvid_mcp.storage.video import VideoStore, codec, qrgrid
from memvid_mcp.storage.video import store as store_module

FRAME_PREFIX = b"MV\x01"  # every frame payload starts so: never all-numeric or alphanumeric


def _frame_image(payload: bytes, ecc: str, mask: int | None, pad: int = 0
                 ) -> tuple[np.ndarray, int]:
    modules = codec.qr_modules(payload, ecc, mask)
    side = codec.frame_side([modules]) + 2 * pad  # a smaller symbol sits centred in the frame
    return codec.render(modules, 1, side), codec.qr_version(modules)


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=1200), ecc=st.sampled_from("LMQH"),
       mask=st.one_of(st.none(), st.integers(0, 7)), pad=st.integers(0, 12))
def test_the_grid_reader_reads_what_the_writer_wrote(body: bytes, ecc: str, mask: int | None,
                                                     pad: int) -> None:
    payload = (FRAME_PREFIX + body)[: codec.CAPACITY[ecc]]
    image, version = _frame_image(payload, ecc, mask, pad)
    read = qrgrid.read_grid(image, version)
    # what the grid reader reads is what the writer wrote; what it cannot (zxing's writer may
    # put a run of digits in a numeric segment) it leaves to zxing, which reads it
    assert read == payload or (read is None and codec.read_qr(image) == payload)


def test_a_symbol_of_several_segments_is_left_to_the_standard_reader() -> None:
    """Regression (found by the property above in CI): b"MV\x01000" is written as a byte
    segment and a numeric one; the grid reader returned the first alone, b"MV\x01"."""
    payload = FRAME_PREFIX + b"000"
    image, version = _frame_image(payload, "L", None)
    assert qrgrid.read_grid(image, version) is None
    assert codec.read_qr(image) == payload


@pytest.mark.parametrize("ecc", "LMQH")
def test_every_version_reads_back(ecc: str) -> None:
    rng = random.Random(ecc)
    seen = set()
    for length in [*range(3, 200, 3), *range(200, codec.CAPACITY[ecc] + 1, 7)]:
        payload = (FRAME_PREFIX + rng.randbytes(length))[:length]
        image, version = _frame_image(payload, ecc, rng.choice([None, 1]))
        seen.add(version)
        assert qrgrid.read_grid(image, version) == payload, (ecc, length, version)
    assert seen == set(range(1, 41))


def test_what_the_grid_reader_cannot_read_is_none() -> None:
    image, version = _frame_image(FRAME_PREFIX + b"x" * 40, "L", 1)
    assert qrgrid.read_grid(image, version + 1) is None  # the wrong version: no format code
    assert qrgrid.read_grid(np.full_like(image, 255), version) is None  # no symbol
    alnum, v = _frame_image(b"ABC 123", "L", 1)  # alphanumeric mode: left to zxing
    assert qrgrid.read_grid(alnum, v) is None and codec.read_qr(alnum) == b"ABC 123"


def test_the_checked_read_falls_back_to_the_standard_reader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = VideoStore(tmp_path)
    store.put_many([(f"b{i}", random.Random(i).randbytes(300)) for i in range(30)])
    seg = next(iter(store._segs.values()))
    assert seg.index is not None
    index, entry = seg.index, seg.index.frames[0]
    packet = store_module._read_packet(store._mp4(seg.ulid), entry)
    args = (index.codec, index.extradata, index.width, index.height, packet,
            index.px_per_module, entry.qr_version, entry.payload_len, entry.payload_crc)
    good = codec.read_frame_payload(*args)
    assert good is not None and zlib.crc32(good) == entry.payload_crc
    standard: list[int] = []
    real = codec.decode_payload

    def counted(*a: object) -> bytes | None:
        standard.append(1)
        return real(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "decode_payload", counted)
    assert codec.read_frame_payload(*args) == good and standard == []  # the grid read it
    monkeypatch.setattr(qrgrid, "read_grid", lambda image, version: good[:-1] + b"\x00")
    assert codec.read_frame_payload(*args) == good and standard == [1]  # a mismatch: zxing
    store.close()
