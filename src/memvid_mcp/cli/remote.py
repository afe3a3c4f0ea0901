"""CLI commands through the running service, so they never wait on its locks.

When a service owns the data directory, ``memvid-mcp <command>`` sends its arguments (paths
made absolute, standard input when a command reads ``-``) over the service socket; the
service runs the very same click command in a worker thread against its open manager and
streams the command's stdout and stderr back; the exit code is the command's own. With no
service running, the command runs in this process as before. ``serve``, ``service``,
``token`` (a new token never travels) and ``--read-only`` commands always run here.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

LOCAL_ONLY = {"serve", "service", "token", "--help", "-h", "--version"}
PATH_OPTIONS = {"--data-dir", "--project"}
PATH_ARGUMENTS = {"export", "import"}  # their first argument is a path ('-' = stdio)
VALUE_OPTIONS = {"--backend", "--scope", "--from"}  # their next argument is a value, kept as is
STDIN_COMMANDS = {"store", "import"}


# ----------------------------------------------------------------------------- client side
def _command(argv: list[str]) -> str | None:
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--data-dir", "--backend", "--scope", "--project"):
            skip = True
            continue
        if not arg.startswith("-"):
            return arg
    return None


def _project(argv: list[str]) -> str:
    """The project the command is about: --project, MEMVID_PROJECT, or the working dir."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--project" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--project="):
            value = arg.partition("=")[2]
    value = value or os.environ.get("MEMVID_PROJECT") or os.getcwd()
    return os.path.abspath(os.path.expanduser(value))


def _absolute(argv: list[str]) -> list[str]:
    """Paths made absolute: the service runs in another working directory."""
    out: list[str] = []
    command_seen = False
    expect_path = False
    value_next = False
    for arg in argv:
        if value_next:
            value_next = False
        elif arg in VALUE_OPTIONS:
            value_next = True
        elif expect_path and arg != "-" and not arg.startswith("-"):
            arg = os.path.abspath(os.path.expanduser(arg))
            expect_path = False
        elif arg in PATH_OPTIONS:
            expect_path = True
        elif any(arg.startswith(o + "=") for o in PATH_OPTIONS):
            name, _, value = arg.partition("=")
            arg = f"{name}={os.path.abspath(os.path.expanduser(value))}"
        elif not arg.startswith("-") and not command_seen:
            command_seen = True
            expect_path = arg in PATH_ARGUMENTS
        out.append(arg)
    return out


def try_remote(argv: list[str]) -> int | None:
    """Run the command through the service; None when no service runs (run it here)."""
    command = _command(argv)
    if command is None or command in LOCAL_ONLY or "--read-only" in argv or \
            any(a in LOCAL_ONLY for a in argv if a.startswith("-")):
        return None
    from ..client.connect import open_connection
    from ..client.launch import data_dir_from
    from ..core.errors import MemvidError
    from ..core.rundir import RunDir

    try:
        run = RunDir.for_data_dir(data_dir_from(argv))
        found = open_connection(run, "cli", project=_project(argv), client="cli", spawn=False)
    except (MemvidError, OSError):
        return None
    if found is None:
        return None
    conn, _ = found
    stdin = None
    if command in STDIN_COMMANDS and "-" in argv[argv.index(command) + 1:]:
        stdin = sys.stdin.read()
    request = {"argv": _absolute(argv), "stdin": stdin,
               "tty": {"out": sys.stdout.isatty(), "err": sys.stderr.isatty()}}
    try:
        conn.send(json.dumps(request).encode("utf-8") + b"\n")
        while True:
            message = json.loads(conn.readline(limit=1 << 30))
            if "out" in message:
                sys.stdout.write(message["out"])
                sys.stdout.flush()
            elif "err" in message:
                sys.stderr.write(message["err"])
                sys.stderr.flush()
            elif "exit" in message:
                return int(message["exit"])
    except (OSError, ValueError):
        sys.stderr.write("memvid-mcp: error: the service went away during the command; "
                         "run it again\n")
        return 1
    finally:
        conn.close()


# ----------------------------------------------------------------------------- service side
class _PerThreadStream(io.TextIOBase):
    """sys.stdout/sys.stderr in the service: each remote command's thread writes to its own
    sink; every other thread writes where the stream went before."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback
        self._local = threading.local()

    @contextmanager
    def redirect(self, sink: Callable[[str], None], tty: bool) -> Iterator[None]:
        self._local.sink, self._local.tty = sink, tty
        try:
            yield
        finally:
            self._local.sink = None

    def write(self, text: str) -> int:
        sink = getattr(self._local, "sink", None)
        if sink is None:
            return int(self._fallback.write(text))
        sink(text)
        return len(text)

    def flush(self) -> None:
        if getattr(self._local, "sink", None) is None:
            self._fallback.flush()

    def isatty(self) -> bool:
        return bool(getattr(self._local, "tty", False))


class _PerThreadStdin(io.TextIOBase):
    def __init__(self) -> None:
        self._local = threading.local()

    def set(self, text: str | None) -> None:
        self._local.text = io.StringIO(text or "")

    def read(self, size: int | None = -1) -> str:
        return str(self._local.text.read(size if size is not None else -1))

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        return str(self._local.text.readline(size if size is not None else -1))

    def isatty(self) -> bool:
        return False


_installed: tuple[_PerThreadStream, _PerThreadStream, _PerThreadStdin] | None = None
_manager_source = threading.local()


def service_manager() -> Any:
    """The service's manager for the running remote command, or None outside one."""
    return getattr(_manager_source, "manager", None)


def run_in_service(request: dict[str, Any], manager: Any,
                   send: Callable[[dict[str, Any]], None]) -> int:
    """Run one CLI request in this (worker) thread with the service's manager."""
    global _installed
    if _installed is None:
        _installed = (_PerThreadStream(sys.stdout), _PerThreadStream(sys.stderr),
                      _PerThreadStdin())
        sys.stdout, sys.stderr, sys.stdin = _installed
    out, err, stdin = _installed
    argv = [str(a) for a in request.get("argv", [])]
    tty = request.get("tty") or {}
    stdin.set(request.get("stdin"))
    _manager_source.manager = manager
    from .main import main

    try:
        with out.redirect(lambda s: send({"out": s}), bool(tty.get("out"))), \
                err.redirect(lambda s: send({"err": s}), bool(tty.get("err"))):
            code: Any = 0
            try:
                main.main(args=argv, prog_name="memvid-mcp", standalone_mode=True)
            except SystemExit as exc:
                code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        _manager_source.manager = None
