"""The CLI contract: exact JSON shapes, one-line errors with exit 1, import/export round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from memvid_mcp.cli.main import main


@pytest.fixture
def cli(tmp_path: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MEMVID_EMBEDDINGS", "0")
    runner = CliRunner()
    data_dir = tmp_path / "cli-data"

    def run(*args: str, input: str | None = None, expect: int = 0, data: Path = data_dir):
        result = runner.invoke(
            main, ["--data-dir", str(data), "--project", str(outside_repo), *args],
            input=input, catch_exceptions=False,
        )
        assert result.exit_code == expect, result.output + result.stderr
        return result

    return run


def test_store_search_get_delete_json_shapes(cli) -> None:
    stored = json.loads(cli("--json", "store", "Use ruff for linting", "--title", "lint",
                            "--tags", "python,tools", "--kind", "decision",
                            "--metadata", '{"pr": 12}').stdout)
    assert set(stored) == {"id", "deduplicated", "scope", "sha256"}
    assert stored["deduplicated"] is False and stored["scope"] == "global"
    again = json.loads(cli("--json", "store", "Use ruff for linting  \n").stdout)
    assert again["deduplicated"] is True and again["id"] == stored["id"]

    found = json.loads(cli("--json", "search", "what do we use for linting?", "--k", "5").stdout)
    assert set(found) >= {"results", "next_cursor"}
    (hit,) = found["results"]
    assert set(hit) == {"id", "score", "title", "snippet", "tags", "kind", "scope",
                        "created_at"}
    assert hit["id"] == stored["id"] and hit["kind"] == "decision"

    got = json.loads(cli("--json", "get", stored["id"], "01ARZ3NDEKTSV4RRFFQ69G5FAV").stdout)
    assert got["missing"] == ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]
    (memory,) = got["memories"]
    assert memory["text"] == "Use ruff for linting"
    assert memory["metadata"] == {"pr": 12} and memory["tags"] == ["python", "tools"]
    assert {"id", "title", "kind", "tags", "scope", "metadata", "source", "created_at",
            "updated_at", "expires_at", "pinned", "sha256", "size", "text"} <= set(memory)

    assert json.loads(cli("--json", "delete", stored["id"]).stdout) == {"deleted": 1}
    assert json.loads(cli("--json", "delete", stored["id"]).stdout) == {"deleted": 0}


def test_store_reads_stdin(cli) -> None:
    out = json.loads(cli("--json", "store", "-", input="from a pipe\n").stdout)
    got = json.loads(cli("--json", "get", out["id"]).stdout)
    assert got["memories"][0]["text"] == "from a pipe\n"


def test_list_stats_info(cli) -> None:
    for i in range(3):
        cli("store", f"listed {i}")
    listed = json.loads(cli("--json", "list", "--limit", "2").stdout)
    assert len(listed["memories"]) == 2 and listed["next_cursor"]
    rest = json.loads(cli("--json", "list", "--cursor", listed["next_cursor"]).stdout)
    assert len(rest["memories"]) == 1
    stats = json.loads(cli("--json", "stats").stdout)
    assert stats["scopes"][0]["memories"] == 3
    info = json.loads(cli("--json", "info").stdout)
    assert info["backend"] == "file" and info["version"]
    assert "scope global" in cli("info").stdout


def test_user_errors_are_one_line_exit_1(cli) -> None:
    for args in (["store", "   "], ["get", "nonsense"], ["store", "x", "--metadata", "[1]"],
                 ["--scope", "project", "store", "needs a repo"],
                 ["search", "x", "--since", "yesterday"]):
        result = cli(*args, expect=1)
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("memvid-mcp: error: ")
        assert "Traceback" not in result.stderr


def test_export_import_round_trips_exactly(cli, tmp_path: Path) -> None:
    texts = ["first memory", "second  memory\nwith lines", "ünïcödé ✓"]
    for i, text in enumerate(texts):
        cli("store", text, "--tags", f"t{i}", "--title", f"title {i}")
    dump = tmp_path / "dump.jsonl"
    assert json.loads(cli("--json", "export", str(dump)).stdout)["exported"] == 3
    fresh = tmp_path / "fresh"
    counts = json.loads(cli("--json", "import", str(dump), data=fresh).stdout)
    assert counts == {"lines": 3, "imported": 3, "deduplicated": 0, "replaced": 0}
    again = json.loads(cli("--json", "import", str(dump), data=fresh).stdout)
    assert again["deduplicated"] == 3 and again["imported"] == 0
    second = tmp_path / "dump2.jsonl"
    cli("export", str(second), data=fresh)
    assert sorted(dump.read_text().splitlines()) == sorted(second.read_text().splitlines())


def test_import_names_the_bad_line(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": ""}\n')
    result = cli("import", str(bad), expect=1)
    assert f"{bad}:2" in result.stderr


def test_verify_reports_damage(cli, tmp_path: Path) -> None:
    out = json.loads(cli("--json", "store", "a body to damage").stdout)
    assert json.loads(cli("--json", "verify").stdout) == {"ok": True, "problems": []}
    (body,) = (tmp_path / "cli-data").glob("global/bodies/*/*.mvb")
    data = bytearray(body.read_bytes())
    data[-2] ^= 0xFF
    body.write_bytes(bytes(data))
    report = json.loads(cli("--json", "verify", expect=1).stdout)
    assert report["ok"] is False
    assert report["problems"][0]["memory_ids"] == [out["id"]]
    assert report["problems"][0]["path"] == str(body)


# ------------------------------------------------------------------ smaller points of issue 9


def test_search_since_and_until_take_the_ages_the_tool_takes(cli) -> None:
    """One parser (core.validation.check_time_bound) for the CLI and the MCP tool."""
    stored = json.loads(cli("--json", "store", "deployed the blue build").stdout)
    for since in ("7d", "12h", "30m", "2w", "2020-01-01"):
        found = json.loads(cli("--json", "search", "blue build", "--mode", "lexical",
                               "--since", since).stdout)
        assert [h["id"] for h in found["results"]] == [stored["id"]], since
    before = json.loads(cli("--json", "search", "blue build", "--mode", "lexical",
                            "--until", "7d").stdout)
    assert before["results"] == []
    bad = cli("search", "blue", "--since", "last tuesday", expect=1)
    assert "since" in bad.stderr and "'7d'" in bad.stderr


def test_a_read_only_write_names_the_flag_not_another_process(cli) -> None:
    cli("store", "written before")
    refused = cli("--read-only", "store", "refused", expect=1)
    assert "--read-only" in refused.stderr
    assert "another process" not in refused.stderr
    assert refused.stderr.count("\n") == 1


def _read_only_mount_possible() -> bool:
    import os
    import shutil
    return os.name == "posix" and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.skipif(not _read_only_mount_possible(), reason="needs root and mount (tmpfs)")
def test_an_unwritable_data_dir_suggests_read_only(cli, tmp_path: Path) -> None:
    import subprocess
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("tmpfs mount refused here")
    try:
        data = mount / "data"
        cli("store", "kept on a disk that later turns read-only", data=data)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        refused = cli("store", "refused", data=data, expect=1)
        assert refused.stderr.count("\n") == 1 and "not writable" in refused.stderr
        assert "--read-only" in refused.stderr
        listed = cli("--read-only", "list", data=data)  # and the suggestion works
        assert "kept on a disk" in listed.stdout
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_data_dir_typo_is_refused_not_created(cli, tmp_path: Path) -> None:
    typo = tmp_path / "no-such-parent" / "memvid"
    refused = cli("store", "x", data=typo, expect=1)
    assert refused.stderr.count("\n") == 1 and "data_dir" in refused.stderr
    assert str(typo.parent) in refused.stderr
    assert not typo.parent.exists()  # nothing was created
    fresh = tmp_path / "new-data"  # a new last level is fine
    cli("store", "x", data=fresh)
    assert (fresh / "global").is_dir()


def test_human_list_shows_a_snippet_of_each_memory(cli, tmp_path: Path) -> None:
    assert cli("list", data=tmp_path / "empty").stdout == "no memories\n"
    cli("store", "\n  First line of an untitled memory  \nsecond line")
    cli("store", "Another untitled memory whose first line is far longer than sixty "
                 "characters, so it is cut")
    cli("store", "Body of a titled one", "--title", "Release plan")
    lines = cli("list").stdout.splitlines()
    assert lines[0].endswith("  Release plan | Body of a titled one")
    assert lines[1].endswith("  Another untitled memory whose first line is far longer than…")
    assert lines[2].endswith("  First line of an untitled memory")
    listed = json.loads(cli("--json", "list").stdout)  # the JSON shape is unchanged
    assert set(listed) == {"memories", "next_cursor"}
    assert all("text" not in m for m in listed["memories"])
