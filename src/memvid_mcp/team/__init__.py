"""The team engine (ADR 0025): many memvid-mcp instances on many hosts serve one memory.

PostgreSQL (with pgvector) holds what an embedded scope keeps in its WAL, snapshot and
indexes: records, dedup, tombstones, body locators, bodies not yet sealed, full-text and vector
indexes. Sealed video segments (the same ``seg-<ulid>.mp4`` + ``.mvi`` files as the embedded
video backend) live in an S3-compatible bucket. A peer of ``store/``: it imports ``core/``,
``storage/`` and ``search/`` only; psycopg and boto3 are imported when an engine opens.

    engine = TeamEngine(settings)          # MEMVID_DATABASE_URL + MEMVID_SEGMENT_URL
    store = engine.open_scope("global", "global")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import TeamEngine
    from .scope_store import TeamScopeStore

__all__ = ["TeamEngine", "TeamScopeStore"]


def __getattr__(name: str) -> Any:
    if name == "TeamEngine":
        from .engine import TeamEngine

        return TeamEngine
    if name == "TeamScopeStore":
        from .scope_store import TeamScopeStore

        return TeamScopeStore
    raise AttributeError(name)
