"""Typed results, argument types and input helpers of the MCP tools (no ``mcp`` import here).

The result models give each tool its output schema; the argument types carry the parameter
descriptions the model reads. Helpers make inputs forgiving (aliases, comma-separated lists,
relative times) and raise ``ValidationError`` naming the field when input cannot be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from ..core.errors import ValidationError
from ..core.models import iso
from ..core.validation import check_time_bound
from .budget import MAX_TOKENS, MIN_TOKENS

if TYPE_CHECKING:
    from ..core.models import GetResult, MemoryRecord, SearchResult, Stats, StoreResult

MAX_LIMIT = 100
MAX_CHARS = 200_000
MIN_CHARS = 200
DEFAULT_SEARCH_CHARS = 8_000
DEFAULT_GET_CHARS = 40_000
DEFAULT_LIST_CHARS = 40_000
MIN_SNIPPET_CHARS = 80
MAX_SNIPPET_CHARS = 1000
SEARCH_MODES = {
    "hybrid": "hybrid",
    "lexical": "lexical",
    "keyword": "lexical",
    "bm25": "lexical",
    "text": "lexical",
    "semantic": "semantic",
    "vector": "semantic",
    "embedding": "semantic",
}


# ----------------------------------------------------------------------------- result models


class MemoryInfo(BaseModel):
    """A memory's metadata, without its text; ``supersedes``/``superseded_by`` link it to the
    memories it replaced and the one that replaced it (ADR 0023)."""

    id: str = Field(description="Memory id (26-character ULID); pass it to memory_get/delete.")
    title: str | None
    kind: str
    tags: list[str]
    scope: str = Field(description="Scope the memory lives in.")
    metadata: dict[str, Any]
    source: str | None
    created_at: str | None
    updated_at: str | None
    expires_at: str | None
    pinned: bool
    sha256: str
    size: int = Field(description="Size of the full text in UTF-8 bytes.")
    supersedes: list[str] = Field(default_factory=list)
    superseded_by: str | None = None


class MemoryText(MemoryInfo):
    """A memory with its text (possibly cut by the max_chars budget)."""

    text: str
    text_chars: int = Field(description="Length of the full text in characters.")
    offset: int = Field(description="Character offset of `text` within the full text.")
    truncated: bool = Field(description="True if `text` stops before the end of the memory.")


class StoreOutput(BaseModel):
    id: str = Field(description="Id of the stored memory (the existing one when deduplicated).")
    scope: str = Field(description="Scope the memory was written to.")
    deduplicated: bool = Field(description="True if identical text already existed; nothing new.")
    sha256: str
    replaced: bool = False
    redactions: list[str] = Field(
        default_factory=list,
        description="Secrets redacted before storing: '<kind>' for one in the text, "
        "'<kind>:<field>' for one in another field (e.g. 'aws_access_key:title', "
        "'github_token:metadata.env.TOKEN').",
    )


class SearchHitOutput(BaseModel):
    """One hit. Under a tight ``max_tokens`` only id, title and snippet (or id and snippet)
    are sent, hence the defaults."""

    id: str
    score: float = 0.0
    title: str | None = None
    snippet: str = Field(description="Excerpt around the match; memory_get gives the full text.")
    tags: list[str] = Field(default_factory=list)
    kind: str = ""
    scope: str = ""
    created_at: str | None = None


class SearchOutput(BaseModel):
    results: list[SearchHitOutput]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null at end."
    )
    mode: str = Field(default="", description="Search mode actually used.")
    scopes: list[str] = Field(default_factory=list, description="Scopes that were searched.")
    note: str | None = Field(
        default=None,
        description="Caveat about this answer, e.g. lexical results while the model loads.",
    )
    truncated: bool = Field(default=False, description="True if max_tokens cut anything.")
    omitted: int = Field(
        default=0, description="Results of this page left out by max_tokens (see next_cursor)."
    )


class GetOutput(BaseModel):
    memories: list[MemoryText]
    missing: list[str] = Field(description="Requested ids that do not exist (or were deleted).")
    damaged: list[str] = Field(
        default_factory=list,
        description="Ids that exist but whose stored text failed its checksum (see verify).",
    )
    omitted: list[str] = Field(
        default_factory=list,
        description="Ids found but not returned because max_chars was used up; ask for them next.",
    )
    truncated: bool = Field(description="True if any text was cut by the max_chars budget.")
    scopes: list[str] = Field(description="Scopes that were looked in.")


class DeleteOutput(BaseModel):
    deleted: int = Field(description="Number of memories deleted.")
    ids: list[str] = Field(description="Ids that were asked for.")
    scopes: list[str] = Field(description="Scopes that were looked in.")
    purged: bool = Field(default=False, description=(
        "True: the deleted texts were already removed from every file when this returned."))


class ListOutput(BaseModel):
    memories: list[MemoryInfo]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")
    scopes: list[str] = Field(description="Scopes that were listed.")


class ScopeStats(BaseModel):
    scope: str
    memories: int
    text_bytes: int
    stored_bytes: int
    backend: str
    pending_bodies: int
    embedder: str
    details: dict[str, Any] = Field(default_factory=dict)


class StatsOutput(BaseModel):
    scopes: list[ScopeStats] = Field(description="One entry per scope reported.")


# ----------------------------------------------------------------------------- argument types

_SCOPE_NAMES = "project, committed or global"
_AGE = "ISO 8601 or an age like '7d'"

Text = Annotated[
    str, Field(description="One self-contained fact, decision, preference or note.")
]
Title = Annotated[str | None, Field(description="Short title.")]
Tags = Annotated[list[str] | str | None, Field(description="Tags, e.g. ['ops', 'deploy'].")]
Kind = Annotated[
    str | None,
    Field(description="'note' (default), 'decision', 'preference', 'fact', ..."),
]
WriteScope = Annotated[
    str | None,
    Field(description="project (default in a git repository), committed or global."),
]
Metadata = Annotated[dict[str, Any] | str | None, Field(description="Extra fields (object).")]
Source = Annotated[str | None, Field(description="Where it came from (file path, URL).")]
TtlSeconds = Annotated[float | None, Field(description="Expire after this many seconds.")]
ExpiresAt = Annotated[str | None, Field(description="Expire at this time (ISO 8601).")]
Pinned = Annotated[bool, Field(description="Important: shown first at session start.")]
Query = Annotated[str | None, Field(
    description="What to look for: keywords or a question. Naming a speaker (\"what did Alice "
                "say about deploys\") favours memories written as \"Alice: ...\".")]
QueryAlias = Annotated[str | None, Field(description="Alias of `query`.")]
_LIMIT_RANGE: dict[str, Any] = {"minimum": 1, "maximum": MAX_LIMIT}
_CHARS_RANGE: dict[str, Any] = {"minimum": MIN_CHARS, "maximum": MAX_CHARS}
Limit = Annotated[
    int | None,
    Field(description=f"Maximum results, 1-{MAX_LIMIT}.", json_schema_extra=_LIMIT_RANGE),
]
LimitAlias = Annotated[
    int | None, Field(description="Alias of `limit`.", json_schema_extra=_LIMIT_RANGE)
]
Scopes = Annotated[
    list[str] | str | None,
    Field(description=f"{_SCOPE_NAMES}; default project and global."),
]
IdScopes = Annotated[
    list[str] | str | None, Field(description=f"{_SCOPE_NAMES}; default all.")
]
ListScope = Annotated[
    str | None, Field(description=f"{_SCOPE_NAMES}; default project and global.")
]
StatsScope = Annotated[str | None, Field(description=f"{_SCOPE_NAMES}; default all.")]
TagsAny = Annotated[
    list[str] | str | None, Field(description="Only memories with any of these tags.")
]
TagsAll = Annotated[
    list[str] | str | None, Field(description="Only memories with all of these tags.")
]
KindFilter = Annotated[str | None, Field(description="Only memories of this kind.")]
Since = Annotated[str | None, Field(description=f"Created at or after: {_AGE}.")]
Until = Annotated[str | None, Field(description=f"Created before: {_AGE}.")]
PinnedFilter = Annotated[
    bool | None, Field(description="true: only pinned; false: only unpinned.")
]
Mode = Annotated[
    str, Field(description="hybrid (default), lexical (exact words) or semantic.")
]
Cursor = Annotated[str | None, Field(description="next_cursor of the previous page.")]
Ids = Annotated[list[str] | str, Field(description=f"Memory ids (at most {MAX_LIMIT}).")]
Supersedes = Annotated[
    list[str] | str | None,
    Field(description="Ids of memories this one replaces: they leave search, kept in history."),
]
IncludeSuperseded = Annotated[
    bool, Field(description="Also find memories replaced by newer ones.")
]
MaxTokens = Annotated[
    int | None,
    Field(
        description="Budget for the whole answer in tokens (pessimistic estimate); at least "
        "one result comes back, cut to fit.",
        json_schema_extra={"minimum": MIN_TOKENS, "maximum": MAX_TOKENS},
    ),
]
Purge = Annotated[
    bool,
    Field(description="true: also erase the deleted texts from every file before returning "
          "(slower). Default false: erased in the background within 15 minutes."),
]


SearchChars = Annotated[
    int | None,
    Field(
        description=f"Snippet budget in characters (default {DEFAULT_SEARCH_CHARS}).",
        json_schema_extra=_CHARS_RANGE,
    ),
]
GetChars = Annotated[
    int | None,
    Field(
        description=f"Text budget in characters (default {DEFAULT_GET_CHARS}).",
        json_schema_extra=_CHARS_RANGE,
    ),
]
ListChars = Annotated[
    int | None,
    Field(
        description=f"Answer budget in characters (default {DEFAULT_LIST_CHARS}).",
        json_schema_extra=_CHARS_RANGE,
    ),
]
Offset = Annotated[
    int,
    Field(
        description="Start at this character (pages through one long memory).",
        json_schema_extra={"minimum": 0},
    ),
]


# ----------------------------------------------------------------------------- input helpers


def pick(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if value is not None and alias_value is not None and value != alias_value:
        raise ValidationError(name, f"give `{name}` or its alias `{alias}`, not both")
    return value if value is not None else alias_value


def parse_limit(value: int | None, alias: int | None, default: int) -> int:
    n = pick("limit", value, "k", alias)
    if n is None:
        return default
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_LIMIT:
        raise ValidationError(
            "limit", f"must be an integer from 1 to {MAX_LIMIT} (got {n!r}); page with cursor"
        )
    return n


def parse_tokens(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not MIN_TOKENS <= value <= MAX_TOKENS:
        raise ValidationError(
            "max_tokens", f"must be from {MIN_TOKENS} to {MAX_TOKENS} (got {value!r})"
        )
    return value


def parse_budget(value: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not MIN_CHARS <= value <= MAX_CHARS:
        raise ValidationError(
            "max_chars", f"must be from {MIN_CHARS} to {MAX_CHARS} (got {value!r})"
        )
    return value


def str_list(field: str, value: list[str] | str | None) -> tuple[str, ...] | None:
    """A list or comma-separated string; trimmed, empty items dropped, None when nothing."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(field, "every item must be a string")
        if item.strip() and item.strip() not in out:
            out.append(item.strip())
    return tuple(out) or None


