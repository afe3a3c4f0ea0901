"""mem0's memories as JSON: what ``Memory.get_all()`` / ``MemoryClient.get_all()`` return
(``{"results": [...]}``, or a bare list from older versions), saved with ``json.dump``.

Each entry needs ``memory`` (the text). ``categories`` become tags; ``id``, ``hash``,
``user_id``, ``agent_id``, ``run_id``, ``actor_id``, ``role``, ``created_at`` and
``updated_at`` are kept under ``metadata.import`` and mem0's own ``metadata`` under
``metadata.mem0``. Entries are facts extracted by mem0, so their kind is ``fact``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import ValidationError
from .base import Item, read_json

KEPT = ("id", "hash", "user_id", "agent_id", "run_id", "actor_id", "role", "created_at",
        "updated_at")


def _entries(data: Any, path: Path) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("results", "memories"):
            if isinstance(data.get(key), list):
                return list(data[key])
    raise ValidationError(str(path), "is not a mem0 export: expected a list of memories or "
                                     "an object with a 'results' list")


class Mem0Importer:
    name = "mem0"
    summary = "mem0 memories as JSON (get_all() output: {'results': [...]} or a list)"

    def read(self, path: Path) -> list[Item]:
        items = []
        source = str(path.resolve())
        for index, entry in enumerate(_entries(read_json(path), path)):
            where = f"{path}[{index}]"
            if not isinstance(entry, dict):
                raise ValidationError(where, "must be a JSON object")
            text = entry.get("memory")
            if not isinstance(text, str) or not text.strip():
                raise ValidationError(f"{where}: memory", "must be a non-empty string")
            categories = entry.get("categories") or []
            tags = tuple(str(c).replace(",", " ").strip()[:64]
                         for c in (categories if isinstance(categories, list) else [categories]))
            kept = {k: entry[k] for k in KEPT if entry.get(k) is not None}
            metadata: dict[str, Any] = {"import": {"format": self.name, "path": path.name,
                                                   "index": index, **kept}}
            if isinstance(entry.get("metadata"), dict) and entry["metadata"]:
                metadata["mem0"] = entry["metadata"]
            items.append(Item(where=where, text=text, tags=tags, kind="fact", source=source,
                              metadata=metadata))
        return items
