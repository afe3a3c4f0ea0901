"""The tokens file (core/tokens.py) and its CLI: hashes only on disk, born 0600, loose files
refused, every entry checked, scopes as names or patterns, changes seen while serving, and a
real ``serve --transport http --tokens-file`` process (through the service) enforcing it."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from http_serving import HEADERS, INITIALIZE, serve_process
from memvid_mcp.cli.main import main
from memvid_mcp.core.config import Settings
from memvid_mcp.core.errors import ValidationError
from memvid_mcp.core.tokens import (
    Access,
    TokenTable,
    add_token,
    hash_token,
    load_tokens,
    remove_token,
)


def test_a_new_token_is_random_and_only_its_hash_is_written(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first = add_token(path, "alice", "global, project")
    second = add_token(path, "bob", ["*"])
    assert first != second and len(first) >= 43  # 256 bits, url-safe
    raw = path.read_text(encoding="utf-8")
    assert first not in raw and second not in raw
    assert hash_token(first) in raw
    assert os.stat(path).st_mode & 0o777 == 0o600
    entries = load_tokens(path)
    assert [(e.name, e.scopes) for e in entries] == [("alice", ("global", "project")),
                                                      ("bob", ("*",))]
    table = TokenTable(path=path)
    assert table.authenticate(first) == Access("alice", ("global", "project"))
    assert table.authenticate(second) == Access("bob", ("*",))
    assert table.authenticate(first[:-1]) is None
    assert table.authenticate("") is None


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620, 0o602, 0o666])
def test_a_file_other_users_can_read_or_change_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tokens.json"
    add_token(path, "alice", "global")
    os.chmod(path, mode)
    with pytest.raises(ValidationError, match=r"readable or writable by other users.*chmod 600"):
        load_tokens(path)
    with pytest.raises(ValidationError):
        TokenTable(path=path)  # a server refuses to start on it


def test_a_group_readable_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    add_token(path, "alice", "global")
    os.chmod(path, 0o640)  # e.g. a container's secrets group
    assert [e.name for e in load_tokens(path)] == ["alice"]


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "is not JSON"),
    ('{"tokens": {}}', "'tokens' list"),
    ('{"version": 2, "tokens": []}', "format version 2"),
    ('{"tokens": [{"name": "a", "token": "plaintext", "scopes": ["*"]}]}', "64 hex digits"),
    ('{"tokens": [{"name": "a b", "sha256": "' + "0" * 64 + '", "scopes": ["*"]}]}',
     "not a token name"),
    ('{"tokens": [{"name": "a", "sha256": "' + "0" * 64 + '", "scopes": []}]}',
     "at least one scope"),
    ('{"tokens": [{"name": "a", "sha256": "' + "0" * 64 + '", "scopes": ["*"]},'
     ' {"name": "a", "sha256": "' + "1" * 64 + '", "scopes": ["*"]}]}', "is taken"),
])
def test_every_entry_is_checked(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content, encoding="utf-8")
    os.chmod(path, 0o600)
    with pytest.raises(ValidationError, match=message):
        load_tokens(path)


def test_scopes_are_names_or_patterns() -> None:
    assert Access("a", ("global",)).allows("global")
    assert not Access("a", ("global",)).allows("project")
    assert Access("a", ("*",)).allows("committed")
    assert Access("a", ("proj*",)).allows("project")
    assert not Access("a", ("proj*",)).allows("global")
    assert Access("a", ("global", "committed")).allows("committed")


def test_an_invalid_file_while_serving_fails_closed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice", "global")
    table = TokenTable(path=path, single="shared-secret")
    assert table.authenticate(alice) is not None
    path.write_text("{broken", encoding="utf-8")  # same mode, new content
    with caplog.at_level(logging.ERROR, logger="memvid_mcp.core.tokens"):
        assert table.authenticate(alice) is None
        assert table.authenticate(alice) is None
    assert table.error is not None and "is not JSON" in table.error
    logged = [r for r in caplog.records if "until it is fixed" in r.getMessage()]
    assert len(logged) == 1  # once per change of the file, not per request
    assert table.authenticate("shared-secret") == Access("default")  # the env token stays
    path.unlink()
    add_token(path, "alice2", "global")
    assert [e.name for e in table.entries()] == ["alice2"]
    assert table.error is None


def test_remove_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    add_token(path, "alice", "global")
    add_token(path, "bob", "global")
    assert remove_token(path, "alice") is True
    assert remove_token(path, "alice") is False
    assert [e.name for e in load_tokens(path)] == ["bob"]
    with pytest.raises(ValidationError, match="exists"):
        add_token(path, "bob", "global")


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,20}", fullmatch=True)
scope_lists = st.lists(st.from_regex(r"[a-z0-9*_.-]{1,12}", fullmatch=True), min_size=1,
                       max_size=4, unique=True)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(names, scope_lists, min_size=1, max_size=5))
def test_the_file_round_trips(tmp_path_factory: pytest.TempPathFactory,
                              wanted: dict[str, list[str]]) -> None:
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    secrets = {name: add_token(path, name, scopes) for name, scopes in wanted.items()}
    entries = load_tokens(path)
    assert {e.name: list(e.scopes) for e in entries} == wanted
    table = TokenTable(path=path)
    for name, secret in secrets.items():
        access = table.authenticate(secret)
        assert access is not None and access.name == name


def test_settings_read_the_tokens_file_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"MEMVID_TOKENS_FILE": "tokens.json",
                                  "MEMVID_DATA_DIR": str(tmp_path)})
    assert settings.tokens_file == Path("tokens.json").absolute()


def test_cli_token_add_prints_the_token_once(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    runner = CliRunner()
    added = runner.invoke(main, ["--data-dir", str(tmp_path), "token", "add", "alice",
                                 "--scopes", "global", "--tokens-file", str(path)])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert TokenTable(path=path).authenticate(token) == Access("alice", ("global",))
    listed = runner.invoke(main, ["--data-dir", str(tmp_path), "--json", "token", "list",
                                  "--tokens-file", str(path)])
    assert json.loads(listed.stdout) == {"tokens": [{"name": "alice", "scopes": ["global"]}]}
    assert token not in listed.output
    missing = runner.invoke(main, ["--data-dir", str(tmp_path), "token", "list"],
                            env={"MEMVID_TOKENS_FILE": ""})
    assert missing.exit_code == 1 and "MEMVID_TOKENS_FILE" in missing.stderr
    os.chmod(path, 0o644)
    loose = runner.invoke(main, ["--data-dir", str(tmp_path), "serve", "--transport", "http",
                                 "--host", "0.0.0.0", "--tokens-file", str(path)])
    assert loose.exit_code == 1 and "chmod 600" in loose.stderr


@pytest.mark.timeout(90)
def test_serve_http_through_the_service_enforces_the_tokens_file(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice", "global")
    # a relative tokens file: the service runs in "/"
    with serve_process(tmp_path / "data", "--tokens-file", "tokens.json",
                       cwd=tmp_path) as (proc, line):
        match = re.search(r"serving MCP on (http://\S+/mcp)", line)
        assert match, line
        url = match.group(1)
        without = httpx.post(url, json=INITIALIZE, headers=HEADERS, timeout=10)
        assert without.status_code == 401
        wrong = httpx.post(url, json=INITIALIZE, timeout=10,
                           headers={**HEADERS, "Authorization": "Bearer " + "x" * 43})
        assert wrong.status_code == 401
        right = httpx.post(url, json=INITIALIZE, timeout=10,
                           headers={**HEADERS, "Authorization": f"Bearer {alice}"})
        assert right.status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)