def parse_scopes(value: list[str] | str | None) -> tuple[str, ...] | None:
    items = str_list("scopes", value)
    return None if items is None else tuple(s.lower() for s in items)


def parse_ids(value: list[str] | str) -> list[str]:
    items = str_list("ids", value)
    if not items:
        raise ValidationError("ids", "give at least one memory id")
    if len(items) > MAX_LIMIT:
        raise ValidationError("ids", f"{len(items)} ids given; at most {MAX_LIMIT} per call")
    return list(items)


def parse_time(field: str, value: str | None) -> datetime | None:
    return check_time_bound(field, value)


def search_mode(value: str) -> str | None:
    """The search mode ``value`` names (any case, aliases allowed), or None."""
    return SEARCH_MODES.get(value.strip().lower())


def parse_mode(value: str) -> str:
    mode = search_mode(value)
    if mode is None:
        raise ValidationError("mode", f"{value!r} is not one of hybrid, lexical, semantic")
    return mode


# ----------------------------------------------------------------------------- result shaping


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def memory_info(record: MemoryRecord) -> MemoryInfo:
    return MemoryInfo(
        id=record.id,
        title=record.title,
        kind=record.kind,
        tags=list(record.tags),
        scope=record.scope,
        metadata=dict(record.metadata),
        source=record.source,
        created_at=iso(record.created_at),
        updated_at=iso(record.updated_at),
        expires_at=iso(record.expires_at),
        pinned=record.pinned,
        sha256=record.sha256,
        size=record.size,
        supersedes=list(record.supersedes),
        superseded_by=record.superseded_by,
    )


