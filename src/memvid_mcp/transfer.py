"""Export to and import from JSON lines: one memory per line, every field plus exact text.

Export then import into an empty store round-trips exactly (ids, timestamps, tags, text).
Import folds exact duplicates and reports counts; a bad line names its line number.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .core.errors import ValidationError
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


def import_jsonl(manager: MemoryManager, path: Path, *, scope: str | None = None,
                 progress_factory: ProgressFactory | None = None) -> dict[str, int]:
    """Store every line of ``path``; returns counts. Line errors name the line number."""
    try:
        lines = (sys.stdin.read() if str(path) == "-"
                 else path.read_text(encoding="utf-8")).splitlines()
    except OSError as exc:
        raise storage_error(path, exc) from exc
    except UnicodeDecodeError:
        raise ValidationError(str(path), "is not UTF-8 text") from None
    counts = {"lines": 0, "imported": 0, "deduplicated": 0, "replaced": 0}
    bar = progress_factory("importing", len(lines)) if progress_factory else None
    for number, line in enumerate(lines, 1):
        if bar is not None:
            bar.update(1)
        if not line.strip():
            continue
        counts["lines"] += 1
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValidationError("line", "must be a JSON object")
            result = manager.import_record(data, scope=scope)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path}:{number}", f"invalid JSON ({exc.msg})") from None
        except ValidationError as exc:
            raise ValidationError(f"{path}:{number}: {exc.field}",
                                  str(exc).split(": ", 1)[-1]) from None
        key = "deduplicated" if result.deduplicated else (
            "replaced" if result.replaced else "imported")
        counts[key] += 1
    if bar is not None:
        bar.render_finish()
    return counts

