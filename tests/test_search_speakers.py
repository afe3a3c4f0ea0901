"""The speaker-prefix detector the lexical index weights (ADR 0035)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memvid_mcp.search.speakers import MAX_SPEAKER_CHARS, speakers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alice: we moved the deploy to Fridays", ["Alice"]),
        ("Emily: I went to Green Wheat Park\nAssistant: How was it?", ["Emily", "Assistant"]),
        ("John Zhang: hello", ["John Zhang"]),
        ("  Bob.Smith-2 :  indented, spaced", ["Bob.Smith-2"]),
        ("José: hola", ["José"]),
        ("Alice: one\nBob: two\nAlice: three", ["Alice", "Bob"]),
        ("Alice:\r\nsaid nothing on this line", ["Alice"]),
        ("notes\nCarol:\tafter a tab", ["Carol"]),
    ],
)
def test_speaker_prefixes_are_found(text: str, expected: list[str]) -> None:
    assert speakers(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "see http://x for details",
        "http://example.com: the page",  # "http" is followed by "//", not a space
        "10:30 standup moved",
        "we meet at 10:30: bring notes",  # a colon inside a word first
        "Alice:no space after the colon",
        "one two three four: too many words for a name",
        "_private: an underscore does not start a name",
        "A" * (MAX_SPEAKER_CHARS + 1) + ": too long",
        "the deploy moved. Alice: mid-line is not a prefix",
        "",
    ],
)
def test_no_speaker_where_there_is_none(text: str) -> None:
    assert speakers(text) == []


@given(st.text())
def test_any_text_gives_short_names_and_never_raises(text: str) -> None:
    for name in speakers(text):
        assert 0 < len(name) <= MAX_SPEAKER_CHARS
        assert len(name.split()) <= 3
        assert ":" not in name and "\n" not in name


@given(
    st.from_regex(r"[A-Za-z]{1,8}://[A-Za-z0-9./]{0,20}", fullmatch=True)
    | st.from_regex(r"[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
)
def test_urls_and_times_are_never_speakers(token: str, rest: str) -> None:
    """A URL or a clock time at the start of a line names nobody, whatever follows."""
    rest_line = rest.split("\n")[0]
    for text in (token, f"{token} {rest_line}", f"intro\n{token}\n"):
        assert speakers(text) == []
