"""Metadata snapshot: the state of a scope as of one WAL sequence number.

``meta/snapshot.jsonl.zst`` is zstd-compressed JSON lines (ADR 0003)::

    {"format": 1, "kind": "memvid-snapshot", "seq": N, "count": n}
    <n lines: one memory record each (MemoryRecord.to_state())>
    {"crc32": <crc32 of every byte above, as UTF-8>}

Written atomically (temp, fsync, rename). Opening replays the WAL records after ``seq``.

The snapshot before it is kept as ``snapshot.prev.jsonl.zst`` (its seq is the header's
``previous_seq``) and the WAL is kept back to that seq, so a damaged snapshot costs a longer
replay, not the scope (ADR 0003). Two snapshots are enough and one is not: a single damaged
byte in a lone snapshot would cost every memory's metadata. When nothing changed since the
pair was written, a checkpoint rewrites neither (ADR 0019).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import zstandard

from ..core.errors import CorruptionError
from ..core.fsutil import atomic_write
from ..core.models import MemoryRecord

FORMAT = 1
FILE_NAME = "snapshot.jsonl.zst"
PREVIOUS_NAME = "snapshot.prev.jsonl.zst"


def write_snapshot(path: Path, seq: int, records: list[MemoryRecord], *,
                   previous_seq: int = 0) -> None:
    header = json.dumps({"format": FORMAT, "kind": "memvid-snapshot", "seq": seq,
                         "previous_seq": previous_seq, "count": len(records)})
    lines = [header]
    lines.extend(json.dumps(r.to_state(), ensure_ascii=False, separators=(",", ":"))
                 for r in records)
    body = ("\n".join(lines) + "\n").encode("utf-8")
    trailer = json.dumps({"crc32": zlib.crc32(body)}).encode() + b"\n"
    atomic_write(path, zstandard.ZstdCompressor(level=3).compress(body + trailer))


def snapshot_pair_current(meta: Path, seq: int, snapshot_seq: int, previous_seq: int, *,
                          sound: bool) -> bool:
    """Whether the snapshot and its previous copy on disk already both hold state ``seq``:
    rotating would only write the same records again (every close of an unchanged scope)."""
    return (sound and seq == snapshot_seq == previous_seq
            and (meta / FILE_NAME).exists() and (meta / PREVIOUS_NAME).exists())


def read_snapshot(path: Path) -> tuple[int, list[MemoryRecord]]:
    """Returns (seq, records); (0, []) when there is no snapshot yet."""
    seq, records, _previous = load_snapshot(path)
    return seq, records


def load_snapshot(path: Path) -> tuple[int, list[MemoryRecord], int]:
    """Returns (seq, records, previous_seq); (0, [], 0) when there is no snapshot yet."""
    if not path.exists():
        return 0, [], 0
    try:
        data = zstandard.ZstdDecompressor().decompress(path.read_bytes(),
                                                       max_output_size=1 << 34)
    except zstandard.ZstdError as exc:
        raise CorruptionError(str(path), f"undecodable snapshot: {exc}") from None
    body, _, trailer = data.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    try:
        expected = json.loads(trailer)["crc32"]
        if zlib.crc32(body) != expected:
            raise CorruptionError(str(path), "snapshot checksum mismatch")
        lines = body.decode("utf-8").splitlines()
        header = json.loads(lines[0])
        if header.get("kind") != "memvid-snapshot" or header.get("format") != FORMAT:
            raise CorruptionError(str(path), "not a format-1 memvid snapshot")
        records = [MemoryRecord.from_state(json.loads(line)) for line in lines[1:]]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptionError(str(path), f"malformed snapshot: {exc}") from None
    if len(records) != header["count"]:
        raise CorruptionError(str(path), "snapshot record count mismatch")
    return int(header["seq"]), records, int(header.get("previous_seq", 0))
