"""The one exception tree of memvid-mcp.

Every error the package raises on purpose is a ``MemvidError``; the CLI turns it into one line
on stderr (exit 1) and the MCP server into a tool error the model can read and act on. Anything
else escaping is a bug and is logged with its traceback.

    MemvidError
    ├── ValidationError          bad input: names the field and the limit; nothing was written
    ├── NotFoundError            an id, scope or file that does not exist
    ├── ScopeError               unknown scope, or a project scope outside any git repository
    │   └── AccessDeniedError    a scope the session's token may not use (names both)
    ├── StoreLockedError         another process holds the writer lock past the timeout
    ├── ReadOnlyError            a write on a store opened read-only
    ├── StorageError             the disk said no (not writable, full); no partial state is left
    │   └── CorruptionError      a checksum or format check failed; names the file
    ├── EmbeddingUnavailable     no embedding model could be loaded; search falls back to lexical
    ├── ClosedError              the manager was used after close()
    └── ServiceError             the per-user service cannot be reached, started or trusted
"""

from __future__ import annotations


class MemvidError(Exception):
    """Base of every error memvid-mcp raises on purpose."""


class ValidationError(MemvidError, ValueError):
    """Bad input. ``field`` names what was wrong so a person or a model can fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFoundError(MemvidError, KeyError):
    """Something named does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not found"


class ScopeError(MemvidError):
    """Unknown scope, or a repository scope asked for outside a git repository."""


class AccessDeniedError(ScopeError):
    """A scope the HTTP session's token is not allowed to use; names the scope and token."""

    def __init__(self, scope: str, token: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"scope: the token {token!r} may not use scope {scope!r}; it may use "
                         f"{', '.join(allowed) or 'no scope'}")
        self.scope = scope
        self.token = token


class StoreLockedError(MemvidError):
    """Another process holds the writer lock on this scope."""


class ReadOnlyError(MemvidError):
    """A write was attempted on a store opened read-only."""


class StorageError(MemvidError, OSError):
    """The file system refused an operation (permissions, disk full, ...)."""


class CorruptionError(StorageError):
    """A checksum or format check failed. ``path`` names the damaged file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class EmbeddingUnavailable(MemvidError):
    """No embedding model could be loaded; callers degrade to lexical search."""


class ClosedError(MemvidError):
    """The manager (or a store) was used after it was closed."""


class ServiceError(MemvidError):
    """The per-user service cannot be reached, started, or trusted (a foreign run directory)."""

