"""The one canonical form of a memory's text, and its SHA-256 identity.

Two texts are the same memory when their canonical forms are equal: Unicode NFC, leading and
trailing white space removed, every run of white space folded to one space. The stored text
stays exactly as given; only the identity uses this form (ADR 0002).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")


def canonical_text(text: str) -> str:
    """Return the canonical form used for duplicate detection."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def content_sha256(text: str) -> str:
    """Hex SHA-256 of the canonical form, encoded as UTF-8."""
    return hashlib.sha256(canonical_text(text).encode("utf-8")).hexdigest()


def bytes_sha256(data: bytes) -> str:
    """Hex SHA-256 of raw bytes (bodies as stored)."""
    return hashlib.sha256(data).hexdigest()
