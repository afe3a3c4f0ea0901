"""The video manifest: where every body lives, which segments exist, what was deleted.

Since 0.2 it is ``manifest.mvm``, a compact binary append-only log (ADR 0019; byte layout in
docs/format.md): an 8-byte header, then records of ``type, varint length, payload, CRC32``.
Bodies of one segment are grouped (up to ``PUT_GROUP`` per record) and keep only what a read
needs: the body id (16 bytes for a ULID), the first 8 bytes of the body's SHA-256 and four
varints of location. That is ~33 bytes per memory, against ~300 for a JSON line.

Each record carries its own CRC32 and a damaged one is skipped (and reported) without losing
the records around it: the parser resynchronises on the next record whose checksum holds. A
record cut off by the end of the file is a torn tail (a crash mid-append), cut before the
next append. Appends are one write plus fsync: the append is the commit point of a seal.

The Python interface is unchanged from the JSON lines: records are dicts (``op`` = ``seg``,
``put``, ``del``, ``drop``), ``load`` returns them in order, ``append`` and ``rewrite`` take
them. A record the binary types cannot hold exactly (an unknown op or field) is stored as a
checksummed JSON record, so nothing a caller writes is ever dropped.

The 0.1.0 ``manifest.jsonl`` (line versions 1 and 2, each line with its own CRC) is read
as is, and converted by the writer on open (``upgrade``): new file beside it, fsync, rename,
then the old one is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.errors import StorageError
from ...core.fsutil import fsync_dir
from ...core.varint import varint as _varint

log = logging.getLogger(__name__)

FILE_NAME = "manifest.mvm"
LEGACY_NAME = "manifest.jsonl"
MAGIC = b"MVMF"
COMPACT_VERSION = 1
HEADER = MAGIC + COMPACT_VERSION.to_bytes(2, "little") + b"\0\0"
HASH_BYTES = 8  # of the body's SHA-256, kept per body: an integrity check, not an identity
PUT_GROUP = 16  # bodies per put record: one damaged record loses at most this many locations

FORMAT_VERSION = 2  # legacy JSON: the newest line version written (seg lines)
READ_VERSIONS = frozenset({1, 2})
OPS = frozenset({"seg", "put", "del", "drop"})

_SEG, _PUTS, _DEL, _DROP, _JSON = b"S", b"P", b"D", b"X", b"J"
_TYPES = frozenset(t[0] for t in (_SEG, _PUTS, _DEL, _DROP, _JSON))
_ULID_IDS = 0x01  # flag: every id is a canonical ULID stored as 16 bytes
_CHECKSUMS = 0x01  # seg flag: both files' SHA-256 follow
_MAX_PAYLOAD = 1 << 24

_SEG_KEYS = frozenset({"op", "seg", "frames", "bytes", "mvi_bytes", "bodies", "raw", "profile",
                       "codec", "px", "ecc", "ts", "mp4_sha256", "mvi_sha256", "v", "crc"})
_PUT_KEYS = frozenset({"op", "body_id", "sha256", "len", "seg", "frame", "offset", "length",
                       "frames", "qr_version", "ecc", "ts", "v", "crc"})
_DEL_KEYS = frozenset({"op", "ids", "ts", "v", "crc"})
_DROP_KEYS = frozenset({"op", "seg", "v", "crc"})


def body_hash_matches(data: bytes, expected: str) -> bool:
    """Whether ``data`` hashes to ``expected``: a whole SHA-256 (hex) or its first 8 bytes."""
    if len(expected) < 2 * HASH_BYTES:
        return False
    return hashlib.sha256(data).hexdigest()[: len(expected)] == expected


# ------------------------------------------------------------------ legacy JSON lines


def line_version(op: object) -> int:
    """The version a JSON line of ``op`` is written with."""
    return FORMAT_VERSION if op == "seg" else 1


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def encode_line(record: dict[str, Any]) -> bytes:
    """One 0.1.0 manifest line: the record plus ``crc`` (CRC32 hex of the record without it)."""
    body = {k: v for k, v in record.items() if k != "crc"}
    body["v"] = line_version(body.get("op"))
    crc = f"{zlib.crc32(_canonical(body).encode('ascii')):08x}"
    return (_canonical({**body, "crc": crc}) + "\n").encode("ascii")


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record of a sound JSON line, or None if the line is damaged or unknown."""
    try:
        record = json.loads(line.decode("ascii"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    crc = record.pop("crc", None)
    version = record.get("v")
    if not isinstance(crc, str) or type(version) is not int or version not in READ_VERSIONS:
        return None
    if record.get("op") not in OPS:
        return None
    if f"{zlib.crc32(_canonical(record).encode('ascii')):08x}" != crc:
        return None
    return record


@dataclass
class Parsed:
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    good_size: int = 0  # bytes up to the end of the last complete record
    torn_tail: bool = False


def parse(data: bytes) -> Parsed:
    """Parse a whole manifest (compact or JSON lines); never raises: damage is ``problems``."""
    if data[: len(MAGIC)] == MAGIC or (data and data[0] in _TYPES):
        return parse_compact(data)
    return parse_lines(data)


def parse_lines(data: bytes) -> Parsed:
    """Parse a 0.1.0 ``manifest.jsonl``."""
    out = Parsed()
    pos = 0
    lineno = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        lineno += 1
        if end < 0:
            out.torn_tail = True
            out.problems.append(f"line {lineno}: torn last line ({len(data) - pos} bytes) skipped")
            break
        record = decode_line(data[pos:end])
        if record is None:
            out.problems.append(f"line {lineno}: damaged line skipped (checksum or format)")
        else:
            out.records.append(record)
        pos = end + 1
        out.good_size = pos
    return out


# ------------------------------------------------------------------ compact records


class _Reader:
    """Bounds-checked reads from one record's payload (IndexError/ValueError on nonsense)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise IndexError("record runs past its end")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        data, pos = self.data, self.pos
        if pos < len(data) and data[pos] < 0x80:  # the common one-byte case
            self.pos = pos + 1
            return data[pos]
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("varint too long")

    def text(self) -> str:
        return self.take(self.take(1)[0]).decode("ascii")

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ValueError("trailing bytes in record")


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_INT_DIGITS = str.maketrans(_CROCKFORD, "0123456789abcdefghijklmnopqrstuv")  # int(x, 32)
_CANONICAL_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


def _ulid_bytes(value: object) -> bytes | None:
    """16 bytes of a canonical ULID string (26 upper-case Crockford base32 digits), else None."""
    if not isinstance(value, str) or not _CANONICAL_ULID.fullmatch(value):
        return None
    return int(value.translate(_TO_INT_DIGITS), 32).to_bytes(16, "big")


_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> two digits
_SHIFTS = range(120, -1, -10)


def _ulid_str(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    return "".join([_PAIRS[(n >> s) & 1023] for s in _SHIFTS])


def _uint(value: object) -> bool:
    return type(value) is int and 0 <= value < 1 << 63


def _short_ascii(value: object) -> bool:
    return isinstance(value, str) and value.isascii() and len(value) < 256


def _hex(value: object, size: int) -> bool:
    if not isinstance(value, str) or len(value) != 2 * size:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return value == value.lower()


def _frame(kind: bytes, payload: bytes) -> bytes:
    head = kind + _varint(len(payload))
    return head + payload + zlib.crc32(head + payload).to_bytes(4, "little")


def _encode_ids(ids: list[str]) -> tuple[int, bytes]:
    raws = [_ulid_bytes(i) for i in ids]
    if all(r is not None for r in raws):
        return _ULID_IDS, b"".join(r for r in raws if r is not None)
    parts = []
    for i in ids:
        data = i.encode("utf-8")
        parts.append(_varint(len(data)) + data)
    return 0, b"".join(parts)


def _read_ids(r: _Reader, flags: int, count: int) -> list[str]:
    if flags & _ULID_IDS:
        return [_ulid_str(r.take(16)) for _ in range(count)]
    return [r.take(r.varint()).decode("utf-8") for _ in range(count)]


def _seg_payload(rec: dict[str, Any]) -> bytes | None:
    if set(rec) - _SEG_KEYS:
        return None
    seg = _ulid_bytes(rec.get("seg"))
    ints = [rec.get(k) for k in ("frames", "bytes", "mvi_bytes", "bodies", "raw", "px")]
    texts = [rec.get(k) for k in ("profile", "codec", "ecc", "ts")]
    sums = (rec.get("mp4_sha256"), rec.get("mvi_sha256"))
    has_sums = sums != (None, None)
    if seg is None or not all(_uint(v) for v in ints) or not all(_short_ascii(t) for t in texts):
        return None
    if has_sums and not all(_hex(s, 32) for s in sums):
        return None
    out = bytearray(seg)
    out.append(_CHECKSUMS if has_sums else 0)
    for value in ints:
        out += _varint(int(value or 0))
    for text in texts:
        raw = str(text).encode("ascii")
        out += bytes([len(raw)]) + raw
    if has_sums:
        out += bytes.fromhex(str(sums[0])) + bytes.fromhex(str(sums[1]))
    return bytes(out)


def _read_seg(r: _Reader) -> dict[str, Any]:
    seg = _ulid_str(r.take(16))
    flags = r.take(1)[0]
    rec: dict[str, Any] = {"op": "seg", "seg": seg}
    for key in ("frames", "bytes", "mvi_bytes", "bodies", "raw", "px"):
        rec[key] = r.varint()
    for key in ("profile", "codec", "ecc", "ts"):
        rec[key] = r.text()
    if flags & _CHECKSUMS:
        rec["mp4_sha256"] = r.take(32).hex()
        rec["mvi_sha256"] = r.take(32).hex()
    rec["v"] = 2 if flags & _CHECKSUMS else 1
    return rec


def _put_fields(rec: dict[str, Any]) -> tuple[str, bytes | None, str, list[int]] | None:
    """(seg, id as ULID bytes or None, hash prefix hex, [frame, offset, length, frames]) of a
    put the binary form holds exactly; None for any other."""
    if set(rec) - _PUT_KEYS or not isinstance(rec.get("body_id"), str) or not rec["body_id"]:
        return None
    sha = rec.get("sha256")
    if not isinstance(sha, str) or len(sha) < 2 * HASH_BYTES or not _hex(sha[: 2 * HASH_BYTES],
                                                                        HASH_BYTES):
        return None
    nums = [rec.get("frame"), rec.get("offset"), rec.get("length", rec.get("len")),
            rec.get("frames", 1)]
    if not all(_uint(n) for n in nums) or rec.get("len", nums[2]) != nums[2]:
        return None
    seg = rec.get("seg")
    if _ulid_bytes(seg) is None:
        return None
    return str(seg), _ulid_bytes(rec["body_id"]), sha[: 2 * HASH_BYTES], \
        [int(n) for n in nums]


def _puts_payload(seg: str, group: list[tuple[str, bytes | None, str, list[int]]]) -> bytes:
    ulid_ids = group[0][1] is not None
    out = bytearray(_ulid_bytes(seg) or b"")
    out.append(_ULID_IDS if ulid_ids else 0)
    out += _varint(len(group))
    for body_id, raw_id, sha, nums in group:
        if raw_id is not None:
            out += raw_id
        else:
            data = body_id.encode("utf-8")
            out += _varint(len(data)) + data
        out += bytes.fromhex(sha)
        for n in nums:
            out += _varint(n)
    return bytes(out)


def _read_puts(r: _Reader) -> list[dict[str, Any]]:
    seg = _ulid_str(r.take(16))
    flags = r.take(1)[0]
    count = r.varint()
    if count > len(r.data):
        raise ValueError("impossible count")
    out = []
    ulid_ids = bool(flags & _ULID_IDS)
    take, varint = r.take, r.varint
    for _ in range(count):
        body_id = _ulid_str(take(16)) if ulid_ids else take(varint()).decode("utf-8")
        sha = take(HASH_BYTES).hex()
        frame, offset, length, frames = varint(), varint(), varint(), varint()
        out.append({"op": "put", "body_id": body_id, "sha256": sha, "len": length, "seg": seg,
                    "frame": frame, "offset": offset, "length": length, "frames": frames,
                    "v": 1})
    return out


def _del_payload(rec: dict[str, Any]) -> bytes | None:
    ids, ts = rec.get("ids"), rec.get("ts", "")
    if set(rec) - _DEL_KEYS or not isinstance(ids, list) or not _short_ascii(ts):
        return None
    if not all(isinstance(i, str) and i for i in ids):
        return None
    flags, body = _encode_ids(ids)
    raw_ts = str(ts).encode("ascii")
    return bytes([flags]) + _varint(len(ids)) + body + bytes([len(raw_ts)]) + raw_ts


def _read_del(r: _Reader) -> dict[str, Any]:
    flags = r.take(1)[0]
    count = r.varint()
    if count > len(r.data):
        raise ValueError("impossible count")
    ids = _read_ids(r, flags, count)
    return {"op": "del", "ids": ids, "ts": r.text(), "v": 1}


def _encode_one(rec: dict[str, Any]) -> bytes:
    op = rec.get("op")
    payload: bytes | None = None
    kind = _JSON
    if op == "seg":
        payload, kind = _seg_payload(rec), _SEG
    elif op == "del":
        payload, kind = _del_payload(rec), _DEL
    elif op == "drop" and not set(rec) - _DROP_KEYS:
        payload, kind = _ulid_bytes(rec.get("seg")), _DROP
    if payload is None:  # anything else is kept exactly, as checksummed JSON
        body = {k: v for k, v in rec.items() if k not in ("crc", "v")}
        return _frame(_JSON, _canonical(body).encode("ascii"))
    return _frame(kind, payload)


def encode_records(records: Iterable[dict[str, Any]]) -> bytes:
    """The compact records of ``records`` (no file header); puts of one segment are grouped."""
    out = bytearray()
    group: list[tuple[str, bytes | None, str, list[int]]] = []
    group_seg = ""

    def flush() -> None:
        if group:
            out.extend(_frame(_PUTS, _puts_payload(group_seg, group)))
            group.clear()

    for rec in records:
        fields = _put_fields(rec) if rec.get("op") == "put" else None
        if fields is None:
            flush()
            out.extend(_encode_one(rec))
            continue
        seg, raw_id, sha, nums = fields
        if group and (seg != group_seg or len(group) >= PUT_GROUP
                      or (raw_id is None) != (group[0][1] is None)):
            flush()
        group_seg = seg
        group.append((str(rec["body_id"]), raw_id, sha, nums))
    flush()
    return bytes(out)


def _record_at(data: bytes, pos: int) -> tuple[list[dict[str, Any]] | None, int, bool]:
    """(records, end, fits) of the record at ``pos``: records None when it is not sound;
    ``fits`` False when it would run past the end of ``data`` (a torn tail)."""
    kind = data[pos]
    if kind not in _TYPES:
        return None, pos + 1, True
    r = _Reader(data)
    r.pos = pos + 1
    try:
        length = r.varint()
    except IndexError:
        return None, pos + 1, False
    except ValueError:
        return None, pos + 1, True
    end = r.pos + length + 4
    if length > _MAX_PAYLOAD:
        return None, pos + 1, True
    if end > len(data):
        return None, pos + 1, False
    payload = data[r.pos : r.pos + length]
    if zlib.crc32(data[pos : r.pos + length]) != int.from_bytes(data[end - 4 : end], "little"):
        return None, pos + 1, True
    try:
        records = _decode_payload(kind, payload)
    except (IndexError, ValueError, UnicodeDecodeError, RecursionError):
        return None, pos + 1, True
    return records, end, True


def _decode_payload(kind: int, payload: bytes) -> list[dict[str, Any]]:
    r = _Reader(payload)
    if kind == _PUTS[0]:
        records = _read_puts(r)
    elif kind == _SEG[0]:
        records = [_read_seg(r)]
    elif kind == _DEL[0]:
        records = [_read_del(r)]
    elif kind == _DROP[0]:
        records = [{"op": "drop", "seg": _ulid_str(r.take(16)), "v": 1}]
    else:
        record = json.loads(payload.decode("ascii"))
        if not isinstance(record, dict) or not isinstance(record.get("op"), str):
            raise ValueError("not a record")
        record.setdefault("v", line_version(record["op"]))
        return [record]
    r.done()
    return records


def parse_compact(data: bytes) -> Parsed:
    """Parse ``manifest.mvm``: damaged records skipped and reported, a torn tail detected."""
    out = Parsed()
    out.records.extend(iter_compact(data, out))
    return out


def iter_compact(data: bytes, out: Parsed) -> Iterator[dict[str, Any]]:
    """``parse_compact`` one record at a time (a store loading 100k bodies then holds one
    group's records at once, not all of them: ~12 MB less resident, ADR 0032); ``out``
    gets the problems, good size and torn tail as the parse reaches them."""
    pos = 0
    if data[: len(MAGIC)] == MAGIC:
        if data[: len(HEADER)] != HEADER and len(data) >= len(HEADER):
            version = int.from_bytes(data[4:6], "little")
            out.problems.append(f"unknown compact manifest header (version {version}); "
                                "reading the records it holds")
        pos = min(len(HEADER), len(data))
    else:
        out.problems.append("file header damaged; reading the records after it")
        pos = min(len(HEADER), len(data))
    out.good_size = pos
    while pos < len(data):
        records, end, fits = _record_at(data, pos)
        if records is not None:
            yield from records
            pos = out.good_size = end
            continue
        bad = pos
        nxt = _resync(data, pos + 1)
        if nxt is None:
            if not fits:
                out.torn_tail = True
                out.problems.append(f"torn last record at byte {bad} ({len(data) - bad} bytes) "
                                    "skipped")
            else:
                out.problems.append(f"damaged record at byte {bad} skipped (checksum or format)")
                out.good_size = len(data)
            break
        out.problems.append(f"damaged bytes {bad}-{nxt} skipped (checksum or format)")
        pos = nxt


def _resync(data: bytes, start: int) -> int | None:
    """The offset of the next sound record at or after ``start``."""
    for pos in range(start, len(data)):
        if data[pos] in _TYPES and _record_at(data, pos)[0] is not None:
            return pos
    return None


# ------------------------------------------------------------------ the file


class Manifest:
    """Reads, appends to, atomically rewrites and upgrades one scope's manifest.

    ``path`` names the compact file (``manifest.mvm``); a 0.1.0 ``manifest.jsonl`` beside it
    is read until the writer's ``upgrade`` converts it.
    """

    def __init__(self, path: Path, tmp_dir: Path | None = None) -> None:
        self.path = path
        self.legacy_path = path.parent / LEGACY_NAME
        self.tmp_path = (tmp_dir or path.parent) / f".{path.name}.tmp"
        self._good_size: int | None = None

    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"{path}: {exc}") from exc

    def load_records(self) -> tuple[Parsed, Iterator[dict[str, Any]]]:
        """``load`` as a stream of records (``Parsed.records`` stays empty): the problems,
        logged as ``load`` logs them, are complete once the stream is."""
        data = self._read(self.path)
        if data is None:
            parsed = self.load()
            return parsed, iter(parsed.records)
        parsed = Parsed()

        def records() -> Iterator[dict[str, Any]]:
            yield from iter_compact(data, parsed)
            self._good_size = parsed.good_size
            for problem in parsed.problems:
                log.warning("%s: %s", self.path, problem)

        return parsed, records()

    def load(self) -> Parsed:
        data = self._read(self.path)
        if data is None:
            legacy = self._read(self.legacy_path)
            parsed = parse_lines(legacy) if legacy is not None else Parsed()
            self._good_size = None
            where = self.legacy_path
        else:
            parsed = parse_compact(data)
            self._good_size = parsed.good_size
            where = self.path
        for problem in parsed.problems:
            log.warning("%s: %s", where, problem)
        return parsed

    def upgrade(self) -> bool:
        """Convert a 0.1.0 ``manifest.jsonl`` to the compact file (writer only), crash-safe:
        the new file is written beside it, fsynced and renamed into place before the old one
        is removed. A damaged old manifest is kept in ``quarantine/<time>/`` as evidence.
        Returns whether anything was converted."""
        legacy = self._read(self.legacy_path)
        if legacy is None:
            return False
        if self.path.exists():  # a crash after the rename: the compact file is complete
            self._remove_legacy()
            return False
        started = time.monotonic()
        parsed = parse_lines(legacy)
        if parsed.problems:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            keep = self.path.parent / "quarantine" / stamp / LEGACY_NAME
            try:
                keep.parent.mkdir(parents=True, exist_ok=True)
                keep.write_bytes(legacy)
            except OSError as exc:
                raise StorageError(f"{keep}: {exc}") from exc
            log.warning("%s: %d damaged lines; a copy is kept in %s", self.legacy_path,
                        len(parsed.problems), keep)
        self.rewrite(parsed.records)
        self._remove_legacy()
        log.info("%s: converted %d records (%d -> %d bytes) in %.3f s", self.legacy_path,
                 len(parsed.records), len(legacy), self.path.stat().st_size,
                 time.monotonic() - started)
        return True

    def _remove_legacy(self) -> None:
        try:
            self.legacy_path.unlink(missing_ok=True)
            fsync_dir(self.legacy_path.parent)
        except OSError as exc:
            raise StorageError(f"{self.legacy_path}: {exc}") from exc

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records with one write, then fsync; a torn tail left by a crash is cut first."""
        payload = encode_records(records)
        if not payload:
            return
        if not self.path.exists() and self.legacy_path.exists():
            self.upgrade()
        try:
            created = not self.path.exists()
            with open(self.path, "ab") as fh:
                size = fh.seek(0, os.SEEK_END)
                if size == 0:
                    fh.write(HEADER)
                elif self._good_size is not None and size > self._good_size:
                    log.warning(
                        "%s: cutting a torn tail of %d bytes", self.path, size - self._good_size
                    )
                    fh.truncate(self._good_size)
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
                self._good_size = fh.tell()
            if created:
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise StorageError(f"{self.path}: {exc}") from exc

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the whole manifest atomically (temp file, fsync, rename, fsync dir)."""
        tmp = self.tmp_path
        try:
            with open(tmp, "wb") as fh:
                fh.write(HEADER)
                fh.write(encode_records(records))
                fh.flush()
                os.fsync(fh.fileno())
                size = fh.tell()
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
            if tmp.parent != self.path.parent:
                fsync_dir(tmp.parent)
        except OSError as exc:
            raise StorageError(f"{self.path}: {exc}") from exc
        self._good_size = size


def live_body_ids(directory: Path) -> set[str]:
    """Live body ids a scope's manifest (either format) names; damaged records skipped.
    For backend detection: reads the file only."""
    live: set[str] = set()
    for name in (FILE_NAME, LEGACY_NAME):
        try:
            data = (directory / name).read_bytes()
        except OSError:
            continue
        for rec in parse(data).records:
            if rec.get("op") == "put":
                live.add(str(rec.get("body_id")))
            elif rec.get("op") == "del" and isinstance(rec.get("ids"), list):
                live.difference_update(str(i) for i in rec["ids"])
        break
    return live
