"""The one varint encoding: every non-negative integer round-trips through a format's reader."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from memvid_mcp.core.varint import append_varint, varint
from memvid_mcp.storage.video.framing import _read_varint


@given(st.lists(st.integers(min_value=0, max_value=2**62), min_size=1, max_size=20))
def test_varints_round_trip_and_append_matches(values: list[int]) -> None:
    out = bytearray()
    for v in values:
        append_varint(v, out)
    assert bytes(out) == b"".join(varint(v) for v in values)
    pos, got = 0, []
    for _ in values:
        v, pos = _read_varint(bytes(out), pos, "value")
        got.append(v)
    assert got == values and pos == len(out)
