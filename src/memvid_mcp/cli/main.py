"""The command line for people (and scripts): a thin layer over MemoryManager.

With no command it runs the MCP server on stdio, which is what MCP client configs launch.
Every MemvidError becomes one line on stderr and exit code 1; ``--json`` gives the exact JSON
shapes other tools rely on (README, "CLI").
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ..core.config import BACKENDS, Settings, check_chosen_data_dir, default_data_dir
from ..core.errors import MemvidError, ValidationError
from ..core.models import SCOPES, SEARCH_MODES, iso
from ..mcp.context import DEFAULT_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS, MIN_CONTEXT_TOKENS

if TYPE_CHECKING:  # the manager (search + storage stack) loads only when a command needs it
    from ..manager import MemoryManager

log = logging.getLogger("memvid_mcp")
SEARCH_EMBED_SECONDS = 120.0  # a semantic search waits this long for the model and vectors


class Context:
    """What the group options decided, shared with every command."""

    def __init__(self, settings: Settings, scope: str | None, as_json: bool) -> None:
        self.settings = settings
        self.scope = scope
        self.as_json = as_json

    @contextmanager
    def manager(self, **overrides: Any) -> Iterator[MemoryManager]:
        """The service's open manager for a remote command, else one opened here."""
        from ..manager import MemoryManager
        from .remote import service_manager

        shared = service_manager()
        if shared is not None:
            yield shared
            return

        settings = self.settings.replace(**overrides) if overrides else self.settings
        # a short command never starts a model load it would exit during (exit code 134):
        # only semantic search loads the model, and close() waits for a load in flight
        with MemoryManager(settings, background_embedding=False) as manager:
            yield manager

    def emit(self, data: dict[str, Any], human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(data, ensure_ascii=False, indent=None))
        else:
            human()


def _settings_from(options: dict[str, Any]) -> Settings:
    settings = Settings.from_env(
        data_dir=options.get("data_dir"),
        backend=options.get("backend"),
        project=options.get("project"),
        read_only=True if options.get("read_only") else None,
    )
    if settings.data_dir != default_data_dir():  # named by the user: a typo must not mkdir -p
        check_chosen_data_dir(settings.data_dir)
    return settings


class MemvidGroup(click.Group):
    """Turns MemvidError into one line on stderr and exit code 1 (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MemvidError as exc:
            click.echo(f"memvid-mcp: error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("memvid-mcp: interrupted", err=True)
            ctx.exit(130)


def first_line(text: str, width: int = 60) -> str:
    """The first non-blank line of ``text``, white space collapsed, cut to ``width``."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


@click.group(cls=MemvidGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Where memories live (env MEMVID_DATA_DIR; default: the user data dir).")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Body storage of new scopes: file or video (env MEMVID_BACKEND; default "
                   "video). An existing scope keeps its own.")
@click.option("--scope", type=click.Choice(SCOPES), default=None,
              help="Scope to act on (default: project inside a git repository, else global).")
@click.option("--project", type=click.Path(path_type=Path), default=None,
              help="A path inside the git repository for the project scopes (default: cwd).")
