"""A process's connection to a team deployment: one database pool and one bucket, shared by
every scope this process opens (the manager makes one when MEMVID_DATABASE_URL is set)."""

from __future__ import annotations

import hashlib
import logging

from ..core.config import Settings
from ..core.errors import StorageError
from .database import Database
from .scope_store import TeamScopeStore
from .segments import SegmentBucket

log = logging.getLogger(__name__)


class TeamEngine:
    """Opens team scopes. Fails at once, with a clear StorageError, when the database or the
    bucket cannot be reached."""

    def __init__(self, settings: Settings) -> None:
        if settings.database_url is None or settings.segment_url is None:
            raise StorageError("the team engine needs MEMVID_DATABASE_URL and "
                               "MEMVID_SEGMENT_URL")
        self.settings = settings
        try:
            import boto3  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise StorageError(f"the team engine needs {exc.name}: install memvid-mcp[team] "
                               "(psycopg[binary,pool] and boto3)") from None
        self.db = Database(settings.database_url)
        try:
            digest = hashlib.sha256(settings.segment_url.encode()).hexdigest()[:12]
            self.bucket = SegmentBucket(settings.segment_url,
                                        settings.data_dir / "team-cache" / digest,
                                        settings.segment_cache_bytes)
            self.bucket.check()
        except BaseException:
            self.db.close()
            raise

    def open_scope(self, name: str, key: str) -> TeamScopeStore:
        """The scope ``name`` (global, project) stored under ``key`` in the team database."""
        if not self.settings.read_only:
            self.db.ensure_scope_index(key)
        return TeamScopeStore(name, key, self.settings, self.db, self.bucket)

    def close(self) -> None:
        self.bucket.close()
        self.db.close()
