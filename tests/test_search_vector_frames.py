"""vector_frames: the row file of a format-3 vector index round-trips and rejects damage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memvid_mcp.search import vector_frames


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 48), st.lists(st.text(max_size=40), max_size=60),
       st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_frames_round_trip(dim: int, ids: list[str], frame_rows: int, seed: int) -> None:
    codes = np.random.default_rng(seed).integers(-127, 128, (len(ids), dim), dtype=np.int8)
    data = vector_frames.encode(codes, ids, frame_rows=frame_rows)
    got, got_ids, frames = vector_frames.decode(data, dim)
    assert np.array_equal(got, codes) and got_ids == ids
    assert frames == -(-len(ids) // frame_rows)
    # appending frames (one commit each) reads back as one sequence of rows
    more = vector_frames.encode(codes[:1], ids[:1]) if ids else b""
    both, both_ids, _ = vector_frames.decode(data + more, dim)
    assert both_ids == ids + ids[:1] and len(both) == len(ids) + len(ids[:1])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 255))
def test_damage_is_reported_not_misread(position: int, flip: int) -> None:
    """A flipped byte either raises ValueError or still decodes to the right number of rows
    (the meta file's CRC-32 catches the rest; verify reports it)."""
    rng = np.random.default_rng(0)
    ids = [f"id-{i}" for i in range(30)]
    codes = rng.integers(-127, 128, (30, 16), dtype=np.int8)
    data = bytearray(vector_frames.encode(codes, ids, frame_rows=7))
    data[position % len(data)] ^= flip
    try:
        got, got_ids, _ = vector_frames.decode(bytes(data), 16)
    except ValueError:
        return
    assert len(got) == len(got_ids)


def test_cut_file_and_bad_codec_raise() -> None:
    data = vector_frames.encode(np.zeros((3, 8), dtype=np.int8), ["a", "b", "c"])
    with pytest.raises(ValueError):
        vector_frames.decode(data[:-1], 8)
    with pytest.raises(ValueError):
        vector_frames.decode(data[:4], 8)
    bad = bytearray(data)
    bad[8] = 7  # the codec byte
    with pytest.raises(ValueError):
        vector_frames.decode(bytes(bad), 8)