@click.option("--read-only", is_flag=True, help="Open without taking the writer lock.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for debug).")
@click.version_option(__version__, prog_name="memvid-mcp")
@click.pass_context
def main(ctx: click.Context, /, verbose: int, scope: str | None, as_json: bool,
         **options: Any) -> None:
    """Durable memory for LLM agents. With no command: run the MCP server on stdio."""
    logging.basicConfig(
        stream=sys.stderr,
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        ctx.obj = Context(_settings_from(options), scope, as_json)
    except MemvidError as exc:
        click.echo(f"memvid-mcp: error: {exc}", err=True)
        ctx.exit(1)
    if ctx.invoked_subcommand is None:
        from ..mcp.server import run_server

        run_server(ctx.obj.settings.replace(read_only_fallback=True), transport="stdio")


@main.command()
@click.option("--idle", type=float, default=None,
              help="Seconds without clients before exiting (env MEMVID_SERVICE_IDLE).")
@click.option("--status", is_flag=True, help="Say whether a service owns the data directory.")
@click.option("--stop", is_flag=True, help="Ask the running service to flush and exit.")
@click.pass_obj
def service(obj: Context, idle: float | None, status: bool, stop: bool) -> None:
    """The per-user service that owns the data directory (MCP launches start it)."""
    if status or stop:
        from ..client.connect import control
        from ..core.rundir import RunDir

        answer = control(RunDir.for_data_dir(obj.settings.data_dir),
                         "drain" if stop else "status")
        running = bool(answer and answer.get("ok"))
        data = {"running": running, **(answer or {})} if status else {"stopped": running}
        obj.emit(data, lambda: click.echo(
            ("service stopping" if running else "no service running") if stop else
            (f"service pid {data.get('pid')} version {data.get('version')}, "
             f"{data.get('connections')} clients" if running else "no service running")))
        return
    from ..service.daemon import run_service
    from .remote import run_in_service

    sys.exit(run_service(obj.settings, idle_seconds=idle, cli_runner=run_in_service))


@main.command()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio",
              show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="HTTP bind address; anything but loopback needs MEMVID_HTTP_TOKEN.")
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--tokens-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="HTTP: named tokens and their scopes (env MEMVID_TOKENS_FILE; made with "
                   "'memvid-mcp token add'; see docs/team.md).")
@click.option("--stateless", is_flag=True, default=None,
              help="HTTP without MCP sessions, for several instances behind one proxy "
                   "(env MEMVID_HTTP_STATELESS).")
@click.pass_obj
def serve(obj: Context, transport: str, host: str, port: int,
          tokens_file: Path | None, stateless: bool | None) -> None:
    """Run the MCP server (stdio for MCP client configs, http for shared use).

    Over HTTP this is the data directory's service in the foreground: stdio clients (relays)
    and the CLI share it with the HTTP clients (ADR 0017). MEMVID_SERVICE=0 or --read-only
    serve HTTP from this process alone."""
    from ..client.launch import service_enabled
    from ..core.tokens import load_tokens
    from ..mcp.server import check_http_bind, run_server

    settings = obj.settings
    if tokens_file is not None:
        settings = settings.replace(tokens_file=tokens_file.absolute())
    if stateless:
        settings = settings.replace(http_stateless=True)
    if transport == "http":
        check_http_bind(host, os.environ.get("MEMVID_HTTP_TOKEN") or None, settings.tokens_file)
        if settings.tokens_file is not None:
            load_tokens(settings.tokens_file)  # a missing, loose or bad file stops us here
    if transport == "http" and service_enabled() and not settings.read_only:
        from ..service.daemon import run_service
        from .remote import run_in_service

        sys.exit(run_service(settings, cli_runner=run_in_service, http=(host, port),
                             replace_running=True))
    run_server(settings.replace(read_only_fallback=True), transport=transport, host=host,
               port=port)


def _tokens_path(tokens_file: Path | None, settings: Settings) -> Path:
    path = tokens_file or settings.tokens_file
    if path is None:
        raise ValidationError("tokens_file", "give --tokens-file or set MEMVID_TOKENS_FILE")
    return path


@main.group()
def token() -> None:
    """Named bearer tokens for 'serve --transport http', each limited to some scopes.

    The tokens file holds only each token's SHA-256; a new token is printed once."""


