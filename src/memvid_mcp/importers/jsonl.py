"""memvid-mcp's own JSON lines (``memvid-mcp export``): one memory per line, kept exactly.

Ids and timestamps survive the round trip (``MemoryManager.import_record``); an exact
duplicate of a live memory folds into it, so importing a file twice adds nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import ValidationError
from ..core.fsutil import storage_error
from ..manager import MemoryManager
from .base import Item, ProgressFactory, json_objects, store_items


class JsonlImporter:
    name = "jsonl"
    summary = "memvid-mcp export files (JSON lines; ids and timestamps kept)"

    def read(self, path: Path) -> list[Item]:
        try:
            text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        except OSError as exc:
            raise storage_error(path, exc) from exc
        except UnicodeDecodeError:
            raise ValidationError(str(path), "is not UTF-8 text") from None
        return [Item(where=where, record=data) for _, where, data in json_objects(path, text)]


def import_jsonl(manager: MemoryManager, path: Path, *, scope: str | None = None,
                 progress_factory: ProgressFactory | None = None) -> dict[str, int]:
    """Store every line of ``path`` ('-' = stdin); counts with ``lines`` (the CLI's shape)."""
    items = JsonlImporter().read(path)
    counts = store_items(manager, items, total=len(items), scope=scope,
                         progress_factory=progress_factory)
    return {"lines": len(items), **counts}
