"""Unsigned LEB128 varints, the one integer encoding of every binary format here (video frame
heads, the manifest, snapshot columns, vector frames)."""

from __future__ import annotations

__all__ = ["append_varint", "varint"]


def append_varint(value: int, out: bytearray) -> None:
    """Append ``value`` (>= 0) to ``out``: seven bits a byte, low first, high bit = more."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def varint(value: int) -> bytes:
    """``value`` (>= 0) as its varint bytes."""
    out = bytearray()
    append_varint(value, out)
    return bytes(out)
