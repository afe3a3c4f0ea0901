"""One scope of the team engine: what ``store.scope_store.ScopeStore`` offers the manager,
kept in PostgreSQL and an S3-compatible bucket instead of local files (ADR 0025).

Write path: one transaction per store (dedup lookup, the record row with its full-text vector,
the body pending in the body store); the store is acknowledged when it commits, and every
instance sees it at once. The bodies (pending rows, sealed segments in the bucket, sealing,
compaction) are ``body_store.TeamBodyStore``'s, a ``StorageAdapter`` like the embedded
backends; this module keeps the records, their search and their vectors.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from ulid import ULID

from ..core.config import Settings
from ..core.errors import (
    ClosedError,
    CorruptionError,
    NotFoundError,
    ReadOnlyError,
    StorageError,
    ValidationError,
)
from ..core.hashing import content_sha256
from ..core.models import MemoryRecord, Problem, utcnow
from ..core.validation import StoreInput, merge_tags
from ..search.filters import SearchFilters, norm_tag
from ..storage.base import CompactReport
from ..storage.video.cache import ByteLRU
from .body_store import TeamBodyStore
from .database import Database
from .schema import DIM, TEXT_CONFIG
from .segments import SegmentBucket

log = logging.getLogger(__name__)

EMBED_CLAIM_SECONDS = 120  # a batch taken by an instance that died is taken again after this
TEXT_CACHE_BYTES = 16 << 20  # texts by body id (a body id never changes its text)
COVERAGE_TTL = 2.0  # seconds a vector-coverage count is reused (it runs on every search)

_TSV = (f"to_tsvector('{TEXT_CONFIG}', coalesce(%(title)s, '') || ' ' || %(text)s)")
# Full-text ranking (ADR 0025): PostgreSQL's ts_rank knows no term rarity, so each query term
# is ranked on its own and weighted by its BM25 idf in this scope. Candidates are the memories
# holding a rare query word (in at most RARE_SHARE of the scope), plus more words, rarest
# first, until they could fill the k asked: ranking every memory that holds a common word
# cost 20x the time for the same SciFact top 10 (plainto_tsquery would demand every word).
# Document frequencies are counted once per term and kept in memory (DF_TTL): counting a
# common word's posting list on every search was most of a lexical search at 100k memories.
RARE_SHARE = 0.05
CANDIDATES = 500  # rare words join the candidates, rarest first, while their counts fit this
DF_TTL = 300.0  # seconds a term's document count (and the scope's size) is reused
DF_CACHE_TERMS = 200_000  # the per-scope cache of document counts is cleared beyond this
_TERMS = f"""
SELECT DISTINCT t FROM unnest(tsvector_to_array(to_tsvector('{TEXT_CONFIG}', %(q)s))) AS t
WHERE position(E'\\\\' IN t) = 0"""
_COUNTS = """
SELECT t, (SELECT count(*) FROM (SELECT 1 FROM memvid_memories d WHERE d.scope = %(scope)s
           AND d.tsv @@ quote_literal(t)::tsquery LIMIT %(cap)s) AS c)
FROM unnest(%(terms)s::text[]) AS t"""
_LEXICAL = """
WITH weights AS MATERIALIZED (
    SELECT quote_literal(t)::tsquery AS q, w
    FROM unnest(%(terms)s::text[], %(weights)s::float8[]) AS x(t, w)),
anyterm AS MATERIALIZED (
    SELECT array_to_string(array(SELECT quote_literal(t) FROM unnest(%(pool)s::text[]) AS t),
                           ' | ')::tsquery AS q),
top AS MATERIALIZED (
    SELECT {hit},
           (SELECT sum(weights.w * ts_rank(m.tsv, weights.q, 1)) FROM weights) AS score
    FROM memvid_memories m CROSS JOIN anyterm
    WHERE m.scope = %(scope)s AND m.tsv @@ anyterm.q AND {where}
    ORDER BY score DESC, m.id DESC LIMIT %(k)s)
