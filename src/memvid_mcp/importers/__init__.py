"""Importers from other memory tools: one module per format, one interface (``base``).

``import_from(manager, format, path)`` reads ``path`` with the named importer and stores what
it finds; every format is idempotent (exact duplicates fold into the memory already stored).
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import ValidationError
from ..manager import MemoryManager
from .base import Importer, Item, ProgressFactory, store_items
from .claude_code import ClaudeCodeImporter
from .jsonl import JsonlImporter, import_jsonl
from .kg_memory import KgMemoryImporter
from .markdown import MarkdownImporter
from .mem0 import Mem0Importer

IMPORTERS: dict[str, Importer] = {i.name: i for i in (
    JsonlImporter(), KgMemoryImporter(), MarkdownImporter(), ClaudeCodeImporter(),
    Mem0Importer())}
FORMATS = tuple(IMPORTERS)

__all__ = ["FORMATS", "IMPORTERS", "Importer", "Item", "import_from", "import_jsonl"]


def import_from(manager: MemoryManager, fmt: str, path: Path, *, scope: str | None = None,
                progress_factory: ProgressFactory | None = None) -> dict[str, int]:
    """Import ``path`` in format ``fmt``; counts of items imported and already present."""
    if fmt == "jsonl":
        return import_jsonl(manager, path, scope=scope, progress_factory=progress_factory)
    importer = IMPORTERS.get(fmt)
    if importer is None:
        raise ValidationError("from", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    items = importer.read(path)
    counts = store_items(manager, items, total=len(items), scope=scope,
                         progress_factory=progress_factory)
    return {"items": len(items), **counts}
