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
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from .. import __version__
from ..core.config import Settings
from ..core.errors import MemvidError, NotFoundError, ValidationError
from .arguments import did_you_mean, invalid_arguments, shown, unknown_arguments
from .schemas import (
    DEFAULT_GET_CHARS,
    DEFAULT_LIST_CHARS,
    DEFAULT_SEARCH_CHARS,
    MAX_LIMIT,
    Cursor,
    DeleteOutput,
    ExpiresAt,
    GetChars,
    GetOutput,
    Ids,
    IdScopes,
    Kind,
    KindFilter,
    Limit,
    LimitAlias,
    ListChars,
    ListOutput,
    ListScope,
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
    parse_metadata,
    parse_mode,
    parse_scopes,
    parse_time,
    pick,
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
Durable memory that persists across conversations. Use {memory_search} before answering questions
that may depend on earlier work, decisions or user preferences; use {memory_store} to save facts,
decisions and preferences worth remembering (one self-contained memory per call; storing the same
text twice is harmless). Search returns snippets and ids; {memory_get} returns the full text.
Scopes: 'project' (this git repository, private), 'committed' (inside the repository, meant to be
checked in) and 'global' (this user, every project); by default writes go to the project scope
inside a git repository and to global otherwise, and searches cover project and global."""


def _result(model: BaseModel) -> CallToolResult:
    """Structured content plus the same data as one compact JSON text block."""
    data = model.model_dump(mode="json")
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


# ----------------------------------------------------------------------------- the manager


class _ManagerHolder:
    """Creates the manager on first use (in a worker thread) and closes it at the end."""

    def __init__(self, factory: Callable[[], MemoryManager]) -> None:
        self._factory = factory
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
        except Exception:  # the first tool call reports it; here it is only logged
            logger.warning("opening the memory store in the background failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()

    async def call(self, tool: str, work: Callable[[MemoryManager], T]) -> T:
        """Run ``work(manager)`` in a worker thread; turn failures into tool errors."""
        try:
            return await anyio.to_thread.run_sync(lambda: work(self.get()))
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
            return await anyio.to_thread.run_sync(lambda: work(self.get()))
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

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            raise MCPError(code=INVALID_PARAMS, message=_unknown("tool", name, self._tools()))
        problem = unknown_arguments(name, tool.parameters, arguments)
        if problem is None:
            try:
                tool.fn_metadata.validate_arguments(arguments)
            except PydanticValidationError as exc:
                problem = invalid_arguments(tool.parameters, arguments, exc.errors())
        if problem is not None:
            raise ToolError(problem)
        try:
            return await super().call_tool(name, arguments, context)
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


# ----------------------------------------------------------------------------- the server


def build_server(
    settings: Settings,
    manager_factory: Callable[[], MemoryManager] | None = None,
    *,
    tool_name_style: str | None = None,
) -> MCPServer:
    """The MCP server with its tools and resources; the manager opens on first use."""
    server, _ = _build(settings, manager_factory, tool_name_style)
    return server


def _build(
    settings: Settings,
    manager_factory: Callable[[], MemoryManager] | None,
    tool_name_style: str | None,
) -> tuple[MCPServer, _ManagerHolder]:
    holder = _ManagerHolder(manager_factory or _default_factory(settings))
    names = tool_names(tool_name_style)

    async def warm_up(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        result = await call_next(ctx)
        holder.start_warmup()  # after the first answer, so start-up never waits on it
        return result

    with _sdk_logging_left_alone():
        server: MCPServer = _Server(
            "memvid-mcp",
            title="memvid memory",
            version=__version__,
            instructions=INSTRUCTIONS.format(**names),
            middleware=[_reject_cursors, warm_up],
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
    ) -> Annotated[CallToolResult, StoreOutput]:
        def work(m: MemoryManager) -> StoreOutput:
            result = m.store(
                text, title=title, tags=str_list("tags", tags) or (), kind=kind,
                scope=scope.strip().lower() if scope else None, metadata=parse_metadata(metadata),
                source=source, ttl_seconds=ttl_seconds, expires_at=expires_at, pinned=pinned,
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
    ) -> Annotated[CallToolResult, SearchOutput]:
        def work(m: MemoryManager) -> SearchOutput:
            text = pick("query", query, "q", q)
            if not isinstance(text, str) or not text.strip():
                raise ValidationError("query", "is required: what to look for (alias q)")
            n = parse_limit(limit, k, 10)
            budget = parse_budget(max_chars, DEFAULT_SEARCH_CHARS)
            result = m.search(
                text, k=n, scopes=parse_scopes(scopes),
                tags_any=str_list("tags_any", tags_any) or (),
                tags_all=str_list("tags_all", tags_all) or (), kind=kind,
                since=parse_time("since", since), until=parse_time("until", until), pinned=pinned,
                mode=parse_mode(mode), cursor=cursor, snippet_chars=snippet_chars(budget, n),
            )  # fmt: skip
            return search_output(result, budget)

        return _result(await holder.call(names["memory_search"], work))

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
    server.add_tool(
        memory_store,
        name=names["memory_store"],
        title="Store a memory",
        description=(
            "Save one self-contained memory (a fact, decision, preference or note) so it can be "
            "found in later conversations. Use it when the user shares something worth "
            "remembering or asks you to remember. Text identical to a live memory is stored "
            "once (its id comes back with deduplicated=true), so retrying is safe. Secrets are "
            "redacted. "
            "Returns the memory id and the scope it was written to."
        ),
        annotations=_annotations(read_only=False, destructive=False, idempotent=True),
    )
    server.add_tool(
        memory_search,
        name=names["memory_search"],
        title="Search memories",
        description=(
            "Find stored memories relevant to a question or topic (keywords and meaning). Use it "
            "before answering anything that may depend on earlier conversations, decisions or "
            "preferences. Returns up to `limit` hits (default 10, at most 100) with id, score, "
            "title, tags and a short snippet, plus next_cursor for more and the scopes searched. "
            "Call memory_get with the ids for full text. A `note` explains degraded answers, e.g. "
            "lexical-only results while the embedding model is still loading."
        ),
        annotations=read_only,
    )
    server.add_tool(
        memory_get,
        name=names["memory_get"],
        title="Get memories by id",
        description=(
            "Read the full text and metadata of memories by id (ids come from memory_search or "
            "memory_list). Returns the memories found, the ids that are missing (and any whose "
            "stored text failed its checksum, under damaged), and the scopes looked in. Text "
            "is bounded by max_chars; `truncated`/`omitted` say when to ask again "
            "(with `offset` for one long memory)."
        ),
        annotations=read_only,
    )
    server.add_tool(
        memory_delete,
        name=names["memory_delete"],
        title="Delete memories",
        description=(
            "Delete memories by id, e.g. when the user asks to forget something or a memory is "
            "wrong or outdated (to correct one, delete it and store the new text). Deleted "
            "memories disappear from search, get and list at once and cannot be restored; "
            "their text is physically removed from every stored file in the background within "
            "15 minutes (the server's purge_after_seconds), or before this returns with "
            "purge=true (use it when the user asks for the text to be erased now). Returns how "
            "many were deleted, the scopes looked in and whether the text was purged; deleting "
            "an id again deletes nothing."
        ),
        annotations=_annotations(read_only=False, destructive=True, idempotent=True),
    )
    server.add_tool(
        memory_list,
        name=names["memory_list"],
        title="List memories",
        description=(
            "Browse memories newest first without a query: metadata only (no text), optionally "
            "filtered by scope, kind or tags. Returns up to `limit` (default 20, at most 100), "
            "next_cursor for the next page, and the scopes listed."
        ),
        annotations=read_only,
    )
    server.add_tool(
        memory_stats,
        name=names["memory_stats"],
        title="Memory statistics",
        description=(
            "Report, per scope, how many memories are stored, their size, the storage backend "
            "and the embedding model's state. Use it to check the memory store is working or "
            "which scopes exist."
        ),
        annotations=read_only,
    )

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


def build_http_app(
    server: MCPServer,
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    allowed_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_HTTP_BODY_BYTES,
) -> ASGIApp:
    """The streamable-HTTP ASGI app behind Origin, bearer-token and body-size checks.

    Binding anything but a loopback address requires a token.
    """
    from .http_security import HTTPSecurity

    if not _is_loopback(host) and not token:
        raise ValidationError(
            "host",
            f"binding {host} (not a loopback address) requires a bearer token: set "
            "MEMVID_HTTP_TOKEN to a long random secret",
        )
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
    app = server.streamable_http_app(
        host=host, max_request_body_size=max_body_bytes, transport_security=security
    )
    return HTTPSecurity(
        app,
        token=token or None,
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
    ``MEMVID_HTTP_TOKEN`` (required off loopback) and ``MEMVID_HTTP_ALLOWED_ORIGINS``
    (comma-separated extra origins; loopback origins are always allowed).
    """
    if transport not in ("stdio", "http", "streamable-http"):
        raise ValidationError("transport", f"{transport!r} is not 'stdio' or 'http'")
    _configure_logging()
    server, holder = _build(settings, None, None)
    try:
        if transport == "stdio":
            anyio.run(server.run_stdio_async)
        else:
            origins = [
                o.strip()
                for o in os.environ.get("MEMVID_HTTP_ALLOWED_ORIGINS", "").split(",")
                if o.strip()
            ]
            app = build_http_app(
                server,
                host=host,
                token=os.environ.get("MEMVID_HTTP_TOKEN") or None,
                allowed_origins=origins,
            )
            anyio.run(_serve_http, app, host, port)
    finally:
        holder.close()


async def _serve_http(app: ASGIApp, host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_announce_when_listening, server, host)
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
