"""JSON Schemas every MCP client accepts (no ``mcp`` import here).

pydantic writes ``anyOf`` for every optional argument and ``$defs``/``$ref`` for nested
models. Cursor's tool gateway rejects ``anyOf``/``oneOf``/``allOf`` and Gemini rejects
``$ref``/``$defs``, so the published schemas are rewritten into plain ones:

- input: an optional argument is simply not required; a union keeps its first shape (the
  list of ``list[str] | str``: the server still accepts the others, unadvertised); aliases
  are left out; ``title`` and ``default: null`` go (they cost bytes and tell nothing);
- output: references are inlined and ``X | None`` becomes ``"type": [X, "null"]`` (a
  client validates structured content against it, so null must stay allowed); only the
  top-level fields and their types stay: the objects inside a list (search hits, memories)
  are published as plain objects. The whole tools/list answer must stay under 8 KB, the
  model sees the structured content itself, and the server checks each result against the
  full model before sending it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

BANNED_KEYWORDS = ("anyOf", "oneOf", "allOf", "$ref", "$defs")
_DROPPED = {"title", "$defs"}
_OUTPUT_KEPT = {"type", "properties", "items", "additionalProperties"}


def input_schema(
    schema: Mapping[str, Any], *, hidden: Iterable[str] = (), required: Iterable[str] = ()
) -> dict[str, Any]:
    """The published input schema: ``hidden`` properties left out, ``required`` added."""
    defs = schema.get("$defs", {})
    out = _plain(schema, defs, output=False, depth=0)
    gone = set(hidden)
    props = {k: v for k, v in out.get("properties", {}).items() if k not in gone}
    out["properties"] = props
    wanted = [n for n in [*out.get("required", []), *required] if n in props]
    out["required"] = list(dict.fromkeys(wanted))
    if not out["required"]:
        del out["required"]
    return out


def output_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The published output schema: inlined, nullable types as type lists, no prose."""
    return _plain(schema, schema.get("$defs", {}), output=True, depth=0)


def banned_keywords(schema: Any, path: str = "$") -> list[str]:
    """Where ``schema`` uses a keyword some client rejects (empty when portable)."""
    found: list[str] = []
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if key in BANNED_KEYWORDS:
                found.append(f"{path}.{key}")
            found.extend(banned_keywords(value, f"{path}.{key}"))
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            found.extend(banned_keywords(item, f"{path}[{index}]"))
    return found


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return dict(node)
    target = defs[str(node["$ref"]).rsplit("/", 1)[-1]]
    return {**_resolve(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}


def _union(
    node: dict[str, Any], defs: Mapping[str, Any], *, output: bool, depth: int
) -> dict[str, Any]:
    """One plain shape for an ``anyOf`` node (its other keys, e.g. description, kept)."""
    shapes = [_plain(alt, defs, output=output, depth=depth) for alt in node.pop("anyOf")]
    real = [s for s in shapes if s.get("type") != "null"]
    nullable = len(real) < len(shapes)
    chosen = dict(real[0]) if real else {}
    if output:
        if len(real) != 1 or not isinstance(chosen.get("type"), str):
            chosen = {}  # several shapes: published as "any value"
        elif nullable:
            chosen["type"] = [chosen["type"], "null"]
    return {**chosen, **node}


def _plain(
    node: Mapping[str, Any], defs: Mapping[str, Any], *, output: bool, depth: int = 0
) -> dict[str, Any]:
    work = _resolve(node, defs)
    if "anyOf" in work:
        work = _union(work, defs, output=output, depth=depth)
    deeper = depth + 1
    out: dict[str, Any] = {}
    for key, value in work.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue
        if output and (key not in _OUTPUT_KEPT or (key == "properties" and depth >= 2)):
            continue
        if key == "properties":
            out[key] = {
                name: _plain(prop, defs, output=output, depth=deeper)
                for name, prop in value.items()
            }
        elif key == "items" and isinstance(value, Mapping):
            out[key] = _plain(value, defs, output=output, depth=deeper)
        elif key == "additionalProperties":
            if isinstance(value, Mapping):
                out[key] = _plain(value, defs, output=output, depth=deeper)
            elif value is False:
                out[key] = False
        else:
            out[key] = value
    return out
