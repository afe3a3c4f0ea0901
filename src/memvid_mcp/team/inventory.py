"""What a team scope already holds, read in bulk for ``memvid-mcp migrate`` (ADR 0025
addendum): which memories are present (so a rerun skips them), their vectors (carried to the
embedded engine instead of recomputed) and the model those vectors came from."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from .scope_store import TeamScopeStore


def present(store: TeamScopeStore) -> dict[str, tuple[str, str, bool, datetime]]:
    """memory id -> (sha256, body_id, has a vector, updated_at), for every unexpired memory
    of the scope."""
    with store.db.connection() as conn:
        rows = conn.execute("SELECT id, sha256, body_id, embedding IS NOT NULL, updated_at "
                            "FROM memvid_memories WHERE scope = %s AND (expires_at IS NULL "
                            "OR expires_at > now())", (store.key,)).fetchall()
    return {i: (sha, body, bool(has), when) for i, sha, body, has, when in rows}


def model(store: TeamScopeStore) -> tuple[str, int] | None:
    """(model id, dimension) of the scope's vectors, None before any."""
    with store.db.connection() as conn:
        row = conn.execute("SELECT model, dim FROM memvid_models WHERE scope = %s",
                           (store.key,)).fetchone()
    return (str(row[0]), int(row[1])) if row else None


def vectors(store: TeamScopeStore, body_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """body_id -> vector, for the bodies that have one."""
    if not body_ids:
        return {}
    with store.db.connection() as conn:
        rows = conn.execute("SELECT body_id, embedding::text FROM memvid_memories WHERE "
                            "body_id = ANY(%s) AND embedding IS NOT NULL",
                            (list(body_ids),)).fetchall()
    return {b: np.asarray(json.loads(text), dtype=np.float32) for b, text in rows}
