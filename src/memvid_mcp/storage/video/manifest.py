"""The append-only ``manifest.jsonl``: where every body lives, and what was deleted.

One JSON object per line, each carrying a CRC32 of its own canonical form, so a torn or
damaged line is detected and skipped (and reported) without losing the lines around it.
Appends are one write plus fsync: the manifest line is the commit point of a seal.

Line versions (``"v"``): ``seg`` lines are version 2 since they carry the SHA-256 of the sealed
``.mp4`` and ``.mvi`` (ADR 0013); every other line is version 1. Both versions are read; a
version 1 ``seg`` line (a store sealed by 0.1.0) has no file checksums until verify records
them.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.errors import StorageError
from ...core.fsutil import fsync_dir

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # the newest line version written (seg lines); others stay at 1
READ_VERSIONS = frozenset({1, 2})
OPS = frozenset({"seg", "put", "del", "drop"})


def line_version(op: object) -> int:
    """The version a line of ``op`` is written with."""
    return FORMAT_VERSION if op == "seg" else 1


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def encode_line(record: dict[str, Any]) -> bytes:
    """One manifest line: the record plus ``crc`` (CRC32 hex of the record without it)."""
    body = {k: v for k, v in record.items() if k != "crc"}
    body["v"] = line_version(body.get("op"))
    crc = f"{zlib.crc32(_canonical(body).encode('ascii')):08x}"
    return (_canonical({**body, "crc": crc}) + "\n").encode("ascii")


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record of a sound line, or None if the line is damaged or unknown."""
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
    good_size: int = 0  # bytes up to the end of the last complete (newline-ended) line
    torn_tail: bool = False


def parse(data: bytes) -> Parsed:
    """Parse a whole manifest; never raises: damage becomes ``problems``."""
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


class Manifest:
    """Reads, appends to and atomically rewrites one manifest file."""

    def __init__(self, path: Path, tmp_dir: Path | None = None) -> None:
        self.path = path
        self.tmp_path = (tmp_dir or path.parent) / f".{path.name}.tmp"
        self._good_size: int | None = None

    def load(self) -> Parsed:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise StorageError(f"{self.path}: {exc}") from exc
        parsed = parse(data)
        self._good_size = parsed.good_size
        for problem in parsed.problems:
            log.warning("%s: %s", self.path, problem)
        return parsed

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append lines with one write, then fsync; a torn tail left by a crash is cut first."""
        payload = b"".join(encode_line(r) for r in records)
        if not payload:
            return
        try:
            created = not self.path.exists()
            with open(self.path, "ab") as fh:
                size = fh.seek(0, os.SEEK_END)
                if self._good_size is not None and size > self._good_size:
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
                for record in records:
                    fh.write(encode_line(record))
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
