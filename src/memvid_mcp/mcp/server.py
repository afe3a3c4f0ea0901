"""The MCP server: six thin tools and three resources over one ``MemoryManager``.

This is the only module of the package that imports ``mcp`` (SDK 2.x, ``MCPServer``).

- Start-up: nothing slow happens before the first request needs it. The manager is created
  lazily, on the first tool call or by a warm-up thread started once the first request has
  been answered; the embedding model loads inside the manager, in its own thread. So
  ``initialize`` and ``tools/list`` never wait on indexes or models.
- Tools are a few lines each: parse the forgiving inputs, call the (synchronous, thread-safe)
  manager in a worker thread, shape a typed, bounded result. A ``MemvidError`` becomes a tool
  error the model reads (it names the field); anything else is logged with its traceback to
  stderr and reported as a brief internal error.
- Over HTTP with tokens, each request's token (``http_security.py``) travels in a context
  variable to the tools, which then see the manager through its scopes (``access.py``).
- What a client gets wrong is answered, never logged as a crash: a mistyped, missing or
  unknown tool argument is a one-sentence tool error naming the argument (``arguments.py``);
  an unknown tool or prompt, or a list cursor this server never issued, is a JSON-RPC
  ``-32602`` error.
- stdout carries only JSON-RPC: the SDK's stdio transport diverts file descriptor 1 to stderr
  while it serves, and this package logs only to stderr.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    EmptyResult,
    SetLevelRequestParams,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from .. import __version__
from ..core import hops
from ..core.config import Settings
from ..core.errors import MemvidError, NotFoundError, ValidationError
from ..search.heap import limit_malloc_arenas
from .access import ScopedManager, current_access
from .arguments import did_you_mean, invalid_arguments, shown, unknown_arguments
from .budget import compact_json, fit_search
from .context import (
    DEFAULT_CONTEXT_TOKENS,
    MAX_CONTEXT_TOKENS,
    MIN_CONTEXT_TOKENS,
    session_context,
)
from .portable import input_schema, output_schema
from .schemas import (
    DEFAULT_GET_CHARS,
    DEFAULT_LIST_CHARS,
    DEFAULT_SEARCH_CHARS,
    MAX_LIMIT,
    MIN_CHARS,
    Cursor,
    DeleteOutput,
    ExpiresAt,
    GetChars,
    GetOutput,
    Ids,
    IdScopes,
    IncludeSuperseded,
    Kind,
    KindFilter,
    Limit,
    LimitAlias,
    ListChars,
    ListOutput,
    ListScope,
    MaxTokens,
    Metadata,
    Mode,
    Offset,
    Pinned,
    PinnedFilter,
    Purge,
    Query,
    QueryAlias,
    Scopes,
    SearchChars,
    SearchOutput,
    Since,
    Source,
    StatsOutput,
    StatsScope,
    StoreOutput,
    Supersedes,
    Tags,
    TagsAll,
    TagsAny,
    Text,
    Title,
    TtlSeconds,
    Until,
    WriteScope,
    fit_count,
    get_output,
    memory_info,
    parse_budget,
    parse_ids,
    parse_limit,
    parse_mode,
    parse_scopes,
    parse_time,
    parse_tokens,
    pick,
    search_mode,
    search_output,
    snippet_chars,
    stats_output,
    store_output,
    str_list,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from ..core.models import ListResult
    from ..manager import MemoryManager

__all__ = [
    "MAX_LIMIT",
    "TOOL_NAME_PATTERN",
    "build_http_app",
    "build_server",
    "run_server",
    "tool_names",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HTTP_BODY_BYTES = 4 * 1024 * 1024
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TOOL_BASE_NAMES = (
    "memory_store",
    "memory_search",
    "memory_get",
    "memory_delete",
    "memory_list",
    "memory_stats",
)

INSTRUCTIONS = """\
Durable memory that persists across conversations and sessions.
- {memory_search}(query, limit, kind, tags_any, since, max_tokens): call it before answering \
anything that may depend on earlier work, decisions or the user's preferences. It returns ids \
and snippets; {memory_get}(ids) returns full text.
- {memory_store}(text, title, tags, kind, pinned, supersedes): save one self-contained fact, \
decision ('decision') or preference ('preference') per call when the user shares something \
worth keeping or asks you to remember. Storing the same text twice is harmless. To correct or \
update a memory, store the new text with supersedes=[old id]: the old one leaves search but is \
kept.
- {memory_list} browses newest first; {memory_delete}(ids) forgets; {memory_stats} checks \
health.
Scopes: 'project' (this git repository, private; the default for writes inside one), \
'committed' (inside the repository, shared through git) and 'global' (this user, every \
project); searches cover project and global. The prompt 'session_context' and the resource \
memvid://context give the memories worth knowing at the start of a session."""

