"""The binary frame index ``seg-<ulid>.mvi`` (format version 1).

It lets a reader fetch one frame with a single positioned read of the .mp4 and decode it
without opening the container (the codec configuration is kept here too), and lets verify
check each frame's bytes and payload by CRC32. Layout in docs/format.md.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ...core.errors import CorruptionError

MAGIC = b"MVIX"
VERSION = 1
_HEAD = struct.Struct("<4sHH")  # magic, version, flags
# width, height, px/module, ecc, time base num/den, frame count, mp4 size
_GEOM = struct.Struct("<HHBBIIIQ")
# offset, size, pts, packet crc, payload len, payload crc, qr version
_RECORD = struct.Struct("<QIqIIIB")
_CRC = struct.Struct("<I")
_MAX_FRAMES = 1 << 22


@dataclass(frozen=True, slots=True)
class FrameEntry:
    offset: int  # byte offset of the encoded frame (packet) in the .mp4
    size: int  # packet size in bytes
    pts: int
    packet_crc: int  # CRC32 of the packet bytes as stored in the .mp4
    payload_len: int  # QR payload length in bytes
    payload_crc: int  # CRC32 of the QR payload
    qr_version: int


@dataclass(frozen=True, slots=True)
class SegmentIndex:
    profile: str
    codec: str
    pix_fmt: str
    width: int
    height: int
    px_per_module: int
    ecc: str
    time_base: tuple[int, int]
    mp4_size: int
    extradata: bytes
    frames: tuple[FrameEntry, ...]


def _short_str(value: str) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > 255:
        raise ValueError("string too long for the .mvi header")
    return bytes([len(raw)]) + raw


def dumps(index: SegmentIndex) -> bytes:
    """Serialise an index; a CRC32 of all preceding bytes ends the file."""
    out = bytearray(_HEAD.pack(MAGIC, VERSION, 0))
    for text in (index.profile, index.codec, index.pix_fmt):
        out += _short_str(text)
    out += _GEOM.pack(
        index.width,
        index.height,
        index.px_per_module,
        ord(index.ecc),
        index.time_base[0],
        index.time_base[1],
        len(index.frames),
        index.mp4_size,
    )
    out += _CRC.pack(len(index.extradata)) + index.extradata
    for f in index.frames:
        out += _RECORD.pack(
            f.offset, f.size, f.pts, f.packet_crc, f.payload_len, f.payload_crc, f.qr_version
        )
    return bytes(out) + _CRC.pack(zlib.crc32(out))


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CorruptionError(self.path, "truncated frame index")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def short_str(self) -> str:
        raw = self.take(self.take(1)[0])
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise CorruptionError(self.path, "non-ASCII name in frame index") from None


def loads(data: bytes, path: str = "mvi") -> SegmentIndex:
    """Parse and check an index; any damage raises CorruptionError naming ``path``."""
    if len(data) < _HEAD.size + 4:
        raise CorruptionError(path, "frame index too short")
    magic, version, _flags = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CorruptionError(path, "not a memvid frame index (bad magic)")
    if version != VERSION:
        raise CorruptionError(path, f"unsupported frame index version {version}")
    (crc,) = _CRC.unpack(data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise CorruptionError(path, "frame index checksum mismatch")
    r = _Reader(data[:-4], path)
    r.take(_HEAD.size)
    profile, codec, pix_fmt = r.short_str(), r.short_str(), r.short_str()
    width, height, px, ecc, tb_num, tb_den, count, mp4_size = _GEOM.unpack(r.take(_GEOM.size))
    if count > _MAX_FRAMES or tb_den == 0 or not 32 <= ecc < 127:
        raise CorruptionError(path, "implausible frame index header")
    (extra_len,) = _CRC.unpack(r.take(4))
    extradata = r.take(extra_len)
    frames = tuple(FrameEntry(*_RECORD.unpack(r.take(_RECORD.size))) for _ in range(count))
    if r.pos != len(r.data):
        raise CorruptionError(path, "trailing bytes in frame index")
    return SegmentIndex(
        profile,
        codec,
        pix_fmt,
        width,
        height,
        px,
        chr(ecc),
        (tb_num, tb_den),
        mp4_size,
        extradata,
        frames,
    )
