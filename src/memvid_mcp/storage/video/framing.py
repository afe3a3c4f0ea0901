"""Frame payload format (version 1) and the packer that fills QR frames with bodies.

A segment's bodies are concatenated into one logical stream; the packer cuts that stream
into slices whose compressed form fills one QR symbol each. Cutting anywhere (not only at
body boundaries) wastes no capacity: small bodies share a frame, large ones span several.
Each payload says which pieces it carries, so a segment is self-describing even without
the manifest (byte layout in docs/format.md).
"""

from __future__ import annotations

import bisect
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import zstandard

from ...core.errors import CorruptionError

MAGIC = b"MV"
VERSION = 1
FLAG_CONT_IN = 0x01  # first piece continues a body begun in an earlier frame
FLAG_CONT_OUT = 0x02  # last piece continues in the next frame
FLAG_ZSTD = 0x04  # data is one zstd frame; otherwise stored as is
_KNOWN_FLAGS = FLAG_CONT_IN | FLAG_CONT_OUT | FLAG_ZSTD
_CRC = struct.Struct("<I")
MIN_CAPACITY = 64
_MAX_CONTENT = 1 << 24  # a frame never carries more than 16 MiB of decompressed content


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame payload."""

    index: int
    first_ordinal: int  # ordinal of the first piece's body among the segment's non-empty bodies
    flags: int
    piece_lengths: tuple[int, ...]
    content: bytes  # the decompressed slice of the segment stream


@dataclass(frozen=True, slots=True)
class Packed:
    """The payloads of one segment and where each body starts."""

    payloads: list[bytes]
    locations: list[tuple[int, int, int]]  # per body: (first frame, offset in its content, frames)
    content_lengths: list[int]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 56:
            raise CorruptionError("frame", f"truncated or overlong varint ({what})")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def encode_frame(
    index: int, first_ordinal: int, flags: int, piece_lengths: Sequence[int], data: bytes
) -> bytes:
    """Serialise one payload: header, piece table, data, CRC32 of everything before it."""
    head = bytearray(MAGIC)
    head.append(VERSION)
    head.append(flags)
    head += _varint(index)
    head += _varint(first_ordinal)
    head += _varint(len(piece_lengths))
    for length in piece_lengths:
        head += _varint(length)
    head += data
    return bytes(head) + _CRC.pack(zlib.crc32(head))


def decode_frame(payload: bytes, path: str = "frame") -> Frame:
    """Parse and check one payload; any damage raises CorruptionError naming ``path``."""
    if len(payload) < 9 or payload[:2] != MAGIC:
        raise CorruptionError(path, "not a memvid frame payload (bad magic)")
    if payload[2] != VERSION:
        raise CorruptionError(path, f"unsupported frame format version {payload[2]}")
    body, (crc,) = payload[:-4], _CRC.unpack(payload[-4:])
    if zlib.crc32(body) != crc:
        raise CorruptionError(path, "frame payload checksum mismatch")
    flags = body[3]
    if flags & ~_KNOWN_FLAGS:
        raise CorruptionError(path, f"unknown frame flags {flags:#x}")
    pos = 4
    index, pos = _read_varint(body, pos, "index")
    first, pos = _read_varint(body, pos, "first ordinal")
    count, pos = _read_varint(body, pos, "piece count")
    if count > len(body):
        raise CorruptionError(path, "piece count larger than the payload")
    lengths = []
    for _ in range(count):
        length, pos = _read_varint(body, pos, "piece length")
        lengths.append(length)
    total = sum(lengths)
    if total > _MAX_CONTENT:
        raise CorruptionError(path, "frame content too large")
    data = body[pos:]
    if flags & FLAG_ZSTD:
        try:
            content = zstandard.ZstdDecompressor().decompress(data, max_output_size=total or 1)
        except zstandard.ZstdError as exc:
            raise CorruptionError(path, f"zstd: {exc}") from None
    else:
        content = bytes(data)
    if len(content) != total:
        raise CorruptionError(path, "frame content length does not match its piece table")
    return Frame(index, first, flags, tuple(lengths), content)


class _Stream:
    """The concatenated non-empty bodies of one segment, with piece lookups."""

    def __init__(self, bodies: Sequence[bytes]) -> None:
        self.parts = [b for b in bodies if b]
        self.data = b"".join(self.parts)
        self.starts: list[int] = []
        pos = 0
        for part in self.parts:
            self.starts.append(pos)
            pos += len(part)

    def pieces(self, a: int, b: int) -> tuple[int, int, list[int]]:
        """(first ordinal, flags, piece lengths) for the stream slice [a, b)."""
        first = bisect.bisect_right(self.starts, a) - 1
        lengths = []
        i = first
        while i < len(self.parts) and self.starts[i] < b:
            start, end = self.starts[i], self.starts[i] + len(self.parts[i])
            lengths.append(min(end, b) - max(start, a))
            i += 1
        flags = 0
        if self.starts[first] < a:
            flags |= FLAG_CONT_IN
        last = i - 1
        if self.starts[last] + len(self.parts[last]) > b:
            flags |= FLAG_CONT_OUT
        return first, flags, lengths


class Packer:
    """Fills frames of ``capacity`` bytes: estimate the slice, compress, correct, stop.

    A secant step on the compressed size lands within ~0.5% of the capacity in 2-4
    compressions per frame, instead of re-compressing after every added body.
    """

    def __init__(self, capacity: int, level: int = 19) -> None:
        if capacity < MIN_CAPACITY:
            raise ValueError("frame capacity too small")
        self.capacity = capacity
        self._zstd = zstandard.ZstdCompressor(level=level, write_checksum=False)
        self._ratio = 0.45

    def _payload(self, stream: _Stream, index: int, a: int, b: int) -> bytes:
        first, flags, lengths = stream.pieces(a, b)
        raw = stream.data[a:b]
        packed = self._zstd.compress(raw)
        if len(packed) < len(raw):
            return encode_frame(index, first, flags | FLAG_ZSTD, lengths, packed)
        return encode_frame(index, first, flags, lengths, raw)

    def _fill(self, stream: _Stream, index: int, a: int) -> tuple[int, bytes]:
        """The longest slice from ``a`` (within tolerance) whose payload fits."""
        remaining = len(stream.data) - a
        cap = self.capacity
        best_len, best = 0, b""
        fail = remaining + 1
        length = min(remaining, max(1, int((cap - 24) / self._ratio)))
        for _ in range(8):
            payload = self._payload(stream, index, a, a + length)
            if len(payload) <= cap:
                best_len, best = length, payload
                if length == remaining or len(payload) >= cap - 20:
                    break
            else:
                fail = length
            if fail - best_len <= 4:
                break
            guess = int(length * (cap - 10) / len(payload))
            guess = min(guess, int(length * 1.3) + 1, fail - 1)
            if guess <= best_len:
                guess = (best_len + fail) // 2
            length = min(guess, remaining)
        while best_len == 0:  # pathological: halve until something fits
            length = max(1, length // 2)
            payload = self._payload(stream, index, a, a + length)
            if len(payload) <= cap:
                best_len, best = length, payload
        if best_len >= 256:
            self._ratio = max(0.05, min(1.0, (len(best) - 16) / best_len))
        return best_len, best

    def pack(self, bodies: Sequence[bytes]) -> Packed:
        """Payloads for ``bodies`` in order, and each body's (frame, offset, frames)."""
        stream = _Stream(bodies)
        payloads: list[bytes] = []
        bounds: list[int] = []  # start offset of each frame's slice
        lengths: list[int] = []
        pos = 0
        total = len(stream.data)
        if total == 0:
            payloads.append(encode_frame(0, 0, 0, [], b""))
            bounds.append(0)
            lengths.append(0)
        while pos < total:
            taken, payload = self._fill(stream, len(payloads), pos)
            payloads.append(payload)
            bounds.append(pos)
            lengths.append(taken)
            pos += taken
        locations = []
        start = 0
        for body in bodies:
            frame = max(0, bisect.bisect_right(bounds, start) - 1)
            if start == total:
                frame = len(bounds) - 1
            end_frame = frame
            if body:
                end_frame = bisect.bisect_right(bounds, start + len(body) - 1) - 1
            locations.append((frame, start - bounds[frame], end_frame - frame + 1))
            start += len(body)
        return Packed(payloads, locations, lengths)
