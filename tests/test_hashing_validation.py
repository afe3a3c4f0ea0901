"""Canonical hash, input validation and secret redaction."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memvid_mcp.core.config import Settings
from memvid_mcp.core.errors import ScopeError, ValidationError
from memvid_mcp.core.hashing import canonical_text, content_sha256
from memvid_mcp.core.redact import redact_secrets
from memvid_mcp.core.scopes import ScopeLayout
from memvid_mcp.core.validation import check_id, normalise_ids, normalise_tags, validate_store

SETTINGS = Settings(data_dir=Path("/tmp/unused"))


@given(st.text())
def test_canonical_form_is_idempotent(text: str) -> None:
    once = canonical_text(text)
    assert canonical_text(once) == once


# White space that NFC leaves alone and that is not a line break (a line break is a new line).
_SPACE = st.sampled_from([" ", "\t", "\u00a0", "\u3000", "\u2003", "\x0b", "\x0c"])
_WORD = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
                min_size=1, max_size=6)
_LINE = st.tuples(st.lists(_SPACE, max_size=3).map("".join),
                  st.lists(st.tuples(_WORD, st.lists(_SPACE, min_size=1, max_size=3)
                                     .map("".join)), min_size=1, max_size=4))
_TEXT = st.lists(_LINE, min_size=1, max_size=5)


def _render(lines: list, *, trailing: list[str] | None = None, ending: str = "\n") -> str:
    out = []
    for index, (indent, words) in enumerate(lines):
        inner = "".join(word + gap for word, gap in words[:-1]) + words[-1][0]
        out.append(indent + inner + (trailing[index] if trailing else ""))
    return ending.join(out)


@given(_TEXT, st.data())
def test_folded_white_space_does_not_change_identity(lines: list, data: st.DataObject) -> None:
    """NFC, CRLF/CR, white space at line ends and blank lines around the text are folded."""
    plain = _render(lines)
    trailing = data.draw(st.lists(st.lists(_SPACE, max_size=3).map("".join),
                                  min_size=len(lines), max_size=len(lines)))
    ending = data.draw(st.sampled_from(["\n", "\r\n", "\r"]))
    blank = data.draw(st.lists(st.sampled_from(["", " ", "\t "]), max_size=3)
                      .map(lambda b: "".join(x + ending for x in b)))
    cosmetic = blank + _render(lines, trailing=trailing, ending=ending) + ending + blank
    assert content_sha256(cosmetic) == content_sha256(plain)
    assert content_sha256(unicodedata.normalize("NFD", plain)) == content_sha256(plain)


@given(_TEXT, st.data())
def test_leading_and_inner_white_space_are_part_of_identity(lines: list,
                                                            data: st.DataObject) -> None:
    """Indentation and gaps inside a line carry meaning (Python, YAML): another memory."""
    row = data.draw(st.integers(0, len(lines) - 1))
    indent, words = lines[row]
    changed = list(lines)
    if data.draw(st.booleans()) or len(words) == 1:
        other = data.draw(st.lists(_SPACE, max_size=4).map("".join).filter(
            lambda s: s != indent))
        changed[row] = (other, words)
    else:
        gap_at = data.draw(st.integers(0, len(words) - 2))
        word, gap = words[gap_at]
        other = data.draw(st.lists(_SPACE, min_size=1, max_size=4).map("".join).filter(
            lambda s: s != gap))
        changed[row] = (indent, [*words[:gap_at], (word, other), *words[gap_at + 1:]])
    assert content_sha256(_render(changed)) != content_sha256(_render(lines))


def test_indentation_tells_code_snippets_apart() -> None:
    python = "if ok:\n    run()\n    done()\n"
    assert content_sha256(python) != content_sha256("if ok:\n    run()\ndone()\n")
    assert content_sha256("a:\n  b: 1\n") != content_sha256("a:\n    b: 1\n")
    assert content_sha256("\n\nif ok:  \r\n    run()\t\r\n\n") == content_sha256(
        "if ok:\n    run()")


def test_identity_version_1_is_kept_for_migration() -> None:
    assert canonical_text("  a \n\t b  ", version=1) == "a b"
    assert content_sha256("a  b", version=1) == content_sha256("a b", version=1)
    with pytest.raises(ValueError):
        canonical_text("a", version=9)


def test_different_text_different_identity() -> None:
    assert content_sha256("a b") != content_sha256("ab")
    assert len(content_sha256("x")) == 64


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": " \n\t "}, "text"),
        ({"text": "x" * (1024 * 1024 + 1)}, "text"),
        ({"text": "bad \ud800 surrogate"}, "text"),
        ({"text": 42}, "text"),
        ({"text": "ok", "tags": [f"t{i}" for i in range(65)]}, "tags"),
        ({"text": "ok", "tags": ["x" * 65]}, "tags"),
        ({"text": "ok", "metadata": "[1, 2]"}, "metadata"),
        ({"text": "ok", "metadata": "{not json"}, "metadata"),
        ({"text": "ok", "metadata": {"big": "x" * 70000}}, "metadata"),
        ({"text": "ok", "id": "not-a-ulid"}, "id"),
        ({"text": "ok", "ttl_seconds": -5}, "ttl_seconds"),
        ({"text": "ok", "expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict, field: str) -> None:
    text = kwargs.pop("text")
    with pytest.raises(ValidationError) as info:
        validate_store(SETTINGS, text, **kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_limits_are_named_in_messages() -> None:
    with pytest.raises(ValidationError, match="1048576"):
        validate_store(SETTINGS, "x" * (1024 * 1024 + 1))
    with pytest.raises(ValidationError, match="at most 64"):
        validate_store(SETTINGS, "ok", tags=[f"t{i}" for i in range(65)])


def test_text_is_kept_exactly() -> None:
    text = "  Exact\ttext, with  spacing \n"
    item = validate_store(SETTINGS, text, tags="a, b,,A , c", metadata='{"k": 1}')
    assert item.text == text
    assert item.tags == ("a", "b", "c")
    assert item.metadata == {"k": 1}
    assert item.kind == "note"


def test_ids_accept_one_string_a_csv_or_a_list() -> None:
    a, b = "01ARZ3NDEKTSV4RRFFQ69G5FAV", "01BX5ZZKBKACTAV9WEVGEMMVRZ"
    assert normalise_ids(a) == [a]
    assert normalise_ids(f"{a},{b.lower()}") == [a, b]
    assert normalise_ids([a, a, b]) == [a, b]
    with pytest.raises(ValidationError):
        normalise_ids([])
    with pytest.raises(ValidationError):
        check_id("../../etc/passwd")


def test_tags_accept_list_or_csv() -> None:
    assert normalise_tags(["x", " y "], SETTINGS) == ("x", "y")
    assert normalise_tags("x,y", SETTINGS) == ("x", "y")
    with pytest.raises(ValidationError):
        normalise_tags([1], SETTINGS)  # type: ignore[list-item]


def test_redaction_finds_common_secrets() -> None:
    text = ("key AKIAABCDEFGHIJKLMNOP and ghp_" + "a" * 36 + " and sk-ant-" + "b" * 30
            + " Authorization: Bearer " + "c" * 30)
    redacted, kinds = redact_secrets(text)
    assert "AKIAABCDEFGHIJKLMNOP" not in redacted
    assert "ghp_" not in redacted and "sk-ant-" not in redacted
    assert {"aws_access_key", "github_token", "anthropic_key", "bearer_token"} <= set(kinds)
    assert redact_secrets("nothing secret here") == ("nothing secret here", ())


def test_scopes_outside_a_repository(tmp_path: Path) -> None:
    layout = ScopeLayout.resolve(tmp_path / "data", tmp_path)
    assert layout.available == ("global",)
    assert layout.default_search_scopes == ("global",)
    with pytest.raises(ScopeError, match="git repository"):
        layout.directory("project")
    with pytest.raises(ScopeError, match="unknown scope"):
        layout.check("../escape")


def test_scopes_inside_a_repository(tmp_path: Path) -> None:
    repo = tmp_path / "my repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    layout = ScopeLayout.resolve(tmp_path / "data", repo / "src")
    assert layout.repo_root == repo.resolve()
    assert layout.default_write_scope == "project"
    assert layout.default_search_scopes == ("project", "global")
    project = layout.directory("project")
    assert project.parent == tmp_path / "data" / "projects"
    assert not project.is_relative_to(repo)
    assert layout.directory("committed") == repo.resolve() / ".memvid"
