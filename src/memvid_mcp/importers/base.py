"""What every importer produces, and the one loop that stores it.

An importer only reads: it turns a file or folder in some other tool's format into ``Item``s.
``store_items`` writes them through ``MemoryManager`` (validation, secret redaction, exact
duplicate folding), so running an import twice adds nothing the second time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import ValidationError
from ..core.fsutil import storage_error
from ..manager import MemoryManager

ProgressFactory = Callable[[str, int | None], Any]


@dataclass(frozen=True, slots=True)
class Item:
    """One memory to store. ``where`` names its origin in error messages (``notes/a.md#2``).

    ``record`` is set only by the jsonl importer: an exported memory kept with its id and
    timestamps (``MemoryManager.import_record``) instead of stored as new.
    """

    where: str
    text: str = ""
    title: str | None = None
    tags: tuple[str, ...] = ()
    kind: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] | None = None


class Importer(Protocol):
    """One source format: a name for ``--from``, a line of help, and a reader."""

    name: str
    summary: str

    def read(self, path: Path) -> list[Item]:
        """Every item in ``path``; raises ValidationError naming the place of a bad entry."""
        ...


def read_text(path: Path) -> str:
    """A UTF-8 text file, with errors that name it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValidationError(str(path), "is not UTF-8 text") from None
    except OSError as exc:
        raise storage_error(path, exc) from exc


def read_json(path: Path) -> Any:
    """A JSON document, with errors that name the file."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ValidationError(str(path), f"invalid JSON ({exc.msg}, line {exc.lineno})") from None


def json_objects(path: Path, text: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(line number, "path:line", object)`` for each non-blank line of a JSON-lines text;
    a bad line is a one-line error naming it."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(where, f"invalid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ValidationError(where, "must be a JSON object")
        yield number, where, data


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (titles have a maximum)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def store_items(manager: MemoryManager, items: Iterable[Item], *, total: int | None,
                scope: str | None, progress_factory: ProgressFactory | None
                ) -> dict[str, int]:
    """Store every item; returns counts. A bad item raises ValidationError naming its place."""
    counts = {"imported": 0, "deduplicated": 0, "replaced": 0}
    bar = progress_factory("importing", total) if progress_factory else None
    for item in items:
        try:
            if item.record is not None:
                result = manager.import_record(item.record, scope=scope)
            else:
                result = manager.store(item.text, title=item.title, tags=item.tags,
                                       kind=item.kind, scope=scope, metadata=item.metadata,
                                       source=item.source)
        except ValidationError as exc:
            raise ValidationError(f"{item.where}: {exc.field}",
                                  str(exc).split(": ", 1)[-1]) from None
        key = "deduplicated" if result.deduplicated else (
            "replaced" if result.replaced else "imported")
        counts[key] += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.render_finish()
    return counts
