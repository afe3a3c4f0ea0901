"""Bad tool arguments as one sentence the model can act on (no ``mcp`` import here).

The SDK reports a mistyped argument with pydantic's multi-line text and a documentation URL,
and ignores unknown arguments. These helpers name the argument, say what it must be (read
from the published input schema, so the wording follows the schema) and what was sent:

    limit must be an integer from 1 to 100 (got 'ten')
    unknown argument 'qurey'; did you mean 'query'?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a JSON object",
}
_PLURALS = {"string": "strings", "integer": "integers", "number": "numbers", "object": "objects"}
_SHOWN_CHARS = 40


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to a misspelt ``name``, if any is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def shown(value: Any) -> str:
    """A short repr of what the client sent (never the whole of a long value)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _alternatives(prop: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The accepted shapes of one property: its ``anyOf`` entries or its ``type`` list."""
    if isinstance(prop.get("anyOf"), list):
        return [alt for alt in prop["anyOf"] if isinstance(alt, Mapping)]
    kind = prop.get("type")
    if isinstance(kind, list):
        return [{**prop, "type": k} for k in kind]
    return [prop]


def _shape(alt: Mapping[str, Any]) -> str | None:
    kind = alt.get("type")
    if kind == "null":
        return None
    if kind == "array":
        items = alt.get("items")
        item = items.get("type") if isinstance(items, Mapping) else None
        return f"a list of {_PLURALS.get(str(item), 'values')}"
    return _TYPE_WORDS.get(str(kind), "a valid value")


def _bound(prop: Mapping[str, Any], key: str) -> Any:
    """``minimum``/``maximum`` on the property or on any of its alternatives."""
    if key in prop:
        return prop[key]
    for alt in _alternatives(prop):
        if key in alt:
            return alt[key]
    return None


def expected(prop: Mapping[str, Any]) -> str:
    """What a property must be, in words: 'an integer from 1 to 100', 'a list of strings or
    a string'."""
    shapes: list[str] = []
    for alt in _alternatives(prop):
        shape = _shape(alt)
        if shape is not None and shape not in shapes:
            shapes.append(shape)
    words = " or ".join(shapes) or "a valid value"
    low, high = _bound(prop, "minimum"), _bound(prop, "maximum")
    if low is not None and high is not None:
        words += f" from {low} to {high}"
    elif low is not None:
        words += f" of at least {low}"
    elif high is not None:
        words += f" of at most {high}"
    return words


def unknown_arguments(
    tool: str,
    schema: Mapping[str, Any],
    arguments: Mapping[str, Any],
    *,
    advertised: Mapping[str, Any] | None = None,
) -> str | None:
    """A sentence about the first argument the tool does not take, or None.

    ``schema`` says what is accepted (aliases too); suggestions and the list of what the
    tool takes come from ``advertised`` (the published schema) when given.
    """
    accepted = schema.get("properties", {})
    known = list((advertised if advertised is not None else schema).get("properties", {}))
    for name in arguments:
        if name in accepted:
            continue
        guess = did_you_mean(name, known)
        if guess is not None and guess not in arguments:
            return f"unknown argument {name!r}; did you mean {guess!r}?"
        return f"unknown argument {name!r}; {tool} takes {', '.join(known)}"
    return None


def invalid_arguments(
    schema: Mapping[str, Any], arguments: Mapping[str, Any], errors: Sequence[Mapping[str, Any]]
) -> str:
    """One sentence for pydantic's ``errors()`` on a tool's arguments, one clause per field."""
    props: Mapping[str, Any] = schema.get("properties", {})
    clauses: list[str] = []
    seen: set[str] = set()
    for error in errors:
        loc = error.get("loc") or ("arguments",)
        field = str(loc[0])
        if field in seen:  # a union reports one error per alternative
            continue
        seen.add(field)
        what = expected(props.get(field, {}))
        if error.get("type") == "missing" or field not in arguments:
            clauses.append(f"{field} is required ({what})")
        else:
            clauses.append(f"{field} must be {what} (got {shown(arguments[field])})")
    return "; ".join(clauses) or "the arguments do not match the tool's input schema"
