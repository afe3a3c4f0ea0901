"""``scope.json``: what a scope is, recorded once when it is created (ADR 0012).

A scope's storage backend and the identity version of its hashes are properties of the data on
disk, not of whoever opens it: a scope written with the ``file`` backend stays a ``file`` scope
when a client configured for ``video`` opens it. The file is small JSON, written atomically
(temp, fsync, rename, fsync of the directory) and checked on read::

    {"kind": "memvid-scope", "format": 1, "backend": "file", "identity": 2,
     "created_at": "2026-11-30T10:00:00+00:00", "crc32": <crc32 of the other fields>}

0.1.0 scopes have no such file: ``detect_backend`` reads the backend from what is on disk and
the scope store records it on the first writable open.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import BACKENDS
from ..core.errors import CorruptionError
from ..core.fsutil import atomic_write
from ..core.hashing import IDENTITY_VERSIONS
from ..core.models import iso, parse_iso, utcnow
from ..storage.video.manifest import FILE_NAME as MANIFEST_FILE
from ..storage.video.manifest import LEGACY_NAME as LEGACY_MANIFEST
from ..storage.video.manifest import live_body_ids

log = logging.getLogger(__name__)

FILE_NAME = "scope.json"
FORMAT = 1
KIND = "memvid-scope"


@dataclass(frozen=True, slots=True)
class ScopeMeta:
    backend: str
    identity: int
    created_at: str

    @classmethod
    def new(cls, backend: str, identity: int) -> ScopeMeta:
        return cls(backend, identity, iso(utcnow()) or "")

    def _fields(self) -> dict[str, Any]:
        return {"kind": KIND, "format": FORMAT, "backend": self.backend,
                "identity": self.identity, "created_at": self.created_at}


def _crc(fields: dict[str, Any]) -> int:
    return zlib.crc32(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())


def read_scope_meta(directory: Path) -> ScopeMeta | None:
    """The recorded metadata; None when the scope has none yet (new or 0.1.0).

    Raises CorruptionError naming the file when it is unreadable, damaged or of an unknown
    version (never guessed: the caller decides how to recover).
    """
    path = directory / FILE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorruptionError(str(path), exc.strerror or str(exc)) from None
    try:
        data = json.loads(raw.decode("utf-8"))
        crc = data.pop("crc32")
        if data.get("kind") != KIND or data.get("format") != FORMAT:
            raise CorruptionError(str(path), f"not a format-{FORMAT} memvid scope file")
        if crc != _crc(data):
            raise CorruptionError(str(path), "checksum mismatch")
        meta = ScopeMeta(data["backend"], data["identity"], data["created_at"])
        parse_iso(meta.created_at)
    except CorruptionError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptionError(str(path), f"malformed scope file: {exc}") from None
    if meta.backend not in BACKENDS:
        raise CorruptionError(str(path), f"unknown backend {meta.backend!r}")
    if meta.identity not in IDENTITY_VERSIONS:
        raise CorruptionError(str(path), f"unknown identity version {meta.identity!r}")
    return meta


def write_scope_meta(directory: Path, meta: ScopeMeta) -> None:
    fields = meta._fields()
    data = json.dumps({**fields, "crc32": _crc(fields)}, indent=1) + "\n"
    atomic_write(directory / FILE_NAME, data.encode("utf-8"))


def detect_backend(directory: Path) -> str | None:
    """The backend whose bodies are on disk (for scopes without ``scope.json``); None if
    nothing says. When both hold bodies (0.1.0 let two clients write one scope with different
    settings), the one holding more wins; the scope store moves the rest across on open."""
    file_bodies = sum(1 for _ in (directory / "bodies").glob("*/*.mvb"))
    video_bodies = 0
    if any((directory / name).exists() for name in (MANIFEST_FILE, LEGACY_MANIFEST)):
        # a manifest is video evidence
        video_bodies = max(len(live_body_ids(directory)), 1)
    if file_bodies or video_bodies:
        return "video" if video_bodies > file_bodies else "file"
    has_segments, has_bodies = (directory / "segments").is_dir(), (directory / "bodies").is_dir()
    if has_segments != has_bodies:
        return "video" if has_segments else "file"
    return None


def scope_backend(directory: Path) -> str | None:
    """The backend a scope directory holds (recorded, else detected) without opening it; None
    when the scope does not exist yet or nothing says (it will get the configured one)."""
    if not directory.is_dir():
        return None
    try:
        meta = read_scope_meta(directory)
    except CorruptionError:
        meta = None
    return meta.backend if meta else detect_backend(directory)
