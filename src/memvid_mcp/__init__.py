"""memvid-mcp: durable, searchable memory for LLM agents, bodies kept as QR codes in video.

The public API is what ``__all__`` names; everything else is private to the package.

    from memvid_mcp import MemoryManager
    with MemoryManager.open("~/.memvid", backend="video") as memory:
        memory.store("The deploy key lives in 1Password", tags=["ops"])
        memory.search("where is the deploy key?")
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Settings
from .errors import (
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
from .manager import MemoryManager
from .models import (
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
