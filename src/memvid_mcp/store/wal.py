"""Append-only write-ahead log: a write is acknowledged once its record is fsynced here.

Group commit: ``write`` frames a record into the file (no fsync) and ``sync`` waits until an
fsync covers it. One caller at a time becomes the leader and fsyncs everything written so
far; the others wait for it, so N concurrent or batched writes cost one fsync, not N. A
failed fsync cuts the file back to the last synced byte and fails every record it held.

Files ``wal/<first_seq:020d>.log`` start with an 8-byte header (``MVWAL`` + version 1 + two
reserved bytes); each record is framed as (ADR 0003)::

    u32 length of payload | u32 crc32(seq bytes + payload) | u64 seq | payload (UTF-8 JSON)

Replay stops at the first record that is short or fails its checksum. In the newest file that
is a torn tail (a crash mid-append): skipped and reported, never fatal. In an older file it is
corruption: reported with the file name, and replay goes on with the next file. Appends always
go to a fresh file after a reopen, so nothing is ever written after garbage.

``scrub`` rewrites closed files (atomically, same sequence numbers) so that ``put`` records of
bodies already sealed in storage no longer carry their text, and those of deleted bodies become
``purged`` markers (ADR 0018): the log keeps plaintext only of bodies not yet sealed.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ClosedError, CorruptionError
from ..core.fsutil import atomic_write, ensure_dir, fsync_dir, storage_error

log = logging.getLogger(__name__)

FILE_MAGIC = b"MVWAL\x01\x00\x00"
_FRAME = struct.Struct("<IIQ")
MAX_RECORD_BYTES = 64 * 1024 * 1024
DATA_FOLLOWS = "; records after it are not replayed"


@dataclass(frozen=True, slots=True)
class WalRecord:
    seq: int
    payload: dict[str, Any]


@dataclass(slots=True)
class ReplayReport:
    """What replay found besides good records."""

    records: int = 0
    torn_tail: str | None = None  # file whose last record was torn (skipped)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, message)


def encode_record(seq: int, payload: dict[str, Any]) -> bytes:
    """Frame one record."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    seq_bytes = struct.pack("<Q", seq)
    return _FRAME.pack(len(body), zlib.crc32(seq_bytes + body), seq) + body


def decode_records(data: bytes, path: str) -> tuple[list[WalRecord], str | None]:
    """Parse a whole WAL file's bytes; returns the good records and the reason it stopped early.

    Never raises for damaged input other than a bad file header (CorruptionError).
    """
    records, stopped, _end = _decode(data, path)
    return records, stopped


def _decode(data: bytes, path: str) -> tuple[list[WalRecord], str | None, int]:
    """``decode_records`` plus the byte offset where the good records end."""
    if data[: len(FILE_MAGIC)] != FILE_MAGIC:
        if not data:
            return [], None, 0
        raise CorruptionError(path, "not a WAL file (bad header)")
    records: list[WalRecord] = []
    pos = len(FILE_MAGIC)
    while pos < len(data):
        if len(data) - pos < _FRAME.size:
            return records, f"torn record header at byte {pos}", pos
        length, crc, seq = _FRAME.unpack_from(data, pos)
        start = pos + _FRAME.size
        if length > MAX_RECORD_BYTES or start + length > len(data):
            return records, f"torn or oversized record at byte {pos}", pos
        body = data[start : start + length]
        after = len(data) - (start + length)
        # A crash can only tear the last record; a bad record with data after it is damage.
        damaged = f" ({after} bytes follow it){DATA_FOLLOWS}" if after else ""
        if zlib.crc32(struct.pack("<Q", seq) + body) != crc:
            return records, f"checksum mismatch at byte {pos}{damaged}", pos
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return records, f"undecodable record at byte {pos}{damaged}", pos
        if not isinstance(payload, dict):
            return records, f"record at byte {pos} is not an object{damaged}", pos
        records.append(WalRecord(seq, payload))
        pos = start + length
    return records, None, pos


def without_text(payload: dict[str, Any], dead: bool) -> dict[str, Any]:
    """A ``put`` payload with its text removed: the record alone for a sealed body, only a
    ``purged`` marker (replayed as nothing) for a deleted one."""
    if dead:
        record = payload.get("record") or {}
        return {"op": "purged", "id": record.get("id"), "body_id": record.get("body_id")}
    return {k: v for k, v in payload.items() if k != "text"}


