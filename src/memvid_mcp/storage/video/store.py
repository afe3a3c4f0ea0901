"""``VideoStore``: the video-segment backend behind the ``StorageAdapter`` contract.

Each ``put_many`` seals its bodies into new immutable segments (``seg-<ulid>.mp4`` plus
its ``.mvi`` index): pack, encode, decode-verify every frame, rename into place, fsync, and
only then append the manifest lines that publish them. The segment is then the only copy
of those bodies. Thread safety: one writer at a time (an internal lock serialises
put_many, delete_many and compact) alongside any number of concurrent readers. A store
that only reads, opened beside a writer in another process, reloads the manifest when a
lookup misses and the file changed, so it follows new seals and compactions.

Every seal records the SHA-256 of both segment files in its manifest line, so ``verify`` finds
a flipped byte anywhere in them, then decodes the frames to name exactly the memories whose
payload is damaged (none when only container bytes changed). Segments sealed before that
(0.1.0) get their checksums recorded by the first writable verify that finds them sound.

Deleted bodies stay in their segment until it is rewritten: ``compact_step`` (called in the
background, ADR 0018) merges small segments size-tiered and rewrites any segment holding text
deleted more than ``purge_after`` seconds ago; ``purge`` rewrites every such segment now. The
store remembers where each deleted body still lies (its ``put`` and ``del`` lines survive a
manifest rewrite while the text does) so that deadline holds across restarts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from ulid import ULID

from ...core.errors import (
    ClosedError,
    CorruptionError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from ...core.fsutil import atomic_write, fsync_dir
from ...core.models import Problem, iso, utcnow
from ..base import Capabilities, CompactReport, ProgressCallback, StorageStats
from . import codec, framing, mvi, tiering
from .cache import ByteLRU, SizedLRU
from .loctable import Loc as _Loc
from .loctable import LocBuilder, LocTable
from .manifest import FILE_NAME as MANIFEST_FILE
from .manifest import Manifest, body_hash_matches

log = logging.getLogger(__name__)

SEGMENT_RAW_LIMIT = 4 << 20  # raw body bytes per sealed segment (bounds seal memory)
SMALL_SEGMENT_BYTES = 256 << 10  # segments below this are merged by a manual compaction
TIER_BASE = 64 << 10  # live text below this is tier 0 of background merging (tiering.py)
# A background merge waits while searches are reading (MERGE_BUSY_READS body reads within
# MERGE_QUIET_SECONDS: a search reads a page of ~10), for at most MERGE_MAX_WAIT_SECONDS:
# re-encoding segments and rewriting the manifest hold the GIL in many short stretches, and
# a search waits for each (ADR 0032). Purges (deadline-bound) never wait.
MERGE_BUSY_READS = 20
MERGE_QUIET_SECONDS = 1.0
MERGE_MAX_WAIT_SECONDS = 120.0
# Decompressed frames kept per store (~6.5 KB of text each): agents search the same topics
# again and get the same memories back, and a frame's neighbours come with it; 1 MB of RSS
# per store (ADR 0034)
DECODED_CACHE_BYTES = 1 << 20
WRITES_FILE = "segment-writes.json"  # bytes written to segments, for write amplification
_SEG_FILE = re.compile(r"^seg-([0-9A-Z]{26})\.(mp4|mvi)$")
_ULID = re.compile(r"^[0-9A-Z]{26}$")


@dataclass
class _Segment:
    ulid: str
    record: dict[str, Any]
    index: mvi.SegmentIndex | None = None
    problem: str | None = None
    live_count: int = 0
    live_bytes: int = 0
    dead_bytes: int = 0  # text of deleted bodies it still holds, known from the manifest
    dead_since: float | None = None  # when the oldest of them was deleted (epoch seconds)

    @property
    def raw_bytes(self) -> int:
        return int(self.record.get("raw", 0))

    @property
    def stored_bytes(self) -> int:
        return int(self.record.get("bytes", 0)) + int(self.record.get("mvi_bytes", 0))

    @property
    def live_share(self) -> float:
        return self.live_bytes / self.raw_bytes if self.raw_bytes else float(self.live_count > 0)

    @property
    def holds_deleted(self) -> bool:
        """Whether text of a deleted body may still be in it (the known ones, and any a
        0.1.0 compaction forgot: then raw exceeds live + known dead)."""
        return self.raw_bytes > self.live_bytes


class _Sealed(NamedTuple):
    ulid: str
    seg_index: mvi.SegmentIndex
    mvi_bytes: int
    locations: list[tuple[int, int, int]]
    settings: codec.EncodeSettings
    mp4_sha256: str
    mvi_sha256: str
    payloads: tuple[bytes, ...] = ()  # each frame's QR payload, as the segment holds it

    def record(self, bodies: int, raw: int, ts: str) -> dict[str, Any]:
        """The manifest ``seg`` line (version 2: with both files' SHA-256)."""
        index = self.seg_index
        return {
            "op": "seg",
            "seg": self.ulid,
            "frames": len(index.frames),
            "bytes": index.mp4_size,
            "mvi_bytes": self.mvi_bytes,
            "bodies": bodies,
            "raw": raw,
            "profile": index.profile,
            "codec": index.codec,
            "px": index.px_per_module,
            "ecc": index.ecc,
            "ts": ts,
            "mp4_sha256": self.mp4_sha256,
            "mvi_sha256": self.mvi_sha256,
        }


class _Gone(Exception):
    """A segment vanished under a reader (compaction swapped it); retry with a fresh lookup."""


class _Abandoned(Exception):
    """The store is closing: a rewrite in progress stops before publishing anything."""


_WRITE_KEYS = ("raw_stored", "segment_bytes", "raw_rewritten", "segment_bytes_rewritten")


class VideoStore:
    """Bodies as QR codes in MP4 segments; see docs/format.md."""

    capabilities = Capabilities(
        name="video", immutable_segments=True, compaction=True, prefers_batches=True
    )

    def __init__(
        self,
        root: Path,
        *,
        profile: str = "archival",
        cache_bytes: int = 64 << 20,
        live_threshold: float = 0.70,
        read_only: bool = False,
        tier_base: int = TIER_BASE,
        purge_after: float = 900.0,
        warm: bool = False,
    ) -> None:
        if profile not in codec.PROFILES:
            raise ValidationError("profile", f"must be one of {', '.join(codec.PROFILES)}")
        if not 0.0 < live_threshold <= 1.0:
            raise ValidationError("live_threshold", "must be in (0, 1]")
        self.root = Path(root)
        self.profile = profile
        self.live_threshold = live_threshold
        self.tier_base = max(1, tier_base)
        self.purge_after = purge_after
        self.seg_dir = self.root / "segments"
        self._seg_prefix = f"{self.seg_dir}{os.sep}seg-"  # str(self._mp4(x)) without Path's cost
        self.read_only = read_only  # verify then records nothing
        if not read_only:
            try:
                self.seg_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"{self.seg_dir}: {exc}") from exc
        self._ladder = codec.PROFILES[profile]
        self._cache: SizedLRU[framing.CheckedFrame] = SizedLRU(cache_bytes, _checked_size)
        self._decoded = ByteLRU(min(DECODED_CACHE_BYTES, cache_bytes))
        self._dicts: dict[str, framing.SegmentDictionary] = {}  # by segment, read once
        self._dict_locks: dict[str, threading.Lock] = {}  # one reader of a dictionary at a time
        # Warming: from opening on, a background thread decodes every frame into the cache
        # (while it has room) and seals put their new frames there (ADR 0032).
        self._warm = warm
        self._warmer: threading.Thread | None = None
        self._warm_busy = False
        self._warm_wake = threading.Event()
        self._warmed: set[str] = set()  # segments the warmer has been through
        # time.monotonic() of the latest reads (get/get_many): searches are reading when
        # the oldest of them is recent
        self._recent_reads: deque[float] = deque(maxlen=MERGE_BUSY_READS)
        self._merge_waiting_since: float | None = None
        self._write_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._manifest = Manifest(self.root / MANIFEST_FILE, tmp_dir=self.seg_dir)
        if not read_only:
            self._manifest.upgrade()  # a 0.1.0 manifest.jsonl becomes the compact file (ADR 0019)
        self._loc = LocTable()  # live bodies: where each lies (packed, ADR 0034)
        self._segs: dict[str, _Segment] = {}
        # (segment, body id) -> (where the deleted body lies, deleted at epoch s, "del" ts)
        self._dead: dict[tuple[str, str], tuple[_Loc, float, str]] = {}
        self._writes: dict[str, int] = {}
        self._closing = False  # close() asked: a rewrite in progress gives up, unpublished
        self._manifest_problems: list[str] = []
        self._damaged: set[str] = set()  # segments verify found changed: compaction rewrites
        self._stamp: tuple[int, int, int] | None = None
        self._wrote = False
        self._closed = False
        self._load()
        self._writes = self._load_writes()
        self._start_warming()

    # ----------------------------------------------------------------- loading

    def _mp4(self, seg: str) -> Path:
        return self.seg_dir / f"seg-{seg}.mp4"

    def _mvi(self, seg: str) -> Path:
        return self.seg_dir / f"seg-{seg}.mvi"

    def _load(self) -> None:
        stamp = self._manifest_stamp()
        parsed, records = self._manifest.load_records()
        bad_records: list[str] = []
        locs = LocBuilder()  # no object kept per body while loading (ADR 0034)
        segs: dict[str, _Segment] = {}
        loaded_at = time.time()
        for rec in records:
            op = rec["op"]
            try:
                if op == "seg":
                    if not _is_ulid(rec["seg"]) or not all(
                        type(rec.get(k)) is int for k in ("frames", "bytes", "mvi_bytes", "raw")
                    ):
                        raise ValueError("bad segment record")
                    segs[rec["seg"]] = _Segment(rec["seg"], rec)
                elif op == "put":
                    locs.put(str(rec["body_id"]), _loc_from(rec))
                elif op == "del":
                    if not isinstance(rec["ids"], list):
                        raise ValueError("bad tombstone record")
                    ts = str(rec.get("ts") or "")
                    when = _epoch(ts, loaded_at)
                    for body_id in rec["ids"]:
                        locs.delete(str(body_id), when, ts)
                elif op == "drop":
                    segs.pop(str(rec["seg"]), None)
            except (KeyError, TypeError, ValueError):
                bad_records.append(f"record with missing or bad fields: {op}")
        problems = parsed.problems + bad_records  # the parse's are complete once its records are
        table, dead = locs.build()
        del locs
        lost: dict[str, tuple[int, int]] = {}  # bodies of segments without a line: count, raw
        for seg_id, (count, raw) in table.segment_totals().items():
            segment = segs.get(seg_id)
            if segment is not None:
                segment.live_count, segment.live_bytes = count, raw
            else:
                lost[seg_id] = (count, raw)
        for seg in segs.values():
            self._load_index(seg)
        self._rebuild_lost_segments(lost, segs, problems)
        dead = {key: value for key, value in dead.items() if key[0] in segs}
        for (seg_id, _), (loc, when, _) in dead.items():
            _note_dead(segs[seg_id], loc.length, when)
        for seg in segs.values():  # deletions an older compaction forgot: count from now
            if seg.raw_bytes > seg.live_bytes + seg.dead_bytes and seg.dead_since is None:
                seg.dead_since = loaded_at
        with self._state_lock:
            self._loc, self._segs, self._dead = table, segs, dead
            self._manifest_problems = problems
            self._stamp = stamp

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._manifest.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _refresh(self) -> bool:
        """Reload if another process changed the manifest (a reader beside the writer).

        A store that has written is the writer (the scope lock allows one): it never reloads.
        """
        if self._wrote or self._manifest_stamp() == self._stamp:
            return False
        with self._write_lock:
            if self._manifest_stamp() == self._stamp:
                return False
            log.info("%s changed on disk; reloading", self._manifest.path)
            self._load()
            return True

    def _rebuild_lost_segments(
        self, lost: dict[str, tuple[int, int]], segs: dict[str, _Segment], problems: list[str]
    ) -> None:
        """Bodies whose segment line was damaged (``lost``: segment -> their count and
        bytes): describe the segment again from its .mvi."""
        for seg_id, (bodies, raw) in lost.items():
            seg = _Segment(seg_id, {"op": "seg", "seg": seg_id})
            self._load_index(seg)
            if seg.index is None:
                continue
            index = seg.index
            seg.record.update(
                frames=len(index.frames),
                bytes=index.mp4_size,
                mvi_bytes=len(mvi.dumps(index)),
                bodies=bodies,
                raw=raw,
                profile=index.profile,
                codec=index.codec,
                px=index.px_per_module,
                ecc=index.ecc,
                ts="",
            )
            seg.live_count, seg.live_bytes = bodies, raw
            segs[seg_id] = seg
            problems.append(f"segment {seg_id} had no manifest line; rebuilt from its .mvi")

    def _load_index(self, seg: _Segment) -> None:
        path = self._mvi(seg.ulid)
        try:
            seg.index = mvi.loads(path.read_bytes(), str(path))
        except FileNotFoundError:
            seg.problem = f"{path}: frame index missing"
        except CorruptionError as exc:
            seg.problem = str(exc)
        except OSError as exc:
            seg.problem = f"{path}: {exc}"
        if seg.problem:
            log.error("segment %s unreadable: %s", seg.ulid, seg.problem)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("video store is closed")

    # ------------------------------------------------------------------ writing

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Seal new bodies into new segments; durable and readable when this returns."""
        self._check_open()
        batch: dict[str, bytes] = {}
        for body_id, body in items:
            if not isinstance(body_id, str) or not body_id:
                raise ValidationError("body_id", "must be a non-empty string")
            if not isinstance(body, bytes | bytearray | memoryview):
                raise ValidationError("body", "must be bytes")
            batch.setdefault(body_id, bytes(body))
        with self._write_lock:
            self._check_open()
            self._refresh()  # catch up before becoming the writer
            self._wrote = True
            fresh = [(i, b) for i, b in batch.items() if i not in self._loc]
            written = 0
            for group in _groups(fresh):
                sealed = self._seal([b for _, b in group])
                self._publish(sealed, group)
                written += sealed.seg_index.mp4_size + sealed.mvi_bytes
            if fresh:
                self._count_writes(raw_stored=sum(len(b) for _, b in fresh),
                                   segment_bytes=written)

    def _seal(self, bodies: list[bytes]) -> _Sealed:
        """Encode and verify one segment, then rename its files into place (unpublished)."""
        return seal_segment(self.seg_dir, bodies, self._ladder, self.profile)

    def _publish(self, sealed: _Sealed, group: list[tuple[str, bytes]]) -> None:
        ts = iso(utcnow()) or ""
        index = sealed.seg_index
        raw = sum(len(b) for _, b in group)
        seg_rec = sealed.record(len(group), raw, ts)
        records: list[dict[str, Any]] = [seg_rec]
        locs: dict[str, _Loc] = {}
        for (body_id, body), (frame, offset, frames) in zip(group, sealed.locations, strict=True):
            loc = _Loc(
                sealed.ulid, frame, offset, len(body), frames, hashlib.sha256(body).hexdigest(), ts
            )
            locs[body_id] = loc
            records.append(_put_record(body_id, loc, index))
        self._manifest.append(records)
        segment = _Segment(sealed.ulid, seg_rec, index, None, len(group), raw)
        with self._state_lock:
            self._segs[sealed.ulid] = segment
            self._loc.update(locs)
            self._stamp = self._manifest_stamp()
        self._keep_sealed(sealed)

    def delete_many(self, body_ids: Iterable[str]) -> int:
        """Tombstone bodies with one fsynced manifest line; returns how many were live."""
        self._check_open()
        with self._write_lock:
            self._refresh()
            self._wrote = True
            existing = [i for i in dict.fromkeys(body_ids) if i in self._loc]
            if not existing:
                return 0
            ts = iso(utcnow()) or ""
            when = _epoch(ts, time.time())
            self._manifest.append([{"op": "del", "ids": existing, "ts": ts}])
            with self._state_lock:
                self._stamp = self._manifest_stamp()
                for body_id in existing:
                    loc = self._loc.pop(body_id)
                    seg = self._segs.get(loc.seg)
                    if seg is not None:
                        seg.live_count -= 1
                        seg.live_bytes -= loc.length
                        self._dead[(loc.seg, body_id)] = (loc, when, ts)
                        _note_dead(seg, loc.length, when)
            return len(existing)

    # ------------------------------------------------------------------ reading

    def get(self, body_id: str) -> bytes:
        self._check_open()
        self._recent_reads.append(time.monotonic())
        loc = self._loc.get(body_id)
        if loc is None and self._refresh():
            loc = self._loc.get(body_id)
        if loc is None:
            raise NotFoundError(f"body {body_id} not found")
        return self._read(body_id, loc)

    def get_many(self, body_ids: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        self._recent_reads.append(time.monotonic())
        out: dict[str, bytes] = {}
        table = self._loc
        locs = [(i, table.get(i)) for i in body_ids]
        if any(loc is None for _, loc in locs) and self._refresh():
            table = self._loc
            locs = [(i, table.get(i) if loc is None else loc) for i, loc in locs]
        for body_id, loc in locs:
            if loc is not None and body_id not in out:
                out[body_id] = self._read(body_id, loc)
        return out

    def in_memory(self, body_ids: Sequence[str]) -> bool:
        """Whether reading these bodies decodes no video (every frame they lie in is cached):
        then a reader reads them in a loop; handing ~20 us reads to a thread pool cost more
        than it saved (9 warm reads: 0.19 ms in a loop, 0.41 ms through a pool, ADR 0034)."""
        table, cache = self._loc, self._cache
        for body_id in body_ids:
            loc = table.get(body_id)
            if loc is None:
                return False
            for frame in range(loc.frame, loc.frame + loc.frames):
                if (loc.seg, frame) not in cache:
                    return False
        return True

    def contains(self, body_id: str) -> bool:
        self._check_open()
        return body_id in self._loc or (self._refresh() and body_id in self._loc)

    def ids(self) -> Iterator[str]:
        self._check_open()
        with self._state_lock:
            snapshot = list(self._loc)
        return iter(snapshot)

    def _read(self, body_id: str, loc: _Loc) -> bytes:
        for _ in range(3):
            try:
                data = self._assemble(loc)
            except _Gone:
                newer = self._loc.get(body_id)
                if newer == loc and self._refresh():
                    newer = self._loc.get(body_id)
                if newer is None or newer == loc:
                    raise CorruptionError(str(self._mp4(loc.seg)), "segment missing") from None
                loc = newer
                continue
            if not body_hash_matches(data, loc.sha256):
                raise CorruptionError(
                    str(self._mp4(loc.seg)), f"body {body_id} does not match its sha256"
                )
            return data
        raise CorruptionError(str(self._mp4(loc.seg)), f"body {body_id} kept moving")

    def _assemble(self, loc: _Loc) -> bytes:
        if loc.length == 0:
            return b""
        parts: list[bytes] = []
        need, offset = loc.length, loc.offset
        for frame in range(loc.frame, loc.frame + loc.frames):
            piece = self._frame_content(loc.seg, frame)[offset : offset + need]
            parts.append(piece)
            need -= len(piece)
            offset = 0
        if need:
            raise CorruptionError(str(self._mp4(loc.seg)), "body runs past its frames")
        return b"".join(parts)

    def _frame_content(self, seg_id: str, frame: int) -> bytes:
        """One frame's content. The payload cache holds frames checked and compressed (a
        frame's QR payload, as decoding the video gives it, is ~2.2x smaller than its text),
        so the whole store fits, and a hit costs one zstd decompression (~15 us) with no
        header walk; the small content cache keeps the frames read last decompressed."""
        key = (seg_id, frame)
        content = self._decoded.get(key)
        if content is not None:
            return content
        seg = self._segs.get(seg_id)
        if seg is None:
            raise _Gone
        if seg.index is None:
            raise CorruptionError(str(self._mp4(seg_id)), seg.problem or "segment index unreadable")
        if not 0 <= frame < len(seg.index.frames):
            raise CorruptionError(str(self._mp4(seg_id)), f"frame {frame} out of range")
        checked = self._cache.get(key)
        if checked is None:
            path = self._mp4(seg_id)
            checked = self._check_frame(seg_id, frame, _checked_payload(
                path, seg.index, frame, _read_packet(path, seg.index.frames[frame])))
            self._cache.put(key, checked)
        dictionary = self._dicts.get(seg_id) if checked.flags & framing.FLAG_DICT else None
        if checked.flags & framing.FLAG_DICT and dictionary is None:
            dictionary = self._dictionary(seg_id, seg.index)
        content = framing.frame_content(
            checked, f"{self._seg_prefix}{seg_id}.mp4#frame={frame}", dictionary)
        self._decoded.put(key, content)
        return content

    def _check_frame(self, seg_id: str, frame: int, payload: bytes) -> framing.CheckedFrame:
        """A frame's payload (checked against the frame index) checked again by its own
        header and CRC32, and that it is the frame asked for."""
        where = f"{self._seg_prefix}{seg_id}.mp4#frame={frame}"
        checked = framing.check_frame(payload, where)
        if checked.number != frame:
            raise CorruptionError(where, f"payload belongs to frame {checked.number}")
        return checked

    def _dictionary(self, seg_id: str, index: mvi.SegmentIndex) -> framing.SegmentDictionary:
        """The segment's dictionary, read once (readers that need it meanwhile wait for it:
        reading it decodes up to 22 frames)."""
        with self._state_lock:
            lock = self._dict_locks.setdefault(seg_id, threading.Lock())
        with lock:
            found = self._dicts.get(seg_id)
            if found is None:
                found = self._dicts[seg_id] = _read_dictionary(self._mp4(seg_id), index)
            return found

    # ------------------------------------------------------------------ warming

    def _start_warming(self) -> None:
        if not self._warm or self._closing:
            return
        with self._state_lock:
            if self._warmer is not None:
                return
            warmer = self._warmer = threading.Thread(target=self._warm_loop,
                                                     name="memvid-video-warm", daemon=True)
            self._warm_busy = True  # from now: ``warming`` must not say False before it runs
        warmer.start()

    @property
    def warming(self) -> bool:
        """Whether the background warmer is still filling the frame cache (reads meanwhile
        may decode their frame: a benchmark of the warm store waits for this)."""
        return self._warm_busy

    def _warm_loop(self) -> None:
        while not self._closing:
            self._warm_wake.clear()
            self._warm_busy = True
            try:
                self._warm_pass()
            except Exception:  # warming is an optimisation: never let it take the store down
                log.exception("warming the frame cache of %s failed", self.root)
                return
            finally:
                self._warm_busy = False
            self._warm_wake.wait()

    def _warm_pass(self) -> None:
        """Decode the frames of every segment not yet warmed into the cache, newest segment
        first (recent memories are asked for most), until the cache has no room."""
        with self._state_lock:
            segs = sorted(self._segs.values(), key=lambda s: s.ulid, reverse=True)
        self._warmed &= {s.ulid for s in segs}
        for seg in segs:
            if seg.ulid in self._warmed or seg.index is None:
                continue
            if not self._warm_segment(seg.ulid, seg.index):
                return
            self._warmed.add(seg.ulid)

    def _warm_segment(self, seg_id: str, index: mvi.SegmentIndex) -> bool:
        """False when warming should stop (closing, or the cache is full)."""
        path = self._mp4(seg_id)
        frame = 0
        while frame < len(index.frames):
            if self._closing:
                return False
            entry = index.frames[frame]
            key = (seg_id, frame)
            frame += 1
            if key in self._cache:
                continue
            if self._cache.size_bytes + entry.payload_len > self._cache.max_bytes:
                return False
            try:
                payload = _checked_payload(path, index, frame - 1, _read_packet(path, entry))
                if framing.is_dictionary_piece(payload):
                    copies = framing.decode_frame(payload, str(path)).first_ordinal
                    self._dictionary(seg_id, index)
                    frame = max(frame, copies * framing.DICT_COPIES)
                    continue
                checked = self._check_frame(seg_id, frame - 1, payload)
            except _Gone:
                return True  # compacted away meanwhile
            except (CorruptionError, StorageError) as exc:
                log.debug("warming skipped %s#frame=%d: %s", path, frame - 1, exc)
                continue
            if not self._cache.put_if_room(key, checked):
                return False
            time.sleep(0)  # let a search waiting for the GIL have it between frames
        return True

    def _keep_sealed(self, sealed: _Sealed) -> None:
        """A warmed store caches the frames it just sealed: no decode to read them back."""
        if not self._warm:
            return
        pieces: dict[int, framing.Frame] = {}
        try:  # the segment is durable already: a frame that will not cache is read later
            for frame, payload in enumerate(sealed.payloads):
                if framing.is_dictionary_piece(payload):
                    pieces[frame] = framing.decode_frame(payload, str(self._mp4(sealed.ulid)))
                elif not self._cache.put_if_room((sealed.ulid, frame), self._check_frame(
                        sealed.ulid, frame, payload)):
                    break
            if pieces:
                self._dicts.setdefault(sealed.ulid, framing.assemble_dictionary(
                    pieces, str(self._mp4(sealed.ulid))))
        except CorruptionError as exc:
            log.warning("not caching the frames of %s just sealed: %s", sealed.ulid, exc)
        self._warm_wake.set()

    # ------------------------------------------------------------- maintenance

    def verify(self, progress: ProgressCallback | None = None) -> list[Problem]:
        """Check both files of every segment against the SHA-256 recorded at seal, decode
        every frame, and report each problem with exactly the ids whose payload is damaged."""
        self._check_open()
        manifest_path = str(self._manifest.path)
        problems = [Problem(manifest_path, msg) for msg in self._manifest_problems]
        with self._state_lock:
            segs = list(self._segs.values())
            locs = dict(self._loc)
        by_frame: dict[tuple[str, int], set[str]] = {}
        by_seg: dict[str, list[tuple[str, _Loc]]] = {}
        for body_id, loc in locs.items():
            by_seg.setdefault(loc.seg, []).append((body_id, loc))
            for f in range(loc.frame, loc.frame + max(1, loc.frames)):
                by_frame.setdefault((loc.seg, f), set()).add(body_id)
        for seg_id, members in by_seg.items():
            if seg_id not in self._segs:
                ids = tuple(sorted(i for i, _ in members))
                problems.append(Problem(str(self._mp4(seg_id)), "segment not in manifest", ids))
        total = sum(len(s.index.frames) for s in segs if s.index is not None)
        done = 0
        unrecorded: dict[str, tuple[str, str]] = {}  # sound 0.1.0 segments: their checksums
        for seg in segs:
            members = by_seg.get(seg.ulid, [])
            seg_ids = tuple(sorted(i for i, _ in members))
            if seg.index is None:
                problems.append(Problem(
                    str(self._mvi(seg.ulid)),
                    f"{seg.problem or 'frame index unreadable'}; its memories cannot be read "
                    f"(the .mp4 still holds their text)", seg_ids))
                continue
            found, sums = self._verify_segment(seg, members, by_frame)
            problems.extend(found)
            done += len(seg.index.frames)
            if progress is not None:
                progress(done, total)
            if found and not self.read_only:
                self._damaged.add(seg.ulid)
            elif not found and "mp4_sha256" not in seg.record and sums is not None:
                unrecorded[seg.ulid] = sums
        if unrecorded and not self.read_only:
            self._record_checksums(unrecorded)
        return problems

    def _verify_segment(
        self,
        seg: _Segment,
        members: list[tuple[str, _Loc]],
        by_frame: dict[tuple[str, int], set[str]],
    ) -> tuple[list[Problem], tuple[str, str] | None]:
        """Problems of one segment, and the (mp4, mvi) SHA-256 of its files as read."""
        assert seg.index is not None
        mp4_path, mvi_path = self._mp4(seg.ulid), self._mvi(seg.ulid)
        seg_ids = tuple(sorted(i for i, _ in members))
        try:
            mvi_data = mvi_path.read_bytes()
            data = mp4_path.read_bytes()
        except OSError as exc:
            return [Problem(str(mp4_path), f"segment unreadable: {exc}", seg_ids)], None
        problems, contents, failed = _verify_frames(mp4_path, data, seg.index, by_frame,
                                                    seg.ulid)
        bad_ids = {i for p in problems for i in p.memory_ids}
        for body_id, loc in members:
            if body_id in bad_ids or loc.length == 0:
                continue
            body = _join(contents, loc)
            if body is None or not body_hash_matches(body, loc.sha256):
                bad_ids.add(body_id)
                problems.append(
                    Problem(str(mp4_path), "body does not match its sha256", (body_id,)))
        mp4_sha = hashlib.sha256(data).hexdigest()
        mvi_sha = hashlib.sha256(mvi_data).hexdigest()
        expected = seg.record.get("mp4_sha256")
        if isinstance(expected, str) and mp4_sha != expected:
            if bad_ids:
                shown = ", ".join(map(str, failed[:10])) + (", ..." if len(failed) > 10 else "")
                message = (f"whole-file SHA-256 differs from the one recorded at seal; frames "
                           f"[{shown}] no longer decode to their payload: {len(bad_ids)} "
                           "memories damaged (named), the rest of the segment is intact")
            else:
                message = ("whole-file SHA-256 differs from the one recorded at seal, but every "
                           "frame still decodes to its payload: only container bytes changed "
                           "(header, sample tables or padding), no memory is damaged; repair "
                           "rewrites the segment")
            problems.append(Problem(str(mp4_path), message, tuple(sorted(bad_ids))))
        expected_mvi = seg.record.get("mvi_sha256")
        mvi_changed = isinstance(expected_mvi, str) and mvi_sha != expected_mvi
        if not mvi_changed:  # 0.1.0 segments: the file must still parse to the loaded index
            try:
                mvi_changed = mvi.loads(mvi_data, str(mvi_path)) != seg.index
            except CorruptionError:
                mvi_changed = True
        if mvi_changed:
            problems.append(Problem(
                str(mvi_path),
                "frame index changed on disk since it was sealed (SHA-256 mismatch); the copy "
                "loaded before the change still reads every frame, so no memory is damaged yet, "
                "but the next open would lose the index: repair rewrites the segment now"))
        return problems, (mp4_sha, mvi_sha)

    def _record_checksums(self, sums: dict[str, tuple[str, str]]) -> None:
        """Record file checksums of sound segments sealed before seg lines carried them."""
        with self._write_lock:
            self._refresh()
            self._wrote = True
            records = []
            for seg_id, (mp4_sha, mvi_sha) in sums.items():
                seg = self._segs.get(seg_id)
                if seg is None or "mp4_sha256" in seg.record:
                    continue
                records.append({**seg.record, "mp4_sha256": mp4_sha, "mvi_sha256": mvi_sha})
            if not records:
                return
            self._manifest.append(records)
            with self._state_lock:
                for record in records:
                    self._segs[record["seg"]].record = record
                self._stamp = self._manifest_stamp()
            log.info("recorded file checksums of %d segments sealed by an older version",
                     len(records))

    def compact(self, progress: ProgressCallback | None = None) -> CompactReport:
        """Rewrite segments whose live share fell below the threshold, merge small ones.

        New segments are sealed first, then one atomic manifest rewrite swaps them in, and
        only then are old files deleted: a crash at any point leaves a readable store.
        """
        self._check_open()
        with self._write_lock:
            self._refresh()
            self._wrote = True
            self._remove_orphans()
            segs = list(self._segs.values())
            victims = [s for s in segs if s.live_share < self.live_threshold]
            small = [s for s in segs if s not in victims and s.stored_bytes < SMALL_SEGMENT_BYTES]
            if len(small) >= 2 or (victims and small):  # merge into what is written anyway
                victims += small
            # Segments verify found changed (checksum, frame bytes) are rewritten from their
            # readable bodies; one still holding an unreadable body waits for repair.
            victims += [s for s in segs if s.ulid in self._damaged and s not in victims
                        and self._all_readable(s.ulid)]
            return self._rewrite(victims, progress)

    def purge(self, progress: ProgressCallback | None = None) -> CompactReport:
        """Rewrite every segment that still holds text of a deleted body, now."""
        self._check_open()
        with self._write_lock:
            self._refresh()
            self._wrote = True
            self._remove_orphans()
            victims = [s for s in self._segs.values() if s.holds_deleted]
            return self._rewrite(victims, progress)

    def compact_step(self, now: float | None = None) -> CompactReport | None:
        """One unit of background compaction (tiering.plan): a size-tiered merge, or the
        rewrite of segments holding text deleted over ``purge_after`` seconds before ``now``
        or mostly dead. None when there is nothing to do, or while a merge waits for a pause
        in reads (``MERGE_BUSY_READS``, at most ``MERGE_MAX_WAIT_SECONDS``, ADR 0032)."""
        self._check_open()
        if self.read_only:
            return None
        now = time.time() if now is None else now
        with self._write_lock:
            if self._closing:
                return None
            self._refresh()
            infos = [tiering.SegmentInfo(s.ulid, s.raw_bytes, s.live_bytes,
                                         s.dead_since if s.holds_deleted else None)
                     for s in self._segs.values() if s.index is not None]
            plans = tiering.plan(infos, base=self.tier_base, cap=SEGMENT_RAW_LIMIT,
                                 live_threshold=self.live_threshold,
                                 purge_before=now - self.purge_after)
            if not plans or (plans[0].reason == "merge" and self._merge_should_wait()):
                return None
            self._merge_waiting_since = None
            self._wrote = True
            chosen = set(plans[0].segments)
            log.info("background compaction (%s): rewriting %d segments", plans[0].reason,
                     len(chosen))
            return self._rewrite([s for s in self._segs.values() if s.ulid in chosen], None)

    def _merge_should_wait(self) -> bool:
        """Whether a merge should wait for a pause in reads (searches are reading now)."""
        now = time.monotonic()
        reads = self._recent_reads
        if len(reads) < MERGE_BUSY_READS or now - reads[0] >= MERGE_QUIET_SECONDS:
            return False
        if self._merge_waiting_since is None:
            self._merge_waiting_since = now
        return now - self._merge_waiting_since < MERGE_MAX_WAIT_SECONDS

    def _rewrite(self, victims: list[_Segment], progress: ProgressCallback | None
                 ) -> CompactReport:
        """Seal the live bodies of ``victims`` into new segments, swap them in with one atomic
        manifest rewrite (the commit point), then delete the old files. Caller holds the
        write lock."""
        segs = list(self._segs.values())
        before = sum(s.stored_bytes for s in segs)
        if not victims:
            return CompactReport(bytes_before=before, bytes_after=before)
        victim_ids = {s.ulid for s in victims}
        order = {s.ulid: n for n, s in enumerate(segs)}
        moving = sorted(
            ((i, loc) for i, loc in self._loc.items() if loc.seg in victim_ids),
            key=lambda item: (order[item[1].seg], item[1].frame, item[1].offset),
        )
        bodies: list[tuple[str, bytes]] = []
        for n, (body_id, loc) in enumerate(moving):
            bodies.append((body_id, self._read(body_id, loc)))
            if progress is not None:
                progress(n + 1, len(moving) * 2)
        new_segs: list[_Segment] = []
        sealed_now: list[_Sealed] = []
        new_locs: dict[str, _Loc] = {}
        ts = iso(utcnow()) or ""
        try:
            for group in _groups(bodies):
                if self._closing:
                    raise _Abandoned
                sealed = self._seal([b for _, b in group])
                raw = sum(len(b) for _, b in group)
                rec = sealed.record(len(group), raw, ts)
                if self._warm:  # its payloads go to the cache once published
                    sealed_now.append(sealed)
                new_segs.append(_Segment(sealed.ulid, rec, sealed.seg_index, None, len(group),
                                         raw))
                for (body_id, body), (f, off, nf) in zip(group, sealed.locations, strict=True):
                    old = self._loc[body_id]
                    new_locs[body_id] = _Loc(sealed.ulid, f, off, len(body), nf, old.sha256,
                                             old.ts)
        except _Abandoned:  # closing: nothing was published; the files are orphans
            for seg in new_segs:
                self._mp4(seg.ulid).unlink(missing_ok=True)
                self._mvi(seg.ulid).unlink(missing_ok=True)
            return CompactReport(bytes_before=before, bytes_after=before)
        if progress is not None:
            progress(len(moving) * 2, len(moving) * 2)
        kept = [s for s in segs if s.ulid not in victim_ids] + new_segs
        final = self._loc.moved(new_locs)
        dead = {key: value for key, value in self._dead.items() if key[0] not in victim_ids}
        self._manifest.rewrite(_manifest_records(kept, final, dead))  # the commit point
        with self._state_lock:
            self._segs = {s.ulid: s for s in kept}
            self._loc = final
            self._dead = dead
            self._manifest_problems = []
            self._stamp = self._manifest_stamp()
        self._damaged -= victim_ids
        for seg in victims:
            self._mp4(seg.ulid).unlink(missing_ok=True)
            self._mvi(seg.ulid).unlink(missing_ok=True)
        fsync_dir(self.seg_dir)
        for cache in (self._cache, self._decoded):
            cache.discard_where(lambda key: isinstance(key, tuple) and key[0] in victim_ids)
        for ulid in victim_ids:
            self._dicts.pop(ulid, None)
            self._dict_locks.pop(ulid, None)
        for sealed in sealed_now:
            self._keep_sealed(sealed)
        self._count_writes(raw_rewritten=sum(len(b) for _, b in bodies),
                           segment_bytes_rewritten=sum(s.stored_bytes for s in new_segs))
        after = sum(s.stored_bytes for s in kept)
        return CompactReport(
            segments_rewritten=sum(1 for s in victims if s.live_count > 0),
            segments_removed=len(victims),
            bodies_moved=len(moving),
            bytes_before=before,
            bytes_after=after,
        )

    # ----------------------------------------------------------- write counters

    def _load_writes(self) -> dict[str, int]:
        """Counters of bytes written to segments since the store began (an older store:
        estimated from its present segments)."""
        try:
            data = json.loads((self.root / WRITES_FILE).read_text(encoding="ascii"))
            if data.get("format") == 1:
                return {k: int(data.get(k, 0)) for k in _WRITE_KEYS}
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        segs = list(self._segs.values())
        return {"raw_stored": sum(s.raw_bytes for s in segs),
                "segment_bytes": sum(s.stored_bytes for s in segs),
                "raw_rewritten": 0, "segment_bytes_rewritten": 0}

    def _count_writes(self, **added: int) -> None:
        for key, value in added.items():
            self._writes[key] = self._writes.get(key, 0) + value
        try:
            atomic_write(self.root / WRITES_FILE,
                         json.dumps({"format": 1, **self._writes}).encode("ascii"),
                         sync_dir=False)
        except StorageError as exc:  # counters only: never fail a seal for them
            log.warning("could not record segment write counters: %s", exc)

    def _all_readable(self, seg_id: str) -> bool:
        for body_id, loc in list(self._loc.items()):
            if loc.seg == seg_id:
                try:
                    self._read(body_id, loc)
                except CorruptionError:
                    return False
        return True

    def _remove_orphans(self) -> None:
        """Delete files no manifest line references (left by a crash mid-seal or compaction)."""
        referenced = set(self._segs) | self._loc.segments()
        for path in self.seg_dir.iterdir():
            match = _SEG_FILE.match(path.name)
            orphan = path.name.startswith(".seg-") or (match and match.group(1) not in referenced)
            if orphan:
                log.info("removing orphan %s", path)
                path.unlink(missing_ok=True)
        self._manifest.tmp_path.unlink(missing_ok=True)
        for tmp in self.root.glob(f".{WRITES_FILE}.tmp-*"):
            tmp.unlink(missing_ok=True)

    def stats(self) -> StorageStats:
        self._check_open()
        with self._state_lock:
            segs = list(self._segs.values())
            live = len(self._loc)
        body_bytes = sum(s.live_bytes for s in segs)
        raw = sum(s.raw_bytes for s in segs)
        mp4_bytes = sum(int(s.record.get("bytes", 0)) for s in segs)
        writes = dict(self._writes)
        stored_raw = writes.get("raw_stored", 0)
        mvi_bytes = sum(int(s.record.get("mvi_bytes", 0)) for s in segs)
        try:
            manifest_bytes = self._manifest.path.stat().st_size
        except OSError:
            manifest_bytes = 0
        return StorageStats(
            bodies=live,
            body_bytes=body_bytes,
            stored_bytes=mp4_bytes + mvi_bytes,
            details={
                "profile": self.profile,
                "warming": self.warming,  # the frame cache is still being filled (ADR 0032)
                "segments": len(segs),
                "frames": sum(int(s.record.get("frames", 0)) for s in segs),
                "mp4_bytes": mp4_bytes,
                "mvi_bytes": mvi_bytes,
                "manifest_bytes": manifest_bytes,
                "live_share": round(body_bytes / raw, 4) if raw else 1.0,
                "deleted_text_bytes": sum(s.raw_bytes - s.live_bytes for s in segs),
                # bytes written to segments (seals + rewrites) per raw text byte stored
                "write_amplification": round(
                    (writes.get("segment_bytes", 0) + writes.get("segment_bytes_rewritten", 0))
                    / stored_raw, 4) if stored_raw else 0.0,
                # raw text re-sealed by compaction per raw text byte stored
                "rewrite_ratio": round(writes.get("raw_rewritten", 0) / stored_raw, 4)
                if stored_raw else 0.0,
                **{f"writes_{k}": v for k, v in writes.items()},
                "cache_bytes": self._cache.size_bytes,
                "cache_hits": self._cache.hits,
                "cache_misses": self._cache.misses,
            },
        )

    def close(self) -> None:
        """Stop a background rewrite (unpublished) and the warmer, and wait for the writer."""
        self._closing = True
        self._warm_wake.set()
        warmer = self._warmer
        if warmer is not None and warmer is not threading.current_thread():
            warmer.join()
        with self._write_lock:
            self._closed = True
            self._cache.clear()
            self._decoded.clear()
            self._dicts.clear()


# ---------------------------------------------------------------------- helpers


def _checked_size(frame: framing.CheckedFrame) -> int:
    return frame.size


def _groups(items: list[tuple[str, bytes]]) -> Iterator[list[tuple[str, bytes]]]:
    group: list[tuple[str, bytes]] = []
    size = 0
    for item in items:
        if group and size + len(item[1]) > SEGMENT_RAW_LIMIT:
            yield group
            group, size = [], 0
        group.append(item)
        size += len(item[1])
    if group:
        yield group


def _note_dead(seg: _Segment, length: int, when: float) -> None:
    seg.dead_bytes += length
    seg.dead_since = when if seg.dead_since is None else min(seg.dead_since, when)


def _epoch(ts: str, default: float) -> float:
    try:
        return datetime.fromisoformat(ts).timestamp()
    except (TypeError, ValueError):
        return default


def _manifest_records(kept: list[_Segment], live: Mapping[str, _Loc],
                      dead: dict[tuple[str, str], tuple[_Loc, float, str]]
                      ) -> list[dict[str, Any]]:
    """A whole manifest: segments, then the deleted bodies they still hold (put, then del
    with the original time: the purge deadline survives a restart), then the live bodies."""
    indexes = {s.ulid: s.index for s in kept}
    records: list[dict[str, Any]] = [s.record for s in kept]
    by_ts: dict[str, list[str]] = {}
    for (_, body_id), (loc, _, ts) in dead.items():
        records.append(_put_record(body_id, loc, indexes.get(loc.seg)))
        by_ts.setdefault(ts, []).append(body_id)
    records += [{"op": "del", "ids": ids, "ts": ts} for ts, ids in by_ts.items()]
    # a segment's bodies together, in frame order: its puts encode as few groups
    ordered = sorted(live.items(), key=lambda item: (item[1].seg, item[1].frame, item[1].offset))
    records += [_put_record(i, loc, indexes.get(loc.seg)) for i, loc in ordered]
    return records


def _is_ulid(value: object) -> bool:
    return isinstance(value, str) and _ULID.match(value) is not None


def _loc_from(rec: dict[str, Any]) -> _Loc:
    if not _is_ulid(rec["seg"]):
        raise ValueError("bad segment id")
    # one string object per segment and per sealing time (the few puts the packed table keeps
    # as tuples share them, ADR 0032 / 0034)
    return _Loc(
        sys.intern(str(rec["seg"])),
        int(rec["frame"]),
        int(rec["offset"]),
        int(rec["len"]),
        int(rec.get("frames", 1)),
        str(rec["sha256"]),
        sys.intern(str(rec.get("ts", ""))),
    )


def _put_record(body_id: str, loc: _Loc, index: mvi.SegmentIndex | None) -> dict[str, Any]:
    qr_version = 0
    ecc = ""
    if index is not None:
        ecc = index.ecc
        if loc.frame < len(index.frames):
            qr_version = index.frames[loc.frame].qr_version
    return {
        "op": "put",
        "body_id": body_id,
        "sha256": loc.sha256,
        "len": loc.length,
        "seg": loc.seg,
        "frame": loc.frame,
        "offset": loc.offset,
        "length": loc.length,
        "frames": loc.frames,
        "qr_version": qr_version,
        "ecc": ecc,
        "ts": loc.ts,
    }


def _index_of(
    written: codec.WrittenSegment,
    settings: codec.EncodeSettings,
    payloads: list[bytes],
    versions: list[int],
) -> mvi.SegmentIndex:
    return mvi.SegmentIndex(
        profile=settings.profile,
        codec=written.codec,
        pix_fmt=settings.pix_fmt,
        width=written.width,
        height=written.height,
        px_per_module=settings.px_per_module,
        ecc=settings.ecc,
        time_base=written.time_base,
        mp4_size=written.size,
        extradata=written.extradata,
        frames=tuple(
            mvi.FrameEntry(off, size, pts, crc, len(payload), zlib.crc32(payload), version)
            for (off, size, pts), crc, payload, version in zip(
                written.packets, written.packet_crcs, payloads, versions, strict=True
            )
        ),
    )


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _read_packet(path: Path, entry: mvi.FrameEntry) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise _Gone from None
    except OSError as exc:
        raise StorageError(f"{path}: {exc}") from exc
    try:
        return os.pread(fd, entry.size, entry.offset)
    finally:
        os.close(fd)


def _checked_payload(path: Path, index: mvi.SegmentIndex, frame: int, packet: bytes) -> bytes:
    """The QR payload of one frame's packet, checked against the frame index."""
    entry = index.frames[frame]
    where = f"{path}#frame={frame}"
    payload = codec.read_frame_payload(
        index.codec, index.extradata, index.width, index.height, packet, index.px_per_module,
        entry.qr_version, entry.payload_len, entry.payload_crc)
    if payload is None:
        raise CorruptionError(where, "frame does not decode to a QR symbol")
    if len(payload) != entry.payload_len or zlib.crc32(payload) != entry.payload_crc:
        raise CorruptionError(where, "decoded payload differs from the frame index")
    return payload


