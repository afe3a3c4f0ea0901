"""The records of a format-2 snapshot as columns (ADR 0029; byte layout in docs/format.md).

A memory's metadata is mostly random bytes (two ULIDs, a SHA-256) and a few fields that are
the same for nearly every memory. Stored column by column, the ids as 16 bytes, the body id as
its small distance from the memory id (both are made in the same millisecond, usually one
apart), the times as milliseconds from the id's own time, and every other field only when it
differs from its default, what remains is ~47 bytes a memory before zstd, against ~73 for a
zstd-compressed JSON line. Anything a column cannot hold exactly (an id that is not a canonical
ULID, a hash that is not 64 hex digits) goes into the record's JSON extras: nothing is dropped.

A *spare* (the fallback copy) leaves out the hash and the size: both follow from the body,
and the fallback recomputes them (``ScopeStore._fill_spare_hashes``).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ulid import ULID

from ..core.errors import CorruptionError
from ..core.models import DEFAULT_KIND, MemoryRecord, iso
from ..core.varint import append_varint as _varint

ID_ULID = 0x01  # the id is a canonical ULID, in the id column
BODY_DELTA = 0x02  # the body id is a ULID at a small distance from the id: a varint
BODY_ULID = 0x04  # the body id is a ULID, 16 bytes in the body column
SHA_BINARY = 0x08  # the hash is 64 lowercase hex digits, 32 bytes in the hash column
_KNOWN = ID_ULID | BODY_DELTA | BODY_ULID | SHA_BINARY
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DELTA_LIMIT = 1 << 62
UNKNOWN_SHA = ""  # a spare's records: the hash is recomputed from the body


def _zigzag(value: int) -> int:
    return value * 2 if value >= 0 else -value * 2 - 1


def _unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


def _ulid_int(text: str) -> int | None:
    try:
        parsed = ULID.from_str(text)
    except (ValueError, TypeError):
        return None
    return int(parsed) if str(parsed) == text else None


def _ms(dt: datetime) -> int:
    return (dt.astimezone(UTC) - _EPOCH) // _MS


def _extras(state: dict[str, Any], scope: str) -> dict[str, Any]:
    defaults: dict[str, Any] = {"title": None, "kind": DEFAULT_KIND, "tags": [], "scope": scope,
                                "metadata": {}, "source": None, "expires_at": None,
                                "pinned": False}
    return {k: v for k, v in state.items()
            if k not in ("id", "body_id", "sha256", "size", "created_at", "updated_at")
            and (k not in defaults or v != defaults[k])}


def encode_records(records: Sequence[MemoryRecord], scope: str, *, spare: bool) -> bytes:
    """The columns of ``records`` (their order kept); ``scope`` is the common scope name."""
    flags = bytearray()
    ids, bodies, shas, sizes, times, extras = (bytearray() for _ in range(6))
    for record in records:
        state = record.to_state()
        extra = _extras(state, scope)
        bits = 0
        id_int = _ulid_int(record.id)
        if id_int is not None:
            bits |= ID_ULID
            ids += id_int.to_bytes(16, "big")
        else:
            extra["id"] = record.id
        body_int = _ulid_int(record.body_id)
        if body_int is not None and id_int is not None and abs(body_int - id_int) < _DELTA_LIMIT:
            bits |= BODY_DELTA
            _varint(_zigzag(body_int - id_int), bodies)
        elif body_int is not None:
            bits |= BODY_ULID
            bodies += body_int.to_bytes(16, "big")
        else:
            extra["body_id"] = record.body_id
        if not spare:
            if _HEX64.fullmatch(record.sha256):
                bits |= SHA_BINARY
                shas += bytes.fromhex(record.sha256)
            else:
                extra["sha256"] = record.sha256
            _varint(record.size, sizes)
        base = (id_int >> 80) if id_int is not None else 0
        created = _ms(record.created_at)
        _varint(_zigzag(created - base), times)
        _varint(_zigzag(_ms(record.updated_at) - created), times)
        flags.append(bits)
        blob = json.dumps(extra, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode() if extra else b""
        _varint(len(blob), extras)
        extras += blob
    out = bytearray()
    for column in (flags, ids, bodies, shas, sizes, times, extras):
        _varint(len(column), out)
        out += column
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.pos, self.path = data, 0, path

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.pos >= len(self.data) or shift > 126:
                raise CorruptionError(self.path, "snapshot: truncated or overlong varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CorruptionError(self.path, "snapshot: a column runs past the end")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def done(self) -> bool:
        return self.pos == len(self.data)


def decode_records(data: bytes, count: int, scope: str, *, spare: bool,
                   path: str) -> list[MemoryRecord]:
    """The records ``encode_records`` wrote; a spare's come with ``sha256 == UNKNOWN_SHA`` and
    size 0. Any inconsistency is a CorruptionError naming ``path``."""
    top = _Reader(data, path)
    cols = [_Reader(top.take(top.varint()), path) for _ in range(7)]
    if not top.done():
        raise CorruptionError(path, "snapshot: bytes after the last column")
    flags, ids, bodies, shas, sizes, times, extras = cols
    if len(flags.data) != count:
        raise CorruptionError(path, "snapshot: record count mismatch")
    records = []
    try:
        for bits in flags.data:
            if bits & ~_KNOWN:
                raise CorruptionError(path, f"snapshot: unknown record flags {bits:#x}")
            blob = extras.take(extras.varint())
            extra = json.loads(blob) if blob else {}
            if not isinstance(extra, dict):
                raise CorruptionError(path, "snapshot: extras are not an object")
            state: dict[str, Any] = {"scope": scope, **extra}
            id_int = int.from_bytes(ids.take(16), "big") if bits & ID_ULID else None
            if id_int is not None:
                state["id"] = str(ULID.from_int(id_int))
            if bits & BODY_DELTA:
                if id_int is None:
                    raise CorruptionError(path, "snapshot: body id delta without a ULID id")
                state["body_id"] = str(ULID.from_int(id_int + _unzigzag(bodies.varint())))
            elif bits & BODY_ULID:
                state["body_id"] = str(ULID.from_int(int.from_bytes(bodies.take(16), "big")))
            if spare:
                state.setdefault("sha256", UNKNOWN_SHA)
                state["size"] = 0
            else:
                if bits & SHA_BINARY:
                    state["sha256"] = shas.take(32).hex()
                state["size"] = sizes.varint()
            base = (id_int >> 80) if id_int is not None else 0
            created = base + _unzigzag(times.varint())
            updated = created + _unzigzag(times.varint())
            state["created_at"] = iso(_EPOCH + created * _MS)
            state["updated_at"] = iso(_EPOCH + updated * _MS)
            records.append(MemoryRecord.from_state(state))
    except CorruptionError:
        raise
    except (ValueError, KeyError, TypeError, OverflowError, struct.error) as exc:
        raise CorruptionError(path, f"malformed snapshot record: {exc}") from None
    if not all(c.done() for c in cols[1:]):  # the flags were iterated, not taken
        raise CorruptionError(path, "snapshot: a column holds more than its records")
    return records
