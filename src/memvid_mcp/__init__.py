"""memvid-mcp: durable, searchable memory for LLM agents, bodies kept as QR codes in video.

The public API is what ``__all__`` names; everything else is private to the package.

    from memvid_mcp import MemoryManager
    with MemoryManager.open("~/.memvid", backend="video") as memory:
        memory.store("The deploy key lives in 1Password", tags=["ops"])
        memory.search("where is the deploy key?")
"""

from __future__ import annotations

__version__ = "0.2.0"

from typing import TYPE_CHECKING, Any

from .core.errors import (
    ClosedError,
    CorruptionError,
    EmbeddingUnavailable,
    MemvidError,
    NotFoundError,
    ReadOnlyError,
    ScopeError,
    StorageError,
    StoreLockedError,
    ValidationError,
)

if TYPE_CHECKING:
    from .core.config import Settings
    from .core.models import (
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
    from .manager import MemoryManager

# Loaded on first use (PEP 562), so starting the MCP server does not import the search and
# storage stack before the first request needs it.
_LAZY = {
    "Settings": "core.config",
    "MemoryManager": "manager",
    **{name: "core.models" for name in ("GetResult", "ListResult", "Memory", "MemoryRecord",
                                   "Problem", "SearchHit", "SearchResult", "Stats",
                                   "StoreResult")},
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memvid_mcp' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ClosedError",
    "CorruptionError",
    "EmbeddingUnavailable",
    "GetResult",
    "ListResult",
    "Memory",
    "MemoryManager",
    "MemoryRecord",
    "MemvidError",
    "NotFoundError",
    "Problem",
    "ReadOnlyError",
    "ScopeError",
    "SearchHit",
    "SearchResult",
    "Settings",
    "Stats",
    "StorageError",
    "StoreLockedError",
    "StoreResult",
    "ValidationError",
    "__version__",
]
