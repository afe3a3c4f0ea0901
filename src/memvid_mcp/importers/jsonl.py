"""memvid-mcp's own JSON lines (``memvid-mcp export``): one memory per line, kept exactly.

Ids and timestamps survive the round trip (``MemoryManager.import_record``); an exact
duplicate of a live memory folds into it, so importing a file twice adds nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.errors import ValidationError
from ..core.fsutil import storage_error
from ..manager import MemoryManager
from .base import Item, ProgressFactory, store_items


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
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(where, f"invalid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise ValidationError(f"{where}: line", "must be a JSON object")
            items.append(Item(where=where, record=data))
        return items


def import_jsonl(manager: MemoryManager, path: Path, *, scope: str | None = None,
                 progress_factory: ProgressFactory | None = None) -> dict[str, int]:
    """Store every line of ``path`` ('-' = stdin); counts with ``lines`` (the CLI's shape)."""
    items = JsonlImporter().read(path)
    counts = store_items(manager, items, total=len(items), scope=scope,
                         progress_factory=progress_factory)
    return {"lines": len(items), **counts}