# Arguments each tool accepts under a second name: accepted, never advertised.
ALIASES = {"memory_search": {"q": "query", "k": "limit"}, "memory_list": {"k": "limit"}}
# Arguments a model must give (the function takes them optionally because of an alias).
REQUIRED = {"memory_search": ("query",)}


def _result(model: BaseModel | dict[str, Any]) -> CallToolResult:
    """Structured content plus the same data as one compact JSON text block."""
    data = model if isinstance(model, dict) else model.model_dump(mode="json")
    text = compact_json(data)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


# ----------------------------------------------------------------------------- the manager


class _ManagerHolder:
    """Creates the manager on first use (in a worker thread) and closes it at the end.

    ``inline`` (the service's: "this connection is the only one") lets a lexical search run on
    the event loop's own thread once the manager is warm: the hop to a worker thread and back is
    two thread wake-ups per call, a few tenths of a millisecond on an idle machine and
    milliseconds on a busy one (ADR 0030). With anything else to serve, every call stays in
    a worker thread so that one slow call never holds up another connection.
    """

    def __init__(self, factory: Callable[[], MemoryManager],
                 inline: Callable[[], bool] | None = None) -> None:
        self._factory = factory
        self._inline = inline
        self.warm = False  # a search (or the warm-up) finished: scopes and indexes are open
        self._lock = threading.Lock()  # held while the manager opens (may be slow)
        self._manager: MemoryManager | None = None
        self._warmup_lock = threading.Lock()  # never held for long: the event loop takes it
        self._warmup_started = False

    def get(self) -> MemoryManager:
        """The manager, created on first use. Blocks: call it from a worker thread."""
        with self._lock:
            if self._manager is None:
                self._manager = self._factory()
            return self._manager

    def start_warmup(self) -> None:
        """Open the manager in a background thread (once), so the first tool call is fast."""
        with self._warmup_lock:
            started, self._warmup_started = self._warmup_started, True
        if started:
            return
        threading.Thread(target=self._warmup, name="memvid-warmup", daemon=True).start()

    def _warmup(self) -> None:
        try:
            self.get().stats()  # opens the existing scopes and loads their indexes
            self.warm = True
        except Exception:  # the first tool call reports it; here it is only logged
            logger.warning("opening the memory store in the background failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()

    def view(self) -> MemoryManager:
        """The manager as the current request may see it: through its token's scopes when
        it came with one (``access.py``), else whole. Blocks: call it from a worker thread."""
        manager = self.get()
        access = current_access.get()
        if access is None:
            return manager
        # ScopedManager offers exactly the part of MemoryManager the tools and resources use
        return cast("MemoryManager", ScopedManager(manager, access))

    async def call(self, tool: str, work: Callable[[MemoryManager], T], *,
                   search: bool = False, quick: bool = False) -> T:
        """Run ``work(manager)`` in a worker thread (``quick`` work on this thread when
        ``inline`` allows it and the manager is warm); turn failures into tool errors.
        ``search``: the work searches (once one has run, the searched scopes are open)."""
        def run() -> T:
            hops.mark("work.start")
            try:
                return work(self.view())
            finally:
                hops.mark("work.end")

        try:
            if quick and self.warm and self._inline is not None and self._inline():
                hops.mark("work.inline")
                result = run()
            else:
                result = await anyio.to_thread.run_sync(run)
                self.warm = self.warm or search
            hops.mark("work.back")
            return result
        except MemvidError as exc:
            raise ToolError(str(exc)) from exc
        except Exception:
            logger.exception("%s failed", tool)
            raise ToolError(
                f"internal error in {tool}; the server's log (stderr) has the details"
            ) from None

    async def read(self, uri: str, work: Callable[[MemoryManager], str]) -> str:
        """Like ``call`` for resources: failures become resource errors."""
        try:
            return await anyio.to_thread.run_sync(lambda: work(self.view()))
        except (NotFoundError, ValidationError) as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except MemvidError as exc:
            raise ResourceError(str(exc)) from exc
        except Exception:
            logger.exception("reading %s failed", uri)
            raise ResourceError(f"internal error reading {uri}; see the server's log") from None


@contextmanager
def _sdk_logging_left_alone() -> Iterator[None]:
    """Keep ``MCPServer()`` from configuring logging (it imports rich: ~30-50 ms of start-up).

    Logging is this process's business: ``run_server`` sends it to stderr; tests use pytest's.
    """
    import mcp.server.mcpserver.server as sdk

    original = getattr(sdk, "configure_logging", None)
    if original is None:  # the SDK moved it: nothing to skip
        yield
        return
    setattr(sdk, "configure_logging", lambda *args, **kwargs: None)  # noqa: B010
    try:
        yield
    finally:
        setattr(sdk, "configure_logging", original)  # noqa: B010


def _all_scopes(m: MemoryManager) -> list[str]:
    """The scopes get and delete look in when none are named: every available one."""
    return [s["name"] for s in m.scopes() if s["available"]]


def _default_factory(settings: Settings) -> Callable[[], MemoryManager]:
    def factory() -> MemoryManager:
        from ..manager import MemoryManager  # heavy imports happen here, not at start-up

        return MemoryManager(settings)

    return factory


def tool_names(style: str | None = None) -> dict[str, str]:
    """Map each tool's base name to its published name.

    ``style`` is ``underscore`` (default: ``memory_store``) or ``dotted`` (``memory.store``);
    None reads ``MEMVID_TOOL_NAMES``.
    """
    chosen = (style if style is not None else os.environ.get("MEMVID_TOOL_NAMES", "")).strip()
    chosen = chosen.lower() or "underscore"
    if chosen not in ("underscore", "dotted"):
        raise ValidationError("MEMVID_TOOL_NAMES", f"{chosen!r} is not 'underscore' or 'dotted'")
    if chosen == "dotted":
        return {name: name.replace("_", ".", 1) for name in TOOL_BASE_NAMES}
    return {name: name for name in TOOL_BASE_NAMES}


def _annotations(*, read_only: bool, destructive: bool, idempotent: bool) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


# ----------------------------------------------------------------------------- client mistakes

LIST_METHODS = ("tools/list", "resources/list", "resources/templates/list", "prompts/list")


class _Server(MCPServer[Any]):
    """``MCPServer`` answering a client's mistakes in words a model can act on.

    The SDK reports bad arguments as pydantic's text with a URL and runs a tool despite
    unknown arguments; it answers an unknown tool as a tool result and an unknown prompt as
    error code 0 with a logged traceback. Here an unknown tool or prompt is ``-32602`` and
    bad arguments are one sentence naming the argument.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accepted: dict[str, dict[str, Any]] = {}  # tool -> its arguments, aliases too

    def publish(self, name: str) -> None:
        """Replace a tool's schemas with ones every client accepts (``portable.py``); keep
        the full input schema, aliases included, to accept and word arguments by."""
        tool = self._tool_manager.get_tool(name)
        assert tool is not None
        base = name.replace(".", "_", 1)
        self.accepted[name] = tool.parameters
        tool.parameters = input_schema(
            tool.parameters, hidden=ALIASES.get(base, {}), required=REQUIRED.get(base, ())
        )
        if tool.fn_metadata.output_schema is not None:
            tool.fn_metadata.output_schema = output_schema(tool.fn_metadata.output_schema)
            tool.__dict__.pop("output_schema", None)  # a cached_property: read it afresh

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        hops.mark("tool.call")
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            raise MCPError(code=INVALID_PARAMS, message=_unknown("tool", name, self._tools()))
        accepted = self.accepted.get(name, tool.parameters)
        problem = unknown_arguments(name, accepted, arguments, advertised=tool.parameters)
        if problem is None:
            try:
                tool.fn_metadata.validate_arguments(arguments)
            except PydanticValidationError as exc:
                problem = invalid_arguments(accepted, arguments, exc.errors())
        if problem is not None:
            raise ToolError(problem)
        try:
            result = await super().call_tool(name, arguments, context)
            hops.mark("tool.done")
            return result
        except ToolError as exc:  # drop the SDK's "Error executing tool <name>: " prefix
            prefix = f"Error executing tool {name}: "
            message = str(exc)
            if type(exc) is ToolError and message.startswith(prefix):
                raise ToolError(message[len(prefix) :]) from exc.__cause__
            raise

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Any = None
    ) -> Any:
        prompts = [p.name for p in await self.list_prompts()]
        if name not in prompts:
            raise MCPError(code=INVALID_PARAMS, message=_unknown("prompt", name, prompts))
        return await super().get_prompt(name, arguments, context)

    def _tools(self) -> list[str]:
        return [t.name for t in self._tool_manager.list_tools()]


def _unknown(kind: str, name: str, known: Sequence[str]) -> str:
    guess = did_you_mean(name, known)
    if guess is not None:
        return f"unknown {kind} {shown(name)}; did you mean {guess!r}?"
    if not known:
        return f"unknown {kind} {shown(name)}; this server has no {kind}s"
    return f"unknown {kind} {shown(name)}; the {kind}s are {', '.join(known)}"


async def _reject_cursors(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Every list fits one page here, so any cursor is one this server never issued (an
    empty one reads as none)."""
    params = ctx.params if isinstance(ctx.params, Mapping) else {}
    cursor = params.get("cursor")
    if ctx.method in LIST_METHODS and cursor not in (None, ""):
        raise MCPError(
            code=INVALID_PARAMS,
            message=f"invalid cursor {shown(cursor)} for {ctx.method}: this server lists "
            "everything in one page; omit cursor",
        )
    return await call_next(ctx)


async def _bind_access(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Carry the token HTTPSecurity accepted for this HTTP request to the tools (a context
    variable reaches the worker threads); other transports carry none."""
    from .http_security import ACCESS_KEY

    scope = getattr(getattr(ctx, "request", None), "scope", None)
    access = scope.get(ACCESS_KEY) if isinstance(scope, Mapping) else None
    token = current_access.set(access)
    try:
        return await call_next(ctx)
    finally:
        current_access.reset(token)


# ----------------------------------------------------------------------------- the server


def build_server(
    settings: Settings,
    manager_factory: Callable[[], MemoryManager] | None = None,
    *,
    tool_name_style: str | None = None,
    inline: Callable[[], bool] | None = None,
) -> MCPServer:
    """The MCP server with its tools and resources; the manager opens on first use.

    ``inline``: asked before each lexical search; True lets it run on the event loop's thread
    once the manager is warm (``_ManagerHolder``). Only a server whose loop has nothing else
    to serve at that moment may say so (the service, with one connection)."""
    server, _ = _build(settings, manager_factory, tool_name_style, inline)
    return server


def _build(
    settings: Settings,
    manager_factory: Callable[[], MemoryManager] | None,
    tool_name_style: str | None,
    inline: Callable[[], bool] | None = None,
) -> tuple[MCPServer, _ManagerHolder]:
    holder = _ManagerHolder(manager_factory or _default_factory(settings), inline)
    names = tool_names(tool_name_style)

    async def warm_up(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        result = await call_next(ctx)
        holder.start_warmup()  # after the first answer, so start-up never waits on it
        return result

    with _sdk_logging_left_alone():
        server = _Server(
            "memvid-mcp",
            title="memvid memory",
            version=__version__,
            instructions=INSTRUCTIONS.format(**names),
            middleware=[_bind_access, _reject_cursors, warm_up],
            warn_on_duplicate_tools=False,
        )

    async def memory_store(
        text: Text,
        title: Title = None,
        tags: Tags = None,
        kind: Kind = None,
        scope: WriteScope = None,
        metadata: Metadata = None,
        source: Source = None,
        ttl_seconds: TtlSeconds = None,
        expires_at: ExpiresAt = None,
        pinned: Pinned = False,
        supersedes: Supersedes = None,
    ) -> Annotated[CallToolResult, StoreOutput]:
        def work(m: MemoryManager) -> StoreOutput:
            result = m.store(
                text, title=title, tags=str_list("tags", tags) or (), kind=kind,
                scope=scope.strip().lower() if scope else None, metadata=metadata,
                source=source, ttl_seconds=ttl_seconds, expires_at=expires_at, pinned=pinned,
                supersedes=str_list("supersedes", supersedes),
            )  # fmt: skip
            return store_output(result)

        return _result(await holder.call(names["memory_store"], work))

    async def memory_search(
        query: Query = None,
        q: QueryAlias = None,
        limit: Limit = None,
        k: LimitAlias = None,
        scopes: Scopes = None,
        tags_any: TagsAny = None,
        tags_all: TagsAll = None,
        kind: KindFilter = None,
        since: Since = None,
        until: Until = None,
        pinned: PinnedFilter = None,
        mode: Mode = "hybrid",
        cursor: Cursor = None,
        max_chars: SearchChars = None,
        max_tokens: MaxTokens = None,
        include_superseded: IncludeSuperseded = False,
    ) -> Annotated[CallToolResult, SearchOutput]:
        def work(m: MemoryManager) -> dict[str, Any]:
            text = pick("query", query, "q", q)
            if not isinstance(text, str) or not text.strip():
                raise ValidationError("query", "is required: what to look for (alias q)")
            n = parse_limit(limit, k, 10)
            budget = parse_budget(max_chars, DEFAULT_SEARCH_CHARS)
            tokens = parse_tokens(max_tokens)
            if tokens is not None:  # snippets beyond what the whole answer can hold are waste
                budget = min(budget, max(MIN_CHARS, tokens * 2))
            filters: dict[str, Any] = dict(
                scopes=parse_scopes(scopes), tags_any=str_list("tags_any", tags_any) or (),
                tags_all=str_list("tags_all", tags_all) or (), kind=kind,
                since=parse_time("since", since), until=parse_time("until", until), pinned=pinned,
                mode=parse_mode(mode), cursor=cursor, include_superseded=include_superseded,
            )  # fmt: skip

            def page(size: int) -> dict[str, Any]:
                result = m.search(text, k=size, snippet_chars=snippet_chars(budget, size),
                                  **filters)  # fmt: skip
                hops.mark("search.done")
                return search_output(result, budget).model_dump(mode="json")

            data = page(n)
            if tokens is None:
                return data
            found = len(data["results"])
            while True:
                fitted, kept = fit_search(data, tokens)
                if kept == len(data["results"]):
                    return fitted
                # fewer results fit: ask for that many, so next_cursor resumes right after
                data = page(kept)
                data.update(truncated=True, omitted=found - kept)

        # A lexical search runs on the calling thread alone; hybrid and semantic hand the
        # query to a pool thread as well, and gained nothing on the loop's thread (ADR 0030).
        lexical = isinstance(mode, str) and search_mode(mode) == "lexical"
        return _result(await holder.call(names["memory_search"], work, search=True,
                                         quick=lexical))

    async def memory_get(
        ids: Ids,
        scopes: IdScopes = None,
        max_chars: GetChars = None,
        offset: Offset = 0,
    ) -> Annotated[CallToolResult, GetOutput]:
        def work(m: MemoryManager) -> GetOutput:
            wanted = parse_ids(ids)
            budget = parse_budget(max_chars, DEFAULT_GET_CHARS)
            if offset < 0:
                raise ValidationError("offset", "must be 0 or more")
            where = parse_scopes(scopes)
            result = m.get(wanted, scopes=where)
            return get_output(result, where or _all_scopes(m), budget, offset)

        return _result(await holder.call(names["memory_get"], work))

    async def memory_delete(
        ids: Ids, scopes: IdScopes = None, purge: Purge = False
    ) -> Annotated[CallToolResult, DeleteOutput]:
        def work(m: MemoryManager) -> DeleteOutput:
            wanted = parse_ids(ids)
            where = parse_scopes(scopes)
            if not isinstance(purge, bool):
                raise ValidationError("purge", "must be true or false")
            deleted = m.delete(wanted, scopes=where, purge=purge)
            return DeleteOutput(deleted=deleted, ids=wanted, scopes=list(where or _all_scopes(m)),
                                purged=purge)

        return _result(await holder.call(names["memory_delete"], work))

    async def memory_list(
        scope: ListScope = None,
        limit: Limit = None,
        k: LimitAlias = None,
        cursor: Cursor = None,
        kind: KindFilter = None,
        tags_any: TagsAny = None,
        max_chars: ListChars = None,
    ) -> Annotated[CallToolResult, ListOutput]:
        def work(m: MemoryManager) -> ListOutput:
            n = parse_limit(limit, k, 20)
            budget = parse_budget(max_chars, DEFAULT_LIST_CHARS)
            where = scope.strip().lower() if scope and scope.strip() else None
            tags = str_list("tags_any", tags_any) or ()

            def page(size: int) -> ListResult:
                return m.list(scope=where, limit=size, cursor=cursor, kind=kind, tags_any=tags)

            result = page(n)
            infos = [memory_info(r) for r in result.memories]
            fit = fit_count([len(i.model_dump_json()) for i in infos], budget)
            if fit < len(infos):  # over budget: ask again for fewer, for an exact cursor
                result = page(fit)
                infos = [memory_info(r) for r in result.memories]
            return ListOutput(
                memories=infos,
                next_cursor=result.next_cursor,
                scopes=[where] if where else list(m.search_scopes),
            )

        return _result(await holder.call(names["memory_list"], work))

    async def memory_stats(scope: StatsScope = None) -> Annotated[CallToolResult, StatsOutput]:
        def work(m: MemoryManager) -> StatsOutput:
            where = scope.strip().lower() if scope and scope.strip() else None
            return stats_output(m.stats(where))

        return _result(await holder.call(names["memory_stats"], work))

    read_only = _annotations(read_only=True, destructive=False, idempotent=True)
    tools: list[tuple[Callable[..., Any], str, str, ToolAnnotations]] = [
        (memory_store, "Store a memory",
         "Save one self-contained fact, decision, preference or note for later conversations; "
         "call it when the user shares something worth keeping or asks you to remember. "
         "Identical text is stored once; to correct a memory, pass its id in supersedes.",
         _annotations(read_only=False, destructive=False, idempotent=True)),
        (memory_search, "Search memories",
         "Find memories relevant to a question or topic; call it before answering anything "
         "that may depend on earlier work, decisions or preferences. Returns ids and "
         "snippets (memory_get gives full text); max_tokens bounds the whole answer.",
         read_only),
        (memory_get, "Get memories by id",
         "Read the full text of memories by id (from memory_search or memory_list). Text is "
         "cut to max_chars; truncated and omitted say when to ask again.",
         read_only),
        (memory_delete, "Delete memories",
         "Delete memories by id when the user asks to forget something (to correct one, store "
         "the new text with supersedes instead). They vanish at once; their text is erased "
         "from every file within 15 minutes, or before returning with purge=true.",
         _annotations(read_only=False, destructive=True, idempotent=True)),
        (memory_list, "List memories",
         "Browse memories newest first without a query: metadata only, no text.",
         read_only),
        (memory_stats, "Memory statistics",
         "Check that memory works: per scope counts, sizes, backend and embedding model "
         "state.",
         read_only),
    ]  # fmt: skip
    for fn, title, description, hints in tools:
        name = names[fn.__name__]
        server.add_tool(fn, name=name, title=title, description=description,
                        annotations=hints)  # fmt: skip
        server.publish(name)

    async def set_logging_level(ctx: Any, params: Any) -> EmptyResult:
        """``logging/setLevel`` is accepted for clients that send it (older protocol
        versions; deprecated as of 2026-07-28). This server sends no log notifications:
        its logs go to stderr (the service's log), so there is nothing to filter."""
        return EmptyResult()

    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams,
                                                set_logging_level)

    def context_text(tokens: str | int | None) -> Callable[[MemoryManager], str]:
        budget = DEFAULT_CONTEXT_TOKENS
        if tokens not in (None, ""):
            try:
                budget = int(str(tokens))
            except ValueError:
                budget = -1
            if not MIN_CONTEXT_TOKENS <= budget <= MAX_CONTEXT_TOKENS:
                raise ValidationError("max_tokens", f"must be an integer from "
                                      f"{MIN_CONTEXT_TOKENS} to {MAX_CONTEXT_TOKENS}")
        return lambda m: session_context(m, budget).text

    @server.prompt(
        name="session_context",
        title="Session context",
        description="The memories most worth knowing for this project (pinned, then decisions "
        "and preferences, then recent ones) to start a session with; max_tokens bounds it.",
    )
    async def session_context_prompt(max_tokens: str | None = None) -> str:
        return await holder.read("memvid://context", context_text(max_tokens))

    @server.resource(
        "memvid://context",
        name="context",
        title="Session context",
        description="The session-start memories as text (same as the session_context prompt).",
        mime_type="text/plain",
    )
    async def context_resource() -> str:
        return await holder.read("memvid://context", context_text(None))

    @server.resource(
        "memvid://stats",
        name="stats",
        title="Memory statistics",
        description="Per-scope statistics as JSON (same as the memory_stats tool).",
        mime_type="application/json",
    )
    async def stats_resource() -> str:
        def work(m: MemoryManager) -> str:
            return stats_output(m.stats(None)).model_dump_json()

        return await holder.read("memvid://stats", work)

    @server.resource(
        "memvid://scopes",
        name="scopes",
        title="Memory scopes",
        description="The scopes, their directories, availability and which is the default.",
        mime_type="application/json",
    )
    async def scopes_resource() -> str:
        def work(m: MemoryManager) -> str:
            return json.dumps({"scopes": m.scopes()}, ensure_ascii=False, default=str)

        return await holder.read("memvid://scopes", work)

    @server.resource(
        "memvid://memory/{id}",
        name="memory",
        title="One memory",
        description="One memory by id, with its full text and metadata, as JSON.",
        mime_type="application/json",
    )
    async def memory_resource(id: str) -> str:
        uri = f"memvid://memory/{id}"

        def work(m: MemoryManager) -> str:
            result = m.get(id)
            if not result.memories:
                raise NotFoundError(f"memory {id!r} not found")
            return json.dumps(result.memories[0].to_dict(), ensure_ascii=False)

        return await holder.read(uri, work)

    return server, holder


# ----------------------------------------------------------------------------- transports


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_http_bind(host: str, token: str | None, tokens_file: Path | None = None) -> None:
    """Binding anything but a loopback address requires a bearer token (or a tokens file)."""
    if not _is_loopback(host) and not token and tokens_file is None:
        raise ValidationError(
            "host",
            f"binding {host} (not a loopback address) requires a bearer token: set "
            "MEMVID_HTTP_TOKEN to a long random secret, or give a tokens file "
            "(MEMVID_TOKENS_FILE, serve --tokens-file; see docs/team.md)",
        )


def build_http_app(
    server: MCPServer,
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    tokens_file: Path | None = None,
    allowed_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_HTTP_BODY_BYTES,
    stateless: bool = False,
) -> ASGIApp:
    """The streamable-HTTP ASGI app behind Origin, bearer-token and body-size checks.

    Binding anything but a loopback address requires a token. ``tokens_file`` names tokens
    with their scopes (``core/tokens.py``); ``token`` is one more, ``default``, unlimited.
    ``stateless``: no MCP sessions, so any of several instances can answer any request
    (clients of protocol 2026-07-28 are sessionless anyway; this serves older ones too).
    """
    from .http_security import HTTPSecurity

    check_http_bind(host, token, tokens_file)
    loopback = _is_loopback(host)
    # The SDK's own Host/Origin (DNS rebinding) check: on for loopback binds, with our extra
    # origins; off elsewhere, where the Host is unknowable and the token guards the door.
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=loopback,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=[
            "http://127.0.0.1:*",
            "http://localhost:*",
            "http://[::1]:*",
            *allowed_origins,
        ],
    )
    # Plain JSON answers to POSTs: no SSE stream a client must keep open, resume or time out
    # (the server sends nothing before a tool's result); GET still opens the SSE stream.
    app = server.streamable_http_app(
        host=host, max_request_body_size=max_body_bytes, transport_security=security,
        json_response=True, stateless_http=stateless,
    )
    return HTTPSecurity(
        app,
        token=token or None,
        tokens_file=tokens_file,
        allowed_origins=allowed_origins,
        max_body_bytes=max_body_bytes,
    )


def _configure_logging() -> None:
    """Logs go to stderr. An existing set-up (the CLI's ``-v``) is kept unless
    ``MEMVID_LOG_LEVEL`` names a level."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    level = os.environ.get("MEMVID_LOG_LEVEL", "").strip().upper()
    if level in logging.getLevelNamesMapping():
        root.setLevel(level)


def run_server(
    settings: Settings,
    *,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
) -> None:
    """Serve until the client goes away (stdio: stdin closes) or the process is stopped.

    ``transport`` is ``stdio`` or ``http`` (streamable HTTP at ``/mcp``). HTTP reads
    ``MEMVID_HTTP_TOKEN`` and ``settings.tokens_file`` (one of them required off loopback)
    and ``MEMVID_HTTP_ALLOWED_ORIGINS`` (comma-separated extra origins; loopback origins are
    always allowed).
    """
    if transport not in ("stdio", "http", "streamable-http"):
        raise ValidationError("transport", f"{transport!r} is not 'stdio' or 'http'")
    _configure_logging()
    limit_malloc_arenas()
    server, holder = _build(settings, None, None)
    try:
        if transport == "stdio":
            anyio.run(server.run_stdio_async)
        else:
            anyio.run(serve_http, server, host, port, None, settings.tokens_file,
                      settings.http_stateless)
    finally:
        holder.close()


async def serve_http(server: MCPServer, host: str, port: int,
                     stop: anyio.Event | None = None, tokens_file: Path | None = None,
                     stateless: bool = False) -> None:
    """Streamable HTTP at ``/mcp`` until Ctrl-C/SIGTERM or, inside the service, until ``stop``
    is set (the service owns the signals then). Reads ``MEMVID_HTTP_TOKEN`` (it or
    ``tokens_file`` required off loopback) and ``MEMVID_HTTP_ALLOWED_ORIGINS``
    (comma-separated extra origins)."""
    origins = [o.strip() for o in os.environ.get("MEMVID_HTTP_ALLOWED_ORIGINS", "").split(",")
               if o.strip()]
    app = build_http_app(server, host=host, token=os.environ.get("MEMVID_HTTP_TOKEN") or None,
                         tokens_file=tokens_file, allowed_origins=origins, stateless=stateless)
    await _serve_http(app, host, port, stop)


async def _serve_http(app: ASGIApp, host: str, port: int,
                      stop: anyio.Event | None = None) -> None:
    import contextlib

    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if stop is None:  # a process of its own: uvicorn handles Ctrl-C and SIGTERM
                with super().capture_signals():
                    yield
            else:  # inside the service, which owns the signals and sets ``stop``
                yield

    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = _Server(config)

    async def stop_when_asked() -> None:
        if stop is not None:
            await stop.wait()
            server.should_exit = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(_announce_when_listening, server, host)
        tg.start_soon(stop_when_asked)
        await server.serve()
        tg.cancel_scope.cancel()


async def _announce_when_listening(server: Any, host: str) -> None:
    """One line on stderr once the socket listens (without ``-v`` too): where, and how to
    stop. The port is the bound one, so ``--port 0`` shows what the OS picked."""
    while not server.started:
        if server.should_exit:
            return
        await anyio.sleep(0.05)
    sockets = [sock for s in server.servers for sock in s.sockets]
    port = sockets[0].getsockname()[1] if sockets else server.config.port
    shown_host = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"memvid-mcp: serving MCP on http://{shown_host}:{port}/mcp (Ctrl-C stops)\n")
    sys.stderr.flush()
