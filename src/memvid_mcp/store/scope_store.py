"""One scope's durable state: lock, write-ahead log, metadata, bodies and both indexes.

Write path (``store``/``delete``): validate (caller) -> WAL append + fsync -> apply to the
in-memory state -> lexical index (visible at once) -> embedding queue. Bodies wait in
``_pending`` (they are already durable in the WAL) until the background step hands them to the
storage backend in batches (the video backend: once a segment is worth sealing, ADR 0018).
Every background tick then releases the WAL text of sealed and deleted bodies (rotate, scrub
closed files); a full checkpoint writes a metadata snapshot and drops WAL files whose records
are all covered by the snapshot, the backend and the lexical index.

Opening reads ``scope.json`` (the scope's backend and identity version, ADR 0012), then
replays: snapshot, then WAL records after it; put records whose body is not in the backend go
back to ``_pending``; backend bodies no live record names are deleted (a crash between the WAL
delete and the backend delete); indexes catch up from the WAL or are rebuilt. Bodies still
missing are searched for anywhere in the scope (``recovery``) and written again; a scope of an
older identity version is rehashed once (ADR 0011).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from ulid import ULID

from ..core.config import Settings
from ..core.errors import (
    ClosedError,
    CorruptionError,
    NotFoundError,
    ReadOnlyError,
    StorageError,
    StoreLockedError,
    ValidationError,
)
from ..core.fsutil import atomic_write, ensure_dir
from ..core.hashing import IDENTITY_VERSION, content_sha256
from ..core.models import MemoryRecord, Problem, iso, utcnow
from ..core.scopes import ensure_scope_dir
from ..core.validation import StoreInput, merge_tags
from ..search.filters import SearchFilters
from ..search.heap import trim_soon
from ..search.lexical import LexicalDoc, LexicalIndex
from ..search.vectors import META_FILE as VECTORS_META
from ..search.vectors import VectorIndex
from ..storage.base import CompactReport, StorageAdapter
from .hash_ids import IdsByHash
from .lock import ScopeLock
from .recovery import find_texts, salvage
from .scope_meta import ScopeMeta, detect_backend, read_scope_meta, write_scope_meta
from .snapshot import FILE_NAME as SNAPSHOT_FILE
from .snapshot import FORMAT as SNAPSHOT_FORMAT
from .snapshot import PREVIOUS_NAME as PREVIOUS_SNAPSHOT_FILE
from .snapshot import load_snapshot_file, snapshot_pair_current, write_snapshot
from .snapshot_columns import UNKNOWN_SHA
from .wal import ReplayReport, WalRecord, WriteAheadLog

log = logging.getLogger(__name__)


WAL_MAX_FILES = 16  # a full checkpoint runs when the WAL has this many files


@dataclass(slots=True)
class _Pending:
    seq: int
    body: bytes
    since: float = field(default_factory=time.time)  # wall clock: ages survive a reopen


def open_backend(settings: Settings, directory: Path, *, read_only: bool = False,
                 backend: str | None = None) -> StorageAdapter:
    """The storage backend for one scope directory: ``backend`` (the one the scope recorded)
    or, for a new scope, the configured one."""
    if (backend or settings.backend) == "video":
        from ..storage.video import VideoStore

        return VideoStore(
            directory,
            profile=settings.video_profile,
            cache_bytes=settings.payload_cache_bytes,
            live_threshold=settings.compact_live_threshold,
            read_only=read_only,
            tier_base=settings.seal_min_bytes,
            purge_after=settings.purge_after_seconds,
            warm=True,
        )
    from ..storage.filestore import FileStore

    return FileStore(directory, read_only=read_only)


def lexical_doc(record: MemoryRecord, text: str) -> LexicalDoc:
    return LexicalDoc(
        id=record.id,
        text=text,
        title=record.title,
        tags=record.tags,
        kind=record.kind,
        created_at=record.created_at,
        pinned=record.pinned,
    )


def embedding_text(record: MemoryRecord, text: str) -> str:
    return f"{record.title}\n{text}" if record.title else text


REBUILD_COMMIT_DOCS = 8192  # a lexical rebuild commits this often (``_rebuild_lexical``)


class ScopeStore:
    """Everything about one scope. Thread-safe; the manager owns its background work."""

    def __init__(self, name: str, directory: Path, settings: Settings, *,
                 read_only: bool = False, dim: int = 384) -> None:
        self.name = name
        self.directory = directory
        self.settings = settings
        self.read_only = read_only
        self._lock = threading.RLock()  # state, WAL order, index writes
        self._backend_lock = threading.Lock()  # one batch/compaction at a time
        self._dim = dim
        self.clock: Callable[[], float] = time.time  # wall clock; tests inject their own
        self._model_in_use: str | None = None
        self._reset_state()
        self._scope_lock = ScopeLock(directory)
        self._disk_signature: tuple[Any, ...] = ()
        self._signature_checked = 0.0
        self.unrehashed: list[str] = []  # unreadable during the identity migration

        if not read_only:  # a reader needs nothing writable (a read-only mount, a backup)
            ensure_scope_dir(name, directory)
            self._scope_lock.acquire(settings.lock_timeout)
        try:
            self._open_state()
        except BaseException:
            self._scope_lock.release()
            raise

    # ----------------------------------------------------------------- opening
    def _reset_state(self) -> None:
        """The in-memory state of the scope, empty (filled by ``_open_state``)."""
        self._records: dict[str, MemoryRecord] = {}
        self._by_sha = IdsByHash()  # every record of a hash, live or expired
        self._by_body: dict[str, str] = {}
        self._superseded: set[str] = set()  # ids with superseded_by set (ADR 0023)
        self._pending: dict[str, _Pending] = {}
        self._pending_deletes: set[str] = set()
        self._wal_text: dict[str, int] = {}  # body id -> seq of a WAL put still holding text
        self.embed_queue: deque[str] = deque()  # body ids waiting for a vector
        self._embedding: set[str] = set()  # taken by the last embed batch, not yet added
        self.replay_report = ReplayReport()
        self._moved_aside: set[str] = set()  # damaged index files already in quarantine/
        self.snapshot_seq = 0
        self._previous_seq = 0  # seq of snapshot.prev: the WAL is kept back to it
        self._snapshot_sound = True  # False: the current snapshot is damaged or missing
        self._snapshot_format = SNAPSHOT_FORMAT  # of the current snapshot as read
        self._spare_damaged = False  # verify found the spare unreadable: rewrite it
        self._fallback_problem: CorruptionError | None = None
        self._reader_coverage: int | None = None  # memories with a vector, read-only opens
        self._wal_records: list[WalRecord] = []  # held only while opening
        self._wal_bytes_at_checkpoint = 0
        self._wal_files_at_checkpoint = 0
        self._closed = False
        self._lexical_on_disk = not self.read_only  # False: a reader rebuilt it in memory

    def _open_state(self) -> None:
        """Read the scope from disk: snapshot, WAL replay, indexes."""
        recorded = self._read_scope_meta()
        self.backend_name = self._choose_backend(recorded)
        self.backend = open_backend(self.settings, self.directory, read_only=self.read_only,
                                    backend=self.backend_name)
        self.wal = WriteAheadLog(self.directory / "wal", read_only=self.read_only)
        meta = self.directory / "meta" if self.read_only else ensure_dir(self.directory / "meta")
        self._recover(meta)
        rescued = self._rescue_missing_bodies()
        self._fill_spare_hashes()
        self.lexical = self._open_lexical(meta)
        if rescued and not self.read_only:  # they may never have been indexed (0.1.0)
            self.lexical.upsert([lexical_doc(r, self.read_body(r)) for r in rescued])
        # The last WAL seq whose change is in the lexical index. A commit records this,
        # never ``wal.last_seq``: a writer appends to the WAL first and upserts after,
        # and a commit in between must not claim the record (it would never be replayed).
        self._indexed_seq = self.wal.last_seq
        self.vectors = self._open_vectors(meta, self._dim)
        self._reconcile_vectors()
        self._wal_records = []  # replayed; the WAL may hold up to two checkpoints of text
        if self._records and (recorded is None or recorded.identity < IDENTITY_VERSION):
            self._rehash()
        if not self.read_only and (recorded is None or recorded.identity < IDENTITY_VERSION):
            created = recorded.created_at if recorded else iso(utcnow()) or ""
            write_scope_meta(self.directory,
                             ScopeMeta(self.backend_name, IDENTITY_VERSION, created))

    def _reopen_after_failed_sync(self, wal: WriteAheadLog) -> None:
        """A failed fsync cut records out of ``wal`` that were already applied here: drop
        every in-memory change and read the scope again from what is on disk (ADR 0003)."""
        with self._backend_lock, self._lock:
            if self.wal is not wal or self._closed:
                return  # another caller reopened it already
            log.error("scope %s: a WAL fsync failed; reading the scope again from disk",
                      self.name)
            for part in (self.lexical, self.vectors, self.backend, self.wal):
                try:
                    part.close()
                except (OSError, StorageError, ClosedError) as exc:
                    log.warning("scope %s: closing after the failed fsync: %s", self.name, exc)
            self._reset_state()
            self._open_state()

    def _read_scope_meta(self) -> ScopeMeta | None:
        """``scope.json``, or None for a new or 0.1.0 scope. A damaged one is rebuilt from
        what is on disk (the backend by detection, the identity by rehashing: idempotent)."""
        try:
            return read_scope_meta(self.directory)
        except CorruptionError as exc:
            log.error("scope %s: %s; detecting the backend from the files and rewriting it",
                      self.name, exc)
            return None

    def _choose_backend(self, recorded: ScopeMeta | None) -> str:
        """The scope's own backend; the setting only decides for a new scope."""
        backend = recorded.backend if recorded else (
            detect_backend(self.directory) or self.settings.backend)
        if backend != self.settings.backend:
            log.warning("scope %s holds its memories with the %s backend; using it (the "
                        "backend setting, %s, applies to new scopes only)", self.name, backend,
                        self.settings.backend)
        return backend

    def _signature(self) -> tuple[Any, ...]:
        """What changes on disk when another process writes this scope."""
        parts: list[Any] = []
        vectors_meta = self.directory / "meta" / "vectors" / VECTORS_META
        for path in [self.directory / "meta" / SNAPSHOT_FILE, vectors_meta, *self.wal.files()]:
            try:
                stat = path.stat()
                parts.append((path.name, stat.st_size, stat.st_mtime_ns))
            except OSError:
                continue
        return tuple(parts)

    def changed_on_disk(self, interval: float = 1.0) -> bool:
        """For read-only opens: whether the writer changed the files (checked once a second)."""
        now = time.monotonic()
        if now - self._signature_checked < interval:
            return False
        self._signature_checked = now
        return self._signature() != self._disk_signature

    def _recover(self, meta: Path) -> None:
        self._disk_signature = self._signature()
        records = self._load_snapshot(meta)
        for record in records:
            self._index_record(record)
        self._wal_records, self.replay_report = self.wal.replay()
        if self._fallback_problem is not None:
            exc = self._fallback_problem
            self.replay_report.problems.append(
                (exc.path, f"{str(exc).split(': ', 1)[-1]}; served from the previous snapshot "
                           "and the WAL (repair writes a fresh one)"))
        self.wal.advance_to(self.snapshot_seq)
        for rec in self._wal_records:
            if rec.seq > self.snapshot_seq:
                self._apply(rec)
        now = self.clock()
        for rec in self._wal_records:  # bodies acknowledged but not yet in the backend
            if rec.payload.get("op") == "put" and isinstance(rec.payload.get("text"), str):
                body_id = rec.payload["record"]["body_id"]
                self._wal_text[body_id] = rec.seq
                owner = self._records.get(self._by_body.get(body_id, ""))
                if owner is not None and not self.backend.contains(body_id):
                    since = min(now, owner.updated_at.timestamp())  # its age goes on
                    self._pending[body_id] = _Pending(rec.seq, rec.payload["text"].encode(),
                                                      since)
        if not self.read_only and not self.replay_report.problems:
            orphans = set(self.backend.ids()) - set(self._by_body)
            if orphans:
                log.info("scope %s: removing %d unreferenced bodies", self.name, len(orphans))
                self.backend.delete_many(orphans)
        if self.replay_report.torn_tail:
            log.warning("scope %s: skipped a torn last WAL record in %s", self.name,
                        self.replay_report.torn_tail)

    def _rescue_missing_bodies(self) -> list[MemoryRecord]:
        """Records whose body is in neither the backend nor the WAL: find the text elsewhere
        in the scope (the other backend's files of a mixed 0.1.0 scope, the quarantine) and
        hand it to the backend like any pending body, so nothing that still exists on disk is
        reported damaged. Until the batch stores it, the copy it came from stays where it is
        (a crash here simply finds it again)."""
        missing = {r.body_id: r for r in self._records.values()
                   if r.body_id not in self._pending and not self.backend.contains(r.body_id)}
        if not missing:
            return []
        found = find_texts(self.directory, missing, live_backend=self.backend_name)
        for body_id, text in found.items():
            self._pending[body_id] = _Pending(self.wal.last_seq, text.encode("utf-8"),
                                              self.clock())
        if found:
            log.warning("scope %s: %d memories had no body in the %s backend; found their "
                        "text elsewhere in the scope (%s)", self.name, len(found),
                        self.backend_name, "served from there" if self.read_only
                        else "stored in the backend again")
        return [missing[b] for b in found]

    def _restore(self, record: MemoryRecord, text: str) -> MemoryRecord:
        """Store a found text again as a new body version of the same memory (WAL first), under
        the current identity version."""
        with self._lock:
            fresh = replace(record, body_id=str(ULID()), sha256=content_sha256(text))
            seq = self.wal.append({"op": "put", "record": fresh.to_state(), "text": text})
            self._wal_text[fresh.body_id] = seq
            self._drop_body(record.body_id)
            self._index_record(fresh)
            self._pending[fresh.body_id] = _Pending(seq, text.encode("utf-8"), self.clock())
            self.lexical.upsert([lexical_doc(fresh, text)])
            self.embed_queue.append(fresh.body_id)
            return fresh

    def _rehash(self) -> None:
        """Identity migration (ADR 0011): recompute every record's hash from its body under
        the current identity version. One WAL record makes it durable (replayed like any
        other, so a fallback to an older snapshot still sees it); records whose body cannot
        be read keep their old hash and are reported."""
        started = time.monotonic()
        changed: dict[str, str] = {}
        unreadable: list[str] = []
        for record in list(self._records.values()):
            try:
                sha = content_sha256(self.read_body(record))
            except (NotFoundError, CorruptionError, UnicodeDecodeError):
                unreadable.append(record.id)
                continue
            if sha != record.sha256:
                changed[record.id] = sha
        payload = {"op": "rehash", "identity": IDENTITY_VERSION, "sha256": changed}
        seq = self.wal.append(payload) if changed and not self.read_only else 0
        with self._lock:
            self._apply(WalRecord(seq, payload))
        self.unrehashed = sorted(unreadable)
        log.info("scope %s: identity version %d: rehashed %d memories (%d changed) in %.2f s",
                 self.name, IDENTITY_VERSION, len(self._records), len(changed),
                 time.monotonic() - started)
        if unreadable:
            log.warning("scope %s: %d memories could not be read while rehashing; they keep "
                        "their old identity (verify names them, repair restores or "
                        "quarantines them)", self.name, len(unreadable))

    def _load_snapshot(self, meta: Path) -> list[MemoryRecord]:
        """The current snapshot, or the spare when the current is damaged or missing (or, left
        by a 0.1.0 checkpoint, the previous snapshot); both damaged is a CorruptionError."""
        current, previous = meta / SNAPSHOT_FILE, meta / PREVIOUS_SNAPSHOT_FILE
        problem = None
        if current.exists() or not previous.exists():
            try:
                snap = load_snapshot_file(current)
                self.snapshot_seq, self._previous_seq = snap.seq, snap.previous_seq
                self._snapshot_format = snap.format
                return snap.records
            except CorruptionError as exc:
                problem = exc
                log.error("scope %s: %s; falling back to the spare snapshot", self.name, exc)
        self._snapshot_sound = False
        snap = load_snapshot_file(previous)
        self.snapshot_seq = self._previous_seq = snap.seq
        self._fallback_problem = problem
        return snap.records

    def _fill_spare_hashes(self) -> None:
        """After a fallback to the spare (which keeps no hashes or sizes): each record's hash
        and size from its body. A body that cannot be read keeps an empty hash: verify names
        the memory as damaged, as it would without the fallback."""
        unknown = [r for r in self._records.values() if r.sha256 == UNKNOWN_SHA]
        if not unknown:
            return
        unreadable = 0
        for record in unknown:
            try:
                text = self.read_body(record)
            except (NotFoundError, CorruptionError, UnicodeDecodeError):
                unreadable += 1
                continue
            self._index_record(replace(record, sha256=content_sha256(text),
                                       size=len(text.encode("utf-8"))))
        log.warning("scope %s: recomputed the hashes of %d memories from their bodies (spare "
                    "snapshot); %d unreadable", self.name, len(unknown) - unreadable,
                    unreadable)

    def _open_lexical(self, meta: Path) -> LexicalIndex:
        if self.read_only:
            # The writer's committed index serves when it is current; else rebuild in memory.
            try:
                on_disk = LexicalIndex(meta / "lexical", read_only=True)
                if on_disk.committed_seq == self.wal.last_seq and on_disk.committed_seq >= 0:
                    self._lexical_on_disk = True
                    return on_disk
                on_disk.close()
            except CorruptionError:
                pass
            index = LexicalIndex(None)
            self._rebuild_lexical(index)
            return index
        path = meta / "lexical"
        try:
            index = LexicalIndex(path)
            try:
                self._catch_up_lexical(index)
            except BaseException:
                index.close()
                raise
            return index
        except StorageError as exc:  # damaged, or a crash left files that block its commits
            log.warning("scope %s: lexical index unusable (%s); rebuilding", self.name, exc)
            damage = exc if isinstance(exc, CorruptionError) else CorruptionError(
                str(path), str(exc).split(": ", 1)[-1])
            self._move_aside(path, damage)
            index = LexicalIndex(path)
            index.clear()
            self._rebuild_lexical(index)
            return index

    def _catch_up_lexical(self, index: LexicalIndex) -> None:
        if index.committed_seq < self.snapshot_seq or index.committed_seq > self.wal.last_seq:
            index.clear()
            self._rebuild_lexical(index)
        else:
            for rec in self._wal_records:
                if rec.seq > index.committed_seq:
                    self._apply_to_lexical(index, rec)
        index.commit(self.wal.last_seq)

    def _open_vectors(self, meta: Path, dim: int) -> VectorIndex:
        if self.read_only:
            return self._open_writers_vectors(meta / "vectors", dim)
        path = meta / "vectors"
        try:
            return VectorIndex(path, dim=dim, exact_limit=self.settings.exact_vector_limit)
        except CorruptionError as exc:
            assert path is not None
            log.warning("scope %s: vector index unreadable (%s); rebuilding", self.name, exc)
            self._move_aside(path, exc)
            return VectorIndex(path, dim=dim, exact_limit=self.settings.exact_vector_limit)

    def _open_writers_vectors(self, path: Path, dim: int) -> VectorIndex:
        """A reader serves the vectors the writer committed and never embeds itself (its
        index cannot be written). The writer may compact the files while we read them: try
        again, and serve an empty index (lexical search, and the search note says so) when
        they stay unreadable; the next reload picks the vectors up."""
        for _ in range(3):
            try:
                return VectorIndex(path, dim=dim, exact_limit=self.settings.exact_vector_limit,
                                   read_only=True)
            except (StorageError, OSError) as exc:
                problem = exc
        log.info("scope %s: the writer's vectors are unreadable now (%s)", self.name, problem)
        return VectorIndex(None, dim=dim, exact_limit=self.settings.exact_vector_limit)

    def _replace_vectors(self, dim: int) -> None:
        """Start an empty vector index (rebuildable: every live body is queued to re-embed)."""
        path = None if self.read_only else self.directory / "meta" / "vectors"
        with self._lock:
            self.vectors.close()
            if path is not None and path.exists():
                shutil.rmtree(path)
            self.vectors = VectorIndex(path, dim=dim,
                                       exact_limit=self.settings.exact_vector_limit)
            self.embed_queue.clear()
            self._reconcile_vectors()

    def use_model(self, model_id: str, dim: int) -> None:
        """Vectors are only comparable within one model: when the configured model (or its
        dimension) differs from the one recorded in ``meta/embedding.json``, drop the vectors
        and re-embed."""
        if self._model_in_use == model_id:
            return
        path = self.directory / "meta" / "embedding.json"
        wanted = {"model": model_id, "dim": dim}
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if recorded != wanted:
            if recorded is not None or self.vectors.dim != dim:
                log.info("scope %s: embedding model is now %s; re-embedding", self.name,
                         model_id)
                self._replace_vectors(dim)
            if not self.read_only:
                atomic_write(path, json.dumps(wanted).encode())
        self._model_in_use = model_id

    def _move_aside(self, path: Path, exc: CorruptionError) -> None:
        """Move a damaged rebuildable index into quarantine/ (evidence is kept) and report it."""
        if path.exists():
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            target = self.directory / "quarantine" / stamp / path.relative_to(self.directory)
            ensure_dir(target.parent)
            path.rename(target)
            self._moved_aside.add(exc.path)
            self.replay_report.problems.append(
                (exc.path, f"{str(exc).split(': ', 1)[-1]}; moved to {target} and rebuilt"))

    def _rebuild_lexical(self, index: LexicalIndex) -> None:
        """Index every record again. Committed every REBUILD_COMMIT_DOCS documents, as -1
        (a crash midway rebuilds again): until a commit, the index keeps each document's term
        counts in Python for read-your-writes. Rebuilding 50k memories (video) left the
        process at 582 MB against 210 after a plain open; committing as it goes, 320 (280
        once trimmed)."""
        batch: list[LexicalDoc] = []
        since_commit = 0
        for record in list(self._records.values()):
            try:
                batch.append(lexical_doc(record, self.read_body(record)))
            except (NotFoundError, CorruptionError) as exc:
                log.error("scope %s: memory %s unreadable while indexing: %s",
                          self.name, record.id, exc)
            if len(batch) >= 512:
                index.upsert(batch)
                since_commit += len(batch)
                batch = []
                if since_commit >= REBUILD_COMMIT_DOCS:
                    index.commit(-1)
                    since_commit = 0
        if batch:
            index.upsert(batch)
        trim_soon()

    def _apply_to_lexical(self, index: LexicalIndex, rec: WalRecord) -> None:
        op = rec.payload.get("op")
        if op in ("rehash", "supersede", "purged"):  # nothing the index holds changes
            return
        if op == "delete":
            index.delete(rec.payload["ids"])
            return
        memory_id = rec.payload["record"]["id"] if op == "put" else rec.payload.get("id")
        record = self._records.get(memory_id or "")
        if record is None:
            index.delete([memory_id] if memory_id else [])
            return
        try:
            index.upsert([lexical_doc(record, self.read_body(record))])
        except (NotFoundError, CorruptionError) as exc:
            log.error("scope %s: memory %s unreadable: %s", self.name, record.id, exc)

    def _reconcile_vectors(self) -> None:
        """Queue every live body without a vector, drop vectors of dead bodies (writer only:
        a reader's index belongs to the writer, and vector_search skips dead bodies)."""
        self._reader_coverage = None
        if self.read_only:
            return
        live = set(self._by_body)
        stale = [b for b in self.vectors.ids() if b not in live]
        if stale:
            self.vectors.delete(stale)
        queued = set(self.embed_queue)
        for body_id in sorted(live):
            if not self.vectors.has(body_id) and body_id not in queued:
                self.embed_queue.append(body_id)

    # ----------------------------------------------------------------- state
    def _index_record(self, record: MemoryRecord) -> None:
        old = self._records.get(record.id)
        if old is not None:
            self._forget(old)
        self._records[record.id] = record
        self._by_sha.add(record.sha256, record.id)
        self._by_body[record.body_id] = record.id
        if record.superseded_by is not None:
            self._superseded.add(record.id)

    def _forget(self, record: MemoryRecord) -> None:
        """Drop a record from the hash and body maps; others sharing its hash stay."""
        self._by_sha.discard(record.sha256, record.id)
        self._by_body.pop(record.body_id, None)
        self._superseded.discard(record.id)

    def _apply(self, rec: WalRecord) -> None:
        payload = rec.payload
        op = payload.get("op")
        if op == "put":
            self._index_record(MemoryRecord.from_state(payload["record"]))
        elif op == "delete":
            for memory_id in payload["ids"]:
                old = self._records.pop(memory_id, None)
                if old is not None:
                    self._forget(old)
        elif op == "rehash":
            for memory_id, sha in payload["sha256"].items():
                old = self._records.get(memory_id)
                if old is not None:
                    self._index_record(replace(old, sha256=sha))
        elif op == "supersede":
            self._link(payload["ids"], payload["by"])
        elif op == "tags":
            old = self._records.get(payload["id"])
            if old is not None:
                self._records[old.id] = MemoryRecord.from_state(
                    {**old.to_state(), "tags": payload["tags"],
                     "updated_at": payload["updated_at"]})
        elif op == "purged":  # the put of a body deleted since: its text was scrubbed
            pass
        else:
            log.error("scope %s: unknown WAL op %r at seq %d", self.name, op, rec.seq)

    def _check_writable(self) -> None:
        if self._closed:
            raise ClosedError(f"scope {self.name} is closed")
        if self.read_only:
            why = ("because of --read-only (MEMVID_READ_ONLY)" if self.settings.read_only
                   else "because another process holds its lock")
            raise ReadOnlyError(f"scope {self.name} is open read-only {why}; writes are refused")

    # ----------------------------------------------------------------- writes
    def store(self, item: StoreInput, *, imported: dict[str, Any] | None = None,
              supersedes: Sequence[str] = (), durable: bool = True
              ) -> tuple[MemoryRecord, bool, bool]:
        """Store one validated memory. Returns (record, deduplicated, replaced).

        ``supersedes``: ids of memories of this scope the new one replaces (checked before
        anything is written; linked by one more WAL record right after the put).
        The WAL fsync happens after the scope lock is released, shared with every store
        written meanwhile (group commit). ``durable=False`` leaves it to a later ``sync()``
        (a batch: one fsync for all); nothing may be acknowledged before that returns."""
        with self._lock:
            self._check_writable()
            self._check_supersedable(supersedes)
            record, deduplicated, replaced = self._store(item, imported)
            older = [i for i in supersedes if i != record.id]
            if older:
                self.wal.write({"op": "supersede", "ids": older, "by": record.id})
                self._link(older, record.id)
                record = self._records[record.id]
        if durable:
            self.sync()
        return record, deduplicated, replaced

    def sync(self) -> None:
        """Return once every WAL record written so far is fsynced (one fsync for all of
        them, or a share of another caller's). If that fsync failed, the records it cut back
        were already applied in memory: the scope is read again from disk, and the error
        raised (nothing of it was acknowledged)."""
        wal = self.wal
        try:
            wal.sync(wal.last_seq)
        except StorageError:
            self._reopen_after_failed_sync(wal)
            raise

    def _check_supersedable(self, ids: Sequence[str]) -> None:
        for memory_id in ids:
            old = self.record(memory_id)
            if old is None:
                raise ValidationError("supersedes",
                                      f"no memory {memory_id} in scope {self.name}")
            if self.superseded(old):
                raise ValidationError("supersedes", f"memory {memory_id} is already "
                                      f"superseded by {old.superseded_by}; supersede that one")

    def _link(self, ids: Sequence[str], by: str) -> None:
        """Mark ``ids`` superseded by ``by`` and record them on ``by``: both ends at once."""
        for memory_id in ids:
            old = self._records.get(memory_id)
            if old is not None:
                self._index_record(replace(old, superseded_by=by))
        new = self._records.get(by)
        if new is not None:
            self._index_record(replace(new, supersedes=tuple(dict.fromkeys(
                [*new.supersedes, *ids]))))

    def superseded(self, record: MemoryRecord) -> bool:
        """Replaced by a memory that still exists (deleting the newer one revives it)."""
        return record.superseded_by is not None and record.superseded_by in self._records

    def _store(self, item: StoreInput, imported: dict[str, Any] | None
               ) -> tuple[MemoryRecord, bool, bool]:
        sha = content_sha256(item.text)
        with self._lock:
            self._check_writable()
            existing = self._records.get(item.id) if item.id else None
            if item.id is None or (imported is not None and existing is None):
                duplicate = self._live_duplicate(sha)
                if duplicate is not None:
                    return self._merge_tags(duplicate, item.tags), True, False
            # An expired memory named by its id is replaced: revived with the new fields.
            if existing is not None and not existing.expired() and existing.sha256 == sha and (
                imported is not None or self._same_fields(existing, item)
            ):
                return self._merge_tags(existing, item.tags), True, False
            now = utcnow()
            record = MemoryRecord(
                id=item.id or str(ULID()),
                body_id=str(ULID()),
                title=item.title,
                kind=item.kind,
                tags=item.tags,
                scope=self.name,
                metadata=item.metadata,
                source=item.source,
                created_at=existing.created_at if existing is not None else now,
                updated_at=now,
                expires_at=item.expires_at,
                pinned=item.pinned,
                sha256=sha,
                size=len(item.text.encode("utf-8")),
            )
            if imported is not None:
                record = MemoryRecord.from_state({**record.to_state(), **imported,
                                                  "body_id": record.body_id,
                                                  "scope": self.name, "sha256": sha,
                                                  "size": record.size})
            seq = self.wal.write({"op": "put", "record": record.to_state(),
                                  "text": item.text})
            self._wal_text[record.body_id] = seq
            replaced = existing is not None
            if existing is not None:
                self._drop_body(existing.body_id)
            self._index_record(record)
            self._pending[record.body_id] = _Pending(seq, item.text.encode("utf-8"),
                                                     self.clock())
            self.lexical.upsert([lexical_doc(record, item.text)])
            self._indexed_seq = seq
            self.embed_queue.append(record.body_id)
            return record, False, replaced

    def _live_duplicate(self, sha: str) -> MemoryRecord | None:
        """The newest live memory with this hash. Expired ones share the hash until pruned,
        and dedup never folds into them (the caller's write would vanish with them)."""
        now = utcnow()
        live = [r for i in self._by_sha.ids(sha) if (r := self._records.get(i)) is not None
                and not r.expired(now)]
        return max(live, key=lambda r: (r.updated_at, r.id)) if live else None

    @staticmethod
    def _same_fields(existing: MemoryRecord, item: StoreInput) -> bool:
        return (existing.title, existing.kind, existing.metadata, existing.pinned,
                existing.source) == (item.title, item.kind, item.metadata, item.pinned,
                                     item.source)

    def _merge_tags(self, existing: MemoryRecord, tags: tuple[str, ...]) -> MemoryRecord:
        merged = merge_tags(existing.tags, tags, self.settings.max_tags)
        if merged == existing.tags:
            return existing
        now = utcnow()
        seq = self.wal.write({"op": "tags", "id": existing.id, "tags": list(merged),
                              "updated_at": now.isoformat()})
        record = existing.with_tags(merged, now)
        self._records[record.id] = record
        try:
            self.lexical.upsert([lexical_doc(record, self.read_body(record))])
        except (NotFoundError, CorruptionError) as exc:
            log.error("scope %s: could not re-index tags of %s: %s", self.name, record.id, exc)
        self._indexed_seq = seq
        return record

    def _drop_body(self, body_id: str) -> None:
        """Forget a body that is no longer referenced (replaced or deleted)."""
        if self._pending.pop(body_id, None) is None:
            self._pending_deletes.add(body_id)
        self.vectors.delete([body_id])

    def delete(self, ids: Iterable[str]) -> list[str]:
        """Tombstone memories; returns the ids that existed here."""
        with self._lock:
            self._check_writable()
            found = [i for i in ids if i in self._records]
            if not found:
                return []
            seq = self.wal.append({"op": "delete", "ids": found})
            for memory_id in found:
                record = self._records.pop(memory_id)
                self._forget(record)
                self._drop_body(record.body_id)
            self.lexical.delete(found)
            self._indexed_seq = seq
            return found

    # ----------------------------------------------------------------- reads
    def record(self, memory_id: str) -> MemoryRecord | None:
        record = self._records.get(memory_id)
        if record is None or record.expired():
            return None
        return record

    def read_body(self, record: MemoryRecord) -> str:
        pending = self._pending.get(record.body_id)
        if pending is not None:
            return pending.body.decode("utf-8")
        return self.backend.get(record.body_id).decode("utf-8")

    def reads_decode_video(self, records: Sequence[MemoryRecord]) -> bool:
        """Whether reading these records' bodies decodes video frames: a video store's
        sealed bodies whose frames are not all in its cache (the manager reads such a page
        side by side, and anything else in a loop, ADR 0034)."""
        if self.backend_name != "video":
            return False
        from ..storage.video import VideoStore  # imported already: the backend is one

        if not isinstance(self.backend, VideoStore):
            return False
        sealed = [r.body_id for r in records if r.body_id not in self._pending]
        return bool(sealed) and not self.backend.in_memory(sealed)

    def records(self) -> Iterator[MemoryRecord]:
        now = utcnow()
        return (r for r in list(self._records.values()) if not r.expired(now))

    def memory_for_body(self, body_id: str) -> MemoryRecord | None:
        memory_id = self._by_body.get(body_id)
        return self.record(memory_id) if memory_id else None

    def expired_ids(self) -> list[str]:
        now = utcnow()
        return [r.id for r in list(self._records.values()) if r.expired(now)]

    def _visible(self, record: MemoryRecord | None, include_superseded: bool
                 ) -> MemoryRecord | None:
        if record is None or (not include_superseded and self.superseded(record)):
            return None
        return record

    def lexical_search(self, query: str, k: int, filters: SearchFilters, *,
                       include_superseded: bool = False) -> list[tuple[MemoryRecord, float]]:
        # Superseded memories are left out after the index answers: asking for that many
        # more keeps the top k exact.
        extra = 0 if include_superseded else len(self._superseded)
        def allowed(memory_id: str) -> bool:
            record = self.record(memory_id)
            return record is not None and filters.matches(
                record.tags, record.kind, record.created_at, record.pinned)

        hits = self.lexical.search(query, k + 16 + extra, None if filters.empty else filters,
                                   allowed=allowed)
        out = [(r, s) for i, s in hits
               if (r := self._visible(self.record(i), include_superseded)) is not None]
        return out[:k]

    def vector_search(self, vector: np.ndarray, k: int, filters: SearchFilters, *,
                      include_superseded: bool = False) -> list[tuple[MemoryRecord, float]]:
        matches = None if filters.empty else filters.matches
        passed: dict[str, MemoryRecord] = {}  # each candidate is looked up once (ADR 0037)

        def allowed(body_id: str) -> bool:
            record = self._visible(self.memory_for_body(body_id), include_superseded)
            if record is None or (matches is not None and not matches(
                    record.tags, record.kind, record.created_at, record.pinned)):
                return False
            passed[body_id] = record
            return True

        if vector.shape[-1] != self.vectors.dim:  # vectors of another model: not yet redone
            return []
        hits = self.vectors.search(vector, k, allowed=allowed)
        return [(passed[b], s) for b, s in hits if b in passed][:k]

    def vector_coverage(self) -> tuple[int, int]:
        """(memories with a vector, memories): how much of the scope semantic search sees."""
        with self._lock:
            total = len(self._by_body)
            if not self.read_only:  # the writer keeps vectors to live bodies only
                return min(len(self.vectors), total), total
            if self._reader_coverage is None:
                self._reader_coverage = sum(1 for b in self.vectors.ids() if b in self._by_body)
            return self._reader_coverage, total

    # ----------------------------------------------------------------- background
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def due(self) -> bool:
        """Whether a batch should be stored now. The file backend stores every
        ``batch_max_seconds``; the video backend seals a segment only when it is worth it:
        ``seal_min_bytes`` of text (or ``batch_max_memories`` bodies) wait, or the oldest has
        waited ``seal_max_seconds`` (until then the WAL holds them durably, ADR 0018)."""
        pending = list(self._pending.values())
        if not pending:
            return False
        if len(pending) >= self.settings.batch_max_memories:
            return True
        age = self.clock() - min(p.since for p in pending)
        if self.backend.capabilities.prefers_batches:
            return (sum(len(p.body) for p in pending) >= self.settings.seal_min_bytes
                    or age >= self.settings.seal_max_seconds)
        return age >= self.settings.batch_max_seconds

    def write_batch(self, *, everything: bool = False) -> int:
        """Hand pending bodies to the backend in batches; returns how many were stored."""
        if self.read_only:
            return 0
        stored = 0
        with self._backend_lock:
            while True:
                with self._lock:
                    items = sorted(self._pending.items(), key=lambda kv: kv[1].seq)
                    items = items[: self.settings.batch_max_memories]
                if not items:
                    break
                self.backend.put_many([(body_id, p.body) for body_id, p in items])
                with self._lock:
                    for body_id, pending in items:
                        if self._pending.get(body_id) is pending:
                            del self._pending[body_id]
                        elif body_id not in self._by_body:
                            self._pending_deletes.add(body_id)
                stored += len(items)
                if not everything:
                    break
        self.apply_deletes()
        return stored

    def apply_deletes(self) -> int:
        """Tombstone deleted bodies in the backend (the file backend removes their files)."""
        if self.read_only:
            return 0
        with self._backend_lock:
            with self._lock:
                deletes = list(self._pending_deletes)
                self._pending_deletes.clear()
            return self.backend.delete_many(deletes) if deletes else 0

    def commit_indexes(self, *, force: bool = False) -> None:
        """Commit both indexes with the seq of the last change applied to the lexical index
        (a store may be between its WAL append and its upsert right now: that record stays
        uncovered and is replayed after a crash)."""
        if self.read_only:
            return
        seq = self._indexed_seq
        if force:
            self.lexical.commit(seq)
            self.vectors.commit(seq)
        else:
            self.lexical.maybe_commit(seq)
            self.vectors.maybe_commit(seq)  # else a crash re-embeds everything since

    def checkpoint(self, *, force: bool = False) -> bool:
        """Release the WAL text of sealed and deleted bodies; and when the WAL is big, has
        many files, or on force: snapshot metadata and drop covered WAL files. Returns whether
        a snapshot was written."""
        if self.read_only:
            return False
        full = force or (self.wal.size_bytes() - self._wal_bytes_at_checkpoint
                         >= self.settings.checkpoint_wal_bytes
                         or len(self.wal.files()) - self._wal_files_at_checkpoint
                         >= WAL_MAX_FILES)
        if full:
            self._snapshot_and_drop()
        self.release_wal_text()
        return full

    def release_wal_text(self) -> int:
        """Rewrite WAL files so no record holds the text of a body that is sealed in the
        backend or deleted (the current file is rotated first when it holds some). Bodies
        still pending keep theirs: the WAL is their only durable copy. Returns how many files
        were rewritten."""
        if self.read_only or not self._wal_text:
            return 0
        with self._lock:
            targets = {b: seq for b, seq in self._wal_text.items()
                       if b not in self._pending
                       and (b not in self._by_body or self.backend.contains(b))}
            if not targets:
                return 0
            dead = {b for b in targets if b not in self._by_body}
            current = self.wal.current_first_seq
            if current is not None and max(targets.values()) >= current:
                self.wal.rotate()
        rewritten = self.wal.scrub(targets, dead)
        with self._lock:
            for body_id, seq in targets.items():
                if self._wal_text.get(body_id) == seq:
                    del self._wal_text[body_id]
        return rewritten

    def _snapshot_and_drop(self) -> None:
        with self._lock:
            seq = self.wal.last_seq
            records = list(self._records.values())
            self.wal.rotate()
            min_pending = min((p.seq for p in self._pending.values()), default=seq + 1)
        meta = self.directory / "meta"
        if not snapshot_pair_current(meta, seq, self.snapshot_seq, self._previous_seq,
                                     sound=self._snapshot_sound and not self._spare_damaged,
                                     current_format=self._snapshot_format):
            # The spare first: a crash before the snapshot leaves the old snapshot in charge,
            # with the WAL back to it (nothing is dropped before both are written).
            write_snapshot(meta / PREVIOUS_SNAPSHOT_FILE, seq, records, previous_seq=seq,
                           spare=True)
            write_snapshot(meta / SNAPSHOT_FILE, seq, records, previous_seq=seq)
            self._previous_seq = seq
            self._snapshot_format = SNAPSHOT_FORMAT
            self._spare_damaged = False
        self.snapshot_seq = seq
        self._snapshot_sound = True
        self.lexical.commit(self._indexed_seq)
        self.wal.drop_through(min(self._previous_seq, min_pending - 1,
                                  self.lexical.committed_seq))
        self._wal_bytes_at_checkpoint = self.wal.size_bytes()
        self._wal_files_at_checkpoint = len(self.wal.files())
        self._wal_records = []

    def compact_step(self) -> CompactReport | None:
        """One unit of background compaction (video backend), None when there is none."""
        if self.read_only or self._closed or not self.backend.capabilities.compaction:
            return None
        return self.backend.compact_step(self.clock())

    def compact(self, progress: Callable[[int, int], None] | None = None) -> CompactReport:
        """Reclaim the space of deleted bodies in the backend (one compaction at a time)."""
        with self._backend_lock:
            return self.backend.compact(progress)

    def embed_waiting(self) -> int:
        """Memories still waiting for a vector."""
        return len(self.embed_queue)

    def purge(self) -> dict[str, Any]:
        """Remove the text of every deleted memory from every file now: tombstone the bodies,
        rewrite the segments holding them, scrub the WAL, and write two snapshots so that
        neither the current nor the previous one names a deleted memory."""
        self._check_writable()
        self.apply_deletes()
        with self._backend_lock:
            report = self.backend.purge()
        self.commit_indexes(force=True)
        self.checkpoint(force=True)
        self.checkpoint(force=True)
        return report.to_dict()

    def take_embed_batch(self, size: int) -> list[tuple[str, str]]:
        """Up to ``size`` (body_id, text) pairs still needing vectors. Taken under the lock
        and remembered as in flight until ``add_vectors``, so verify never mistakes a batch
        being embedded for memories lost from the queue."""
        taken: list[tuple[str, MemoryRecord]] = []
        with self._lock:
            while self.embed_queue and len(taken) < size and not self.read_only:
                body_id = self.embed_queue.popleft()
                record = self.memory_for_body(body_id)
                if record is not None and not self.vectors.has(body_id):
                    taken.append((body_id, record))
            self._embedding = {body_id for body_id, _ in taken}  # a failed batch: forgotten
        out: list[tuple[str, str]] = []
        for body_id, record in taken:
            try:
                out.append((body_id, embedding_text(record, self.read_body(record))))
            except (NotFoundError, CorruptionError) as exc:
                log.error("scope %s: cannot embed %s: %s", self.name, record.id, exc)
        return out

    def add_vectors(self, body_ids: list[str], vectors: np.ndarray) -> None:
        with self._lock:
            keep = [i for i, b in enumerate(body_ids) if b in self._by_body]
            if keep:
                self.vectors.upsert([body_ids[i] for i in keep], vectors[keep])
            self._embedding -= set(body_ids)

    # ----------------------------------------------------------------- maintenance
    def verify(self, progress: Callable[[int, int], None] | None = None) -> list[Problem]:
        """Every durable file checked, and both indexes checked to hold every live memory.

        Read-only (beside a writer, or ``--read-only``) it writes nothing: the on-disk vector
        and lexical files are checked in place even though this reader serves from memory.
        """
        problems = [Problem(f, m) for f, m in self.replay_report.problems]
        meta = self.directory / "meta"
        vector_lines = (VectorIndex.verify_files(meta / "vectors") if self.read_only
                        else self.vectors.verify())
        for line in vector_lines:
            path, _, message = line.partition(": ")
            problems.append(Problem(path, message))
        spare = meta / PREVIOUS_SNAPSHOT_FILE
        if self._snapshot_sound and spare.exists():  # the fallback must be there when needed
            try:
                load_snapshot_file(spare)
            except CorruptionError as exc:
                problems.append(Problem(str(spare), f"{str(exc).split(': ', 1)[-1]}; the "
                                        "snapshot is sound, nothing is lost: repair (or the "
                                        "next checkpoint) writes a fresh spare"))
                self._spare_damaged = not self.read_only
        if self.replay_report.torn_tail:
            problems.append(Problem(self.replay_report.torn_tail,
                                    "torn last record skipped (a crash mid-write; not data "
                                    "loss: it was never acknowledged)"))
        for problem in self.backend.verify(progress):
            ids = tuple(sorted({self._by_body.get(b, b) for b in problem.memory_ids}))
            problems.append(Problem(problem.path, problem.message, ids))
        missing = [r.id for r in self._records.values()
                   if r.body_id not in self._pending and not self.backend.contains(r.body_id)]
        if missing:
            problems.append(Problem(str(self.directory), "bodies missing from storage",
                                    tuple(sorted(missing))))
        problems.extend(self._check_lexical())
        problems.extend(self._check_vector_coverage())
        if self.unrehashed:
            problems.append(Problem(str(self.directory), "unreadable while rehashing to "
                                    f"identity version {IDENTITY_VERSION}; they keep their old "
                                    "identity", tuple(self.unrehashed)))
        orphans = self._kept_orphans()
        if orphans:
            problems.append(Problem(str(self.directory),
                                    f"{len(orphans)} stored bodies belong to no memory (their "
                                    "WAL records are damaged); repair saves their text"))
        return problems

    def _check_lexical(self) -> list[Problem]:
        """The lexical index reads back, and holds exactly the live memories."""
        path = str(self.directory / "meta" / "lexical")
        out = []
        if self.read_only and not self._lexical_on_disk and Path(path).is_dir():
            try:  # this reader rebuilt its index in memory: check the writer's files too
                with LexicalIndex(Path(path), read_only=True) as on_disk:
                    damaged = on_disk.check()
            except CorruptionError as exc:
                damaged = str(exc).split(": ", 1)[-1]
            if damaged:
                out.append(Problem(path, damaged))
        # Read the ids back under the scope lock, so no write is half applied, and compare
        # them as read: a damaged stored field (tantivy's .store) returns wrong ids while the
        # term dictionary still finds the right ones, so a has() re-check would hide it.
        with self._lock:
            try:
                indexed = self.lexical.ids()
            except CorruptionError as exc:
                return [*out, Problem(path, str(exc).split(": ", 1)[-1])]
            missing = sorted(set(self._records) - indexed)
            ghosts = sorted(indexed - set(self._records))
        if missing:
            out.append(Problem(path, f"{len(missing)} memories are missing from the lexical "
                                     "index (search cannot find them); repair re-indexes them",
                               tuple(missing)))
        if ghosts:
            out.append(Problem(path, f"{len(ghosts)} ids in the lexical index belong to no "
                                     "memory; repair rebuilds the index"))
        return out

    def _check_vector_coverage(self) -> list[Problem]:
        """Once the scope has vectors for a model, every live memory has one or is waiting
        in the embedding queue (a memory in neither is never found by semantic search).

        A reader queues nothing (the writer embeds), and every writable open queues each
        memory that has no vector, so for a reader a missing vector is work still to do, not
        a fault: only a writer, whose queue is authoritative, reports it."""
        has_model = (self.directory / "meta" / "embedding.json").exists() or len(self.vectors)
        if not has_model or self.read_only:
            return []
        with self._lock:
            waiting = set(self.embed_queue) | self._embedding
            missing = sorted(memory_id for body_id, memory_id in self._by_body.items()
                             if body_id not in waiting and not self.vectors.has(body_id))
        if not missing:
            return []
        return [Problem(str(self.directory / "meta" / "vectors"),
                        f"{len(missing)} memories have no vector and none is queued (semantic "
                        "search cannot find them); repair re-embeds them", tuple(missing))]

    def _kept_orphans(self) -> list[str]:
        """Bodies no record names, kept at open because the WAL was damaged (evidence)."""
        if self.read_only or not self.replay_report.problems:
            return []
        with self._lock:
            return sorted(set(self.backend.ids()) - set(self._by_body) - self._pending_deletes)

    def repair(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Rebuild indexes from the durable files and quarantine what cannot be read.

        Damaged files are COPIED to ``quarantine/<time>/`` (evidence is never deleted); memories
        whose body cannot be read are listed in ``unreadable.jsonl`` there and removed from the
        live store, so everything else keeps being served and ``verify`` can come back clean.
        """
        self._check_writable()
        problems = self.verify(progress)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        quarantine = self.directory / "quarantine" / stamp
        copied: list[str] = []
        named = {Path(p.path) for p in problems if p.path not in self._moved_aside}
        # A damaged frame index or segment: keep its partner too, the .mp4 holds the text.
        named |= {p.with_suffix(s) for p in named if p.suffix in (".mvi", ".mp4")
                  for s in (".mvi", ".mp4")}
        for path in sorted(named):
            if path.is_file() and path.is_relative_to(self.directory):
                target = quarantine / path.relative_to(self.directory)
                ensure_dir(target.parent)
                shutil.copy2(path, target)
                copied.append(str(path))
        damaged: list[MemoryRecord] = []
        for memory_id in sorted({i for p in problems for i in p.memory_ids} | set(
                self.unrehashed)):
            record = self._records.get(memory_id)
            if record is None:
                continue
            try:
                self.read_body(record)
            except (NotFoundError, CorruptionError, UnicodeDecodeError):
                damaged.append(record)
        # Never drop a memory whose text still exists somewhere in the scope: store it again.
        found = find_texts(self.directory, {r.body_id: r for r in damaged},
                           live_backend=self.backend_name) if damaged else {}
        restored = [self._restore(r, found[r.body_id]).id for r in damaged if r.body_id in found]
        unreadable = [r for r in damaged if r.body_id not in found]
        self.unrehashed = []
        if unreadable:
            ensure_dir(quarantine)
            lines = [json.dumps({**r.to_state(), "text": salvage(self.directory, r.body_id),
                                 "text_matches_sha256": False}, ensure_ascii=False)
                     for r in unreadable]
            atomic_write(quarantine / "unreadable.jsonl", ("\n".join(lines) + "\n").encode())
            self.delete([r.id for r in unreadable])
        orphans = self._kept_orphans()
        if orphans:
            ensure_dir(quarantine)
            with open(quarantine / "orphan-bodies.jsonl", "w", encoding="utf-8") as out:
                for body_id in orphans:
                    try:
                        text = self.backend.get(body_id).decode("utf-8", "replace")
                    except (NotFoundError, CorruptionError) as exc:
                        text, body_id = None, f"{body_id} (unreadable: {exc})"
                    out.write(json.dumps({"body_id": body_id, "text": text},
                                         ensure_ascii=False) + "\n")
            self.backend.delete_many(orphans)
        self.write_batch(everything=True)
        self.lexical.clear()
        self._rebuild_lexical(self.lexical)
        if self.vectors.verify():  # damaged rows: re-embed from the bodies
            self._replace_vectors(self.vectors.dim)
        self._reconcile_vectors()
        self.commit_indexes(force=True)
        self.checkpoint(force=True)
        # Every sound WAL record is now in the snapshot: damaged WAL files (copied to the
        # quarantine above) are dropped so they are not reported again.
        damaged_wal = {Path(f) for f, _ in self.replay_report.problems}
        if self.replay_report.torn_tail:
            damaged_wal.add(Path(self.replay_report.torn_tail))
        for path in self.wal.files():
            if path in damaged_wal and str(path) in copied and path != self.wal.current_path:
                path.unlink()
        self.replay_report = ReplayReport()
        report = self.backend.compact() if self.backend.capabilities.compaction else None
        return {
            "problems_found": len(problems),
            "files_quarantined": copied,
            "memories_unreadable": [r.id for r in unreadable],
            "memories_restored": restored,
            "quarantine": str(quarantine) if copied or unreadable else None,
            "bytes_reclaimed": report.bytes_reclaimed if report else 0,
        }

    def stats(self) -> dict[str, Any]:
        storage = self.backend.stats()
        live = list(self._records.values())
        return {
            "backend": self.backend_name,
            "memories": len(live),
            "text_bytes": sum(r.size for r in live),
            "stored_bytes": storage.stored_bytes,
            "pending_bodies": len(self._pending),
            "embedding_queue": len(self.embed_queue),
            "vectors": len(self.vectors),
            "wal_bytes": self.wal.size_bytes(),
            "wal_files": len(self.wal.files()),
            "pending_text_bytes": sum(len(p.body) for p in list(self._pending.values())),
            "read_only": self.read_only,
            "path": str(self.directory),
            **storage.details,
        }

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self.read_only:
                self.write_batch(everything=True)
                self.commit_indexes(force=True)
                self.checkpoint(force=True)
        finally:
            self._closed = True
            self.lexical.close()
            self.vectors.close()
            self.backend.close()
            self.wal.close()
            self._scope_lock.release()


def open_scope(name: str, directory: Path, settings: Settings, *, dim: int = 384) -> ScopeStore:
    """Open a scope for writing, or read-only when asked or when locked and allowed to."""
    if settings.read_only:
        return ScopeStore(name, directory, settings, read_only=True, dim=dim)
    try:
        return ScopeStore(name, directory, settings, dim=dim)
    except StoreLockedError:
        if not settings.read_only_fallback:
            raise
        log.warning("scope %s is locked by another process; opening it read-only", name)
        return ScopeStore(name, directory, settings, read_only=True, dim=dim)
