"""The team engine's body storage: one scope's bodies, pending in PostgreSQL until sealed into
video segments in an S3-compatible bucket (ADR 0025, extracted by ADR 0031).

It implements ``storage.base.StorageAdapter``, so the storage contract suite runs against it
as against the file and video backends. ``memvid_pending`` holds bodies not sealed yet;
``memvid_bodies`` locates each sealed body in its segment (frame, offset, frames, size,
SHA-256); ``memvid_tombstones`` remembers deleted bodies a segment still holds, until
compaction or purge rewrites it. The scope store writes and retires bodies inside its own
transactions (``add_pending``, ``retire``), so a memory and its body commit together.

Sealing: the instance holding the scope's advisory lock takes the oldest pending bodies,
encodes one segment with the video backend's sealer, uploads both files, and only then, in
one transaction, records where each body is and drops the pending copies. An instance killed
anywhere in between loses nothing (the bodies are still pending; uploaded objects nobody
references are collected by ``compact``).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..core.config import Settings
from ..core.errors import ClosedError, NotFoundError
from ..core.models import Problem
from ..storage.base import Capabilities, CompactReport, ProgressCallback, StorageStats
from ..storage.video import codec
from ..storage.video.store import SEGMENT_RAW_LIMIT, seal_segment
from .database import Database
from .segments import SegmentBucket

log = logging.getLogger(__name__)

SEAL_LOCK_SPACE = "memvid-seal:"  # advisory lock per scope: one sealer/compactor at a time
DUE_POLL_SECONDS = 1.0  # how often an instance asks the database whether a seal is due
ORPHAN_AGE_SECONDS = 3600  # unreferenced objects older than this are collected by compact


class TeamBodyStore:
    """One scope's bodies in the team database and bucket. Thread-safe; many instances (on
    many hosts) share it, coordinated by the scope's advisory lock."""

    capabilities = Capabilities("team", immutable_segments=True, compaction=True,
                                prefers_batches=True)

    def __init__(self, key: str, settings: Settings, db: Database, bucket: SegmentBucket,
                 *, read_only: bool = False) -> None:
        self.key = key  # the scope's identity in the database and the bucket
        self.settings = settings
        self.db = db
        self.bucket = bucket
        self.read_only = read_only or settings.read_only
        self.clock = time.time
        self._ladder = codec.PROFILES[settings.video_profile]
        self._seal_lock = threading.Lock()  # one seal or rewrite per process and scope
        self._closed = False
        self._due_asked = -DUE_POLL_SECONDS  # monotonic time the database was last asked

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"the bodies of scope {self.key} are closed")

    # ----------------------------------------------------------------- in a caller's transaction
    def add_pending(self, conn: Any, body_id: str, data: bytes) -> None:
        """A new body, pending until sealed; commits with ``conn``'s transaction."""
        conn.execute("INSERT INTO memvid_pending (body_id, scope, body) VALUES (%s, %s, %s) "
                     "ON CONFLICT (body_id) DO NOTHING", (body_id, self.key, data))
        self._due_asked = -DUE_POLL_SECONDS  # a body of ours waits: ask again at once

    def retire(self, conn: Any, body_ids: Sequence[str]) -> int:
        """Delete bodies within ``conn``'s transaction: a pending one simply goes, a sealed
        one is tombstoned (its segment holds the text until rewritten). Returns how many
        existed."""
        ids = list(dict.fromkeys(body_ids))
        if not ids:
            return 0
        conn.execute("INSERT INTO memvid_tombstones (body_id, scope, seg, size) SELECT body_id, "
                     "scope, seg, size FROM memvid_bodies WHERE body_id = ANY(%s) "
                     "ON CONFLICT DO NOTHING", (ids,))
        sealed = conn.execute("DELETE FROM memvid_bodies WHERE body_id = ANY(%s) RETURNING "
                              "body_id", (ids,)).fetchall()
        pending = conn.execute("DELETE FROM memvid_pending WHERE body_id = ANY(%s) RETURNING "
                               "body_id", (ids,)).fetchall()
        return len({r[0] for r in sealed} | {r[0] for r in pending})

    def read(self, conn: Any, body_ids: Sequence[str]) -> dict[str, bytes]:
        """The bodies that exist among ``body_ids`` (pending or sealed), on ``conn``;
        CorruptionError when a sealed one does not match its SHA-256."""
        ids = list(body_ids)
        if not ids:
            return {}
        found = {b: bytes(body) for b, body in conn.execute(
            "SELECT body_id, body FROM memvid_pending WHERE body_id = ANY(%s)",
            (ids,)).fetchall()}
        rest = [i for i in ids if i not in found]
        sealed = conn.execute(
            "SELECT body_id, seg, frame, frame_offset, frames, size, sha256 FROM memvid_bodies "
            "WHERE body_id = ANY(%s)", (rest,)).fetchall() if rest else []
        for body_id, seg, frame, offset, frames, size, sha in sealed:
            found[body_id] = self.bucket.read(self.key, seg, frame, offset, size, frames, sha)
        return found

    # ----------------------------------------------------------------- StorageAdapter
    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store bodies and seal them into segments at once (as the video backend's
        ``put_many`` encodes one); a body already stored is left as it is. The scope store
        does not come this way: its bodies commit with their memories (``add_pending``) and
        the batcher seals them (``seal``)."""
        self._check_open()
        with self.db.transaction() as conn:
            for body_id, data in items:
                self.add_pending(conn, body_id, bytes(data))
            # a body sealed before stays sealed: its pending copy would only be sealed twice
            conn.execute("DELETE FROM memvid_pending p WHERE p.scope = %s AND EXISTS (SELECT "
                         "1 FROM memvid_bodies b WHERE b.body_id = p.body_id)", (self.key,))
        self.seal(everything=True)

    def get(self, body_id: str) -> bytes:
        found = self.get_many([body_id])
        if body_id not in found:
            raise NotFoundError(f"body {body_id} of scope {self.key} not found")
        return found[body_id]

    def get_many(self, body_ids: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        with self.db.connection() as conn:
            return self.read(conn, body_ids)

    def contains(self, body_id: str) -> bool:
        self._check_open()
        with self.db.connection() as conn:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM memvid_pending WHERE body_id = %s) "
                               "OR EXISTS (SELECT 1 FROM memvid_bodies WHERE body_id = %s)",
                               (body_id, body_id)).fetchone()
        return bool(row and row[0])

    def delete_many(self, body_ids: Iterable[str]) -> int:
        self._check_open()
        with self.db.transaction() as conn:
            return self.retire(conn, list(body_ids))

    def ids(self) -> Iterator[str]:
        self._check_open()
        with self.db.connection() as conn:
            rows = conn.execute("SELECT body_id FROM memvid_pending WHERE scope = %s UNION "
                                "SELECT body_id FROM memvid_bodies WHERE scope = %s",
                                (self.key, self.key)).fetchall()
        return iter([r[0] for r in rows])

    def verify(self, progress: ProgressCallback | None = None) -> list[Problem]:
        """Every segment's two objects exist at their sealed sizes (it does not download and
        decode every segment). ``Problem.memory_ids`` holds the segment's body ids."""
        self._check_open()
        problems: list[Problem] = []
        with self.db.connection() as conn:
            segments = conn.execute("SELECT seg, mp4_bytes, mvi_bytes FROM memvid_segments "
                                    "WHERE scope = %s ORDER BY seg", (self.key,)).fetchall()
        for n, (seg, mp4_bytes, mvi_bytes) in enumerate(segments):
            for name, size in ((f"seg-{seg}.mp4", mp4_bytes), (f"seg-{seg}.mvi", mvi_bytes)):
                found = self.bucket.size(self.key, name)
                if found != size:
                    with self.db.connection() as conn:
                        ids = tuple(sorted(r[0] for r in conn.execute(
                            "SELECT body_id FROM memvid_bodies WHERE seg = %s", (seg,))))
                    problems.append(Problem(self.bucket.key(self.key, name),
                                            "missing" if found is None else
                                            f"size {found} differs from {size}", ids))
            if progress is not None:
                progress(n + 1, len(segments))
        return problems

    def compact(self, progress: ProgressCallback | None = None) -> CompactReport:
        """Rewrite segments holding deleted bodies below the live-share threshold, and
        collect unreferenced old objects."""
        return self._rewrite(self.settings.compact_live_threshold, progress)

    def compact_step(self, now: float | None = None) -> CompactReport | None:
        """One unit of background compaction (ADR 0018's rule): rewrite one segment holding
        text deleted more than ``purge_after_seconds`` ago or whose live share fell below
        the threshold. None when there is none, or another instance is sealing."""
        if self.read_only or self._closed:
            return None
        with self._seal_lock, self.db.connection() as lock_conn:
            if not self._advisory_lock(lock_conn, wait=False):
                return None
            try:
                victims = self._victims(self.settings.compact_live_threshold,
                                        self.settings.purge_after_seconds, limit=1)
                return self._rewrite_segments(victims, None) if victims else None
            finally:
                self._advisory_unlock(lock_conn)

    def purge(self, progress: ProgressCallback | None = None) -> CompactReport:
        """Remove the text of every deleted body from the bucket now."""
        self.seal(everything=True)
        return self._rewrite(1.0, progress)

    def stats(self) -> StorageStats:
        with self.db.connection() as conn:
            sealed, sealed_bytes, pending, pending_bytes, segments, stored = conn.execute(
                "SELECT (SELECT count(*) FROM memvid_bodies WHERE scope = %(s)s), (SELECT "
                "coalesce(sum(size), 0) FROM memvid_bodies WHERE scope = %(s)s), (SELECT "
                "count(*) FROM memvid_pending WHERE scope = %(s)s), (SELECT coalesce(sum(length("
                "body)), 0) FROM memvid_pending WHERE scope = %(s)s), (SELECT count(*) FROM "
                "memvid_segments WHERE scope = %(s)s), (SELECT coalesce(sum(mp4_bytes + "
                "mvi_bytes), 0) FROM memvid_segments WHERE scope = %(s)s)",
                {"s": self.key}).fetchone()
        pending, pending_bytes = int(pending), int(pending_bytes)
        bodies, body_bytes = int(sealed) + pending, int(sealed_bytes) + pending_bytes
        return StorageStats(bodies, body_bytes, int(stored) + pending_bytes, {
            "pending_bodies": pending, "pending_text_bytes": pending_bytes,
            "sealed_bytes": int(stored), "segments": int(segments),
            "segment_cache_bytes": self.bucket.cached_bytes(), "segment_url": self.bucket.url})

    def close(self) -> None:
        """Nothing to flush: every stored body is committed (the pool and the bucket belong
        to the engine)."""
        self._closed = True

    # ----------------------------------------------------------------- sealing
    def pending_stats(self) -> tuple[int, int, float]:
        """(bodies, text bytes, age of the oldest in seconds) waiting to be sealed."""
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0), coalesce(extract(epoch FROM "
                "now() - min(since)), 0) FROM memvid_pending WHERE scope = %s",
                (self.key,)).fetchone()
        return (int(row[0]), int(row[1]), float(row[2])) if row else (0, 0, 0.0)

    def due(self) -> bool:
        """Seal when a segment is worth it (ADR 0018's cadence): ``seal_min_bytes`` of text
        or ``batch_max_memories`` bodies wait, or the oldest has waited ``seal_max_seconds``
        (until then the database holds them durably).

        The manager's batcher asks four times a second per scope; the database is asked at
        once after this instance stored a body, else at most every ``DUE_POLL_SECONDS``
        (other instances' bodies), and only about the oldest ``batch_max_memories`` bodies
        (enough to decide): the unbounded count and sum over a scope's pending bodies, four
        times a second, took server CPU from searches (ADR 0031)."""
        if self.read_only or self._closed:
            return False
        now = time.monotonic()
        if now - self._due_asked < DUE_POLL_SECONDS:
            return False
        self._due_asked = now
        limit = self.settings.batch_max_memories
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0), coalesce(extract(epoch FROM now() - "
                "min(since)), 0) FROM (SELECT length(body) AS size, since FROM memvid_pending "
                "WHERE scope = %s ORDER BY seq LIMIT %s) oldest", (self.key, limit)).fetchone()
        count, size, age = (int(row[0]), int(row[1]), float(row[2])) if row else (0, 0, 0.0)
        return count > 0 and (count >= limit or size >= self.settings.seal_min_bytes
                              or age >= self.settings.seal_max_seconds)

    def seal(self, *, everything: bool = False) -> int:
        """Seal pending bodies into segments; returns how many were sealed here. Only the
        instance holding the scope's advisory lock seals (``everything``: wait for it)."""
        if self.read_only or self._closed:
            return 0
        sealed = 0
        with self._seal_lock, self.db.connection() as lock_conn:
            if not self._advisory_lock(lock_conn, wait=everything):
                return 0
            try:
                while True:
                    done = self._seal_one()
                    sealed += done
                    if not done or not everything:
                        break
            finally:
                self._advisory_unlock(lock_conn)
        return sealed

    def _lock_id(self) -> str:
        return SEAL_LOCK_SPACE + self.key

    def _advisory_unlock(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (self._lock_id(),))

    def _advisory_lock(self, conn: Any, *, wait: bool) -> bool:
        if wait:
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (self._lock_id(),))
            return True
        row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                           (self._lock_id(),)).fetchone()
        return bool(row and row[0])

    def _take_pending(self) -> list[tuple[str, bytes]]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT body_id, body FROM memvid_pending WHERE scope = %s "
                                "ORDER BY seq LIMIT %s",
                                (self.key, self.settings.batch_max_memories)).fetchall()
        out: list[tuple[str, bytes]] = []
        size = 0
        for body_id, body in rows:
            if out and size + len(body) > SEGMENT_RAW_LIMIT:
                break
            out.append((body_id, bytes(body)))
            size += len(body)
        return out

    def _seal_one(self) -> int:
        """Seal the oldest pending bodies into one segment. Returns how many it sealed."""
        batch = self._take_pending()
        if not batch:
            return 0
        self._publish_segment(batch, retiring=[])
        return len(batch)

    def _publish_segment(self, batch: list[tuple[str, bytes]], retiring: list[str]) -> str:
        """Encode ``batch`` into a new segment, upload it, then in one transaction locate
        its bodies there (and drop the ``retiring`` segments' rows). A body deleted while
        it was encoded is dead in the new segment: tombstoned at once. Returns the segment."""
        with tempfile.TemporaryDirectory(prefix="memvid-seal-") as tmp:
            sealed = seal_segment(Path(tmp), [b for _, b in batch], self._ladder,
                                  self.settings.video_profile)
            mp4 = Path(tmp) / f"seg-{sealed.ulid}.mp4"
            mvi = Path(tmp) / f"seg-{sealed.ulid}.mvi"
            self.bucket.upload(self.key, mvi)
            self.bucket.upload(self.key, mp4)
            ids = [b for b, _ in batch]
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO memvid_segments (seg, scope, frames, mp4_bytes, mvi_bytes, "
                    "bodies, raw, mp4_sha256, mvi_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, "
                    "%s, %s)", (sealed.ulid, self.key, len(sealed.seg_index.frames),
                                sealed.seg_index.mp4_size, sealed.mvi_bytes, len(batch),
                                sum(len(b) for _, b in batch), sealed.mp4_sha256,
                                sealed.mvi_sha256))
                if retiring:  # the new segment's tombstones replace the retired ones'
                    conn.execute("DELETE FROM memvid_tombstones WHERE seg = ANY(%s)",
                                 (retiring,))
                live = {r[0] for r in conn.execute(
                    "DELETE FROM memvid_pending WHERE body_id = ANY(%s) RETURNING body_id",
                    (ids,)).fetchall()}
                live |= {r[0] for r in conn.execute(
                    "SELECT body_id FROM memvid_bodies WHERE body_id = ANY(%s) FOR UPDATE",
                    (ids,)).fetchall()}
                located, dead = [], []
                for (body_id, body), (frame, offset, frames) in zip(batch, sealed.locations,
                                                                     strict=True):
                    if body_id in live:
                        located.append((body_id, self.key, sealed.ulid, frame, offset, frames,
                                        len(body), hashlib.sha256(body).hexdigest()))
                    else:
                        dead.append((body_id, self.key, sealed.ulid, len(body)))
                with conn.cursor() as cur:
                    if located:
                        cur.executemany(
                            "INSERT INTO memvid_bodies (body_id, scope, seg, frame, "
                            "frame_offset, frames, size, sha256) VALUES (%s, %s, %s, %s, %s, "
                            "%s, %s, %s) ON CONFLICT (body_id) DO UPDATE SET seg = "
                            "excluded.seg, frame = excluded.frame, frame_offset = "
                            "excluded.frame_offset, frames = excluded.frames, size = "
                            "excluded.size, sha256 = excluded.sha256", located)
                    if dead:
                        cur.executemany(
                            "INSERT INTO memvid_tombstones (body_id, scope, seg, size) VALUES "
                            "(%s, %s, %s, %s) ON CONFLICT (body_id) DO UPDATE SET seg = "
                            "excluded.seg", dead)
                if retiring:
                    conn.execute("DELETE FROM memvid_segments WHERE seg = ANY(%s)", (retiring,))
            self.bucket.adopt(self.key, mvi)
            self.bucket.adopt(self.key, mp4)
        return sealed.ulid

    # ----------------------------------------------------------------- compaction
    def _rewrite(self, threshold: float, progress: ProgressCallback | None) -> CompactReport:
        if self.read_only or self._closed:
            return CompactReport()
        with self._seal_lock, self.db.connection() as lock_conn:
            self._advisory_lock(lock_conn, wait=True)
            try:
                report = self._rewrite_segments(self._victims(threshold, None), progress)
                self._collect_orphans()
                return report
            finally:
                self._advisory_unlock(lock_conn)

    def _victims(self, threshold: float, deleted_before: float | None,
                 limit: int | None = None) -> list[str]:
        """Segments holding deleted bodies whose live share is below ``threshold`` (1.0:
        any), or (``deleted_before`` seconds) holding text deleted longer ago than that."""
        aged = ("OR EXISTS (SELECT 1 FROM memvid_tombstones t WHERE t.seg = s.seg AND "
                "t.deleted_at < now() - make_interval(secs => %(aged)s))"
                if deleted_before is not None else "")
        with self.db.connection() as conn:
            return [r[0] for r in conn.execute(
                "SELECT s.seg FROM memvid_segments s WHERE s.scope = %(scope)s AND EXISTS ("
                "SELECT 1 FROM memvid_tombstones t WHERE t.seg = s.seg) AND (coalesce(("
                "SELECT sum(size) FROM memvid_bodies b WHERE b.seg = s.seg), 0) < "
                f"%(threshold)s * s.raw {aged}) ORDER BY s.seg LIMIT %(limit)s",
                {"scope": self.key, "threshold": threshold, "aged": deleted_before,
                 "limit": limit}).fetchall()]

    def _rewrite_segments(self, victims: list[str],
                          progress: ProgressCallback | None) -> CompactReport:
        """Move the live bodies of each victim into a new segment (published in one
        transaction that also drops the victim), then delete the victim's objects."""
        with self.db.connection() as conn:
            before = self._stored_bytes(conn)
        moved = 0
        for n, seg in enumerate(victims):
            with self.db.connection() as conn:
                ids = [r[0] for r in conn.execute("SELECT body_id FROM memvid_bodies WHERE "
                                                  "seg = %s ORDER BY body_id", (seg,))]
                bodies = self.read(conn, ids)
            batch = [(b, bodies[b]) for b in ids if b in bodies]
            if batch:
                self._publish_segment(batch, retiring=[seg])
            else:
                with self.db.transaction() as conn:
                    conn.execute("DELETE FROM memvid_tombstones WHERE seg = %s", (seg,))
                    conn.execute("DELETE FROM memvid_segments WHERE seg = %s", (seg,))
            self.bucket.delete(self.key, [f"seg-{seg}.mp4", f"seg-{seg}.mvi"])
            moved += len(batch)
            if progress is not None:
                progress(n + 1, len(victims))
        with self.db.connection() as conn:
            after = self._stored_bytes(conn)
        return CompactReport(segments_rewritten=len(victims), bodies_moved=moved,
                             bytes_before=before, bytes_after=after)

    def _stored_bytes(self, conn: Any) -> int:
        row = conn.execute("SELECT coalesce(sum(mp4_bytes + mvi_bytes), 0) FROM "
                           "memvid_segments WHERE scope = %s", (self.key,)).fetchone()
        return int(row[0]) if row else 0

    def _collect_orphans(self) -> int:
        """Delete objects no segment row names and older than ORPHAN_AGE_SECONDS (an
        instance killed between upload and publish leaves them; younger ones may be a seal
        in flight elsewhere)."""
        with self.db.connection() as conn:
            known = {r[0] for r in conn.execute("SELECT seg FROM memvid_segments WHERE "
                                                "scope = %s", (self.key,)).fetchall()}
        now = self.clock()
        orphans = [name for name, modified in self.bucket.names(self.key).items()
                   if name.startswith("seg-") and name[4:30] not in known
                   and now - modified > ORPHAN_AGE_SECONDS]
        if orphans:
            log.info("scope %s: removing %d unreferenced segment objects", self.key,
                     len(orphans))
            self.bucket.delete(self.key, orphans)
        return len(orphans)
