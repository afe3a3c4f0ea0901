"""A folder of Markdown notes (Obsidian, Logseq pages, plain notes): chunked by heading.

Each note becomes one memory when it fits in ``MAX_CHUNK_BYTES``; a longer one is cut at its
headings (small neighbouring sections are packed together, long ones cut at blank lines,
then at line ends). YAML front matter gives the tags (``tags``/``tag``, a list or
``a, b``), the title and, as ``metadata.front_matter``, the rest. The source is the note's
path; ``metadata.import`` says which note and which chunk of it.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import ValidationError
from .base import Item, clip, read_text

MAX_CHUNK_BYTES = 2048
SUFFIXES = (".md", ".markdown")
SKIP_DIRS = {".git", ".obsidian", ".trash", "node_modules", ".memvid"}
TITLE_CHARS = 200
MAX_FRONT_MATTER_BYTES = 8 * 1024

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(front matter as a dict, the body). No front matter, or YAML that is not a mapping,
    gives ({}, text); YAML that does not parse is an error naming the problem."""
    if not text.startswith("---"):
        return {}, text
    lines = text.split("\n")
    if lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        return {}, text
    import yaml

    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise ValidationError("front matter", f"is not valid YAML ({exc})") from None
    body = "\n".join(lines[end + 1:])
    return (data if isinstance(data, dict) else {}), body


def front_matter_tags(front: dict[str, Any]) -> tuple[str, ...]:
    """``tags`` (or ``tag``/``keywords``): a list or a comma/space separated string."""
    raw = next((front[k] for k in ("tags", "tag", "keywords") if front.get(k)), None)
    if raw is None:
        return ()
    values = raw if isinstance(raw, list) else re.split(r"[,\s]+", str(raw))
    tags = []
    for value in values:
        tag = str(value).strip().lstrip("#").replace(",", " ").strip()
        if tag:
            tags.append(tag[:64])
    return tuple(tags)


def _jsonable(value: Any) -> Any:
    """Front matter values as JSON (YAML dates become ISO strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _sections(body: str) -> list[tuple[str | None, str]]:
    """(heading, text) pieces of ``body``, cut before each heading outside code fences."""
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    fence: str | None = None
    for line in body.split("\n"):
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
        elif opened:
            fence = opened.group(1)
        elif (heading := _HEADING.match(line)) is not None:
            sections.append((heading.group(2).strip(), []))
        sections[-1][1].append(line)
    return [(h, "\n".join(lines).strip()) for h, lines in sections if "\n".join(lines).strip()]


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, limit: int) -> Iterator[str]:
    """``text`` in pieces of at most ``limit`` bytes: at blank lines, else line ends, else
    anywhere (a single line longer than the limit)."""
    for separator in ("\n\n", "\n"):
        parts = text.split(separator)
        if len(parts) > 1:
            yield from _pack(parts, separator, limit)
            return
    encoded = text.encode("utf-8")
    start = 0
    while start < len(encoded):
        piece = encoded[start:start + limit].decode("utf-8", errors="ignore")
        if not piece:  # a limit smaller than one character
            piece = encoded[start:].decode("utf-8", errors="ignore")[:1]
        start += _size(piece)
        if piece.strip():
            yield piece.strip()


def _pack(parts: list[str], separator: str, limit: int) -> Iterator[str]:
    """Join consecutive ``parts`` while they fit in ``limit`` bytes; cut any that never do."""
    current = ""
    for part in parts:
        joined = f"{current}{separator}{part}" if current else part
        if _size(joined) <= limit:
            current = joined
            continue
        if current.strip():
            yield current.strip()
        if _size(part) <= limit:
            current = part
        else:
            yield from _cut(part, limit)
            current = ""
    if current.strip():
        yield current.strip()


def chunk_markdown(body: str, limit: int = MAX_CHUNK_BYTES) -> list[tuple[str | None, str]]:
    """(heading, text) chunks of at most ``limit`` bytes each, cut at headings first.

    Nothing is lost: every non-blank line of ``body`` is in exactly one chunk.
    """
    body = body.strip()
    if not body:
        return []
    if _size(body) <= limit:
        return [(None, body)]
    chunks: list[tuple[str | None, str]] = []
    for heading, text in _sections(body):
        if chunks and _size(joined := f"{chunks[-1][1]}\n\n{text}") <= limit:
            chunks[-1] = (chunks[-1][0] or heading, joined)
        elif _size(text) <= limit:
            chunks.append((heading, text))
        else:
            chunks.extend((heading, piece) for piece in _cut(text, limit))
    return chunks


def note_items(path: Path, *, relative: str, fmt: str, kind: str | None = None,
               extra_tags: tuple[str, ...] = ()) -> list[Item]:
    """The memories of one Markdown file."""
    try:
        front, body = split_front_matter(read_text(path).replace("\r\n", "\n"))
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc.field}", str(exc).split(": ", 1)[-1]) from None
    title = str(front.get("title") or front.get("name") or "").strip()
    if not title:
        first = _HEADING.match(body.lstrip().split("\n", 1)[0]) if body.strip() else None
        title = first.group(2).strip() if first else path.stem
    tags = tuple(dict.fromkeys((*front_matter_tags(front), *extra_tags)))
    rest = {k: v for k, v in front.items() if k not in ("tags", "tag", "keywords", "title")}
    extra: dict[str, Any] = {}
    if rest:
        as_json = _jsonable(rest)
        if _size(json.dumps(as_json, ensure_ascii=False)) <= MAX_FRONT_MATTER_BYTES:
            extra["front_matter"] = as_json
    chunks = chunk_markdown(body)
    items = []
    for number, (heading, text) in enumerate(chunks, 1):
        shown = title if heading is None or heading == title else f"{title} › {heading}"
        items.append(Item(
            where=f"{path}#{number}",
            text=text,
            title=clip(shown, TITLE_CHARS),
            tags=tags,
            kind=kind or (clip(front["type"].strip(), 64)
                          if isinstance(front.get("type"), str) else None),
            source=str(path),
            metadata={"import": {"format": fmt, "path": relative, "chunk": number,
                                 "chunks": len(chunks)}, **extra},
        ))
    return items


def markdown_files(root: Path) -> list[Path]:
    """Every Markdown file under ``root`` (hidden and tool folders skipped), sorted."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ValidationError(str(root), "is neither a Markdown file nor a folder")
    found = []
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if any(p in SKIP_DIRS or p.startswith(".") for p in parts[:-1]):
            continue
        if path.suffix.lower() in SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


class MarkdownImporter:
    name = "markdown"
    summary = "a folder of Markdown notes, chunked by heading; front matter tags become tags"

    def read(self, path: Path) -> list[Item]:
        root = path.resolve()
        items: list[Item] = []
        for file in markdown_files(root):
            relative = file.name if root.is_file() else file.relative_to(root).as_posix()
            items.extend(note_items(file, relative=relative, fmt=self.name))
        return items