class WriteAheadLog:
    """The durable log of one scope. Thread-safe; one writer process (the scope lock)."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self._dir = directory if read_only else ensure_dir(directory)
        self._read_only = read_only
        self._lock = threading.Lock()  # appends
        self._sync_lock = threading.Lock()  # one fsync of the current file at a time
        self._synced = threading.Condition()  # guards the durable state below
        self._syncing = False  # a leader is fsyncing
        self.durable_seq = 0  # every record at or below it is fsynced
        self._durable_bytes = 0  # bytes of the current file known to be on disk
        self._lost: list[tuple[int, int, OSError]] = []  # seq ranges cut back after a failed fsync
        self._files_lock = threading.Lock()  # drop_through and scrub: closed files only
        self._file: Any = None
        self._file_path: Path | None = None
        self._file_bytes = 0
        self.last_seq = 0
        self._closed = False
        if not read_only:  # a scrub's temporary file left by a crash (the original stands)
            for tmp in self._dir.glob(".*.log.tmp-*"):
                tmp.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        if not self._dir.exists():
            return []
        return sorted(p for p in self._dir.glob("*.log") if p.stem.isdigit())

    def replay(self) -> tuple[list[WalRecord], ReplayReport]:
        """Read every sound record in order. Sets ``last_seq``."""
        report = ReplayReport()
        out: list[WalRecord] = []
        files = self.files()
        for index, path in enumerate(files):
            try:
                records, stopped = decode_records(path.read_bytes(), str(path))
            except CorruptionError as exc:
                report.problems.append((str(path), str(exc).split(": ", 1)[-1]))
                continue
            except OSError as exc:
                report.problems.append((str(path), exc.strerror or str(exc)))
                continue
            for record in records:
                if record.seq <= self.last_seq:
                    report.problems.append((str(path), f"sequence went back at {record.seq}"))
                    continue
                out.append(record)
                self.last_seq = record.seq
            if stopped:
                if index == len(files) - 1 and not stopped.endswith(DATA_FOLLOWS):
                    report.torn_tail = str(path)
                    log.warning("write-ahead log %s: %s; skipped the torn tail", path, stopped)
                else:
                    report.problems.append((str(path), stopped))
                    log.error("write-ahead log %s is damaged: %s", path, stopped)
        report.records = len(out)
        with self._synced:  # what replay read is on disk
            self.durable_seq = max(self.durable_seq, self.last_seq)
        return out, report

    def advance_to(self, seq: int) -> None:
        """Never hand out a sequence number at or below ``seq`` (the snapshot's): after a
        checkpoint dropped every file, replay alone would restart at 1."""
        with self._lock:
            self.last_seq = max(self.last_seq, seq)
            with self._synced:
                self.durable_seq = max(self.durable_seq, seq)

    def _open_new_file(self) -> None:
        """Start a file (under ``_lock``); what the old one holds unsynced is fsynced first,
        so a rotation never leaves an acknowledged-to-be record behind in a closed file."""
        if self._file is not None:
            with self._sync_lock:
                if self._durable_bytes < self._file_bytes:
                    try:
                        os.fsync(self._file.fileno())
                    except OSError as exc:
                        self._fail_unsynced(exc)
                        raise storage_error(self._file_path or self._dir, exc) from exc
                    self._mark_durable(self.last_seq, self._file_bytes)
            self._file.close()
        path = self._dir / f"{self.last_seq + 1:020d}.log"
        if path.exists():  # a torn file starting at this seq: keep it as evidence
            path.rename(path.with_suffix(".torn"))
        try:
            self._file = open(path, "ab")  # noqa: SIM115 - held open for appends
            self._file.write(FILE_MAGIC)
            self._file.flush()
            os.fsync(self._file.fileno())
            fsync_dir(self._dir)
        except OSError as exc:
            raise storage_error(path, exc) from exc
        self._file_path = path
        self._file_bytes = len(FILE_MAGIC)
        with self._synced:
            self._durable_bytes = self._file_bytes
            self.durable_seq = max(self.durable_seq, self.last_seq)

    def append(self, payload: dict[str, Any]) -> int:
        """Append and fsync one record; returns its sequence number."""
        seq = self.write(payload)
        self.sync(seq)
        return seq

    def write(self, payload: dict[str, Any]) -> int:
        """Frame one record into the file, not yet fsynced: the caller acknowledges it only
        after ``sync(seq)`` returned. Returns its sequence number."""
        with self._lock:
            if self._closed:
                raise ClosedError("the write-ahead log is closed")
            if self._file is None:
                self._open_new_file()
            seq = self.last_seq + 1
            frame = encode_record(seq, payload)
            try:
                self._file.write(frame)
                self._file.flush()
            except OSError as exc:
                # Cut back to the last good record so the file never holds a half frame.
                self._truncate_to(self._file_bytes)
                raise storage_error(self._file_path or self._dir, exc) from exc
            self._file_bytes += len(frame)
            self.last_seq = seq
            return seq

    def sync(self, seq: int) -> None:
        """Return once an fsync covers record ``seq``: lead one covering everything written so
        far, or wait for the leader's. Raises StorageError if the record was cut back after a
        failed fsync, ClosedError if the log closed before it was synced."""
        while True:
            with self._synced:
                while True:
                    self._check_lost(seq)
                    if self.durable_seq >= seq:
                        return
                    if self._closed:
                        raise ClosedError("the write-ahead log closed before the record "
                                          "was synced")
                    if not self._syncing:
                        self._syncing = True
                        break
                    self._synced.wait()
            try:
                self._lead_sync()
            finally:
                with self._synced:
                    self._syncing = False
                    self._synced.notify_all()

    def _check_lost(self, seq: int) -> None:
        for first, last, exc in self._lost:
            if first <= seq <= last:
                raise storage_error(self._file_path or self._dir, exc) from exc

    def _lead_sync(self) -> None:
        with self._lock:
            if self._file is None:
                return
            self._sync_lock.acquire()
            file, fd = self._file, self._file.fileno()
            target_seq, target_bytes = self.last_seq, self._file_bytes
        try:  # other writers go on appending while this fsync runs
            os.fsync(fd)
        except OSError as exc:
            self._sync_lock.release()
            log.error("write-ahead log %s: fsync failed: %s", self._file_path, exc)
            with self._lock:
                if self._file is file:  # else a rotation synced or failed them already
                    self._fail_unsynced(exc)
            return
        self._mark_durable(target_seq, target_bytes)
        self._sync_lock.release()

    def _mark_durable(self, seq: int, size: int) -> None:
        with self._synced:
            self.durable_seq = max(self.durable_seq, seq)
            self._durable_bytes = max(self._durable_bytes, size)

    def _fail_unsynced(self, exc: OSError) -> None:
        """After a failed fsync (under ``_lock``): cut the file back to its last synced byte and
        fail every record written since. Their sequence numbers are never handed out again."""
        with self._synced:
            if self.last_seq > self.durable_seq:
                self._lost.append((self.durable_seq + 1, self.last_seq, exc))
            size = self._durable_bytes
        self._truncate_to(size)
        self._file_bytes = size

    def _truncate_to(self, size: int) -> None:
        try:
            self._file.truncate(size)
            self._file.seek(size)
        except OSError:
            log.exception("could not cut the write-ahead log back after a failed append")

    @property
    def current_path(self) -> Path | None:
        """The file appends go to (None until the first append after opening)."""
        return self._file_path

    @property
    def bytes_in_current_file(self) -> int:
        return self._file_bytes

    def rotate(self) -> None:
        """Start a new file, so everything before it can be dropped by ``drop_through``."""
        with self._lock:
            if self._file is not None and self._file_bytes > len(FILE_MAGIC):
                self._open_new_file()

    @property
    def current_first_seq(self) -> int | None:
        """The first sequence number of the file appends go to (None: no file open)."""
        path = self._file_path
        return int(path.stem) if path is not None and self._file is not None else None

    def drop_through(self, seq: int) -> int:
        """Delete whole files whose records all have sequence numbers <= ``seq``."""
        with self._files_lock:
            files = self.files()
            removed = 0
            for path, following in itertools.pairwise(files):
                if path == self._file_path:
                    break
                if int(following.stem) - 1 <= seq:
                    path.unlink(missing_ok=True)
                    removed += 1
            if removed:
                fsync_dir(self._dir)
            return removed

    def scrub(self, bodies: dict[str, int], dead: set[str]) -> int:
        """Rewrite the closed files holding the ``put`` records (at the given seqs) of
        ``bodies`` without their text (``dead`` ones as ``purged`` markers). Each file is
        replaced atomically with the same records and sequence numbers; bytes after a damaged
        record are kept as they are (evidence). Returns how many files were rewritten."""
        with self._files_lock:
            files = self.files()
            firsts = [int(p.stem) for p in files]
            current = self.current_first_seq
            wanted: dict[Path, set[str]] = {}
            for body_id, seq in bodies.items():
                n = bisect.bisect_right(firsts, seq) - 1
                if n >= 0 and firsts[n] != current:
                    wanted.setdefault(files[n], set()).add(body_id)
            rewritten = 0
            for path, ids in sorted(wanted.items()):
                if self._scrub_file(path, ids, dead):
                    rewritten += 1
            return rewritten

    def _scrub_file(self, path: Path, ids: set[str], dead: set[str]) -> bool:
        try:
            data = path.read_bytes()
            records, _stopped, end = _decode(data, str(path))
        except FileNotFoundError:
            return False
        except (OSError, CorruptionError) as exc:
            log.warning("write-ahead log %s: not scrubbed: %s", path, exc)
            return False
        out = [FILE_MAGIC]
        changed = False
        for rec in records:
            payload = rec.payload
            record = payload.get("record")
            body_id = record.get("body_id") if isinstance(record, dict) else None
            if payload.get("op") == "put" and body_id in ids and "text" in payload:
                payload = without_text(payload, body_id in dead)
                changed = True
            out.append(encode_record(rec.seq, payload))
        if not changed:
            return False
        out.append(data[end:])
        atomic_write(path, b"".join(out))
        return True

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def iter_files_bytes(self) -> Iterator[tuple[Path, bytes]]:
        for path in self.files():
            yield path, path.read_bytes()

    def close(self) -> None:
        with self._lock:
            if self._file is not None and self._durable_bytes < self._file_bytes:
                with self._sync_lock:
                    try:
                        os.fsync(self._file.fileno())
                        self._mark_durable(self.last_seq, self._file_bytes)
                    except OSError as exc:
                        log.error("write-ahead log %s: fsync at close failed: %s",
                                  self._file_path, exc)
                        self._fail_unsynced(exc)
            with self._synced:
                self._closed = True
                self._synced.notify_all()
            if self._file is not None:
                self._file.close()
                self._file = None
