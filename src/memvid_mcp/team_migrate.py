"""Move a scope between the embedded engine and the team engine (``memvid-mcp migrate
--to-database URL --segments URL`` and ``--from-database URL --segments URL``; ADR 0025,
addendum).

Copy, verify, and leave the source alone: every live memory is stored in the target with its
id, timestamps, tags, pinned flag, expiry and supersede links (the import path of
``store()``), its vector carried over when the source's model is the configured one, then the
target seals its pending bodies and every source memory is checked in the target (present by
id, or folded into a memory with the same text; its text read back from the target hashes to
the recorded sha256). The source is never written, so a run killed anywhere is finished by
running it again: memories already in the target are skipped by id, and the target's dedup by
(scope, sha256) folds a store that committed just before the kill into itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from .core.errors import CorruptionError, NotFoundError, ReadOnlyError, ValidationError
from .core.hashing import content_sha256
from .core.models import MemoryRecord
from .core.validation import StoreInput
from .manager import MemoryManager
from .store.scope_store import ScopeStore
from .team import TeamEngine, TeamScopeStore, inventory

log = logging.getLogger(__name__)

CHUNK = 256  # memories read, stored and given vectors per step (one progress update)
Progress = Callable[[int, int], None]
Present = dict[str, tuple[str, str, bool, datetime]]  # id -> (sha256, body_id, vector?, updated)


@dataclass(frozen=True)
class TeamMigrationReport:
    scope: str
    direction: str  # "to-database" or "from-database"
    source: str  # the scope's directory, or database#key
    target: str
    memories: int  # live memories in the source, every one verified in the target
    copied: int  # stored in the target by this run
    already_there: int  # present from an earlier (interrupted) run
    folded: int  # the same text was already in the target under another id
    kept_newer: int  # the target's memory of that id was changed later: not overwritten
    vectors_copied: int  # vectors carried over (not recomputed)
    sealed: int  # bodies the target sealed into segments after the copy
    seconds: float
    source_next: str  # what to do with the untouched source

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def migrate_to_database(manager: MemoryManager, database_url: str, segment_url: str, *,
                        scope: str | None = None,
                        progress: Progress | None = None) -> TeamMigrationReport:
    """Copy an embedded scope of ``manager`` into the team engine at the two URLs."""
    source = _local(manager, scope, "migrate --to-database copies an embedded scope")
    if source.read_only:
        raise ReadOnlyError(f"scope {source.name} is open read-only (another process writes "
                            "it); stop that process, then migrate")
    with _engine(manager, database_url, segment_url) as engine:
        target = engine.open_scope(source.name, manager.team_key(source.name))
        carry = _carry_model(_local_model(source), inventory.model(target), manager)
        report = _transfer(source, target, "to-database", carry, progress)
    return _with_note(report, (
        f"the local scope {source.directory} is unchanged and no longer needed: set "
        "MEMVID_DATABASE_URL and MEMVID_SEGMENT_URL (these URLs) for every memvid-mcp "
        f"instance, then delete {source.directory} (or keep it as a backup)"))


def migrate_from_database(manager: MemoryManager, database_url: str, segment_url: str, *,
                          scope: str | None = None,
                          progress: Progress | None = None) -> TeamMigrationReport:
    """Copy a team scope into the embedded scope of ``manager`` (same scope name and
    project)."""
    target = _local(manager, scope, "migrate --from-database copies into an embedded scope: "
                    "unset MEMVID_DATABASE_URL and MEMVID_SEGMENT_URL for this command")
    if target.read_only:
        raise ReadOnlyError(f"scope {target.name} is open read-only (another process writes "
                            "it); stop that process, then migrate")
    with _engine(manager, database_url, segment_url) as engine:
        source = engine.open_scope(target.name, manager.team_key(target.name))
        carry = _carry_model(inventory.model(source), _local_model(target), manager)
        report = _transfer(source, target, "from-database", carry, progress)
    return _with_note(report, (
        f"the team scope {source.directory} is unchanged: unset MEMVID_DATABASE_URL and "
        "MEMVID_SEGMENT_URL to use the local copy; remove the team's rows and segments only "
        "once no instance serves them"))


# ----------------------------------------------------------------------------- the copy
def _transfer(source: Any, target: Any, direction: str, carry: tuple[str, int] | None,
              progress: Progress | None) -> TeamMigrationReport:
    started = time.monotonic()
    records = sorted(source.records(), key=lambda r: r.id)
    have = _present(target)
    if carry is not None:
        target.use_model(*carry)
    copied = already = folded = newer = vectors = 0
    for start in range(0, len(records), CHUNK):
        chunk = records[start:start + CHUNK]
        steps = {r.id: _step(r, have) for r in chunk}
        texts = _texts(source, [r for r in chunk if steps[r.id] == "store"])
        needs_vector: dict[str, str] = {}  # source body_id -> target body_id
        for record in chunk:
            if steps[record.id] == "there":
                already += 1
                _, body_id, has_vector, _ = have[record.id]
                if not has_vector:
                    needs_vector[record.body_id] = body_id
                continue
            if steps[record.id] == "newer":
                newer += 1
                continue
            stored, _, _ = target.store(_item(record, texts[record.body_id]),
                                        imported=_kept(record))
            if stored.id != record.id:
                folded += 1
                continue
            copied += 1
            needs_vector[record.body_id] = stored.body_id
        if carry is not None and needs_vector:
            vectors += _copy_vectors(source, target, needs_vector)
        if progress is not None:
            progress(start + len(chunk), len(records))
    if progress is not None:
        progress(len(records), len(records))
    sealed = target.write_batch(everything=True)
    _verify(records, target)
    log.info("scope %s: %s: %d memories verified (%d copied, %d already there, %d folded, "
             "%d newer in the target, %d vectors carried)", source.name, direction,
             len(records), copied, already, folded, newer, vectors)
    return TeamMigrationReport(source.name, direction, str(source.directory),
                               str(target.directory), len(records), copied, already, folded,
                               newer, vectors, sealed, time.monotonic() - started, "")


def _step(record: MemoryRecord, have: Present) -> str:
    """"there" (same id and text in the target), "newer" (the target's memory of this id
    was changed after the source's: an earlier migration, then edits; kept), or "store"."""
    mine = have.get(record.id)
    if mine is None:
        return "store"
    if mine[0] == record.sha256:
        return "there"
    return "newer" if mine[3] >= record.updated_at else "store"


def _item(record: MemoryRecord, text: str) -> StoreInput:
    return StoreInput(text=text, title=record.title, kind=record.kind, tags=record.tags,
                      scope=record.scope, metadata=record.metadata, id=record.id,
                      source=record.source, expires_at=record.expires_at,
                      pinned=record.pinned)


def _kept(record: MemoryRecord) -> dict[str, Any]:
    """The fields the target keeps as the source had them (timestamps, supersede links)."""
    state = record.to_state()
    for key in ("body_id", "scope", "sha256", "size"):
        state.pop(key, None)
    return state


def _texts(store: Any, records: Sequence[MemoryRecord]) -> dict[str, str]:
    try:
        if isinstance(store, TeamScopeStore):
            return store.read_bodies(records)
        return {r.body_id: store.read_body(r) for r in records}
    except (NotFoundError, CorruptionError) as exc:
        raise CorruptionError(str(store.directory), f"{str(exc).split(': ', 1)[-1]}; nothing "
                              "was removed: run 'memvid-mcp repair' on the source first"
                              ) from None


def _present(store: Any) -> Present:
    if isinstance(store, TeamScopeStore):
        return inventory.present(store)
    return {r.id: (r.sha256, r.body_id, store.vectors.has(r.body_id), r.updated_at)
            for r in store.records()}


def _copy_vectors(source: Any, target: Any, bodies: dict[str, str]) -> int:
    """Carry the source's vectors of ``bodies`` (source body_id -> target body_id)."""
    if isinstance(source, TeamScopeStore):
        found = inventory.vectors(source, list(bodies))
    else:
        found = {b: v for b in bodies if (v := source.vectors.vector(b)) is not None}
    if not found:
        return 0
    ids = list(found)
    target.add_vectors([bodies[b] for b in ids], np.stack([found[b] for b in ids]))
    return len(ids)


def _verify(records: Sequence[MemoryRecord], target: Any) -> None:
    """Every source memory is in the target (by id, or folded into one with its text), and
    the target's text of it hashes to the recorded sha256."""
    have = _present(target)
    by_sha = {v[0]: memory_id for memory_id, v in have.items()}
    missing = [r.id for r in records if _step(r, have) == "store" and r.sha256 not in by_sha]
    if missing:
        raise CorruptionError(str(target.directory), f"{len(missing)} memories did not reach "
                              f"the target (first {missing[0]}); the source is untouched: run "
                              "the migration again")
    wanted = {r.id if _step(r, have) != "store" else by_sha[r.sha256] for r in records}
    held = [t for i in sorted(wanted) if (t := target.record(i)) is not None]
    for start in range(0, len(held), CHUNK):
        chunk = held[start:start + CHUNK]
        texts = _texts(target, chunk)
        bad = [r.id for r in chunk if content_sha256(texts[r.body_id]) != r.sha256]
        if bad:
            raise CorruptionError(str(target.directory), f"{len(bad)} memories read back with "
                                  f"another text (first {bad[0]}); the source is untouched")
    if len(held) != len(wanted):
        raise CorruptionError(str(target.directory), f"{len(wanted) - len(held)} memories "
                              "vanished from the target during the check; run it again")


# ----------------------------------------------------------------------------- helpers
def _local(manager: MemoryManager, scope: str | None, why: str) -> ScopeStore:
    store = manager._scope(scope, write=True)
    if not isinstance(store, ScopeStore):
        raise ValidationError("scope", f"scope {store.name} is in the team engine; {why}")
    return store


@contextmanager
def _engine(manager: MemoryManager, database_url: str, segment_url: str
            ) -> Iterator[TeamEngine]:
    """The team engine at the given URLs, closed at the end of the block."""
    engine = TeamEngine(manager.settings.replace(database_url=database_url,
                                                 segment_url=segment_url))
    try:
        yield engine
    finally:
        engine.close()


def _local_model(store: ScopeStore) -> tuple[str, int] | None:
    try:
        data = json.loads((store.directory / "meta" / "embedding.json").read_text("utf-8"))
        return str(data["model"]), int(data["dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _carry_model(source: tuple[str, int] | None, target: tuple[str, int] | None,
                 manager: MemoryManager) -> tuple[str, int] | None:
    """The model whose vectors are carried over: the source's, when it is the configured
    one and the target holds no vectors of another (otherwise the target re-embeds)."""
    if source is None or source[0] != manager.embedder.model_id:
        return None
    if target is not None and target != source:
        return None
    return source


def _with_note(report: TeamMigrationReport, note: str) -> TeamMigrationReport:
    return TeamMigrationReport(**{**report.to_dict(), "source_next": note})  # type: ignore[arg-type]
