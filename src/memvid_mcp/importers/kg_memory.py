"""The official MCP knowledge-graph memory server's file (``memory.jsonl``, once
``memory.json``): one JSON object a line, ``{"type": "entity", "name", "entityType",
"observations": [...]}`` or ``{"type": "relation", "from", "to", "relationType"}``.

Each observation is an atomic fact, so each becomes one memory (``"<name>: <observation>"``,
kind fact, title the entity, tagged with its entity type); an entity without observations
becomes ``"<name> is a <entityType>"``; each relation becomes ``"<from> <relationType>
<to>"`` (kind relation). Re-importing after the graph grew adds only what is new. Lines of
another type are skipped, as the server itself skips them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import ValidationError
from .base import Item, clip, json_objects, read_text

TITLE_CHARS = 200


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{where}: {field}", "must be a non-empty string")
    return value.strip()


class KgMemoryImporter:
    name = "kg-memory"
    summary = "the MCP knowledge-graph memory server's memory.jsonl (entities, relations)"

    def read(self, path: Path) -> list[Item]:
        items: list[Item] = []
        source = str(path.resolve())
        for number, where, data in json_objects(path, read_text(path)):
            base = {"format": self.name, "path": path.name, "line": number}
            if data.get("type") == "entity":
                items += self._entity(data, where, source, base)
            elif data.get("type") == "relation":
                start, kind = _text(data.get("from"), where, "from"), data.get("relationType")
                end, verb = _text(data.get("to"), where, "to"), _text(kind, where, "relationType")
                items.append(Item(
                    where=where, text=f"{start} {verb} {end}", kind="relation",
                    title=clip(f"{start} {verb} {end}", TITLE_CHARS), source=source,
                    metadata={"import": {**base, "from": start, "to": end,
                                         "relation_type": verb}}))
        return items

    def _entity(self, data: dict[str, Any], where: str, source: str,
                base: dict[str, Any]) -> list[Item]:
        name = _text(data.get("name"), where, "name")
        entity_type = _text(data.get("entityType"), where, "entityType")
        observations = data.get("observations") or []
        if not isinstance(observations, list):
            raise ValidationError(f"{where}: observations", "must be a list of strings")
        meta = {"import": {**base, "entity": name, "entity_type": entity_type}}
        tags = (clip(entity_type, 64).replace(",", " "),)
        texts = [f"{name}: {_text(o, where, 'observations')}" for o in observations] or \
            [f"{name} is a {entity_type}"]
        return [Item(where=where, text=text, title=clip(name, TITLE_CHARS), tags=tags,
                     kind="fact", source=source, metadata=meta) for text in texts]
