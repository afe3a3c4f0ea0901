"""Redaction of common secrets (API keys, tokens, private keys) before a memory is stored.

On by default (``MEMVID_REDACT_SECRETS=0`` turns it off). Every free-text field is redacted
with the same rules: the text, title, kind, tags, source and every string in the metadata
(values at any depth, and keys). Each match becomes ``[REDACTED:<kind>]`` and the store result
lists where: ``<kind>`` for the text (as in 0.1.0, so clients reading kinds keep working) and
``<kind>:<field>`` for any other field, e.g. ``aws_access_key:title`` or
``github_token:metadata.ci.token``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .validation import StoreInput

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private_key", re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b")),
    ("github_pat", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b")),
    ("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("openai_key", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}")),
    ("slack_token", re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{10,}")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("stripe_key", re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*")),
)


def redact_secrets(text: str) -> tuple[str, tuple[str, ...]]:
    """Return the text with secrets replaced, and the sorted kinds that were found."""
    found: set[str] = set()
    for kind, pattern in _PATTERNS:
        text, count = pattern.subn(f"[REDACTED:{kind}]", text)
        if count:
            found.add(kind)
    return text, tuple(sorted(found))


def redact_input(item: StoreInput) -> tuple[StoreInput, tuple[str, ...]]:
    """The store request with secrets removed from every free-text field, and where they
    were: sorted ``kind`` (text) and ``kind:field`` entries; unchanged when none."""
    found: set[str] = set()

    def clean(value: str, where: str) -> str:
        redacted, kinds = redact_secrets(value)
        found.update(kind if where == "text" else f"{kind}:{where}" for kind in kinds)
        return redacted

    def clean_json(value: Any, where: str) -> Any:
        if isinstance(value, str):
            return clean(value, where)
        if isinstance(value, list):
            return [clean_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, inner in value.items():
                name = clean(key, where + ".<key>")
                while name in out:  # two keys redacted alike: keep both values
                    name += "'"
                out[name] = clean_json(inner, f"{where}.{name}")
            return out
        return value

    changed = dataclasses.replace(
        item,
        text=clean(item.text, "text"),
        title=clean(item.title, "title") if item.title is not None else None,
        kind=clean(item.kind, "kind"),
        tags=tuple(clean(tag, "tags") for tag in item.tags),
        source=clean(item.source, "source") if item.source is not None else None,
        metadata=clean_json(item.metadata, "metadata"),
    )
    if not found:
        return item, ()
    return changed, tuple(sorted(found))