def store_output(result: StoreResult) -> StoreOutput:
    return StoreOutput(
        id=result.id,
        scope=result.scope,
        deduplicated=result.deduplicated,
        sha256=result.sha256,
        replaced=result.replaced,
        redactions=list(result.redactions),
    )


def snippet_chars(budget: int, k: int) -> int:
    """Snippet length to ask the manager for: the budget shared by ``k`` hits, 80-1000."""
    return max(MIN_SNIPPET_CHARS, min(MAX_SNIPPET_CHARS, budget // max(1, k)))


def search_output(result: SearchResult, budget: int) -> SearchOutput:
    hits = result.results
    per_hit = max(MIN_SNIPPET_CHARS, budget // max(1, len(hits)))
    return SearchOutput(
        results=[
            SearchHitOutput(
                id=h.id,
                score=round(h.score, 6),
                title=h.title,
                snippet=clip(h.snippet, per_hit),
                tags=list(h.tags),
                kind=h.kind,
                scope=h.scope,
                created_at=iso(h.created_at),
            )
            for h in hits
        ],
        next_cursor=result.next_cursor,
        mode=result.mode,
        scopes=list(result.scopes),
        note=result.note,
    )


def get_output(result: GetResult, scopes: Sequence[str], budget: int, offset: int) -> GetOutput:
    remaining = budget
    memories: list[MemoryText] = []
    omitted: list[str] = []
    truncated = False
    for memory in result.memories:
        if remaining <= 0:
            omitted.append(memory.record.id)
            continue
        full = memory.text
        part = full[offset:]
        cut = len(part) > remaining
        if cut:
            part = part[:remaining]
            truncated = True
        remaining -= len(part)
        memories.append(
            MemoryText(
                **memory_info(memory.record).model_dump(),
                text=part,
                text_chars=len(full),
                offset=min(offset, len(full)),
                truncated=cut,
            )
        )
    return GetOutput(
        memories=memories,
        missing=list(result.missing),
        damaged=[p.memory_ids[0] for p in result.damaged],
        omitted=omitted,
        truncated=truncated or bool(omitted),
        scopes=list(scopes),
    )


def stats_output(stats: Sequence[Stats]) -> StatsOutput:
    return StatsOutput(
        scopes=[
            ScopeStats(
                scope=s.scope,
                memories=s.memories,
                text_bytes=s.text_bytes,
                stored_bytes=s.stored_bytes,
                backend=s.backend,
                pending_bodies=s.pending_bodies,
                embedder=s.embedder,
                details=dict(s.details),
            )
            for s in stats
        ]
    )


def fit_count(sizes: Sequence[int], budget: int) -> int:
    """How many leading items fit in ``budget`` (at least one, so a page is never empty)."""
    total = 0
    for n, size in enumerate(sizes):
        total += size
        if total > budget:
            return max(1, n)
    return len(sizes)