def _payload_frame(path: Path, index: mvi.SegmentIndex, frame: int, packet: bytes,
                   dictionary: framing.SegmentDictionary | None = None) -> framing.Frame:
    where = f"{path}#frame={frame}"
    payload = _checked_payload(path, index, frame, packet)
    decoded = framing.decode_frame(payload, where, dictionary)
    if decoded.index != frame:
        raise CorruptionError(where, f"payload belongs to frame {decoded.index}")
    return decoded


def _decode_frame(path: Path, index: mvi.SegmentIndex, frame: int,
                  dictionary: framing.SegmentDictionary | None = None) -> bytes:
    packet = _read_packet(path, index.frames[frame])
    return _payload_frame(path, index, frame, packet, dictionary).content


def _read_dictionary(path: Path, index: mvi.SegmentIndex) -> framing.SegmentDictionary:
    """The segment's dictionary from its first frames, each slice from either copy."""
    pieces: dict[int, framing.Frame] = {}
    per_copy = None
    for frame in range(len(index.frames)):
        if per_copy is not None and frame >= per_copy * framing.DICT_COPIES:
            break
        try:
            decoded = _payload_frame(path, index, frame, _read_packet(path, index.frames[frame]))
        except framing.DictionaryNeeded:
            break  # a body frame: the dictionary frames are behind
        except CorruptionError:
            continue
        if not decoded.flags & framing.FLAG_DICT_PIECE:
            break
        per_copy = decoded.first_ordinal
        pieces[frame] = decoded
        if per_copy and frame < per_copy and all(k in pieces for k in range(per_copy)):
            break  # the first copy is whole
    return framing.assemble_dictionary(pieces, str(path))


