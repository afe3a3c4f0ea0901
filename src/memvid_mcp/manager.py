"""MemoryManager: the only place that knows scopes, storage and indexes together.

Synchronous and thread-safe, so the CLI calls it directly and the MCP server through worker
threads. Opening is cheap: scopes open on first use, and the embedding model loads in a
background thread (until it is ready, search answers lexically and says so): at the first open
for a long-lived process (``background_embedding``), at the first semantic search otherwise
(the CLI: a short command never starts a load it would have to wait for). Two background
threads keep the write path fast: the batcher hands pending bodies to storage, commits
indexes and releases the WAL text of sealed bodies; the embedder turns new memories into
vectors in small batches, in writable scopes only (a read-only scope serves the vectors its
writer committed). A third, the compactor, merges and rewrites video segments (ADR 0018)
without holding any lock a store or a search waits for.

With ``database_url`` and ``segment_url`` set, the global and project scopes live in the team
engine (PostgreSQL + an S3-compatible bucket, ADR 0025) behind the same ``OpenScope``
interface; the committed scope stays in its repository.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from .core.config import Settings, default_cache_dir
from .core.errors import (
    ClosedError,
    CorruptionError,
    EmbeddingUnavailable,
    NotFoundError,
    ReadOnlyError,
    ServiceError,
    StoreLockedError,
    ValidationError,
)
from .core.models import (
    SEARCH_MODES,
    GetResult,
    ListResult,
    Memory,
    MemoryRecord,
    Problem,
    SearchHit,
    SearchResult,
    Stats,
    StoreResult,
)
from .core.redact import redact_input
from .core.rundir import service_pid
from .core.scopes import ScopeLayout
from .core.validation import (
    StoreInput,
    check_datetime,
    check_time_bound,
    normalise_ids,
    normalise_tags,
    validate_store,
)
from .search.embed import EmbeddingService
from .search.filters import SearchFilters
from .search.fusion import (
    fuse_standard_scores,
    newest_first_on_ties,
    recency_order,
    rrf,
    standard_scores,
)
from .search.snippet import best_snippet
from .storage.base import CompactReport
from .store.migrate import migrate_scope
from .store.scope_meta import scope_backend
from .store.scope_store import ScopeStore, open_scope

if TYPE_CHECKING:
    from .team import TeamEngine

log = logging.getLogger(__name__)

MODES = SEARCH_MODES
MAX_K = 1000
FLUSH_MODEL_WAIT_SECONDS = 300.0
COMPACT_INTERVAL_SECONDS = 5.0  # how often the compactor looks for work when not woken
FUSION_DEPTH = 100  # candidates each list contributes to a search at least, over all its scopes
_T = TypeVar("_T")


class OpenScope(Protocol):
    """What the manager uses of an open scope: ``store.scope_store.ScopeStore`` (embedded)
    and ``team.scope_store.TeamScopeStore`` (PostgreSQL + bucket) both offer it."""

    name: str
    read_only: bool
    backend_name: str
    directory: Path

    @property
    def closed(self) -> bool: ...
    def store(self, item: StoreInput, *, imported: dict[str, Any] | None = None,
              supersedes: Sequence[str] = ()) -> tuple[MemoryRecord, bool, bool]: ...
    def delete(self, ids: Iterable[str]) -> builtins.list[str]: ...
    def purge(self) -> dict[str, Any]: ...
    def expired_ids(self) -> builtins.list[str]: ...
    def record(self, memory_id: str) -> MemoryRecord | None: ...
    def records(self) -> Iterator[MemoryRecord]: ...
    def read_body(self, record: MemoryRecord) -> str: ...
    def reads_decode_video(self, records: Sequence[MemoryRecord]) -> bool: ...
    def lexical_search(self, query: str, k: int, filters: SearchFilters, *,
                       include_superseded: bool = False
                       ) -> builtins.list[tuple[MemoryRecord, float]]: ...
    def vector_search(self, vector: np.ndarray, k: int, filters: SearchFilters, *,
                      include_superseded: bool = False
                      ) -> builtins.list[tuple[MemoryRecord, float]]: ...
    def use_model(self, model_id: str, dim: int) -> None: ...
    def vector_coverage(self) -> tuple[int, int]: ...
    def take_embed_batch(self, size: int) -> builtins.list[tuple[str, str]]: ...
    def add_vectors(self, body_ids: builtins.list[str], vectors: np.ndarray) -> None: ...
    def embed_waiting(self) -> int: ...
    def due(self) -> bool: ...
    def write_batch(self, *, everything: bool = False) -> int: ...
    def apply_deletes(self) -> int: ...
    def commit_indexes(self, *, force: bool = False) -> None: ...
    def checkpoint(self, *, force: bool = False) -> bool: ...
    def compact_step(self) -> CompactReport | None: ...
    def compact(self, progress: Callable[[int, int], None] | None = None
                ) -> CompactReport: ...
    def verify(self, progress: Callable[[int, int], None] | None = None
               ) -> builtins.list[Problem]: ...
    def repair(self, progress: Callable[[int, int], None] | None = None
               ) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class MemoryManager:
    """Durable, searchable memory across the global, project and committed scopes."""

    def __init__(self, settings: Settings | None = None, *, background_embedding: bool = True,
                 service_owner: bool = False, **overrides: Any) -> None:
        """``background_embedding`` False: load the model only for a semantic search or
        ``flush``/``catch_up_embeddings``, never just because a scope opened.
        ``service_owner``: this is the service's own manager (ADR 0017); any other refuses
        at once to open a data directory that a running service owns."""
        self.background_embedding = background_embedding
        self.service_owner = service_owner
        self.settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None}) \
            if settings is not None else Settings.from_env(**overrides)
        self.layout = ScopeLayout.resolve(self.settings.data_dir, self.settings.project)
        # Open scopes by directory: shared with this manager's views (one per repository in
        # the service), so the global scope, its lock and the model exist once per process.
        self._stores: dict[Path, OpenScope] = {}
        self._team: TeamEngine | None = None  # the team engine's pool and bucket, when used
        self._root: MemoryManager = self
        self._open_lock = threading.Lock()
        self._maint_lock = threading.Lock()
        self._embed_lock = threading.Lock()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False
        # hybrid search embeds the query here while the calling thread searches lexically
        self._search_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="memvid-query")
        # team scopes' lists (a database query each) are fetched side by side here; only leaf
        # work runs in it, so a task never waits on another in the same pool
        self._scope_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="memvid-scope")
        self.embedder = EmbeddingService(
            self.settings.embed_model,
            self.settings.cache_dir or default_cache_dir(),
            enabled=self.settings.embeddings,
            provider=self.settings.embed_provider,
            threads=self.settings.embed_threads,
        )

    def view(self, project: Path | None) -> MemoryManager:
        """A manager for another repository that shares this one's open scopes, model, locks
        and background work (the service serves every client's project this way). Closing a
        view closes nothing; closing this manager closes everything."""
        root = self._root
        view = object.__new__(MemoryManager)
        view.__dict__.update(root.__dict__)
        view.settings = root.settings.replace(project=project)
        view.layout = ScopeLayout.resolve(view.settings.data_dir, project)
        view._closed = False
        return view

    @property
    def _scopes(self) -> dict[str, OpenScope]:
        """This manager's open scopes by name (its repository's project and committed ones,
        and the global one)."""
        out = {}
        for name in self.layout.available:
            store = self._stores.get(self.layout.directory(name))
            if store is not None:
                out[name] = store
        return out

    @classmethod
    def open(cls, data_dir: str | Path | None = None, *, backend: str | None = None,
             settings: Settings | None = None, **overrides: Any) -> MemoryManager:
        """Convenience constructor: ``MemoryManager.open(path, backend="video")``."""
        if data_dir is not None:
            overrides["data_dir"] = Path(data_dir)
        return cls(settings, backend=backend, **overrides)

    def __enter__(self) -> MemoryManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- scopes
    @property
    def default_scope(self) -> str:
        return self.layout.default_write_scope

    @property
    def search_scopes(self) -> tuple[str, ...]:
        return self.layout.default_search_scopes

    def scopes(self) -> list[dict[str, Any]]:
        out = []
        for name in ("global", "project", "committed"):
            available = name in self.layout.available
            store = self._scopes.get(name)
            backend = store.backend_name if store is not None else (
                "team" if self._in_team(name) else
                scope_backend(self.layout.directory(name)) if available else None)
            out.append({
                "name": name,
                "available": available,
                "path": str(self.layout.directory(name)) if available else None,
                "default": name == self.default_scope,
                "searched_by_default": name in self.search_scopes,
                "open": name in self._scopes,
                "backend": backend or self.settings.backend,
            })
        return out

    def _scope(self, name: str | None, *, write: bool = False) -> OpenScope:
        """The open scope, opening it (and starting background work) on first use."""
        if self._closed:
            raise ClosedError("the memory manager is closed")
        scope = self.layout.check(name or self.default_scope)
        directory = self.layout.directory(scope)
        store = self._stores.get(directory)
        if store is not None:
            if store.read_only and not self.settings.read_only:
                return self._revisit_fallback(scope, write=write)
            return store
        with self._open_lock:
            store = self._stores.get(directory)
            if store is None:
                self._refuse_if_a_service_owns_it()
                store = self._open_store(scope, directory)
                self._stores[directory] = store
                self._root._start_background()
        return store

    def _in_team(self, scope: str) -> bool:
        """Whether a scope lives in the team engine: global and project do when it is
        configured; the committed scope is files in the repository, checked in with it."""
        return self.settings.database_url is not None and scope != "committed"

    def _open_store(self, scope: str, directory: Path) -> OpenScope:
        if not self._in_team(scope):
            return open_scope(scope, directory, self.settings)
        root = self._root
        if root._team is None:
            from .team import TeamEngine

            root._team = TeamEngine(root.settings)
        return root._team.open_scope(scope, self.team_key(scope))

    def team_key(self, scope: str) -> str:
        """A scope's identity in the team database: its place under the data directory
        (global, projects/<repo>-<hash>), so ``migrate --to-database`` lands where the
        manager looks."""
        return self.layout.directory(scope).relative_to(self.settings.data_dir).as_posix()

    def _refuse_if_a_service_owns_it(self) -> None:
        if self.service_owner or self.settings.read_only:
            return
        pid = service_pid(self.settings.data_dir)
        if pid is not None:
            raise ServiceError(
                f"a memvid-mcp service (pid {pid}) owns {self.settings.data_dir}; use it through "
                "the memvid-mcp CLI or an MCP client, open with read_only=True, or stop it "
                "with 'memvid-mcp service --stop'")

    def _revisit_fallback(self, scope: str, *, write: bool) -> OpenScope:
        """A scope opened read-only because another process held its lock: on a write, take
        the lock if that process has gone; on a read, reload if its files changed."""
        directory = self.layout.directory(scope)
        with self._open_lock, self._maint_lock:
            store = self._stores[directory]
            if not isinstance(store, ScopeStore) or not store.read_only or not (
                    write or store.changed_on_disk()):
                return store
            try:
                fresh = ScopeStore(scope, directory, self.settings.replace(lock_timeout=0.0))
                log.info("scope %s: the other writer has gone; now writable", scope)
            except StoreLockedError:
                if write:
                    return store  # its store() raises a clear ReadOnlyError
                fresh = ScopeStore(scope, directory, self.settings, read_only=True)
            store.close()
            self._stores[directory] = fresh
            return fresh

    def _existing_scopes(self, names: Iterable[str] | None, *, write: bool = False
                         ) -> list[OpenScope]:
        """Scopes to read: the named ones (or all available), skipping ones never written."""
        if names is not None and not isinstance(names, Iterable):
            raise ValidationError("scopes", "must be a list of scope names")
        wanted = list(names) if names else list(self.layout.available)
        out = []
        for name in wanted:
            self.layout.check(name)
            if name in self._scopes or self._in_team(name) or \
                    self.layout.directory(name).exists():
                out.append(self._scope(name, write=write))
        return out

    def _search_stores(self, scopes: str | Sequence[str] | None) -> list[OpenScope]:
        if isinstance(scopes, str):
            scopes = [s.strip() for s in scopes.split(",") if s.strip()]
        return self._existing_scopes(scopes or self.search_scopes)

    # ----------------------------------------------------------------- writes
    def _prepare(self, text: Any, fields: Mapping[str, Any]) -> tuple[StoreInput, tuple[str, ...]]:
        """Validate, then redact secrets from every free-text field (not only the text)."""
        item = validate_store(self.settings, text, **fields)
        redactions: tuple[str, ...] = ()
        if self.settings.redact_secrets:
            redacted, redactions = redact_input(item)
            if redactions:  # checked again: a replacement may be longer than the secret
                item = validate_store(
                    self.settings, redacted.text, title=redacted.title, tags=redacted.tags,
                    kind=redacted.kind, scope=redacted.scope, metadata=redacted.metadata,
                    id=redacted.id, source=redacted.source, expires_at=redacted.expires_at,
                    pinned=redacted.pinned)
        return item, redactions

    def store(self, text: str, *, title: str | None = None, tags: Any = (),
              kind: str | None = None, scope: str | None = None,
              metadata: Any = None, id: str | None = None, source: str | None = None,
              ttl_seconds: float | None = None, expires_at: Any = None,
              pinned: bool = False, supersedes: Any = None) -> StoreResult:
        """Store one memory; durable when this returns. Exact duplicates fold into one.

        ``supersedes``: ids of memories this one replaces. They leave search (kept, and
        shown by ``get`` with ``superseded_by``); they must live in one scope, which is where
        the new memory goes when ``scope`` is not given."""
        older = normalise_ids(supersedes, "supersedes") if supersedes else []
        if older:
            scope = self._scope_of(older, scope)
        fields = dict(title=title, tags=tags, kind=kind, scope=scope, metadata=metadata, id=id,
                      source=source, ttl_seconds=ttl_seconds, expires_at=expires_at,
                      pinned=pinned)
        item, redactions = self._prepare(text, fields)
        return self._store_prepared(item, redactions, supersedes=older)

    def _scope_of(self, ids: Sequence[str], scope: str | None) -> str:
        """The one scope holding every memory in ``ids`` (a memory supersedes only memories
        of its own scope)."""
        found: dict[str, str] = {}
        for store in self._existing_scopes(None):
            for memory_id in ids:
                if memory_id not in found and store.record(memory_id) is not None:
                    found[memory_id] = store.name
        missing = [i for i in ids if i not in found]
        if missing:
            raise ValidationError("supersedes", f"no memory {missing[0]}")
        scopes = sorted(set(found.values()))
        if len(scopes) > 1 or (scope is not None and scope != scopes[0]):
            raise ValidationError("supersedes", f"memories of scope {', '.join(scopes)} can "
                                  f"only be superseded by a memory of the same scope")
        return scopes[0]

    def _store_prepared(self, item: StoreInput, redactions: tuple[str, ...],
                        imported: dict[str, Any] | None = None,
                        supersedes: Sequence[str] = (),
                        unsynced: list[ScopeStore] | None = None) -> StoreResult:
        """Store one item; with ``unsynced`` its WAL fsync is left to the caller (the store
        is added to the list), which syncs once for a whole batch before acknowledging."""
        store = self._scope(item.scope, write=True)
        if unsynced is not None and isinstance(store, ScopeStore):  # team: a transaction each
            record, deduplicated, replaced = store.store(item, imported=imported,
                                                         supersedes=supersedes, durable=False)
            if store not in unsynced:
                unsynced.append(store)
        else:
            record, deduplicated, replaced = store.store(item, imported=imported,
                                                         supersedes=supersedes)
        self._nudge()
        return StoreResult(record.id, deduplicated, store.name, record.sha256, replaced,
                           redactions)

    def store_many(self, items: Iterable[Mapping[str, Any]]) -> list[StoreResult]:
        """Store many memories. Every item is validated first: a bad one writes nothing."""
        prepared = []
        for index, raw in enumerate(items):
            if not isinstance(raw, Mapping):
                raise ValidationError(f"items[{index}]", "must be an object")
            fields = {k: v for k, v in raw.items() if k != "text"}
            unknown = set(fields) - {"title", "tags", "kind", "scope", "metadata", "id",
                                     "source", "ttl_seconds", "expires_at", "pinned"}
            if unknown:
                raise ValidationError(f"items[{index}]", f"unknown fields {sorted(unknown)}")
            try:
                prepared.append(self._prepare(raw.get("text"), fields))
            except ValidationError as exc:
                raise ValidationError(f"items[{index}].{exc.field}",
                                      str(exc).split(": ", 1)[-1]) from None
        for item, _ in prepared:
            self.layout.check(item.scope or self.default_scope)
        unsynced: list[ScopeStore] = []
        try:
            return [self._store_prepared(item, redactions, unsynced=unsynced)
                    for item, redactions in prepared]
        finally:  # group commit: one fsync per scope covers the whole batch
            for store in unsynced:
                store.sync()

    def import_record(self, data: Mapping[str, Any], *, scope: str | None = None) -> StoreResult:
        """Store an exported memory with its id and timestamps kept (no redaction)."""
        if not isinstance(data, Mapping):
            raise ValidationError("line", "must be a JSON object")
        target = scope or (data.get("scope") if data.get("scope") in self.layout.available
                           else None)
        item = validate_store(
            self.settings, data.get("text"), title=data.get("title"), tags=data.get("tags"),
            kind=data.get("kind"), scope=target, metadata=data.get("metadata"),
            id=data.get("id"), source=data.get("source"), expires_at=data.get("expires_at"),
            pinned=data.get("pinned", False),
        )
        kept = {}
        for key in ("created_at", "updated_at"):
            when = check_datetime(key, data.get(key))
            if when is not None:
                kept[key] = when.isoformat()
        return self._store_prepared(item, (), imported=kept)

    def delete(self, ids: str | Sequence[str], *, scopes: Sequence[str] | None = None,
               purge: bool = False) -> int:
        """Tombstone memories by id; returns how many existed. They vanish from every read
        at once; their text leaves every file within ``purge_after_seconds`` (background
        compaction), or before this returns with ``purge`` (ADR 0018)."""
        wanted = normalise_ids(ids)
        deleted = 0
        touched = []
        for store in self._existing_scopes(scopes, write=True):
            found = store.delete(wanted)
            deleted += len(found)
            wanted = [i for i in wanted if i not in found]
            if found:
                touched.append(store)
        if purge:
            for store in touched:
                with self._maint_lock:
                    store.purge()
        self._nudge()
        return deleted

    def purge(self, scopes: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Remove the text of every memory already deleted from every file of the scopes
        (default: all), now: segments holding it are rewritten and the WAL scrubbed."""
        reports = {}
        for store in self._existing_scopes(scopes, write=True):
            with self._maint_lock:
                reports[store.name] = store.purge()
        return reports

    def prune_expired(self) -> int:
        """Delete every memory whose TTL has passed; returns how many."""
        pruned = 0
        for store in self._existing_scopes(None, write=True):
            if not store.read_only:
                pruned += len(store.delete(store.expired_ids()))
        return pruned

    # ----------------------------------------------------------------- reads
    def get(self, ids: str | Sequence[str], *, scopes: Sequence[str] | None = None
            ) -> GetResult:
        """Full memories by id; ids not found (or expired) are listed in ``missing``."""
        wanted = normalise_ids(ids)
        stores = self._existing_scopes(scopes)
        found: list[Memory] = []
        missing: list[str] = []
        damaged: list[Problem] = []
        for memory_id in wanted:
            for store in stores:
                record = store.record(memory_id)
                if record is None:
                    continue
                try:  # one damaged body must not hide the healthy ones asked with it
                    found.append(Memory(record, store.read_body(record)))
                except CorruptionError as exc:
                    damaged.append(Problem(exc.path, str(exc).split(": ", 1)[-1],
                                           (memory_id,)))
                except NotFoundError:
                    damaged.append(Problem(str(store.directory), "body missing from storage",
                                           (memory_id,)))
                break
            else:
                missing.append(memory_id)
        return GetResult(tuple(found), tuple(missing), tuple(damaged))

    def list(self, *, scope: str | None = None, limit: int = 50, cursor: str | None = None,
             kind: str | None = None, tags_any: Any = ()) -> ListResult:
        """Memories newest first, ``limit`` at a time; pass ``next_cursor`` back for more."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_K:
            raise ValidationError("limit", f"must be an integer from 1 to {MAX_K}")
        after = None
        if cursor:
            after = normalise_ids(cursor, "cursor")[0]
        filters = SearchFilters(tags_any=normalise_tags(tags_any, self.settings), kind=kind)
        stores = self._existing_scopes([scope] if scope else self.search_scopes)
        records = sorted(
            (r for s in stores for r in s.records()
             if (after is None or r.id < after)
             and filters.matches(r.tags, r.kind, r.created_at, r.pinned)),
            key=lambda r: r.id, reverse=True)
        page = records[:limit]
        next_cursor = page[-1].id if len(records) > limit else None
        return ListResult(tuple(page), next_cursor)

    def search(self, query: str, *, k: int = 10, scopes: str | Sequence[str] | None = None,
               tags_any: Any = (), tags_all: Any = (), kind: str | None = None,
               since: Any = None, until: Any = None, pinned: bool | None = None,
               mode: str = "hybrid", cursor: str | None = None,
               snippet_chars: int = 240, include_superseded: bool = False,
               recency: float | None = None) -> SearchResult:
        """Ranked memories for a natural-language query, with snippets (not full text).

        Memories superseded by a newer one are left out unless ``include_superseded``.
        ``recency`` (0-1, default ``settings.recency_weight``, 0): how much newer memories
        move up; at 0 recency only breaks ties ("latest decision" questions turn it up)."""
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("query", "is empty; give some words to search for")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValidationError("k", f"must be an integer from 1 to {MAX_K}")
        if mode not in MODES:
            raise ValidationError("mode", f"must be one of {', '.join(MODES)}")
        if kind is not None and not isinstance(kind, str):
            raise ValidationError("kind", "must be a string")
        if pinned is not None and not isinstance(pinned, bool):
            raise ValidationError("pinned", "must be true, false or absent")
        filters = SearchFilters(
            tags_any=normalise_tags(tags_any, self.settings, "tags_any"),
            tags_all=normalise_tags(tags_all, self.settings, "tags_all"),
            kind=kind or None,
            since=check_time_bound("since", since),
            until=check_time_bound("until", until),
            pinned=pinned,
        )
        weight = self.settings.recency_weight if recency is None else recency
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValidationError("recency", "must be a number between 0 and 1")
        offset = _decode_cursor(cursor, query)
        stores = self._search_stores(scopes)
        # z-scores need a sample of each list: SciFact nDCG@10 0.729 fusing 50, 0.735 at 100.
        # The 100 are shared by the scopes searched (50 each from two): a list is as long as
        # with one scope, and a search of two scopes does not cost twice (ADR 0033)
        depth = max(2 * (offset + k), math.ceil(FUSION_DEPTH / max(1, len(stores))))
        note = None

        def lexical() -> list[tuple[MemoryRecord, float]]:
            def fetch(n: int) -> list[list[tuple[MemoryRecord, float]]]:
                return self._each_scope(stores, lambda s: s.lexical_search(
                    query, n, filters, include_superseded=include_superseded))

            if mode == "hybrid" or weight:  # fusion and recency place the whole candidate list
                return _merge_by_score(fetch(depth))
            # one ranking alone: only the page (and one more, for the cursor) is looked up
            return _exact_top(fetch, offset + k, offset + k + 1)

        semantic: list[tuple[MemoryRecord, float]] | None = None
        lexical_hits: list[tuple[MemoryRecord, float]] | None = None
        lexical_z: dict[str, float] | None = None
        stores_by_name = {s.name: s for s in stores}
        snippets: dict[str, str] = {}
        if mode == "hybrid" and self.embedder.enabled:
            # The query embedding (onnxruntime) and tantivy both release the GIL: the lexical
            # ranking is made while the query is embedded, not after.
            embedded = threading.Event()
            future = self._search_pool.submit(self._semantic, query, depth, filters, stores,
                                              include_superseded, embedded=embedded)
            try:
                lexical_hits = lexical()
                # Until the query is embedded, one core is free: the snippets of the lexical
                # page are cut now, most of which the fused page shows (ADR 0033). Once the
                # vector searches start, both cores are theirs. (A team scope's page comes in
                # one query after fusion, ADR 0031: nothing to read ahead there.)
                ahead = lexical_hits[offset: offset + k] if all(
                    s.backend_name != "team" for s in stores) else []
                for record, _ in ahead:
                    if embedded.is_set():
                        break
                    snippets[record.id] = best_snippet(
                        self._snippet_body(stores_by_name, record), query, snippet_chars)
                if self.settings.fusion != "rrf":
                    # the lexical list's half of the fusion, made while the vector searches
                    # walk their graphs (without the GIL), not after them (ADR 0037)
                    lexical_z = standard_scores([(r.id, s) for r, s in lexical_hits])
            except BaseException:
                wait([future])  # the scopes it reads must stay open until it is done
                raise
            semantic, note = future.result()
        elif mode != "lexical":
            # one ranking alone (no recency): only the page and one more are looked up, so a
            # filter checks ~k candidates per scope, not FUSION_DEPTH (ADR 0027)
            exact = None if weight else offset + k
            semantic, note = self._semantic(query, depth, filters, stores, include_superseded,
                                            exact=exact)
        ranked: list[tuple[MemoryRecord, float]]
        if semantic is None:
            mode_used, ranked = "lexical", lexical_hits if lexical_hits is not None else lexical()
        elif mode == "semantic":
            mode_used, ranked = "semantic", semantic
        else:
            mode_used = "hybrid"
            if lexical_hits is None:
                lexical_hits = lexical()
            by_id = {r.id: r for r, _ in lexical_hits} | {r.id: r for r, _ in semantic}
            weights = [self.settings.lexical_weight, self.settings.semantic_weight]
            if self.settings.fusion == "rrf":
                fused = rrf([[r.id for r, _ in lexical_hits], [r.id for r, _ in semantic]],
                            k=self.settings.rrf_k, weights=weights)
            else:
                if lexical_z is None:
                    lexical_z = standard_scores([(r.id, s) for r, s in lexical_hits])
                fused = fuse_standard_scores(
                    [lexical_z, standard_scores([(r.id, s) for r, s in semantic])],
                    weights=weights)
            ranked = [(by_id[i], score) for i, score in fused]
        if weight:
            records = {r.id: r for r, _ in ranked}
            ranked = [(records[i], score) for i, score in recency_order(
                [(r.id, score, r.created_at.timestamp()) for r, score in ranked], float(weight))]
        else:  # recency only breaks exact ties: no timestamp read outside one (ADR 0037)
            ranked = newest_first_on_ties(ranked, _score_of, _created_of)
        page = ranked[offset: offset + k]
        next_cursor = _encode_cursor(offset + k, query) if len(ranked) > offset + k else None
        page = self._full_page(page, stores_by_name)

        def body(record: MemoryRecord) -> str:
            return self._snippet_body(stores_by_name, record)

        missing = [record for record, _ in page if record.id not in snippets]
        by_scope: dict[str, builtins.list[MemoryRecord]] = {}
        for record in missing:
            by_scope.setdefault(record.scope, []).append(record)
        if len(missing) > 1 and any(stores_by_name[scope].reads_decode_video(records)
                                    for scope, records in by_scope.items()):
            # a video body not in the frame cache is decoded from its segment's frame (PyAV
            # and zxing release the GIL): the page's frames are decoded side by side; cached
            # ones are read in a loop, cheaper than the hand-off to the pool (ADR 0034)
            texts = list(self._search_pool.map(body, missing))
        else:
            texts = [body(record) for record in missing]
        snippets.update((record.id, best_snippet(text, query, snippet_chars))
                        for record, text in zip(missing, texts, strict=True))
        hits = [SearchHit(record.id, float(score), record.title, snippets[record.id],
                          record.tags, record.kind, record.scope, record.created_at)
                for record, score in page]
        return SearchResult(tuple(hits), next_cursor, mode_used,
                            tuple(s.name for s in stores), note)

    @staticmethod
    def _snippet_body(stores_by_name: Mapping[str, OpenScope], record: MemoryRecord) -> str:
        """The text a search result's snippet is cut from; "" (logged) when unreadable: one
        unreadable body must not sink the whole search."""
        try:
            return stores_by_name[record.scope].read_body(record)
        except (NotFoundError, CorruptionError, UnicodeDecodeError) as exc:
            log.error("cannot read memory %s for its snippet: %s", record.id, exc)
        except Exception:
            log.exception("cannot read memory %s for its snippet", record.id)
        return ""

    def _full_page(self, page: builtins.list[tuple[MemoryRecord, float]],
                   stores: Mapping[str, OpenScope]) -> builtins.list[tuple[MemoryRecord, float]]:
        """The page with full records. Team scopes rank records carrying only what ranking
        reads (ADR 0031); their shown hits are looked up here, one query per scope (a memory
        deleted meanwhile leaves the page). Embedded scopes' records are full already."""
        wanted: dict[str, builtins.list[str]] = {}
        for record, _ in page:
            if stores[record.scope].backend_name == "team":
                wanted.setdefault(record.scope, []).append(record.id)
        if not wanted:
            return page
        stored = [stores[name] for name in wanted]
        found = {(store.name, memory_id): record for store, fetched in zip(
            stored, self._each_scope(stored, lambda s: s.page_records(  # type: ignore[attr-defined]
                wanted[s.name])), strict=True) for memory_id, record in fetched.items()}
        return [(found.get((r.scope, r.id), r), score) for r, score in page
                if r.scope not in wanted or (r.scope, r.id) in found]

    def _semantic(self, query: str, depth: int, filters: SearchFilters,
                  stores: Sequence[OpenScope], include_superseded: bool = False,
                  exact: int | None = None, embedded: threading.Event | None = None
                  ) -> tuple[builtins.list[tuple[MemoryRecord, float]] | None, str | None]:
        """The vector ranking (``depth`` per scope, or with ``exact`` just deep enough for its
        first ``exact`` entries to be exact) and a note on what it covered; None when it
        cannot contribute (no model, or no memory has a vector yet): the result says
        ``lexical``. ``embedded`` is set once the query is embedded (or cannot be)."""
        self.embedder.start()
        try:
            vector = self.embedder.embed_query(query)
        except EmbeddingUnavailable as exc:
            return None, f"semantic search unavailable ({exc}); lexical results only"
        finally:
            if embedded is not None:
                embedded.set()
        for store in stores:
            store.use_model(self.embedder.model_id, self.embedder.dim)
        covered = total = 0
        for store in stores:
            has, out_of = store.vector_coverage()
            covered, total = covered + has, total + out_of
        if total and not covered:
            return None, (f"semantic search has no vectors yet (0 of {total:,} memories "
                          "embedded); lexical results only")
        def fetch(n: int) -> builtins.list[builtins.list[tuple[MemoryRecord, float]]]:
            return self._each_scope(stores, lambda s: s.vector_search(
                vector, n, filters, include_superseded=include_superseded), side_by_side=True)

        semantic = (_merge_by_score(fetch(depth)) if exact is None
                    else _exact_top(fetch, exact, exact + 1))
        note = None
        if covered < total:
            note = (f"semantic search covers {covered:,} of {total:,} memories so far; "
                    "the rest are found by keywords only")
        return semantic, note

    def _each_scope(self, stores: Sequence[OpenScope], fetch: Callable[[OpenScope], _T],
                    *, side_by_side: bool = False) -> builtins.list[_T]:
        """``fetch`` for every scope; team scopes (a database round trip each, ADR 0025) side
        by side on their own connections, embedded ones in turn (in-process work) unless
        ``side_by_side``: the HNSW search releases the GIL, so the second scope's graph walk
        runs on the other core while this thread walks the first (ADR 0033)."""
        if len(stores) > 1 and all(s.backend_name == "team" for s in stores):
            return list(self._scope_pool.map(fetch, stores))
        if len(stores) > 1 and side_by_side:
            others = [self._scope_pool.submit(fetch, s) for s in stores[1:]]
            try:
                first = fetch(stores[0])
            finally:
                wait(others)  # the scopes they read must stay open until they are done
            return [first, *(f.result() for f in others)]
        return [fetch(s) for s in stores]

    def catch_up_embeddings(self, seconds: float,
                            scopes: str | Sequence[str] | None = None) -> int:
        """Load the model and embed memories of ``scopes`` (default: the searched ones) still
        waiting for a vector, for up to ``seconds``: the CLI runs this before a semantic
        search, where a server's background worker embeds all the time. Returns how many
        memories still wait."""
        stores = self._search_stores(scopes)
        if not self.embedder.enabled or not stores:
            return 0
        deadline = time.monotonic() + seconds
        if self.embedder.wait_ready(max(0.0, seconds)):
            while time.monotonic() < deadline and self._embed_pass():
                pass
            with self._maint_lock:
                for store in stores:
                    if not store.closed:
                        store.commit_indexes(force=True)
        return sum(s.embed_waiting() for s in stores if not s.closed)

    def stats(self, scope: str | None = None) -> builtins.list[Stats]:
        stores = self._existing_scopes([scope] if scope else None)
        out = []
        for store in stores:
            details = store.stats()
            out.append(Stats(
                scope=store.name,
                memories=details.pop("memories"),
                text_bytes=details.pop("text_bytes"),
                stored_bytes=details.pop("stored_bytes"),
                backend=details.pop("backend"),
                pending_bodies=details.pop("pending_bodies"),
                embedder=self.embedder.state,
                details=details,
            ))
        return out

    # ----------------------------------------------------------------- maintenance
    def flush(self, *, embed: bool = True) -> None:
        """Return once every memory stored before the call is in storage and both indexes
        (with ``embed`` False: in storage and the lexical index; no model is loaded)."""
        stores = list(self._scopes.values())
        with self._maint_lock:
            for store in stores:
                store.write_batch(everything=True)
                store.commit_indexes(force=True)
        if embed and self.embedder.enabled and stores:
            self.embedder.start()
            if self.embedder.wait_ready(FLUSH_MODEL_WAIT_SECONDS):
                while self._embed_pass():
                    pass
                for store in stores:
                    store.commit_indexes(force=True)

    def verify(self, progress: Callable[[int, int], None] | None = None
               ) -> builtins.list[Problem]:
        problems: builtins.list[Problem] = []
        for store in self._existing_scopes(None):
            problems.extend(store.verify(progress))
        return problems

    def compact(self, progress: Callable[[int, int], None] | None = None
                ) -> dict[str, CompactReport]:
        reports = {}
        self.flush(embed=False)
        for store in self._existing_scopes(None):
            if store.read_only:
                continue
            with self._maint_lock:
                reports[store.name] = store.compact(progress)
        return reports

    def migrate(self, to: str, *, scope: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Move one scope's bodies to the ``to`` backend in place (crash-safe; the scope
        keeps serving meanwhile). Returns the migration report."""
        store = self._scope(scope, write=True)
        if not isinstance(store, ScopeStore):
            raise ValidationError("scope", f"scope {store.name} is in the team engine; "
                                  "'migrate --to' moves the bodies of embedded scopes only "
                                  "('migrate --from-database' copies a team scope out)")
        if store.read_only:
            raise ReadOnlyError(f"scope {store.name} is open read-only (another process "
                                "writes it); migrate needs the writer")
        store.write_batch(everything=True)
        return migrate_scope(store, to, progress).to_dict()

    def repair(self, progress: Callable[[int, int], None] | None = None
               ) -> dict[str, dict[str, Any]]:
        """Per scope: quarantine damaged files, drop unreadable memories, rebuild indexes."""
        reports = {}
        self.flush(embed=False)
        for store in self._existing_scopes(None):
            with self._maint_lock:  # no background batch runs during the repair
                reports[store.name] = store.repair(progress)
        return reports

    def info(self) -> dict[str, Any]:
        from . import __version__

        return {
            "version": __version__,
            "data_dir": str(self.settings.data_dir),
            "backend": self.settings.backend,  # for new scopes; each scope's own is in scopes
            "video_profile": self.settings.video_profile,
            "repository": str(self.layout.repo_root) if self.layout.repo_root else None,
            "default_scope": self.default_scope,
            "search_scopes": list(self.search_scopes),
            "scopes": self.scopes(),
            "embed_model": self.settings.embed_model if self.settings.embeddings else None,
            "embedder": self.embedder.state,
        }

    def close(self) -> None:
        """Seal pending bodies, commit indexes, checkpoint, release locks. Idempotent.

        A view (``view()``) only stops being usable; its scopes stay open for the others."""
        if self._closed:
            return
        self._closed = True
        if self._root is not self:
            return
        self._stop.set()
        self._nudge()
        self._search_pool.shutdown(wait=True)
        self._scope_pool.shutdown(wait=True)
        self.embedder.close()  # stop a conversion; wait (bounded) for a load in flight
        for thread in self._threads:
            thread.join(timeout=60)
        errors = []
        for store in self._stores.values():
            try:
                store.close()
            except Exception as exc:  # close every scope even if one fails
                log.exception("closing scope %s failed", store.name)
                errors.append(exc)
        self._stores.clear()
        if self._team is not None:
            self._team.close()
            self._team = None
        if errors:
            raise errors[0]

    # ----------------------------------------------------------------- background
    def _start_background(self) -> None:
        if self._threads:
            return
        if self.background_embedding and not self.settings.read_only:
            self.embedder.start()
        for target, name in ((self._batcher, "memvid-batcher"), (self._embedder, "memvid-embed"),
                             (self._compactor, "memvid-compact")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _nudge(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _batcher(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                self._wake.wait(timeout=min(0.25, self.settings.batch_max_seconds))
            for store in list(self._stores.values()):
                if self._stop.is_set():
                    return
                try:
                    with self._maint_lock:
                        if store.closed:  # replaced by _revisit_fallback meanwhile
                            continue
                        if store.due():
                            store.write_batch()
                        store.apply_deletes()
                        store.commit_indexes()
                        store.checkpoint()  # also releases the WAL text of sealed bodies
                except Exception:  # keep serving; the WAL still holds every body
                    log.exception("background batch for scope %s failed; will retry",
                                  store.name)
                    self._stop.wait(1.0)

    def _compactor(self) -> None:
        """Background compaction, one bounded step at a time: it holds only the backend's own
        writer lock (a seal waits for it; a store, a get or a search never do)."""
        if not self.settings.auto_compact or self.settings.read_only:
            return
        while not self._stop.wait(COMPACT_INTERVAL_SECONDS):
            for store in list(self._stores.values()):
                try:
                    while not self._stop.is_set() and store.compact_step() is not None:
                        pass
                except ClosedError:
                    continue  # replaced or closing meanwhile
                except Exception:  # keep serving; a later pass tries again
                    log.exception("background compaction of scope %s failed", store.name)

    def _embedder(self) -> None:
        while not self._stop.is_set():
            if not self.embedder.ready:  # never starts a load: search or start() does
                if self.embedder.state.startswith(("unavailable", "disabled")):
                    return
                self._stop.wait(0.5)
                continue
            try:
                worked = self._embed_pass()
            except Exception:
                log.exception("background embedding failed; will retry")
                worked = False
                self._stop.wait(1.0)
            if not worked:
                with self._wake:
                    self._wake.wait(timeout=0.5)

    def _embed_pass(self) -> bool:
        """Embed one small batch per scope; False when nothing was waiting."""
        worked = False
        with self._embed_lock:
            for store in list(self._stores.values()):
                if store.closed or store.read_only:  # a reader's vectors are the writer's
                    continue
                store.use_model(self.embedder.model_id, self.embedder.dim)
                # Up to 8 model batches at once: the embedder sorts them by length, so each
                # batch of embed_batch pads little (bulk import 53 -> 76 memories/s measured).
                batch = store.take_embed_batch(self.settings.embed_batch * 8)
                if not batch:
                    continue
                vectors = self.embedder.embed_documents([text for _, text in batch])
                store.add_vectors([body_id for body_id, _ in batch], vectors)
                worked = True
        return worked


def _score_of(hit: tuple[MemoryRecord, float]) -> float:
    return hit[1]


def _created_of(hit: tuple[MemoryRecord, float]) -> float:
    return hit[0].created_at.timestamp()


def _merge_by_score(lists: Iterable[list[tuple[MemoryRecord, float]]]
                    ) -> list[tuple[MemoryRecord, float]]:
    merged = [hit for hits in lists for hit in hits]
    merged.sort(key=lambda hit: hit[1], reverse=True)
    return merged


def _exact_top(fetch: Callable[[int], builtins.list[builtins.list[tuple[MemoryRecord, float]]]],
               need: int, depth: int) -> builtins.list[tuple[MemoryRecord, float]]:
    """The scopes' rankings merged, fetched ``depth`` deep, with the first ``need`` entries
    exact: deeper while a list that came back full ends at or above the ``need``-th score
    (a memory it did not return could tie with it, and ties go to the newer memory)."""
    while True:
        lists = fetch(depth)
        merged = _merge_by_score(lists)
        if len(merged) < need or not any(
                len(hits) >= depth and hits[-1][1] >= merged[need - 1][1] for hits in lists):
            return merged
        depth *= 4


def _encode_cursor(offset: int, query: str) -> str:
    digest = hashlib.sha256(query.encode("utf-8", "replace")).hexdigest()[:12]
    raw = json.dumps({"o": offset, "q": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None, query: str) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        offset = int(data["o"])
        digest = hashlib.sha256(query.encode("utf-8", "replace")).hexdigest()[:12]
    except (ValueError, KeyError, TypeError):
        raise ValidationError("cursor", "is not a cursor this server gave out") from None
    if data.get("q") != digest or not 0 <= offset <= 100_000:
        raise ValidationError("cursor", "belongs to a different query; search again without it")
    return offset


class ManagerPool:
    """Managers for every repository over one data directory, in one process (the service).

    Each MCP session gets the manager of its repository, so project and committed scopes
    resolve per client as in a single process, while the global scope, every lock, the model
    and the background work exist once.
    """

    def __init__(self, settings: Settings) -> None:
        self._root = MemoryManager(settings.replace(project=None), service_owner=True)
        self._lock = threading.Lock()
        self._views: dict[Path, MemoryManager] = {}

    def manager(self, repo_root: Path | None) -> MemoryManager:
        if repo_root is None:
            return self._root
        with self._lock:
            view = self._views.get(repo_root)
            if view is None:
                view = self._views[repo_root] = self._root.view(repo_root)
            return view

    def close(self) -> None:
        self._root.close()
