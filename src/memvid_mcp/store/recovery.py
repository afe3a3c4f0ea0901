"""Find a memory's text anywhere in its scope directory, when its body cannot be read.

Before anything drops a memory as unreadable, every place the text may still exist is
searched: the write-ahead log (live and quarantined files), the other backend's files (a 0.1.0
scope written by clients with different backend settings), the quarantine's JSON lines and body
copies, the damaged body itself, and finally every body the video segment files still hold
(read without their frame index or the manifest: since ADR 0018 a segment is the only copy of
a sealed text). A candidate counts only when it matches the
record: same UTF-8 size and the same SHA-256 under either identity version, so a stale or
damaged copy is never served as the memory (ADR 0012).
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path

import zstandard

from ..core.errors import CorruptionError, MemvidError
from ..core.hashing import IDENTITY_VERSIONS, content_sha256
from ..core.models import MemoryRecord
from ..storage.base import StorageAdapter
from ..storage.filestore import FileStore, decode_body
from ..storage.video.manifest import FILE_NAME as MANIFEST_FILE
from ..storage.video.manifest import LEGACY_NAME as LEGACY_MANIFEST
from .wal import decode_records

log = logging.getLogger(__name__)

_MVB_HEADER = struct.Struct("<4sBBII")


def matches(record: MemoryRecord, text: str) -> bool:
    """Whether ``text`` is this record's body (size and hash under any identity version)."""
    if len(text.encode("utf-8")) != record.size:
        return False
    return any(content_sha256(text, v) == record.sha256 for v in IDENTITY_VERSIONS)


def find_texts(directory: Path, wanted: Mapping[str, MemoryRecord], *,
               live_backend: str) -> dict[str, str]:
    """Verified texts by body id for the records in ``wanted`` (keyed by body id)."""
    found: dict[str, str] = {}
    for body_id, text in _candidates(directory, set(wanted), live_backend):
        record = wanted.get(body_id)
        if record is not None and body_id not in found and matches(record, text):
            found[body_id] = text
            if len(found) == len(wanted):
                return found
    rest = {b: r for b, r in wanted.items() if b not in found}
    if rest:
        found.update(_from_segments(directory, rest))
    return found


def _from_segments(directory: Path, wanted: Mapping[str, MemoryRecord]) -> dict[str, str]:
    """Bodies found in any segment file, matched to records by size and hash (their ids are
    not in the frames)."""
    from ..storage.video.salvage import segment_bodies

    found: dict[str, str] = {}
    by_size: dict[int, list[str]] = {}
    for body_id, record in wanted.items():
        by_size.setdefault(record.size, []).append(body_id)
    for mp4 in sorted((directory / "segments").glob("seg-*.mp4")):
        for body in segment_bodies(mp4):
            for body_id in by_size.get(len(body), []):
                if body_id in found:
                    continue
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    break
                if matches(wanted[body_id], text):
                    found[body_id] = text
        if len(found) == len(wanted):
            break
    return found


def salvage(directory: Path, body_id: str) -> str | None:
    """Best-effort text of a damaged file body (checks skipped); None when nothing decodes.
    Unverified: it goes to the quarantine beside the record, never back into the store."""
    for path in (directory / "bodies").glob(f"*/{body_id}.mvb"):
        try:
            data = path.read_bytes()
            length = _MVB_HEADER.unpack_from(data)[4]
            obj = zstandard.ZstdDecompressor().decompressobj()
            raw = obj.decompress(data[_MVB_HEADER.size:])[: max(length, 0)]
        except (OSError, struct.error, zstandard.ZstdError):
            continue
        if raw:
            return raw.decode("utf-8", "replace")
    return None


def _candidates(directory: Path, wanted: set[str], live_backend: str
                ) -> Iterator[tuple[str, str]]:
    quarantine = directory / "quarantine"
    wal_files = sorted((directory / "wal").glob("*.log"))
    if quarantine.is_dir():
        wal_files += sorted(quarantine.glob("*/wal/*.log"))
    for path in wal_files:
        yield from _from_wal(path, wanted)
    yield from _from_backends(directory, wanted, live_backend)
    if quarantine.is_dir():
        for path in sorted(quarantine.glob("*/*.jsonl")):
            yield from _from_jsonl(path, wanted)
        for path in sorted(quarantine.rglob("*.mvb")):
            if path.stem in wanted:
                yield from _from_mvb(path)
    for body_id in wanted:  # the live body itself: a damaged header around an intact text
        text = salvage(directory, body_id)
        if text is not None:
            yield body_id, text


def _from_wal(path: Path, wanted: set[str]) -> Iterator[tuple[str, str]]:
    try:
        records, _stopped = decode_records(path.read_bytes(), str(path))
    except (OSError, CorruptionError):
        return
    for rec in records:
        payload = rec.payload
        if payload.get("op") != "put" or not isinstance(payload.get("record"), dict):
            continue
        body_id = payload["record"].get("body_id")
        if body_id in wanted and isinstance(payload.get("text"), str):
            yield body_id, payload["text"]


def _from_backends(directory: Path, wanted: set[str], live_backend: str
                   ) -> Iterator[tuple[str, str]]:
    stores: list[StorageAdapter] = []
    try:
        if live_backend != "file" and (directory / "bodies").is_dir():
            stores.append(FileStore(directory, read_only=True))
        if live_backend != "video" and any(
                (directory / name).is_file() for name in (MANIFEST_FILE, LEGACY_MANIFEST)):
            from ..storage.video import VideoStore

            stores.append(VideoStore(directory, read_only=True))
    except MemvidError as exc:
        log.warning("%s: cannot open the other backend's files: %s", directory, exc)
    for store in stores:
        try:
            for body_id in sorted(wanted):
                try:
                    if store.contains(body_id):
                        yield body_id, store.get(body_id).decode("utf-8")
                except (MemvidError, UnicodeDecodeError) as exc:
                    log.warning("%s: body %s unreadable there too: %s", directory, body_id, exc)
        finally:
            store.close()


def _from_jsonl(path: Path, wanted: set[str]) -> Iterator[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("body_id") in wanted \
                and isinstance(data.get("text"), str):
            yield data["body_id"], data["text"]


def _from_mvb(path: Path) -> Iterator[tuple[str, str]]:
    try:
        yield path.stem, decode_body(path.read_bytes(), str(path)).decode("utf-8")
    except (OSError, CorruptionError, UnicodeDecodeError):
        return
