"""Sealed segments in an S3-compatible bucket, read through a local cache bounded in bytes.

Objects are immutable (``<prefix>/<scope key>/seg-<ulid>.mp4`` and ``.mvi``), so a cached
copy never goes stale: the cache only has to stay within its byte budget (least recently used
files leave first). Frames decode with the embedded video backend's own reader.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..core.errors import CorruptionError, NotFoundError, StorageError
from ..core.fsutil import ensure_dir
from ..storage.video import framing, mvi
from ..storage.video.cache import ByteLRU
from ..storage.video.store import decode_frame_content

log = logging.getLogger(__name__)


def parse_segment_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"segment_url: {url!r} is not an s3://bucket/prefix URL")
    return parsed.netloc, parsed.path.strip("/")


class SegmentBucket:
    """The bucket holding every scope's sealed segments, and this host's cache of them."""

    def __init__(self, url: str, cache_dir: Path, cache_bytes: int) -> None:
        import boto3
        from botocore.config import Config

        self.url = url
        self.bucket, self.prefix = parse_segment_url(url)
        # Short timeouts and few retries: an unreachable bucket is a clear error in seconds.
        config = Config(connect_timeout=5, read_timeout=60,
                        retries={"max_attempts": 3, "mode": "standard"})
        self._s3: Any = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
                                     config=config)
        self.cache_dir = ensure_dir(cache_dir)
        self.cache_bytes = max(1, cache_bytes)
        self._files: OrderedDict[Path, int] = OrderedDict()  # cached file -> size, LRU first
        self._lock = threading.Lock()
        self._indexes: dict[str, mvi.SegmentIndex] = {}
        self._dicts: dict[str, framing.SegmentDictionary] = {}  # by segment file, read once
        self._frames = ByteLRU(min(64 << 20, self.cache_bytes))
        for path in sorted(self.cache_dir.rglob("seg-*"), key=lambda p: p.stat().st_mtime):
            self._files[path] = path.stat().st_size
        self._evict()

    # ----------------------------------------------------------------- objects
    def key(self, scope_key: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, scope_key, name) if p)

    def check(self) -> None:
        """Fail clearly, now, when the bucket cannot be reached or does not exist."""
        self._call("head_bucket", f"s3://{self.bucket}", Bucket=self.bucket)

    def _call(self, op: str, what: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._s3, op)(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                raise NotFoundError(f"{what}: not found in the segment store") from None
            raise StorageError(f"segment store {self.url}: {op} {what} failed: {exc}") from None
        except BotoCoreError as exc:
            raise StorageError(f"segment store {self.url} is unreachable ({exc}); check "
                               "MEMVID_SEGMENT_URL and AWS_ENDPOINT_URL") from None

    def upload(self, scope_key: str, path: Path) -> None:
        """Upload one sealed file (published later, by the database transaction)."""
        with open(path, "rb") as fh:
            data = fh.read()
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        import base64

        self._call("put_object", path.name, Bucket=self.bucket,
                   Key=self.key(scope_key, path.name), Body=data,
                   ContentMD5=base64.b64encode(digest).decode())

    def size(self, scope_key: str, name: str) -> int | None:
        """The object's size, None when it does not exist."""
        try:
            head = self._call("head_object", name, Bucket=self.bucket,
                              Key=self.key(scope_key, name))
        except NotFoundError:
            return None
        return int(head["ContentLength"])

    def delete(self, scope_key: str, names: list[str]) -> None:
        for name in names:
            self._call("delete_object", name, Bucket=self.bucket, Key=self.key(scope_key, name))
            self._forget(self._local(scope_key, name))

    def names(self, scope_key: str) -> dict[str, float]:
        """Every object of a scope: name -> last modified (epoch seconds)."""
        out: dict[str, float] = {}
        prefix = "/".join(p for p in (self.prefix, scope_key) if p) + "/"
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", prefix, **kwargs)
            for obj in page.get("Contents", []):
                out[obj["Key"][len(prefix):]] = obj["LastModified"].timestamp()
            token = page.get("NextContinuationToken")
            if not token:
                return out

    # ----------------------------------------------------------------- the cache
    def _local(self, scope_key: str, name: str) -> Path:
        safe = hashlib.sha256(scope_key.encode()).hexdigest()[:16]
        return self.cache_dir / safe / name

    def adopt(self, scope_key: str, path: Path) -> None:
        """Keep a file this instance just sealed as a cached copy (no download later)."""
        target = self._local(scope_key, path.name)
        ensure_dir(target.parent)
        os.replace(path, target)
        self._remember(target)

    def local_file(self, scope_key: str, name: str) -> Path:
        """A local copy of an object, downloaded on first use."""
        target = self._local(scope_key, name)
        with self._lock:
            if target in self._files and target.exists():
                self._files.move_to_end(target)
                return target
        body = self._call("get_object", name, Bucket=self.bucket,
                          Key=self.key(scope_key, name))["Body"].read()
        ensure_dir(target.parent)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, target)
        self._remember(target)
        return target

    def _remember(self, path: Path) -> None:
        with self._lock:
            self._files[path] = path.stat().st_size
            self._files.move_to_end(path)
        self._evict()

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._files.pop(path, None)
        path.unlink(missing_ok=True)

    def _evict(self) -> None:
        with self._lock:
            total = sum(self._files.values())
            while total > self.cache_bytes and len(self._files) > 1:
                path, size = self._files.popitem(last=False)
                path.unlink(missing_ok=True)
                total -= size

    def cached_bytes(self) -> int:
        with self._lock:
            return sum(self._files.values())

    # ----------------------------------------------------------------- reading
    def index(self, scope_key: str, seg: str) -> mvi.SegmentIndex:
        index = self._indexes.get(seg)
        if index is None:
            path = self.local_file(scope_key, f"seg-{seg}.mvi")
            index = mvi.loads(path.read_bytes(), str(path))
            self._indexes[seg] = index
        return index

    def frame(self, scope_key: str, seg: str, frame: int) -> bytes:
        key = (seg, frame)
        cached = self._frames.get(key)
        if cached is not None:
            return cached
        index = self.index(scope_key, seg)
        if not 0 <= frame < len(index.frames):
            raise CorruptionError(self.key(scope_key, f"seg-{seg}.mp4"),
                                  f"frame {frame} out of range")
        for attempt in range(2):
            path = self.local_file(scope_key, f"seg-{seg}.mp4")
            try:
                content = decode_frame_content(path, index, frame, self._dicts)
                break
            except StorageError:
                if attempt:
                    raise
                self._forget(path)  # evicted or damaged locally: fetch it again
            except Exception:  # the cached file vanished under us (another evictor)
                if attempt:
                    raise
                self._forget(path)
        self._frames.put(key, content)
        return content

    def read(self, scope_key: str, seg: str, frame: int, offset: int, length: int,
             frames: int, sha256: str) -> bytes:
        """One body from its locator, checked against its SHA-256."""
        parts: list[bytes] = []
        need = length
        for n in range(frame, frame + frames):
            piece = self.frame(scope_key, seg, n)[offset: offset + need]
            parts.append(piece)
            need -= len(piece)
            offset = 0
        data = b"".join(parts)
        if need or hashlib.sha256(data).hexdigest() != sha256:
            raise CorruptionError(self.key(scope_key, f"seg-{seg}.mp4"),
                                  "a body does not match its sha256")
        return data

    def close(self) -> None:
        self._frames.clear()
        self._indexes.clear()
