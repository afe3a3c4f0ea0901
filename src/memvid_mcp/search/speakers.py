"""Speaker-like prefixes of a memory's text: "Alice: we moved the deploy to Fridays".

A line that starts with a short name (1-3 words of letters, digits and ``._-``, at most
``MAX_SPEAKER_CHARS`` characters) followed by a colon and a space or the line's end names who
said it. The lexical index weights those names (ADR 0035) so that a query naming a speaker
favours that speaker's memories. A colon inside a word is never a prefix: "http://x" and
"10:30" name nobody.
"""

from __future__ import annotations

import re

MAX_SPEAKER_CHARS = 30
MAX_SPEAKER_WORDS = 3

# one word: a letter or digit, then letters, digits and ._- (``[^\W_]`` is \w without "_")
_WORD = r"[^\W_][\w.\-]*"
_PREFIX = re.compile(
    rf"^[ \t]*({_WORD}(?:[ \t]+{_WORD}){{0,{MAX_SPEAKER_WORDS - 1}}})[ \t]*:(?=\s|$)",
    re.MULTILINE,
)


def speakers(text: str) -> list[str]:
    """The distinct speaker names of ``text``'s lines, in order of first appearance."""
    found: dict[str, None] = {}
    for match in _PREFIX.finditer(text):
        name = " ".join(match.group(1).split())
        if len(name) <= MAX_SPEAKER_CHARS:
            found.setdefault(name, None)
    return list(found)
