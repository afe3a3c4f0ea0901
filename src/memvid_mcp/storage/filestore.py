"""FileStore: one zstd-compressed, checksummed file per body.

The simple backend: bodies are written atomically (temp, fsync, rename) into a two-level fan-out
of directories, and a delete removes the file (the WAL already holds the delete durably, so a
crash between the two is replayed). Format of ``bodies/<xx>/<body_id>.mvb`` (ADR 0003):

    magic b"MVB1" | u8 version=1 | u8 flags (0) | u32 crc32(raw) | u32 len(raw) | zstd frame
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import zstandard

from ..core.errors import ClosedError, CorruptionError, NotFoundError, ValidationError
from ..core.fsutil import ensure_dir, fsync_dir, storage_error
from ..core.models import Problem
from .base import Capabilities, CompactReport, ProgressCallback, StorageStats

MAGIC = b"MVB1"
VERSION = 1
_HEADER = struct.Struct("<4sBBII")
_SUFFIX = ".mvb"
_SAFE_ID = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_")


def encode_body(raw: bytes, level: int = 3) -> bytes:
    """Serialise one body to the .mvb format."""
    payload = zstandard.ZstdCompressor(level=level).compress(raw)
    return _HEADER.pack(MAGIC, VERSION, 0, zlib.crc32(raw), len(raw)) + payload


def decode_body(data: bytes, path: str) -> bytes:
    """Parse and check one .mvb file; CorruptionError names ``path`` on any damage."""
    if len(data) < _HEADER.size:
        raise CorruptionError(path, "truncated header")
    magic, version, _flags, crc, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptionError(path, "bad magic")
    if version != VERSION:
        raise CorruptionError(path, f"unsupported body format version {version}")
    try:
        raw = zstandard.ZstdDecompressor().decompress(
            data[_HEADER.size :], max_output_size=max(length, 1)
        )
    except zstandard.ZstdError as exc:
        raise CorruptionError(path, f"undecodable body: {exc}") from None
    if len(raw) != length or zlib.crc32(raw) != crc:
        raise CorruptionError(path, "checksum mismatch")
    return raw


class FileStore:
    """StorageAdapter keeping each body in its own checksummed file."""

    capabilities = Capabilities(name="file")

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        # A read-only opener (another process holds the scope lock) must not create or
        # remove anything: the temp files below may be the writer's bodies in flight.
        self._dir = Path(root) / "bodies" if read_only else ensure_dir(Path(root) / "bodies")
        self._lock = threading.RLock()
        self._sizes: dict[str, int] = {}  # body_id -> raw length
        self._closed = False
        for path in self._dir.glob(f"*/*{_SUFFIX}"):
            try:
                with open(path, "rb") as f:
                    header = f.read(_HEADER.size)
                self._sizes[path.name[: -len(_SUFFIX)]] = _HEADER.unpack(header)[4]
            except (OSError, struct.error):
                self._sizes[path.name[: -len(_SUFFIX)]] = 0  # verify() will report it
        if not read_only:
            for tmp in self._dir.glob("*/.*.tmp-*"):
                tmp.unlink(missing_ok=True)  # leftovers of a crash mid-write; never acknowledged

    def _path(self, body_id: str) -> Path:
        if not body_id or not set(body_id) <= _SAFE_ID or len(body_id) > 64:
            raise ValidationError("body_id", "must be 1-64 characters of [A-Za-z0-9_-]")
        return self._dir / body_id[-2:].lower() / f"{body_id}{_SUFFIX}"

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the file store is closed")

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            self._check_open()
            dirs: set[Path] = set()
            for body_id, raw in items:
                if body_id in self._sizes:
                    continue
                path = self._path(body_id)
                ensure_dir(path.parent)
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                try:
                    with open(tmp, "wb") as f:
                        f.write(encode_body(raw))
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                except OSError as exc:
                    tmp.unlink(missing_ok=True)
                    raise storage_error(path, exc) from exc
                dirs.add(path.parent)
                self._sizes[body_id] = len(raw)
            for directory in dirs:
                fsync_dir(directory)

    def get(self, body_id: str) -> bytes:
        self._check_open()
        if body_id not in self._sizes:
            raise NotFoundError(f"body {body_id} not found")
        path = self._path(body_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"body {body_id} not found") from None
        except OSError as exc:
            raise storage_error(path, exc) from exc
        return decode_body(data, str(path))

    def get_many(self, body_ids: Sequence[str]) -> dict[str, bytes]:
        return {b: self.get(b) for b in body_ids if b in self._sizes}

    def contains(self, body_id: str) -> bool:
        return body_id in self._sizes

    def delete_many(self, body_ids: Iterable[str]) -> int:
        with self._lock:
            self._check_open()
            removed = 0
            dirs: set[Path] = set()
            for body_id in body_ids:
                if self._sizes.pop(body_id, None) is None:
                    continue
                path = self._path(body_id)
                path.unlink(missing_ok=True)
                dirs.add(path.parent)
                removed += 1
            for directory in dirs:
                fsync_dir(directory)
            return removed

    def ids(self) -> Iterator[str]:
        return iter(list(self._sizes))

    def verify(self, progress: ProgressCallback | None = None) -> list[Problem]:
        problems: list[Problem] = []
        ids = sorted(self._sizes)
        for done, body_id in enumerate(ids, 1):
            path = self._path(body_id)
            try:
                decode_body(path.read_bytes(), str(path))
            except CorruptionError as exc:
                problems.append(Problem(str(path), str(exc).split(": ", 1)[-1], (body_id,)))
            except OSError as exc:
                problems.append(Problem(str(path), exc.strerror or str(exc), (body_id,)))
            if progress:
                progress(done, len(ids))
        return problems

    def compact(self, progress: ProgressCallback | None = None) -> CompactReport:
        """Nothing to reclaim: deletes already removed their files."""
        if progress:
            progress(1, 1)
        return CompactReport()

    def compact_step(self, now: float | None = None) -> CompactReport | None:
        """Never anything to do in the background."""
        return None

    def purge(self, progress: ProgressCallback | None = None) -> CompactReport:
        """Nothing left to remove: a delete unlinks the body's file at once."""
        return self.compact(progress)

    def stats(self) -> StorageStats:
        stored = 0
        for body_id in list(self._sizes):
            try:
                stored += self._path(body_id).stat().st_size
            except OSError:
                continue
        return StorageStats(len(self._sizes), sum(self._sizes.values()), stored)

    def close(self) -> None:
        self._closed = True
