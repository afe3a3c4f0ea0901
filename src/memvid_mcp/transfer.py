"""Export to JSON lines: one memory per line, every field plus exact text.

Export then import (``importers.jsonl``) into an empty store round-trips exactly (ids,
timestamps, tags, text).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .core.fsutil import storage_error
from .manager import MemoryManager

ProgressFactory = Callable[[str, int | None], Any]


def export_jsonl(manager: MemoryManager, path: Path, *, scope: str | None = None,
                 progress_factory: ProgressFactory | None = None) -> int:
    """Write every live memory of the scope (or all scopes) to ``path`` ('-' = stdout)."""
    stores = manager._existing_scopes([scope] if scope else None)
    records = [(s, r) for s in stores for r in sorted(s.records(), key=lambda r: r.id)]
    out: IO[str]
    if str(path) == "-":
        out = sys.stdout
    else:
        try:
            out = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise storage_error(path, exc) from exc
    try:
        bar = progress_factory("exporting", len(records)) if progress_factory else None
        for store, record in records:
            line = {**record.to_dict(), "text": store.read_body(record)}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.render_finish()
    finally:
        if out is not sys.stdout:
            out.close()
    return len(records)
