"""Metadata snapshot: the state of a scope as of one WAL sequence number.

``meta/snapshot.jsonl.zst`` is a zstd frame (ADR 0029; byte layout in docs/format.md) holding

    magic ``MVSN``, u16 format 2, u16 flags (0x01: a spare), u64 seq, u64 previous_seq,
    u32 count, the common scope name, the records as columns (``snapshot_columns``), CRC32

Written atomically (temp, fsync, rename). Opening replays the WAL records after ``seq``.
Format 1 (0.1.0 to ADR 0019: zstd JSON lines, a header, one line per record, a CRC line) is
still read; the next checkpoint writes format 2. The file names are kept from format 1.

``snapshot.prev.jsonl.zst`` is the *spare*, written just before the snapshot at the same seq:
the same records without their hashes and sizes, which a fallback recomputes from the bodies.
A damaged snapshot so costs a slower open, not the scope's metadata (ADR 0003), and the spare
costs about a quarter of a second full copy (ADR 0029, amending ADR 0019). When nothing
changed since the pair was written, a checkpoint rewrites neither (ADR 0019).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ..core.errors import CorruptionError
from ..core.fsutil import atomic_write
from ..core.models import MemoryRecord
from .snapshot_columns import decode_records, encode_records

FORMAT = 2
MAGIC = b"MVSN"
FLAG_SPARE = 0x01
_HEAD = struct.Struct("<4sHHQQI")
_CRC = struct.Struct("<I")
LEVEL = 9  # the columns are mostly random bytes: higher levels gain under 1%
FILE_NAME = "snapshot.jsonl.zst"
PREVIOUS_NAME = "snapshot.prev.jsonl.zst"


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    previous_seq: int
    records: list[MemoryRecord]
    format: int
    spare: bool  # records without hash and size (``snapshot_columns.UNKNOWN_SHA``)


def encode_snapshot(seq: int, records: list[MemoryRecord], *, previous_seq: int = 0,
                    spare: bool = False) -> bytes:
    """The bytes of a format-2 snapshot file."""
    scope = Counter(r.scope for r in records).most_common(1)[0][0] if records else ""
    name = scope.encode("utf-8")
    body = bytearray(_HEAD.pack(MAGIC, FORMAT, FLAG_SPARE if spare else 0, seq, previous_seq,
                                len(records)))
    body += struct.pack("<H", len(name)) + name
    body += encode_records(records, scope, spare=spare)
    body += _CRC.pack(zlib.crc32(body))
    return zstandard.ZstdCompressor(level=LEVEL).compress(bytes(body))


def write_snapshot(path: Path, seq: int, records: list[MemoryRecord], *,
                   previous_seq: int = 0, spare: bool = False) -> None:
    atomic_write(path, encode_snapshot(seq, records, previous_seq=previous_seq, spare=spare))


def snapshot_pair_current(meta: Path, seq: int, snapshot_seq: int, previous_seq: int, *,
                          sound: bool, current_format: int = FORMAT) -> bool:
    """Whether the snapshot and its spare on disk already both hold state ``seq`` in the
    current format: writing them would only write the same records again (every close of an
    unchanged scope). A format-2 snapshot whose previous_seq is its own seq was written after
    its spare, so the spare is a format-2 one of the same state."""
    return (sound and seq == snapshot_seq == previous_seq and current_format == FORMAT
            and (meta / FILE_NAME).exists() and (meta / PREVIOUS_NAME).exists())


def read_snapshot(path: Path) -> tuple[int, list[MemoryRecord]]:
    """Returns (seq, records); (0, []) when there is no snapshot yet."""
    seq, records, _previous = load_snapshot(path)
    return seq, records


def load_snapshot(path: Path) -> tuple[int, list[MemoryRecord], int]:
    """Returns (seq, records, previous_seq); (0, [], 0) when there is no snapshot yet."""
    snap = load_snapshot_file(path)
    return snap.seq, snap.records, snap.previous_seq


def load_snapshot_file(path: Path) -> Snapshot:
    """Either format; no file is an empty format-2 snapshot at seq 0."""
    if not path.exists():
        return Snapshot(0, 0, [], FORMAT, False)
    try:
        data = zstandard.ZstdDecompressor().decompress(path.read_bytes(),
                                                       max_output_size=1 << 34)
    except zstandard.ZstdError as exc:
        raise CorruptionError(str(path), f"undecodable snapshot: {exc}") from None
    if data.startswith(MAGIC):
        return _decode_v2(data, str(path))
    return _decode_v1(data, path)


def _decode_v2(data: bytes, path: str) -> Snapshot:
    if len(data) < _HEAD.size + 6 or zlib.crc32(data[:-4]) != _CRC.unpack(data[-4:])[0]:
        raise CorruptionError(path, "snapshot checksum mismatch")
    _magic, version, flags, seq, previous_seq, count = _HEAD.unpack_from(data)
    if version != FORMAT or flags & ~FLAG_SPARE:
        raise CorruptionError(path, f"unsupported snapshot format {version} flags {flags:#x}")
    pos = _HEAD.size
    (length,) = struct.unpack_from("<H", data, pos)
    pos += 2
    try:
        scope = data[pos:pos + length].decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptionError(path, "snapshot: scope name is not UTF-8") from None
    spare = bool(flags & FLAG_SPARE)
    records = decode_records(data[pos + length:-4], count, scope, spare=spare, path=path)
    return Snapshot(seq, previous_seq, records, FORMAT, spare)


def _decode_v1(data: bytes, path: Path) -> Snapshot:
    body, _, trailer = data.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    try:
        expected = json.loads(trailer)["crc32"]
        if zlib.crc32(body) != expected:
            raise CorruptionError(str(path), "snapshot checksum mismatch")
        lines = body.decode("utf-8").splitlines()
        header = json.loads(lines[0])
        if header.get("kind") != "memvid-snapshot" or header.get("format") != 1:
            raise CorruptionError(str(path), "not a format-1 memvid snapshot")
        records = [MemoryRecord.from_state(json.loads(line)) for line in lines[1:]]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptionError(str(path), f"malformed snapshot: {exc}") from None
    if len(records) != header["count"]:
        raise CorruptionError(str(path), "snapshot record count mismatch")
    return Snapshot(int(header["seq"]), int(header.get("previous_seq", 0)), records, 1, False)