SELECT * FROM top ORDER BY score DESC, id DESC"""
# A search hit's columns (ADR 0031): what ranking, fusion and recency read, without the JSON
# record or the body. A hybrid search ranks four lists of 100 candidates and shows 10: the
# page's full records and pending bodies come afterwards, in one query per scope
# (``page_records``); parsing 400 JSON records and carrying 400 bodies was a third of it.
_HIT = ("m.id, m.body_id, m.state->>'title' AS title, m.kind, m.tags, m.created_at, "
        "m.updated_at, m.expires_at, m.pinned, m.sha256, m.size, m.superseded_by")
_VISIBLE = ("(m.expires_at IS NULL OR m.expires_at > %(now)s)")
_NOT_SUPERSEDED = ("(m.superseded_by IS NULL OR NOT EXISTS (SELECT 1 FROM memvid_memories s "
                   "WHERE s.scope = m.scope AND s.id = m.superseded_by))")


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def _filter_sql(filters: SearchFilters, params: dict[str, Any]) -> str:
    """SQL conditions for the search filters (the same semantics as SearchFilters.matches)."""
    out = []
    if filters.kind is not None:
        out.append("m.kind = %(kind)s")
        params["kind"] = filters.kind
    if filters.pinned is not None:
        out.append("m.pinned = %(pinned)s")
        params["pinned"] = filters.pinned
    if filters.since is not None:
        out.append("m.created_at >= %(since)s")
        params["since"] = filters.since
    if filters.until is not None:
        out.append("m.created_at < %(until)s")
        params["until"] = filters.until
    if filters.tags_any:
        out.append("m.tags && %(tags_any)s")
        params["tags_any"] = sorted({norm_tag(t) for t in filters.tags_any})
    if filters.tags_all:
        out.append("m.tags @> %(tags_all)s")
        params["tags_all"] = sorted({norm_tag(t) for t in filters.tags_all})
    return "".join(f" AND {c}" for c in out)


class TeamScopeStore:
    """One scope in the team database and bucket. Thread-safe; many instances share it."""

    backend_name = "team"

    def __init__(self, name: str, key: str, settings: Settings, db: Database,
                 bucket: SegmentBucket, *, read_only: bool = False) -> None:
        self.name = name
        self.key = key  # the scope's identity in the database and the bucket
        self.settings = settings
        self.db = db
        self.bucket = bucket
        self.read_only = read_only or settings.read_only
        self.directory = Path(f"{db.name}#{key}")  # names the scope in problems and stats
        self.bodies = TeamBodyStore(key, settings, db, bucket, read_only=self.read_only)
        self._coverage: tuple[float, tuple[int, int]] | None = None
        self._model_in_use: str | None = None
        self._closed = False
        self._texts = ByteLRU(TEXT_CACHE_BYTES)  # snippets of repeated hits: no round trip
        self._df: dict[str, tuple[float, int]] = {}  # term -> (counted at, document count)
        self._df_total: tuple[float, int] | None = None  # (counted at, memories in the scope)
        self._df_lock = threading.Lock()

    # ----------------------------------------------------------------- helpers
    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"scope {self.name} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ReadOnlyError(f"scope {self.name} is open read-only because of --read-only "
                                "(MEMVID_READ_ONLY); writes are refused")

    def _row(self, conn: Any, memory_id: str, *, lock: bool = False) -> MemoryRecord | None:
        row = conn.execute("SELECT state FROM memvid_memories WHERE scope = %s AND id = %s"
                           + (" FOR UPDATE" if lock else ""), (self.key, memory_id)).fetchone()
        return MemoryRecord.from_state(row[0]) if row else None

    @staticmethod
    def _columns(record: MemoryRecord) -> dict[str, Any]:
        return {
            "state": json.dumps(record.to_state()),
            "kind": record.kind,
            "tags": sorted({norm_tag(t) for t in record.tags}),
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "expires_at": record.expires_at,
            "pinned": record.pinned,
            "superseded_by": record.superseded_by,
        }

    def _save(self, conn: Any, record: MemoryRecord) -> None:
        """Rewrite a record's fields (not its body, text index or vector)."""
        conn.execute(
            "UPDATE memvid_memories SET state = %(state)s::jsonb, kind = %(kind)s, "
            "tags = %(tags)s, created_at = %(created_at)s, updated_at = %(updated_at)s, "
            "expires_at = %(expires_at)s, pinned = %(pinned)s, superseded_by = %(superseded_by)s "
            "WHERE scope = %(scope)s AND id = %(id)s",
            {**self._columns(record), "scope": self.key, "id": record.id})

    # ----------------------------------------------------------------- writes
    def store(self, item: StoreInput, *, imported: dict[str, Any] | None = None,
              supersedes: Sequence[str] = ()) -> tuple[MemoryRecord, bool, bool]:
        """Store one validated memory in one transaction. Returns (record, deduplicated,
        replaced). Two instances storing the same text at once: the partial unique index
        refuses the second insert, which retries and folds into the first."""
        import psycopg

        self._check_writable()
        for attempt in range(5):
            try:
                with self.db.transaction() as conn:
                    self._check_supersedable(conn, supersedes)
                    record, deduplicated, replaced = self._store(conn, item, imported)
                    older = [i for i in supersedes if i != record.id]
                    if older:
                        record = self._link(conn, older, record)
                    self._coverage = None
                    return record, deduplicated, replaced
            except psycopg.errors.UniqueViolation:
                if attempt == 4:
                    raise StorageError(f"scope {self.name}: a concurrent store of the same "
                                       "memory kept conflicting; try again") from None
        raise AssertionError("unreachable")

    def _check_supersedable(self, conn: Any, ids: Sequence[str]) -> None:
        for memory_id in ids:
            old = self._row(conn, memory_id, lock=True)
            if old is None or old.expired():
                raise ValidationError("supersedes",
                                      f"no memory {memory_id} in scope {self.name}")
            if old.superseded_by is not None and self._row(conn, old.superseded_by):
                raise ValidationError("supersedes", f"memory {memory_id} is already "
                                      f"superseded by {old.superseded_by}; supersede that one")

    def _link(self, conn: Any, ids: Sequence[str], new: MemoryRecord) -> MemoryRecord:
        for memory_id in ids:
            old = self._row(conn, memory_id, lock=True)
            if old is not None:
                self._save(conn, replace(old, superseded_by=new.id))
        new = replace(new, supersedes=tuple(dict.fromkeys([*new.supersedes, *ids])))
        self._save(conn, new)
        return new

    def _store(self, conn: Any, item: StoreInput, imported: dict[str, Any] | None
               ) -> tuple[MemoryRecord, bool, bool]:
        sha = content_sha256(item.text)
        existing = self._row(conn, item.id, lock=True) if item.id else None
        deduplicating = item.id is None or (imported is not None and existing is None)
        if deduplicating:
            row = conn.execute(
                "SELECT state FROM memvid_memories m WHERE scope = %(scope)s AND "
                f"sha256 = %(sha)s AND {_VISIBLE} ORDER BY updated_at DESC, id DESC LIMIT 1 "
                "FOR UPDATE", {"scope": self.key, "sha": sha, "now": utcnow()}).fetchone()
            if row is not None:
                return self._merge_tags(conn, MemoryRecord.from_state(row[0]), item.tags), \
                    True, False
        if existing is not None and not existing.expired() and existing.sha256 == sha and (
            imported is not None or self._same_fields(existing, item)
        ):
            return self._merge_tags(conn, existing, item.tags), True, False
        now = utcnow()
        record = MemoryRecord(
            id=item.id or str(ULID()), body_id=str(ULID()), title=item.title, kind=item.kind,
            tags=item.tags, scope=self.name, metadata=item.metadata, source=item.source,
            created_at=existing.created_at if existing is not None else now, updated_at=now,
            expires_at=item.expires_at, pinned=item.pinned, sha256=sha,
            size=len(item.text.encode("utf-8")))
        if imported is not None:
            record = MemoryRecord.from_state({**record.to_state(), **imported,
                                              "body_id": record.body_id, "scope": self.name,
                                              "sha256": sha, "size": record.size})
        # The newest memory of a hash is the one later duplicates fold into. A store that
        # deduplicates takes the mark only from an expired memory: a live one committed by
        # another instance since our lookup keeps it, our insert fails and the retry folds.
        conn.execute("UPDATE memvid_memories SET live_sha = NULL WHERE scope = %s AND "
                     "live_sha = %s AND id <> %s AND (%s OR expires_at <= %s)",
                     (self.key, sha, record.id, not deduplicating, utcnow()))
        params = {**self._columns(record), "scope": self.key, "id": record.id,
                  "body_id": record.body_id, "sha": sha, "size": record.size,
                  "title": record.title, "text": item.text.replace("\x00", " ")}
        if existing is not None:
            self.bodies.retire(conn, [existing.body_id])  # its row is locked: current
            conn.execute(
                "UPDATE memvid_memories SET body_id = %(body_id)s, sha256 = %(sha)s, "
                "live_sha = %(sha)s, state = %(state)s::jsonb, kind = %(kind)s, tags = %(tags)s, "
                "created_at = %(created_at)s, updated_at = %(updated_at)s, "
                "expires_at = %(expires_at)s, pinned = %(pinned)s, "
                f"superseded_by = %(superseded_by)s, tsv = {_TSV}, embedding = NULL, "
                "embed_claimed = NULL, size = %(size)s "
                "WHERE scope = %(scope)s AND id = %(id)s", params)
        else:
            conn.execute(
                "INSERT INTO memvid_memories (scope, id, body_id, sha256, live_sha, state, kind, "
                "tags, created_at, updated_at, expires_at, pinned, superseded_by, tsv, size) "
                "VALUES (%(scope)s, %(id)s, %(body_id)s, %(sha)s, %(sha)s, %(state)s::jsonb, "
                "%(kind)s, %(tags)s, %(created_at)s, %(updated_at)s, %(expires_at)s, "
                f"%(pinned)s, %(superseded_by)s, {_TSV}, %(size)s)", params)
        self.bodies.add_pending(conn, record.body_id, item.text.encode("utf-8"))
        return record, False, existing is not None

    @staticmethod
    def _same_fields(existing: MemoryRecord, item: StoreInput) -> bool:
        return (existing.title, existing.kind, existing.metadata, existing.pinned,
                existing.source) == (item.title, item.kind, item.metadata, item.pinned,
                                     item.source)

    def _merge_tags(self, conn: Any, existing: MemoryRecord, tags: tuple[str, ...]
                    ) -> MemoryRecord:
        merged = merge_tags(existing.tags, tags, self.settings.max_tags)
        if merged == existing.tags:
            return existing
        record = existing.with_tags(merged, utcnow())
        self._save(conn, record)
        return record

    def delete(self, ids: Iterable[str]) -> list[str]:
        """Delete memories (their sealed bodies are tombstoned); returns the ids found."""
        self._check_writable()
        wanted = list(dict.fromkeys(ids))
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT id, body_id FROM memvid_memories WHERE scope = %s AND "
                                "id = ANY(%s) FOR UPDATE", (self.key, wanted)).fetchall()
            found = {r[0] for r in rows}
            # their bodies leave the body store (a sealed one as a tombstone, until its
            # segment is rewritten), in one call for all
            self.bodies.retire(conn, [r[1] for r in rows])
            conn.execute("DELETE FROM memvid_memories WHERE scope = %s AND id = ANY(%s)",
                         (self.key, list(found)))
        self._coverage = None
        return [i for i in wanted if i in found]

    # ----------------------------------------------------------------- reads
    def record(self, memory_id: str) -> MemoryRecord | None:
        self._check_open()
        with self.db.connection() as conn:
            record = self._row(conn, memory_id)
        return None if record is None or record.expired() else record

    def records(self) -> Iterator[MemoryRecord]:
        self._check_open()
        now = utcnow()
        with self.db.connection() as conn:
            rows = conn.execute("SELECT state FROM memvid_memories WHERE scope = %s",
                                (self.key,)).fetchall()
        records = [MemoryRecord.from_state(r[0]) for r in rows]
        return (r for r in records if not r.expired(now))

    def expired_ids(self) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT id FROM memvid_memories WHERE scope = %s AND "
                                "expires_at <= %s", (self.key, utcnow())).fetchall()
        return [r[0] for r in rows]

    def superseded(self, record: MemoryRecord) -> bool:
        return record.superseded_by is not None and self.record(record.superseded_by) is not None

    def read_body(self, record: MemoryRecord) -> str:
        return self.read_bodies([record])[record.body_id]

    def reads_decode_video(self, records: Sequence[MemoryRecord]) -> bool:
        """Never decoded here on a search's page: the manager reads team bodies in a loop."""
        return False

    def read_bodies(self, records: Sequence[MemoryRecord]) -> dict[str, str]:
        """body_id -> text; NotFoundError when a body is neither pending nor sealed."""
        self._check_open()
        out: dict[str, str] = {}
        for record in records:
            cached = self._texts.get(record.body_id)
            if cached is not None:
                out[record.body_id] = cached.decode("utf-8")
        ids = [r.body_id for r in records if r.body_id not in out]
        if not ids:
            return out
        with self.db.connection() as conn:
            found = self.bodies.read(conn, ids)
        for body_id, data in found.items():
            self._texts.put(body_id, data)
            out[body_id] = data.decode("utf-8")
        for body_id in ids:
            if body_id not in out:
                raise NotFoundError(f"body {body_id} of scope {self.name} not found")
        return out

    def lexical_search(self, query: str, k: int, filters: SearchFilters, *,
                       include_superseded: bool = False) -> list[tuple[MemoryRecord, float]]:
        """The ``k`` best full-text hits, as ranking records (``_hit``)."""
        self._check_open()
        with self.db.connection() as conn:
            terms = [r[0] for r in conn.execute(_TERMS, {"q": query}).fetchall()]
            if not terms:
                return []
            total, counts = self._document_counts(conn, terms)
            found = sorted((df, t) for t, df in counts.items() if df > 0)
            if not found:
                return []
            total = max(total, float(found[-1][0]))  # a size counted before a word's rise
            pool, rarer = [], 0
            for df, term in found:  # rare words, then more, rarest first, until k could fill
                if (df <= total * RARE_SHARE and rarer + df <= CANDIDATES) or rarer < k:
                    pool.append(term)
                rarer += df
            params: dict[str, Any] = {
                "scope": self.key, "k": k, "now": utcnow(), "pool": pool,
                "terms": [t for _, t in found],
                "weights": [math.log(1 + (total - df + 0.5) / (df + 0.5)) for df, _ in found]}
            where = _filter_sql(filters, params)
            if not include_superseded:
                where += f" AND {_NOT_SUPERSEDED}"
            rows = conn.execute(_LEXICAL.replace("{hit}", _HIT).replace(
                "{where}", _VISIBLE + where), params).fetchall()
        return [self._hit(row) for row in rows]

    def _document_counts(self, conn: Any, terms: list[str]) -> tuple[float, dict[str, int]]:
        """The scope's size and each term's document count, from the in-memory cache when
        counted less than DF_TTL ago (a cached 0 is always counted again: a memory stored
        since must be found)."""
        now = time.monotonic()
        with self._df_lock:
            cached = {t: self._df[t][1] for t in terms
                      if t in self._df and self._df[t][1] > 0 and now - self._df[t][0] < DF_TTL}
        missing = [t for t in terms if t not in cached]
        total = self._scope_size(conn)
        if missing:
            # counted up to RARE_SHARE of the scope: a word in more memories than that is
            # common (never a candidate source) and weighs as if in exactly that many; a
            # count reads every matching row, ~8 ms for a word in a fifth of 50k memories
            cap = max(CANDIDATES, math.ceil(total * RARE_SHARE))
            counted = {t: int(n) for t, n in conn.execute(
                _COUNTS, {"scope": self.key, "terms": missing, "cap": cap}).fetchall()}
            cached.update(counted)
        with self._df_lock:
            if len(self._df) > DF_CACHE_TERMS:
                self._df.clear()
            for t in missing:
                self._df[t] = (now, cached[t])
        return float(max(total, 1)), cached

    def _scope_size(self, conn: Any, *, fresh: bool = False) -> int:
        """How many memories the scope holds, counted at most DF_TTL ago (``fresh``: now)."""
        now = time.monotonic()
        with self._df_lock:
            known = self._df_total
        if not fresh and known is not None and now - known[0] < DF_TTL:
            return known[1]
        row = conn.execute("SELECT count(*) FROM memvid_memories WHERE scope = %s",
                           (self.key,)).fetchone()
        total = int(row[0]) if row else 0
        with self._df_lock:
            self._df_total = (now, total)
        return total

    def _hit(self, row: Sequence[Any]) -> tuple[MemoryRecord, float]:
        """A search hit from its ``_HIT`` columns and score: a record for ranking whose
        metadata, source and supersedes are left empty (``page_records`` gives the shown
        ones in full)."""
        (memory_id, body_id, title, kind, tags, created_at, updated_at, expires_at, pinned,
         sha256, size, superseded_by, score) = row
        return MemoryRecord(
            id=memory_id, body_id=body_id, title=title, kind=kind, tags=tuple(tags),
            scope=self.name, metadata={}, source=None, created_at=created_at,
            updated_at=updated_at, expires_at=expires_at, pinned=pinned, sha256=sha256,
            size=size, superseded_by=superseded_by), float(score)

    def page_records(self, ids: Sequence[str]) -> dict[str, MemoryRecord]:
        """The full records of a search page's hits in this scope, by id (a memory deleted
        since it was ranked is absent), in one round trip; their pending bodies go to the
        text cache, so the snippets read next cost none."""
        self._check_open()
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT m.state, p.body FROM memvid_memories m LEFT JOIN memvid_pending p ON "
                "p.body_id = m.body_id WHERE m.scope = %s AND m.id = ANY(%s)",
                (self.key, list(ids))).fetchall()
        out = {}
        for state, body in rows:
            record = MemoryRecord.from_state(state)
            if body is not None:
                self._texts.put(record.body_id, bytes(body))
            out[record.id] = record
        return out

    def vector_search(self, vector: np.ndarray, k: int, filters: SearchFilters, *,
                      include_superseded: bool = False) -> list[tuple[MemoryRecord, float]]:
        """The ``k`` nearest hits, as ranking records (``_hit``)."""
        self._check_open()
        if vector.shape[-1] != DIM:
            return []
        sql, params = self.vector_query(vector, k, filters, include_superseded=include_superseded)
        with self.db.connection() as conn, conn.pipeline(), conn.transaction():
            # filtered HNSW scans keep going until k rows pass (pgvector 0.8); the settings,
            # the query and the commit go in one pipeline: one round trip, not six. A custom
            # plan sees the scope's value, so it can use the scope's partial index. ef_search
            # k (not 2k) for a fusion list of 100: recall@100 against an exact scan 0.977
            # instead of 0.982 at 100k, ~1.5 ms less server CPU per scope (ADR 0031).
            conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            conn.execute(f"SET LOCAL hnsw.ef_search = {max(100, min(1000, k))}")
            cursor = conn.execute(sql, params)
        hits = [self._hit(row) for row in cursor.fetchall()]
        hits.sort(key=lambda hit: hit[1], reverse=True)
        return hits[:k]

    def vector_query(self, vector: np.ndarray, k: int, filters: SearchFilters, *,
                     include_superseded: bool = False) -> tuple[str, dict[str, Any]]:
        """The SQL of a vector search and its parameters. It orders by the halfvec expression
        of the scope's partial index, whose scope predicate a custom plan matches."""
        params: dict[str, Any] = {"scope": self.key, "v": _vector_text(vector), "k": k,
                                  "now": utcnow()}
        where = _filter_sql(filters, params)
        if not include_superseded:
            where += f" AND {_NOT_SUPERSEDED}"
        sql = (f"SELECT {_HIT}, 1 - (m.embedding <=> %(v)s::vector) AS score "
               "FROM memvid_memories m WHERE m.scope = %(scope)s AND m.embedding IS NOT NULL "
               f"AND {_VISIBLE}{where} ORDER BY (m.embedding::halfvec({DIM})) "
               f"<=> %(v)s::halfvec({DIM}) LIMIT %(k)s")
        return sql, params

    def vector_coverage(self) -> tuple[int, int]:
        """(memories with a vector, memories). The ones waiting for a vector are counted on
        the partial index of unembedded rows; the scope's size exactly only while some
        wait, else as last counted (``_scope_size``; the pair then says "all covered"
        either way). Counting both over the scope's rows cost ~50 ms of server CPU at 50k
        memories every COVERAGE_TTL (ADR 0031)."""
        cached = self._coverage
        if cached is not None and time.monotonic() - cached[0] < COVERAGE_TTL:
            return cached[1]
        with self.db.connection() as conn:
            row = conn.execute("SELECT count(*) FROM memvid_memories WHERE scope = %s AND "
                               "embedding IS NULL", (self.key,)).fetchone()
            waiting = int(row[0]) if row else 0
            total = self._scope_size(conn, fresh=waiting > 0)
        value = (max(0, total - waiting), max(total, waiting))
        self._coverage = (time.monotonic(), value)
        return value

    def use_model(self, model_id: str, dim: int) -> None:
        """Vectors are comparable within one model only: a different one drops them all."""
        if self._model_in_use == model_id:
            return
        if dim != DIM:
            raise ValidationError("embed_model", f"the team engine stores {DIM}-dimensional "
                                  f"vectors; {model_id} gives {dim}")
        with self.db.transaction() as conn:
            row = conn.execute("SELECT model, dim FROM memvid_models WHERE scope = %s "
                               "FOR UPDATE", (self.key,)).fetchone()
            if row is not None and tuple(row) != (model_id, dim):
                log.info("scope %s: embedding model is now %s; re-embedding", self.name,
                         model_id)
                conn.execute("UPDATE memvid_memories SET embedding = NULL, embed_claimed = "
                             "NULL WHERE scope = %s", (self.key,))
            if row is None or tuple(row) != (model_id, dim):
                conn.execute("INSERT INTO memvid_models (scope, model, dim) VALUES (%s, %s, %s) "
                             "ON CONFLICT (scope) DO UPDATE SET model = excluded.model, "
                             "dim = excluded.dim", (self.key, model_id, dim))
        self._model_in_use = model_id

    # ----------------------------------------------------------------- embedding
    def take_embed_batch(self, size: int) -> list[tuple[str, str]]:
        """Up to ``size`` (body_id, text) pairs still needing vectors, claimed for this
        instance (another takes them again if no vector arrives within a while)."""
        if self.read_only or self._closed:
            return []
        with self.db.transaction() as conn:
            rows = conn.execute(
                "UPDATE memvid_memories SET embed_claimed = now() WHERE body_id IN ("
                "SELECT body_id FROM memvid_memories WHERE scope = %s AND embedding IS NULL "
                "AND (embed_claimed IS NULL OR embed_claimed < now() - make_interval("
                "secs => %s)) ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING state", (self.key, EMBED_CLAIM_SECONDS, size)).fetchall()
        records = [MemoryRecord.from_state(r[0]) for r in rows]
        out = []
        for record in records:
            try:
                text = self.read_body(record)
            except (NotFoundError, CorruptionError) as exc:
                log.error("scope %s: cannot embed %s: %s", self.name, record.id, exc)
                continue
            out.append((record.body_id,
                        f"{record.title}\n{text}" if record.title else text))
        return out

    def add_vectors(self, body_ids: list[str], vectors: np.ndarray) -> None:
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.executemany("UPDATE memvid_memories SET embedding = %s::vector, "
                            "embed_claimed = NULL WHERE body_id = %s",
                            [(_vector_text(v), b) for b, v in zip(body_ids, vectors,
                                                                  strict=True)])
        self._coverage = None

    def embed_waiting(self) -> int:
        with self.db.connection() as conn:
            row = conn.execute("SELECT count(*) FROM memvid_memories WHERE scope = %s AND "
                               "embedding IS NULL", (self.key,)).fetchone()
        return int(row[0]) if row else 0

    # ----------------------------------------------------------------- sealing
    @property
    def pending_count(self) -> int:
        return self.bodies.pending_stats()[0]

    def due(self) -> bool:
        return self.bodies.due()

    def write_batch(self, *, everything: bool = False) -> int:
        """Seal pending bodies into segments (``TeamBodyStore.seal``)."""
        return self.bodies.seal(everything=everything)

    # ----------------------------------------------------------------- maintenance
    def apply_deletes(self) -> int:
        return 0  # a delete is complete when its transaction commits

    def commit_indexes(self, *, force: bool = False) -> None:
        """Nothing to do: the database indexes are current when a store commits."""

    def checkpoint(self, *, force: bool = False) -> bool:
        return False  # no WAL or snapshot: the database is the log

    def changed_on_disk(self, interval: float = 1.0) -> bool:
        return False

    def compact_step(self) -> CompactReport | None:
        """One unit of background compaction (``TeamBodyStore.compact_step``)."""
        return None if self._closed else self.bodies.compact_step()

    def compact(self, progress: Callable[[int, int], None] | None = None) -> CompactReport:
        """Rewrite segments holding deleted bodies below the live-share threshold, and
        collect unreferenced old objects."""
        return self.bodies.compact(progress)

    def purge(self) -> dict[str, Any]:
        """Remove the text of every deleted memory from the bucket now."""
        self._check_writable()
        return self.bodies.purge().to_dict()

    def verify(self, progress: Callable[[int, int], None] | None = None) -> list[Problem]:
        """Every memory's body is pending or in a segment whose objects exist at their
        sealed size."""
        with self.db.connection() as conn:
            missing = [r[0] for r in conn.execute(
                "SELECT id FROM memvid_memories m WHERE scope = %s AND NOT EXISTS (SELECT 1 "
                "FROM memvid_pending p WHERE p.body_id = m.body_id) AND NOT EXISTS (SELECT 1 "
                "FROM memvid_bodies b WHERE b.body_id = m.body_id)", (self.key,)).fetchall()]
        problems: list[Problem] = []
        if missing:
            problems.append(Problem(str(self.directory), "bodies missing from storage",
                                    tuple(sorted(missing))))
        for problem in self.bodies.verify(progress):  # body ids -> memory ids
            with self.db.connection() as conn:
                ids = tuple(sorted(r[0] for r in conn.execute(
                    "SELECT id FROM memvid_memories WHERE scope = %s AND body_id = ANY(%s)",
                    (self.key, list(problem.memory_ids))).fetchall()))
            problems.append(Problem(problem.path, problem.message, ids))
        return problems

    def repair(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Report what verify finds; memories whose body is gone are deleted so the rest
        keeps being served (the database has no local files to quarantine)."""
        self._check_writable()
        problems = self.verify(progress)
        unreadable = sorted({i for p in problems for i in p.memory_ids})
        if unreadable:
            self.delete(unreadable)
        return {"problems_found": len(problems), "files_quarantined": [],
                "memories_unreadable": unreadable, "memories_restored": [],
                "quarantine": None, "bytes_reclaimed": 0}

    def stats(self) -> dict[str, Any]:
        with self.db.connection() as conn:
            memories, text_bytes, vectors = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0), count(embedding) FROM "
                "memvid_memories WHERE scope = %s", (self.key,)).fetchone()
        details = self.bodies.stats().details
        return {
            "backend": self.backend_name,
            "memories": int(memories),
            "text_bytes": int(text_bytes),
            "stored_bytes": details["sealed_bytes"],
            "pending_bodies": details["pending_bodies"],
            "embedding_queue": int(memories) - int(vectors),
            "vectors": int(vectors),
            "pending_text_bytes": details["pending_text_bytes"],
            "segments": details["segments"],
            "segment_cache_bytes": details["segment_cache_bytes"],
            "read_only": self.read_only,
            "path": str(self.directory),
            "segment_url": self.bucket.url,
        }

    def close(self) -> None:
        """Nothing to flush: every acknowledged store is committed, and pending bodies wait
        in the database for whichever instance seals next."""
        self._closed = True
        self.bodies.close()

