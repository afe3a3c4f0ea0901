"""Input checks for everything that can be written. Each failure names the field and the limit.

Validation happens before anything touches the disk, so bad input writes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ulid import ULID

from .config import Settings
from .errors import ValidationError
from .models import DEFAULT_KIND, parse_iso, utcnow

MAX_KIND_CHARS = 64
MAX_SOURCE_CHARS = 1024
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class StoreInput:
    """A validated ``store`` request."""

    text: str
    title: str | None
    kind: str
    tags: tuple[str, ...]
    scope: str | None
    metadata: dict[str, Any]
    id: str | None
    source: str | None
    expires_at: datetime | None
    pinned: bool


def check_unicode(field: str, value: str) -> str:
    """Reject strings that are not valid Unicode (lone surrogates cannot be stored as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            field, "is not valid Unicode (it contains a lone surrogate); send UTF-8 text"
        ) from None
    return value


def check_id(value: Any, field: str = "id") -> str:
    """A memory id is a 26-character ULID (Crockford base32)."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string (a 26-character ULID)")
    candidate = value.strip().upper()
    try:
        ULID.from_str(candidate)
    except ValueError:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValidationError(
            field, f"{shown!r} is not a valid memory id (26-character ULID)"
        ) from None
    return candidate


def normalise_ids(ids: str | Iterable[str], field: str = "ids") -> list[str]:
    """One id, a comma-separated string, or a list; duplicates removed, order kept."""
    if not isinstance(ids, str | Iterable):
        raise ValidationError(field, "must be a memory id or a list of memory ids")
    items = ids.split(",") if isinstance(ids, str) else list(ids)
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        checked = check_id(item, field)
        if checked not in out:
            out.append(checked)
    if not out:
        raise ValidationError(field, "give at least one memory id")
    return out


def normalise_tags(tags: str | Iterable[str] | None, settings: Settings,
                   field: str = "tags") -> tuple[str, ...]:
    """A list or comma-separated string; trimmed, empty dropped, case-insensitive duplicates
    dropped (first spelling kept)."""
    if tags is None:
        return ()
    if not isinstance(tags, str | Iterable):
        raise ValidationError(field, "must be a list of strings or a comma-separated string")
    items = tags.split(",") if isinstance(tags, str) else list(tags)
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(field, "every tag must be a string")
        tag = check_unicode(field, item).strip()
        if not tag:
            continue
        if len(tag) > settings.max_tag_chars:
            raise ValidationError(
                field, f"tag {tag[:20]!r}... is over {settings.max_tag_chars} characters"
            )
        if "," in tag:
            raise ValidationError(field, f"tag {tag!r} must not contain a comma")
        if tag.lower() not in seen:
            seen.add(tag.lower())
            out.append(tag)
    if len(out) > settings.max_tags:
        raise ValidationError(field, f"{len(out)} tags given; at most {settings.max_tags}")
    return tuple(out)


def merge_tags(old: tuple[str, ...], new: tuple[str, ...], limit: int) -> tuple[str, ...]:
    merged = list(old)
    seen = {t.lower() for t in old}
    for tag in new:
        if tag.lower() not in seen:
            seen.add(tag.lower())
            merged.append(tag)
    if len(merged) > limit:
        raise ValidationError("tags", f"merging would give {len(merged)} tags; at most {limit}")
    return tuple(merged)


def check_metadata(value: Any, settings: Settings) -> dict[str, Any]:
    """A JSON object, or its JSON text (what clients that cannot send objects send); blank
    text is no metadata."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValidationError("metadata", f"is not valid JSON ({exc.msg})") from None
    if not isinstance(value, Mapping):
        raise ValidationError("metadata", "must be a JSON object")
    try:
        encoded = json.dumps(dict(value), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise ValidationError("metadata", f"must be JSON-serialisable ({exc})") from None
    if len(encoded) > settings.max_metadata_bytes:
        raise ValidationError(
            "metadata", f"is {len(encoded)} bytes as JSON; at most {settings.max_metadata_bytes}"
        )
    result: dict[str, Any] = json.loads(encoded)
    return result


def check_datetime(field: str, value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return parse_iso(value.isoformat())
    if isinstance(value, str):
        try:
            return parse_iso(value)
        except ValueError:
            raise ValidationError(field, f"{value!r} is not an ISO 8601 date or time") from None
    raise ValidationError(field, "must be an ISO 8601 string")


def check_time_bound(field: str, value: Any) -> datetime | None:
    """A search bound (``since``/``until``): an ISO 8601 date or time, or an age back from now
    such as '7d', '12h', '30m', '45s', '2w'. The one parser behind the tools and the CLI."""
    if isinstance(value, str):
        if not value.strip():
            return None
        age = _AGE.match(value)
        if age:
            seconds = float(age.group(1)) * _AGE_SECONDS[age.group(2).lower()]
            return utcnow() - timedelta(seconds=seconds)
        try:
            return parse_iso(value)
        except ValueError:
            raise ValidationError(
                field, f"{value!r} is neither an ISO 8601 date/time nor an age like '7d'"
            ) from None
    return check_datetime(field, value)


def validate_store(settings: Settings, text: Any, *, title: Any = None, tags: Any = None,
                   kind: Any = None, scope: Any = None, metadata: Any = None, id: Any = None,
                   source: Any = None, ttl_seconds: Any = None, expires_at: Any = None,
                   pinned: Any = False) -> StoreInput:
    """Check every field of a store request; the first problem raises ValidationError."""
    if not isinstance(text, str):
        raise ValidationError("text", "must be a string")
    check_unicode("text", text)
    if not text.strip():
        raise ValidationError("text", "is empty or only white space")
    size = len(text.encode("utf-8"))
    if size > settings.max_text_bytes:
        raise ValidationError(
            "text", f"is {size} bytes; the maximum is {settings.max_text_bytes} bytes"
        )
    if title is not None:
        if not isinstance(title, str):
            raise ValidationError("title", "must be a string")
        title = check_unicode("title", title).strip() or None
        if title and len(title) > settings.max_title_chars:
            raise ValidationError("title", f"is over {settings.max_title_chars} characters")
    if kind is None or (isinstance(kind, str) and not kind.strip()):
        kind = DEFAULT_KIND
    if not isinstance(kind, str) or len(kind) > MAX_KIND_CHARS:
        raise ValidationError("kind", f"must be a string of at most {MAX_KIND_CHARS} characters")
    kind = check_unicode("kind", kind).strip()
    if scope is not None and not isinstance(scope, str):
        raise ValidationError("scope", "must be a string")
    if source is not None:
        if not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS:
            raise ValidationError("source", f"must be a string of at most {MAX_SOURCE_CHARS}")
        check_unicode("source", source)
    expires = check_datetime("expires_at", expires_at)
    if ttl_seconds is not None:
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float):
            raise ValidationError("ttl_seconds", "must be a number of seconds")
        if ttl_seconds <= 0:
            raise ValidationError("ttl_seconds", "must be positive")
        expires = utcnow() + timedelta(seconds=float(ttl_seconds))
    if not isinstance(pinned, bool):
        raise ValidationError("pinned", "must be true or false")
    return StoreInput(
        text=text,
        title=title,
        kind=kind,
        tags=normalise_tags(tags, settings),
        scope=scope,
        metadata=check_metadata(metadata, settings),
        id=check_id(id) if id is not None else None,
        source=source,
        expires_at=expires,
        pinned=pinned,
    )