_TOKENS_FILE = click.option(
    "--tokens-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help="The tokens file (env MEMVID_TOKENS_FILE); created 0600 when missing.")


@token.command(name="add")
@click.argument("name")
@click.option("--scopes", required=True,
              help="Comma-separated scope names or patterns the token may use ('*': all).")
@_TOKENS_FILE
@click.pass_obj
def token_add(obj: Context, name: str, scopes: str, tokens_file: Path | None) -> None:
    """Create the token NAME; print it (the only time it is shown) on stdout."""
    from ..core.tokens import add_token, load_tokens

    path = _tokens_path(tokens_file, obj.settings)
    secret = add_token(path, name, scopes)
    entry = next(e for e in load_tokens(path) if e.name == name)
    obj.emit({"name": name, "token": secret, "scopes": list(entry.scopes),
              "tokens_file": str(path)}, lambda: click.echo(secret))
    if not obj.as_json:
        click.echo(f"token {name!r} (scopes {', '.join(entry.scopes)}) added to {path}; it is "
                   "shown only now: give it to its user (Authorization: Bearer <token>)",
                   err=True)


@token.command(name="list")
@_TOKENS_FILE
@click.pass_obj
def token_list(obj: Context, tokens_file: Path | None) -> None:
    """The token names and their scopes (never the tokens: only hashes are kept)."""
    from ..core.tokens import load_tokens

    entries = load_tokens(_tokens_path(tokens_file, obj.settings))

    def human() -> None:
        for entry in entries:
            click.echo(f"{entry.name}\t{','.join(entry.scopes)}")

    obj.emit({"tokens": [{"name": e.name, "scopes": list(e.scopes)} for e in entries]}, human)


@token.command(name="remove")
@click.argument("name")
@_TOKENS_FILE
@click.pass_obj
def token_remove(obj: Context, name: str, tokens_file: Path | None) -> None:
    """Revoke the token NAME (a running server notices the changed file at once)."""
    from ..core.tokens import remove_token

    if not remove_token(_tokens_path(tokens_file, obj.settings), name):
        raise ValidationError("name", f"no token named {name!r}")
    obj.emit({"removed": name}, lambda: click.echo(f"removed token {name!r}"))


@main.command()
@click.argument("text")
@click.option("--title", default=None)
@click.option("--tags", default=None, help="Comma-separated tags.")
@click.option("--kind", default=None, help="note, fact, decision, snippet, conversation, ...")
@click.option("--metadata", default=None, help="A JSON object.")
@click.option("--id", "memory_id", default=None, help="Replace the memory with this id.")
@click.option("--source", default=None, help="Where the memory came from (URL, file, ...).")
@click.option("--ttl", type=float, default=None, help="Expire after this many seconds.")
@click.option("--pinned", is_flag=True, help="Mark as pinned.")
@click.option("--supersedes", default=None,
              help="Comma-separated ids this memory replaces (they leave search, kept).")
@click.pass_obj
def store(obj: Context, text: str, title: str | None, tags: str | None, kind: str | None,
          metadata: str | None, memory_id: str | None, source: str | None, ttl: float | None,
          pinned: bool, supersedes: str | None) -> None:
    """Store TEXT (or '-' to read standard input)."""
    if text == "-":
        text = sys.stdin.read()
    with obj.manager() as manager:
        result = manager.store(text, title=title, tags=tags, kind=kind, scope=obj.scope,
                               metadata=metadata, id=memory_id, source=source,
                               ttl_seconds=ttl, pinned=pinned, supersedes=supersedes)
    data = result.to_dict()

    def human() -> None:
        verb = "duplicate of" if result.deduplicated else (
            "replaced" if result.replaced else "stored")
        click.echo(f"{verb} {result.id} (scope {result.scope})")
        if result.redactions:
            click.echo(f"redacted: {', '.join(result.redactions)}", err=True)

    obj.emit(data, human)


@main.command()
@click.argument("query")
@click.option("--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--tags", default=None, help="Any of these comma-separated tags.")
@click.option("--all-tags", default=None, help="All of these comma-separated tags.")
@click.option("--kind", default=None)
@click.option("--since", default=None,
              help="ISO date/time, or an age such as 7d, 12h, 30m (inclusive).")
@click.option("--until", default=None,
              help="ISO date/time, or an age such as 7d, 12h, 30m (exclusive).")
@click.option("--mode", type=click.Choice(SEARCH_MODES), default="hybrid", show_default=True)
@click.option("--cursor", default=None, help="next_cursor of a previous page.")
@click.option("--include-superseded", is_flag=True,
              help="Also find memories replaced by newer ones.")
@click.pass_obj
def search(obj: Context, query: str, k: int, tags: str | None, all_tags: str | None,
           kind: str | None, since: str | None, until: str | None, mode: str,
           cursor: str | None, include_superseded: bool) -> None:
    """Search memories (hybrid keyword + semantic by default)."""
    scopes = [obj.scope] if obj.scope else None
    with obj.manager() as manager:
        if mode != "lexical":  # memories stored by commands without the model get vectors now
            manager.catch_up_embeddings(SEARCH_EMBED_SECONDS, scopes)
        result = manager.search(query, k=k, scopes=scopes,
                                tags_any=tags, tags_all=all_tags, kind=kind, since=since,
                                until=until, mode=mode, cursor=cursor,
                                include_superseded=include_superseded)

    def human() -> None:
        if result.note:
            click.echo(f"note: {result.note}", err=True)
        if not result.results:
            click.echo("no matches")
        for hit in result.results:
            title = f" {hit.title}" if hit.title else ""
            click.echo(f"{hit.score:8.4f}  {hit.id}  [{hit.scope}/{hit.kind}]{title}")
            click.echo(f"          {hit.snippet}")
        if result.next_cursor:
            click.echo(f"more: --cursor {result.next_cursor}")

    data = result.to_dict()
    obj.emit({"results": data["results"], "next_cursor": data["next_cursor"],
              "mode": data["mode"], "scopes": data["scopes"],
              **({"note": data["note"]} if "note" in data else {})}, human)


@main.command()
@click.argument("ids", nargs=-1, required=True)
@click.pass_obj
def get(obj: Context, ids: tuple[str, ...]) -> None:
    """Show memories by id, with their full text."""
    with obj.manager() as manager:
        result = manager.get(list(ids), scopes=[obj.scope] if obj.scope else None)

    def human() -> None:
        for memory in result.memories:
            record = memory.record
            click.echo(f"== {record.id}  [{record.scope}/{record.kind}]  "
                       f"{iso(record.created_at)}  tags: {', '.join(record.tags) or '-'}")
            if record.superseded_by:
                click.echo(f"superseded by {record.superseded_by}")
            if record.supersedes:
                click.echo(f"supersedes {', '.join(record.supersedes)}")
            if record.title:
                click.echo(f"# {record.title}")
            click.echo(memory.text)
        for missing in result.missing:
            click.echo(f"not found: {missing}", err=True)
        for problem in result.damaged:
            click.echo(f"damaged: {problem.memory_ids[0]}: {problem.path}: {problem.message}",
                       err=True)

    obj.emit(result.to_dict(), human)
    if (result.missing or result.damaged) and not result.memories:
        sys.exit(1)


@main.command()
@click.argument("ids", nargs=-1, required=True)
@click.option("--purge", is_flag=True,
              help="Also remove the texts from every file before returning (otherwise the "
                   "background does it within MEMVID_PURGE_AFTER_SECONDS).")
@click.pass_obj
def delete(obj: Context, ids: tuple[str, ...], purge: bool) -> None:
    """Delete memories by id: hidden at once, their text erased from disk by --purge or
    in the background."""
    with obj.manager() as manager:
        deleted = manager.delete(list(ids), scopes=[obj.scope] if obj.scope else None,
                                 purge=purge)
    data: dict[str, Any] = {"deleted": deleted}
    if purge:
        data["purged"] = True
    obj.emit(data, lambda: click.echo(f"deleted {deleted}" + (" (purged)" if purge else "")))


@main.command()
@click.pass_obj
def purge(obj: Context) -> None:
    """Erase the text of every memory already deleted from every file, now."""
    with obj.manager() as manager:
        reports = manager.purge([obj.scope] if obj.scope else None)

    def human() -> None:
        for name, report in reports.items():
            click.echo(f"[{name}] rewrote {report['segments_rewritten']} segments, removed "
                       f"{report['segments_removed']}, reclaimed {report['bytes_reclaimed']} "
                       "bytes; deleted texts are gone from every file")

    obj.emit({"scopes": reports}, human)


@main.command(name="list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--cursor", default=None)
@click.option("--kind", default=None)
@click.option("--tags", default=None)
@click.pass_obj
def list_(obj: Context, limit: int, cursor: str | None, kind: str | None,
          tags: str | None) -> None:
    """List memories, newest first, each with its title and the start of its text."""
    texts: dict[str, str] = {}
    with obj.manager() as manager:
        result = manager.list(scope=obj.scope, limit=limit, cursor=cursor, kind=kind,
                              tags_any=tags)
        if not obj.as_json and result.memories:  # people tell untitled memories apart by text
            found = manager.get([r.id for r in result.memories])
            texts = {m.record.id: m.text for m in found.memories}

    def human() -> None:
        if not result.memories:
            click.echo("no memories")
        for record in result.memories:
            text = texts.get(record.id)
            snippet = first_line(text) if text is not None else "(text unreadable)"
            label = f"{record.title} | {snippet}" if record.title else snippet
            click.echo(f"{record.id}  {iso(record.created_at)}  [{record.scope}/{record.kind}]"
                       f"  {label}")
        if result.next_cursor:
            click.echo(f"more: --cursor {result.next_cursor}")

    obj.emit(result.to_dict(), human)


@main.command()
@click.option("--project", "project_path", type=click.Path(path_type=Path), default=None,
              help="A path inside the repository (default: the working directory).")
@click.option("--max-tokens", type=click.IntRange(MIN_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS),
              default=DEFAULT_CONTEXT_TOKENS,
              show_default=True, help="Budget for the printed context (estimated tokens).")
@click.pass_obj
def context(obj: Context, project_path: Path | None, max_tokens: int) -> None:
    """Print the memories most worth knowing for this project: pinned first, then decisions
    and preferences, then recent ones (what a SessionStart hook adds to a session)."""
    from ..mcp.context import session_context

    project = project_path or obj.settings.project
    with obj.manager() as manager:
        # the service's manager serves the client's working directory: look at the one asked
        shown = manager.view(project.resolve()) if project is not None else manager
        result = session_context(shown, max_tokens)
    obj.emit(result.to_dict(), lambda: click.echo(result.text))


@main.command()
@click.pass_obj
def stats(obj: Context) -> None:
    """Counts and sizes per scope."""
    with obj.manager() as manager:
        items = [s.to_dict() for s in manager.stats(obj.scope)]

    def human() -> None:
        if not items:
            click.echo("no memories yet")
        for item in items:
            click.echo(f"[{item['scope']}]")
            for key, value in item.items():
                if key != "scope":
                    click.echo(f"  {key}: {value}")

    obj.emit({"scopes": items}, human)


@main.command()
@click.pass_obj
def info(obj: Context) -> None:
    """Where data lives, which backend, versions."""
    with obj.manager() as manager:
        data = manager.info()
    data["python"] = sys.version.split()[0]

    def human() -> None:
        for key, value in data.items():
            if key == "scopes":
                for scope in value:
                    state = (f"{scope['path']} ({scope['backend']} backend)"
                             if scope["available"] else "(needs a git repository)")
                    click.echo(f"scope {scope['name']}: {state}")
            else:
                click.echo(f"{key}: {value}")

    obj.emit(data, human)


def _progress(label: str, total: int | None = None) -> Any:
    """A progress bar on a terminal (stderr), nothing otherwise."""
    return click.progressbar(length=total or 0, label=label, file=sys.stderr,
                             hidden=not sys.stderr.isatty() or not total)


@contextmanager
def _progress_callback(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress(done, total) callback drawing a bar on a terminal (stderr)."""
    bar = click.progressbar(length=1, label=label, file=sys.stderr,
                            hidden=not sys.stderr.isatty())
    with bar:
        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        yield progress


@main.command(name="import")
@click.option("--from", "fmt", default="jsonl", show_default=True,
              type=click.Choice(["jsonl", "kg-memory", "markdown", "claude-code", "mem0"]),
              help="jsonl: our export; kg-memory: the MCP memory server's memory.jsonl; "
                   "markdown: a folder of notes; claude-code: CLAUDE.md files and auto memory "
                   "(a project, or ~/.claude); mem0: mem0's get_all() JSON.")
@click.argument("path", type=click.Path(path_type=Path, allow_dash=True))
@click.pass_obj
def import_(obj: Context, fmt: str, path: Path) -> None:
    """Import memories from PATH. Running it again adds nothing (duplicates are folded)."""
    from ..importers import import_from

    with obj.manager() as manager:
        counts = import_from(manager, fmt, path, scope=obj.scope, progress_factory=_progress)
    read = f"lines {counts['lines']}" if "lines" in counts else f"items {counts['items']}"
    obj.emit(counts, lambda: click.echo(
        f"imported {counts['imported']}, duplicates {counts['deduplicated']}, "
        f"replaced {counts['replaced']}, {read}"))


@main.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.pass_obj
def export(obj: Context, path: Path) -> None:
    """Export memories (every field and the exact text) as JSON lines."""
    from ..transfer import export_jsonl

    with obj.manager() as manager:
        count = export_jsonl(manager, path, scope=obj.scope, progress_factory=_progress)
    if str(path) != "-":
        obj.emit({"exported": count, "path": str(path)},
                 lambda: click.echo(f"exported {count} memories to {path}"))


@main.command()
@click.pass_obj
def verify(obj: Context) -> None:
    """Check every record and checksum (and decode every video frame). Exit 0 when sound."""
    with obj.manager(read_only=True) as manager, _progress_callback("verifying") as progress:
        problems = manager.verify(progress)
    data = {"ok": not problems, "problems": [p.to_dict() for p in problems]}

    def human() -> None:
        if not problems:
            click.echo("ok: every record and checksum is sound")
        for problem in problems:
            ids = f" (memories: {', '.join(problem.memory_ids)})" if problem.memory_ids else ""
            click.echo(f"problem: {problem.path}: {problem.message}{ids}")

    obj.emit(data, human)
    if problems:
        sys.exit(1)


@main.command()
@click.pass_obj
def compact(obj: Context) -> None:
    """Rewrite segments with many deleted bodies and merge small ones."""
    with obj.manager() as manager, _progress_callback("compacting") as progress:
        reports = manager.compact(progress)
    data = {name: report.to_dict() for name, report in reports.items()}

    def human() -> None:
        for name, report in reports.items():
            click.echo(f"[{name}] rewrote {report.segments_rewritten} segments, removed "
                       f"{report.segments_removed}, reclaimed {report.bytes_reclaimed} bytes")

    obj.emit({"scopes": data}, human)


@main.command()
@click.option("--to", "target", type=click.Choice(BACKENDS), default=None,
              help="The backend to move the scope's memories to, in place.")
@click.option("--to-database", metavar="URL", default=None,
              help="Copy the scope into the team engine: its postgresql:// URL (with "
                   "--segments).")
@click.option("--from-database", metavar="URL", default=None,
              help="Copy the scope out of the team engine at this postgresql:// URL into "
                   "the local data directory (with --segments).")
@click.option("--segments", metavar="URL", default=None,
              help="The team's s3://bucket/prefix (AWS_* variables for endpoint and keys).")
@click.pass_obj
def migrate(obj: Context, target: str | None, to_database: str | None,
            from_database: str | None, segments: str | None) -> None:
    """Move a scope's memories to another backend in place (--to), or copy them into or out
    of the team engine (--to-database / --from-database with --segments). Crash-safe: run it
    again after an interruption."""
    chosen = [o for o, v in (("--to", target), ("--to-database", to_database),
                             ("--from-database", from_database)) if v]
    if len(chosen) != 1:
        raise ValidationError("migrate", "give exactly one of --to, --to-database, "
                              "--from-database")
    if (segments is None) == (target is None):
        raise ValidationError("segments", "--segments goes with --to-database or "
                              "--from-database (and only with them)")
    if target is None:
        _migrate_team(obj, to_database, from_database, segments or "")
        return
    with obj.manager() as manager, _progress_callback(f"migrating to {target}") as progress:
        report = manager.migrate(target, scope=obj.scope, progress=progress)

    def human() -> None:
        if report["source"] == report["target"]:
            click.echo(f"[{report['scope']}] already uses the {target} backend"
                       + (f"; removed {report['removed_files']} leftover files of the other"
                          if report["removed_files"] else ""))
            return
        click.echo(f"[{report['scope']}] moved {report['memories']} memories from the "
                   f"{report['source']} backend to {target} ({report['copied_bytes']} bytes "
                   f"copied in {report['seconds']:.1f} s); removed {report['removed_files']} "
                   f"files of the {report['source']} backend")

    obj.emit(report, human)


def _migrate_team(obj: Context, to_database: str | None, from_database: str | None,
                  segments: str) -> None:
    from ..team_migrate import migrate_from_database, migrate_to_database

    label = "copying into the team engine" if to_database else "copying out of the team engine"
    with obj.manager(database_url=None, segment_url=None) as manager, \
            _progress_callback(label) as progress:
        if to_database:
            result = migrate_to_database(manager, to_database, segments, scope=obj.scope,
                                         progress=progress)
        else:
            result = migrate_from_database(manager, from_database or "", segments,
                                           scope=obj.scope, progress=progress)
    report = result.to_dict()

    def human() -> None:
        click.echo(f"[{report['scope']}] {report['memories']} memories verified in "
                   f"{report['target']}: {report['copied']} copied, {report['already_there']} "
                   f"already there, {report['folded']} folded into the same text, "
                   f"{report['vectors_copied']} vectors carried over "
                   f"({report['seconds']:.1f} s)")
        click.echo(f"next: {report['source_next']}")

    obj.emit(report, human)


@main.command()
@click.pass_obj
def repair(obj: Context) -> None:
    """Rebuild indexes from the durable files; quarantine (copy) what cannot be read."""
    with obj.manager() as manager:
        with _progress_callback("checking") as progress:
            reports = manager.repair(progress)
        remaining = manager.verify()

    def human() -> None:
        for name, report in reports.items():
            click.echo(f"[{name}] problems found: {report['problems_found']}, unreadable "
                       f"memories removed: {len(report['memories_unreadable'])}")
            if report["quarantine"]:
                click.echo(f"  evidence kept in {report['quarantine']}")
        click.echo("ok: verify is clean" if not remaining else
                   f"{len(remaining)} problems remain; run verify for details")

    obj.emit({"scopes": reports, "remaining_problems": [p.to_dict() for p in remaining]},
             human)
    if remaining:
        sys.exit(1)


@main.command()
@click.pass_obj
def prune(obj: Context) -> None:
    """Delete memories whose TTL has passed."""
    with obj.manager() as manager:
        pruned = manager.prune_expired()
    obj.emit({"pruned": pruned}, lambda: click.echo(f"pruned {pruned} expired memories"))


@main.command()
@click.pass_obj
def warmup(obj: Context) -> None:
    """Fetch and load the embedding model now, so the first search need not wait."""
    with obj.manager() as manager:
        manager.embedder.start()
        ready = manager.embedder.wait_ready(600)
        state = manager.embedder.state
    obj.emit({"ready": ready, "embedder": state, "model": obj.settings.embed_model},
             lambda: click.echo(f"embedder: {state}"))
    if not ready:
        raise ValidationError("embed_model", f"could not be loaded: {state}")


if __name__ == "__main__":  # pragma: no cover
    main()
