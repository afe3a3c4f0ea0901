"""Move a scope's bodies to the other storage backend, in place (``memvid-mcp migrate``).

The backend a scope uses is the one ``scope.json`` records (ADR 0012), so rewriting that file
is the commit point: every live body is copied into the target backend first (its own
durable writes: sealed segments or fsynced body files), then ``scope.json`` is replaced
atomically, then the old backend's files are removed. A crash (SIGKILL) anywhere leaves a
scope that opens with everything: before the commit it is still the old backend (the
target's partial files are ignored, and a rerun reuses them); after it, the new backend holds
every body and a rerun removes what the old one left behind.

Writers keep working meanwhile: the bulk copy holds no lock; only the last catch-up (bodies
sealed or deleted during the copy), the commit and the swap hold the scope's backend lock.
Bodies still waiting in the WAL are not copied: the next batch stores them in the new backend.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.config import BACKENDS
from ..core.errors import CorruptionError, NotFoundError, ReadOnlyError, ValidationError
from ..core.hashing import IDENTITY_VERSION
from ..core.models import iso, utcnow
from ..storage.base import StorageAdapter
from ..storage.video.manifest import FILE_NAME as MANIFEST_FILE
from ..storage.video.manifest import LEGACY_NAME as LEGACY_MANIFEST
from .scope_meta import ScopeMeta, read_scope_meta, write_scope_meta
from .scope_store import ScopeStore, open_backend

log = logging.getLogger(__name__)

BATCH_BYTES = 4 << 20  # raw bytes per put_many: one full video segment
BATCH_BODIES = 2048


@dataclass(frozen=True)
class MigrationReport:
    scope: str
    source: str
    target: str
    memories: int  # live memories whose body is in the backend
    copied: int  # bodies written to the target by this run
    copied_bytes: int
    removed_files: int  # files of the other backend removed
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def migrate_scope(store: ScopeStore, target: str,
                  progress: Callable[[int, int], None] | None = None) -> MigrationReport:
    """Convert ``store`` to the ``target`` backend; a no-op (but for leftover files of the
    other backend, removed once every body is in this one) when it already uses it."""
    if target not in BACKENDS:
        raise ValidationError("to", f"must be one of {', '.join(BACKENDS)}")
    if store.read_only:
        raise ReadOnlyError(f"scope {store.name} is open read-only; migrate needs the writer")
    started = time.monotonic()
    source = store.backend_name
    if source == target:
        with store._backend_lock:
            removed = _remove_leftovers(store, target)
        return MigrationReport(store.name, source, target, len(_stored(store, store.backend)),
                               0, 0, removed, time.monotonic() - started)
    new = open_backend(store.settings, store.directory, backend=target)
    swapped = False
    try:
        copied, copied_bytes = _copy(store, new, progress)  # the bulk: writers go on
        with store._backend_lock:  # the catch-up, the commit and the swap
            more, more_bytes = _copy(store, new, None)
            copied, copied_bytes = copied + more, copied_bytes + more_bytes
            live = _stored(store, store.backend)
            absent = [b for b in live if not new.contains(b)]
            if absent:
                raise CorruptionError(str(store.directory),
                                      f"{len(absent)} bodies did not reach the {target} backend")
            stale = set(new.ids()) - _referenced(store)
            if stale:
                new.delete_many(sorted(stale))
            try:
                recorded = read_scope_meta(store.directory)
            except CorruptionError:
                recorded = None  # rewritten whole below
            created = recorded.created_at if recorded else iso(utcnow()) or ""
            write_scope_meta(store.directory, ScopeMeta(target, IDENTITY_VERSION, created))
            with store._lock:
                old, store.backend, store.backend_name = store.backend, new, target
            swapped = True
        old.close()
        log.info("scope %s: %s backend -> %s: %d bodies copied (%d bytes)", store.name,
                 source, target, copied, copied_bytes)
        removed = _remove_backend_files(store.directory, source)
    finally:
        if not swapped:
            new.close()
    return MigrationReport(store.name, source, target, len(live), copied, copied_bytes,
                           removed, time.monotonic() - started)


def _referenced(store: ScopeStore) -> set[str]:
    with store._lock:
        return {r.body_id for r in store._records.values()} | set(store._pending)


def _stored(store: ScopeStore, backend: StorageAdapter) -> list[str]:
    """Body ids of live memories held by ``backend`` (not those still waiting in the WAL)."""
    with store._lock:
        ids = [r.body_id for r in store._records.values() if r.body_id not in store._pending]
    return [b for b in ids if backend.contains(b)]


def _copy(store: ScopeStore, new: StorageAdapter,
          progress: Callable[[int, int], None] | None) -> tuple[int, int]:
    """Copy the live bodies ``new`` lacks, in segment-sized batches; (bodies, bytes)."""
    todo = [b for b in _stored(store, store.backend) if not new.contains(b)]
    done = copied_bytes = 0
    batch: list[tuple[str, bytes]] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size, done
        if batch:
            new.put_many(batch)
            done += len(batch)
            batch, size = [], 0
            if progress is not None:
                progress(done, len(todo))

    for body_id in todo:
        try:
            body = store.backend.get(body_id)
        except NotFoundError:  # deleted meanwhile
            continue
        except CorruptionError as exc:
            raise CorruptionError(exc.path, f"{str(exc).split(': ', 1)[-1]}; nothing was "
                                  "migrated: run 'memvid-mcp repair' first") from None
        batch.append((body_id, body))
        size += len(body)
        copied_bytes += len(body)
        if size >= BATCH_BYTES or len(batch) >= BATCH_BODIES:
            flush()
    flush()
    if progress is not None:
        progress(len(todo), len(todo))
    return done, copied_bytes


def _backend_files(directory: Path, backend: str) -> list[Path]:
    if backend == "file":
        return [directory / "bodies"]
    return [directory / "segments", directory / MANIFEST_FILE, directory / LEGACY_MANIFEST]


def _remove_backend_files(directory: Path, backend: str) -> int:
    """Remove a backend's files (after the commit: whatever a crash leaves, a rerun removes)."""
    removed = 0
    for path in _backend_files(directory, backend):
        if path.is_dir():
            removed += sum(1 for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
            removed += 1
    return removed


def _remove_leftovers(store: ScopeStore, backend: str) -> int:
    """The other backend's files, once every live body is in ``backend`` (until then they may
    hold a text the scope still needs: open-time rescue looks there, ADR 0012)."""
    other = next(b for b in BACKENDS if b != backend)
    if not any(p.exists() for p in _backend_files(store.directory, other)):
        return 0
    with store._lock:
        ids = [r.body_id for r in store._records.values() if r.body_id not in store._pending]
    if not all(store.backend.contains(b) for b in ids):
        log.warning("scope %s: keeping the %s backend's files: some memories have no body in "
                    "the %s backend (run 'memvid-mcp repair')", store.name, other, backend)
        return 0
    return _remove_backend_files(store.directory, other)
