"""The one canonical form of a memory's text, and its SHA-256 identity.

Two texts are the same memory when their canonical forms are equal. Identity version 2 folds
only what never carries meaning: Unicode NFC, CRLF and CR to LF, white space at the end of
each line, and blank lines before the first and after the last line with text. Indentation and
white space inside a line are kept, so two code snippets that differ only in indentation are two
memories. Version 1 (0.1.0) folded every run of white space; it stays here so stores written
with it can be migrated and their old hashes checked (ADR 0002, ADR 0011). The stored text
stays exactly as given; only the identity uses this form.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

IDENTITY_VERSION = 2
"""The identity a new scope records in ``scope.json``; older scopes are rehashed on open."""

IDENTITY_VERSIONS = (1, 2)

_WHITESPACE = re.compile(r"\s+")


def canonical_text(text: str, version: int = IDENTITY_VERSION) -> str:
    """Return the canonical form used for duplicate detection."""
    text = unicodedata.normalize("NFC", text)
    if version == 1:
        return _WHITESPACE.sub(" ", text).strip()
    if version != 2:
        raise ValueError(f"unknown identity version {version}")
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n")
             .split("\n")]
    start, end = 0, len(lines)
    while start < end and not lines[start]:
        start += 1
    while end > start and not lines[end - 1]:
        end -= 1
    return "\n".join(lines[start:end])


def content_sha256(text: str, version: int = IDENTITY_VERSION) -> str:
    """Hex SHA-256 of the canonical form, encoded as UTF-8."""
    return hashlib.sha256(canonical_text(text, version).encode("utf-8")).hexdigest()


def bytes_sha256(data: bytes) -> str:
    """Hex SHA-256 of raw bytes (bodies as stored)."""
    return hashlib.sha256(data).hexdigest()
