"""The team engine's tables (schema version 4), created on first open.

One row per memory in ``memvid_memories`` (its record as JSON plus the columns search filters
on), ``live_sha`` under a partial UNIQUE index so two instances storing the same text at once
end with one memory; bodies wait in ``memvid_pending`` until a sealed segment holds them;
``memvid_tombstones`` remembers deleted bodies still inside a segment (compaction and purge
rewrite those segments). A schema change bumps ``SCHEMA_VERSION`` and adds a step to
``MIGRATIONS``; opening runs the missing steps under an advisory lock.

Version 2 (ADR 0025, search speed at 100k): the full-text index covers (scope, tsv) with
``btree_gin``, so a search reads only its own scope's posting lists and rows, however many
scopes share the database.

Version 3 (ADR 0025, vector search at 100k): one HNSW index per scope, on the vector as
``halfvec`` (half the pages) with ``WHERE scope = '<key>'``, instead of one index over every
scope, whose filtered scans visited the other scopes' rows and dropped them. A scope's index
is made when the scope is first opened (``ensure_scope_index``); the migration makes them for
the scopes already stored and drops the shared index.

Version 4 (ADR 0031, body storage as a ``StorageAdapter``): where a sealed body lies moves
from its memory's row to ``memvid_bodies`` (body id, segment, frame, offset, frames, size,
SHA-256), and ``memvid_pending`` no longer references a memory row, so the body store keeps
bodies of its own (the storage contract suite stores bodies no memory names). The scope store
still writes a memory and its body in one transaction and retires the body with the memory.
"""

from __future__ import annotations

import hashlib

SCHEMA_VERSION = 4
SCHEMA_LOCK = 0x6D656D7669640001  # pg_advisory_xact_lock key while creating/migrating tables
TEXT_CONFIG = "english"  # the full-text configuration (stemming, stop words)
DIM = 384

_V1 = f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS memvid_memories (
    scope text NOT NULL,
    id text NOT NULL,
    body_id text NOT NULL UNIQUE,
    sha256 text NOT NULL,
    live_sha text,
    state jsonb NOT NULL,
    kind text NOT NULL,
    tags text[] NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz,
    pinned boolean NOT NULL,
    superseded_by text,
    tsv tsvector NOT NULL,
    embedding vector({DIM}),
    embed_claimed timestamptz,
    seg text,
    frame integer,
    frame_offset integer,
    frames integer,
    body_sha256 text,
    size integer NOT NULL,
    PRIMARY KEY (scope, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS memvid_memories_dedup
    ON memvid_memories (scope, live_sha) WHERE live_sha IS NOT NULL;
CREATE INDEX IF NOT EXISTS memvid_memories_sha ON memvid_memories (scope, sha256);
CREATE INDEX IF NOT EXISTS memvid_memories_tsv ON memvid_memories USING gin (tsv);
CREATE INDEX IF NOT EXISTS memvid_memories_vec
    ON memvid_memories USING hnsw (embedding vector_cosine_ops);
CREATE INDEX IF NOT EXISTS memvid_memories_unembedded
    ON memvid_memories (scope) WHERE embedding IS NULL;
CREATE INDEX IF NOT EXISTS memvid_memories_seg ON memvid_memories (seg);
CREATE TABLE IF NOT EXISTS memvid_pending (
    seq bigserial PRIMARY KEY,
    body_id text NOT NULL UNIQUE REFERENCES memvid_memories (body_id) ON DELETE CASCADE,
    scope text NOT NULL,
    body bytea NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS memvid_pending_scope ON memvid_pending (scope, seq);
CREATE TABLE IF NOT EXISTS memvid_segments (
    seg text PRIMARY KEY,
    scope text NOT NULL,
    frames integer NOT NULL,
    mp4_bytes bigint NOT NULL,
    mvi_bytes bigint NOT NULL,
    bodies integer NOT NULL,
    raw bigint NOT NULL,
    mp4_sha256 text NOT NULL,
    mvi_sha256 text NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS memvid_tombstones (
    body_id text PRIMARY KEY,
    scope text NOT NULL,
    seg text NOT NULL,
    size integer NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS memvid_tombstones_seg ON memvid_tombstones (seg);
CREATE TABLE IF NOT EXISTS memvid_models (
    scope text PRIMARY KEY,
    model text NOT NULL,
    dim integer NOT NULL
);
"""

_V2 = """
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX IF NOT EXISTS memvid_memories_scope_tsv ON memvid_memories USING gin (scope, tsv);
DROP INDEX IF EXISTS memvid_memories_tsv;
"""

# halfvec: the index's copy of each vector in 2 bytes a dimension; distances and scores are
# then computed from the full vector on the row
HALFVEC = f"(embedding::halfvec({DIM}))"


def scope_index_name(key: str) -> str:
    """The name of scope ``key``'s vector index (the same md5 the migration uses in SQL)."""
    return "memvid_vec_" + hashlib.md5(key.encode()).hexdigest()[:16]


def scope_index_sql(key: str) -> str:
    """The DDL of scope ``key``'s partial HNSW index (the key as a quoted literal)."""
    literal = "'" + key.replace("'", "''") + "'"
    return (f"CREATE INDEX IF NOT EXISTS {scope_index_name(key)} ON memvid_memories "
            f"USING hnsw ({HALFVEC} halfvec_cosine_ops) WHERE scope = {literal}")


_V3 = f"""
SET LOCAL maintenance_work_mem = '256MB';
DO $$
DECLARE
    keys text[] := array(SELECT DISTINCT scope FROM memvid_memories);
    k text;
BEGIN
    FOREACH k IN ARRAY keys LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON memvid_memories USING hnsw '
                       '({HALFVEC} halfvec_cosine_ops) WHERE scope = %L',
                       'memvid_vec_' || left(md5(k), 16), k);
    END LOOP;
END $$;
DROP INDEX IF EXISTS memvid_memories_vec;
"""

_V4 = """
CREATE TABLE IF NOT EXISTS memvid_bodies (
    body_id text PRIMARY KEY,
    scope text NOT NULL,
    seg text NOT NULL,
    frame integer NOT NULL,
    frame_offset integer NOT NULL,
    frames integer NOT NULL,
    size integer NOT NULL,
    sha256 text NOT NULL
);
CREATE INDEX IF NOT EXISTS memvid_bodies_seg ON memvid_bodies (seg);
CREATE INDEX IF NOT EXISTS memvid_bodies_scope ON memvid_bodies (scope);
INSERT INTO memvid_bodies (body_id, scope, seg, frame, frame_offset, frames, size, sha256)
    SELECT body_id, scope, seg, frame, frame_offset, frames, size, body_sha256
    FROM memvid_memories WHERE seg IS NOT NULL ON CONFLICT DO NOTHING;
ALTER TABLE memvid_pending DROP CONSTRAINT IF EXISTS memvid_pending_body_id_fkey;
DROP INDEX IF EXISTS memvid_memories_seg;
ALTER TABLE memvid_memories DROP COLUMN IF EXISTS seg, DROP COLUMN IF EXISTS frame,
    DROP COLUMN IF EXISTS frame_offset, DROP COLUMN IF EXISTS frames,
    DROP COLUMN IF EXISTS body_sha256;
"""

# version -> the DDL that reaches it from the one before
MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3, 4: _V4}
