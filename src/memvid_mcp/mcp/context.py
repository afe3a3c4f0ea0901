"""Session-start context: the memories most worth knowing before a session's first prompt.

One selection, three ways in: ``memvid-mcp context`` (what a Claude Code ``SessionStart``
hook runs; its standard output becomes context), the MCP prompt ``session_context`` and the
resource ``memvid://context``. No ``mcp`` import here.

Order: pinned memories, then decisions and preferences, then other recent memories, newest
first within each; superseded memories are left out. Each memory is cut to
``PER_MEMORY_CHARS`` and the whole text stays within ``max_tokens`` by the same pessimistic
estimate as ``memory_search`` (``budget.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.models import iso
from .budget import estimate_tokens

if TYPE_CHECKING:
    from ..core.models import MemoryRecord
    from ..manager import MemoryManager

DEFAULT_CONTEXT_TOKENS = 1500
MIN_CONTEXT_TOKENS = 100
MAX_CONTEXT_TOKENS = 50_000
PER_MEMORY_CHARS = 600
MIN_PART = 80  # a memory cut shorter than this is left out instead
SCAN_LIMIT = 1000  # newest memories per scope looked at
KEY_KINDS = ("decision", "preference")
HEADER = "Memories from earlier sessions (memvid-mcp), most important first:"
FOOTER = ("Search for more with memory_search; memory_get opens an id in full. To correct a "
          "memory, store the new text with supersedes=[its id].")
EMPTY = "No memories stored for this project yet (memvid-mcp): memory_store saves some."


@dataclass(frozen=True, slots=True)
class SessionContext:
    """The context text, the ids it shows, the scopes looked in, and whether memories were
    left out for the budget (each shown memory is cut to ``PER_MEMORY_CHARS`` anyway)."""

    text: str
    ids: tuple[str, ...]
    scopes: tuple[str, ...]
    truncated: bool

    def to_dict(self) -> dict[str, Any]:
        return {"context": self.text, "ids": list(self.ids), "scopes": list(self.scopes),
                "truncated": self.truncated}


def _rank(records: list[MemoryRecord]) -> list[MemoryRecord]:
    """Pinned, then decisions and preferences, then the rest; newest first within each."""
    live = {r.id for r in records}
    current = [r for r in records if r.superseded_by not in live]
    newest = sorted(current, key=lambda r: (r.created_at, r.id), reverse=True)
    pinned = [r for r in newest if r.pinned]
    key = [r for r in newest if not r.pinned and r.kind in KEY_KINDS]
    rest = [r for r in newest if not r.pinned and r.kind not in KEY_KINDS]
    return pinned + key + rest


def _entry(record: MemoryRecord, text: str, limit: int) -> str:
    body = " ".join(text.split())
    if len(body) > limit:
        body = body[: max(0, limit - 1)].rstrip() + "…"
    label = "pinned " + record.kind if record.pinned else record.kind
    title = f"{record.title}: " if record.title else ""
    day = (iso(record.created_at) or "")[:10]
    return f"- [{label}, {record.scope}, {day}, {record.id}] {title}{body}"


def _fit(record: MemoryRecord, text: str, tokens: int) -> str | None:
    """The entry for ``record`` cut to fit ``tokens``; None when not even ``MIN_PART``
    characters of its text fit."""
    whole = _entry(record, text, PER_MEMORY_CHARS)
    if estimate_tokens(whole) <= tokens:
        return whole
    low, high = 0, PER_MEMORY_CHARS
    while low < high:
        mid = (low + high + 1) // 2
        if estimate_tokens(_entry(record, text, mid)) <= tokens:
            low = mid
        else:
            high = mid - 1
    return _entry(record, text, low) if low >= MIN_PART else None


def session_context(manager: MemoryManager, max_tokens: int = DEFAULT_CONTEXT_TOKENS
                    ) -> SessionContext:
    """The memories most worth knowing for the manager's project, within ``max_tokens``."""
    scopes = [s["name"] for s in manager.scopes() if s["available"]]
    records: list[MemoryRecord] = []
    for scope in scopes:
        records.extend(manager.list(scope=scope, limit=SCAN_LIMIT).memories)
    ranked = _rank(records)
    if not ranked:
        return SessionContext(EMPTY, (), tuple(scopes), False)
    lines = [HEADER]
    used = estimate_tokens(HEADER) + estimate_tokens(FOOTER) + 2
    ids: list[str] = []
    truncated = False
    for start in range(0, len(ranked), 20):  # bodies are read a page at a time, as needed
        batch = ranked[start:start + 20]
        texts = {m.record.id: m.text for m in manager.get([r.id for r in batch]).memories}
        for record in batch:
            text = texts.get(record.id)
            if text is None:
                continue
            line = _fit(record, text, max_tokens - used - 1)
            if line is None:
                truncated = True
                break
            lines.append(line)
            ids.append(record.id)
            used += estimate_tokens(line) + 1
        if truncated:
            break
    lines.append(FOOTER)
    return SessionContext("\n".join(lines), tuple(ids), tuple(scopes), truncated)