def decode_frame_content(path: Path, index: mvi.SegmentIndex, frame: int,
                         dictionaries: dict[str, framing.SegmentDictionary] | None = None
                         ) -> bytes:
    """The content one frame of a sealed segment file carries (checked against its index);
    a segment's dictionary is read when its frames need one, and kept in ``dictionaries``
    (by file name) when the caller passes a dict to reuse it."""
    cache = {} if dictionaries is None else dictionaries
    try:
        return _decode_frame(path, index, frame, cache.get(path.name))
    except framing.DictionaryNeeded:
        cache[path.name] = _read_dictionary(path, index)
        return _decode_frame(path, index, frame, cache[path.name])


def _verify_frames(
    path: Path,
    data: bytes,
    index: mvi.SegmentIndex,
    by_frame: dict[tuple[str, int], set[str]],
    seg_id: str,
) -> tuple[list[Problem], dict[int, bytes], list[int]]:
    """One problem per changed frame, the content of every frame that decodes intact, and the
    frames that do not.

    A frame names its bodies only when its payload is damaged (it no longer decodes to what
    was sealed); changed bytes that QR error correction still reads back name none.
    """
    problems: list[Problem] = []
    if len(data) != index.mp4_size:
        problems.append(Problem(str(path), f"size {len(data)} differs from index {index.mp4_size}"))
    contents: dict[int, bytes] = {}
    failed: list[int] = []
    pieces: dict[int, framing.Frame] = {}  # the dictionary's frames, as they decode
    dictionary: framing.SegmentDictionary | None = None
    for n, entry in enumerate(index.frames):
        packet = data[entry.offset : entry.offset + entry.size]
        changed = zlib.crc32(packet) != entry.packet_crc
        try:
            try:
                decoded = _payload_frame(path, index, n, packet, dictionary)
            except framing.DictionaryNeeded:
                dictionary = framing.assemble_dictionary(pieces, str(path))
                decoded = _payload_frame(path, index, n, packet, dictionary)
            if decoded.flags & framing.FLAG_DICT_PIECE:
                pieces[n] = decoded
            else:
                contents[n] = decoded.content
        except CorruptionError as exc:
            notes = ["frame bytes changed (CRC mismatch)"] if changed else []
            notes.append(str(exc).split(": ", 1)[-1])
            ids = tuple(sorted(by_frame.get((seg_id, n), ())))
            problems.append(Problem(str(path), f"frame {n}: {'; '.join(notes)}", ids))
            failed.append(n)
            continue
        if changed:
            problems.append(Problem(str(path), f"frame {n}: frame bytes changed (CRC mismatch) "
                                               "but its payload still decodes intact: no "
                                               "memory damaged; repair rewrites the segment"))
    return problems, contents, failed


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _join(contents: dict[int, bytes], loc: _Loc) -> bytes | None:
    parts = []
    need, offset = loc.length, loc.offset
    for frame in range(loc.frame, loc.frame + loc.frames):
        content = contents.get(frame)
        if content is None:
            return None
        piece = content[offset : offset + need]
        parts.append(piece)
        need -= len(piece)
        offset = 0
    return b"".join(parts) if need == 0 else None


def seal_segment(seg_dir: Path, bodies: list[bytes], ladder: Sequence[codec.EncodeSettings],
                 profile: str) -> _Sealed:
    """Encode and verify one segment of ``bodies`` as ``seg-<ulid>.mp4`` + ``.mvi`` in
    ``seg_dir`` (fsynced, renamed into place, published by nobody yet): the embedded store
    and the team engine (which uploads the two files) seal the same way."""
    failed: list[int] = []
    encode_error: StorageError | None = None
    for settings in ladder:
        packed = framing.Packer(settings.capacity).pack(bodies)
        symbols, versions = codec.encode_symbols(packed.payloads, settings)
        seg = str(ULID())
        tmp_mp4 = seg_dir / f".seg-{seg}.mp4.tmp"
        tmp_mvi = seg_dir / f".seg-{seg}.mvi.tmp"
        try:
            try:
                written = codec.write_segment(tmp_mp4, symbols, settings)
            except StorageError as exc:  # this setting cannot encode here: try the next
                log.warning("seal: %s; trying safer settings", exc)
                encode_error = exc
                continue
            failed = _check_written(
                tmp_mp4, written, packed.payloads, settings.px_per_module
            )
            if failed:
                log.warning(
                    "seal verification: %d of %d frames did not decode with %s/%s "
                    "%dpx ECC %s; re-encoding with safer settings",
                    len(failed),
                    len(packed.payloads),
                    settings.profile,
                    settings.encoder,
                    settings.px_per_module,
                    settings.ecc,
                )
                continue
            index = _index_of(written, settings, packed.payloads, versions)
            data = mvi.dumps(index)
            _write_file(tmp_mvi, data)
            mp4_sha = _file_sha256(tmp_mp4)
            os.replace(tmp_mp4, seg_dir / f"seg-{seg}.mp4")
            os.replace(tmp_mvi, seg_dir / f"seg-{seg}.mvi")
            fsync_dir(seg_dir)
            return _Sealed(seg, index, len(data), packed.locations, settings, mp4_sha,
                           hashlib.sha256(data).hexdigest(), tuple(packed.payloads))
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"{seg_dir}: sealing failed: {exc}") from exc
        finally:
            for tmp in (tmp_mp4, tmp_mvi):
                tmp.unlink(missing_ok=True)
    if encode_error is not None and not failed:
        raise encode_error
    raise CorruptionError(
        str(seg_dir),
        f"frames {failed[:10]} did not decode back under any {profile} setting; "
        "nothing was published",
    )


def _check_written(
    path: Path, written: codec.WrittenSegment, payloads: list[bytes], px: int
) -> list[int]:
    """Indexes of frames whose decoded QR payload differs from what was encoded."""
    if len(written.packets) != len(payloads):
        return list(range(len(payloads)))
    data = path.read_bytes()
    bad = []
    for i, (offset, size, _pts) in enumerate(written.packets):
        got = codec.decode_payload(
            written.codec,
            written.extradata,
            written.width,
            written.height,
            data[offset : offset + size],
            px,
        )
        if got != payloads[i]:
            bad.append(i)
    return bad
