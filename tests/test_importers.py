"""Imports from other tools: each format from a small fixture made here, stored with its
source, and idempotent (running the same import again adds nothing)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from memvid_mcp.cli.main import import_ as import_command
from memvid_mcp.cli.main import main
from memvid_mcp.cli.remote import _absolute
from memvid_mcp.core.errors import ValidationError
from memvid_mcp.core.models import Memory, MemoryRecord
from memvid_mcp.importers import FORMATS, import_from
from memvid_mcp.importers.claude_code import project_slug
from memvid_mcp.importers.markdown import MAX_CHUNK_BYTES, chunk_markdown
from memvid_mcp.manager import MemoryManager


def _texts(manager: MemoryManager) -> dict[str, Memory]:
    listed = manager.list(limit=100).memories
    return {m.record.id: m for m in manager.get([r.id for r in listed]).memories}


def _by_text(manager: MemoryManager) -> dict[str, MemoryRecord]:
    return {m.text: m.record for m in _texts(manager).values()}


# ----------------------------------------------------------------- kg-memory
KG_LINES = [
    {"type": "entity", "name": "Ada_Lovelace", "entityType": "person",
     "observations": ["Wrote the first published program", "Prefers morning meetings"]},
    {"type": "entity", "name": "Analytical_Engine", "entityType": "machine",
     "observations": []},
    {"type": "relation", "from": "Ada_Lovelace", "to": "Analytical_Engine",
     "relationType": "programmed"},
    {"type": "something-newer", "payload": 1},
]


def _write_kg(path: Path, lines: list[dict[str, object]]) -> None:
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")


def test_kg_memory_entities_observations_and_relations(manager: MemoryManager,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "memory.jsonl"
    _write_kg(path, KG_LINES)
    counts = import_from(manager, "kg-memory", path)
    assert counts == {"items": 4, "imported": 4, "deduplicated": 0, "replaced": 0}
    stored = _by_text(manager)
    fact = stored["Ada_Lovelace: Wrote the first published program"]
    assert fact.kind == "fact" and fact.title == "Ada_Lovelace"
    assert fact.tags == ("person",)
    assert fact.source == str(path.resolve())
    assert fact.metadata["import"] == {
        "format": "kg-memory", "path": "memory.jsonl", "line": 1,
        "entity": "Ada_Lovelace", "entity_type": "person"}
    assert "Analytical_Engine is a machine" in stored
    relation = stored["Ada_Lovelace programmed Analytical_Engine"]
    assert relation.kind == "relation"

    again = import_from(manager, "kg-memory", path)
    assert again["imported"] == 0 and again["deduplicated"] == 4

    grown = [dict(KG_LINES[0], observations=[*KG_LINES[0]["observations"],
                                            "Corresponded with Babbage"]), *KG_LINES[1:]]
    _write_kg(path, grown)
    assert import_from(manager, "kg-memory", path)["imported"] == 1


def test_kg_memory_bad_line_is_named(manager: MemoryManager, tmp_path: Path) -> None:
    path = tmp_path / "memory.jsonl"
    path.write_text('{"type": "entity", "name": "x", "entityType": "t", "observations": []}\n'
                    '{"type": "relation", "from": "x", "relationType": "knows"}\n')
    with pytest.raises(ValidationError, match=r"memory\.jsonl:2: to"):
        import_from(manager, "kg-memory", path)


# ----------------------------------------------------------------- markdown
LONG_NOTE = "---\ntitle: Runbook\ntags: [ops, oncall]\nowner: sam\ncreated: 2024-05-01\n---\n" + \
    "\n\n".join(f"## Step {n}\n\n" + f"Restart service {n} and check the logs. " * 12
                for n in range(1, 9))


def _vault(root: Path) -> Path:
    (root / "projects").mkdir(parents=True)
    (root / ".obsidian").mkdir()
    (root / ".obsidian" / "workspace.md").write_text("# not a note\n")
    (root / "deploys.md").write_text(
        "---\ntags: deploy, process\n---\n# Deploys\n\nDeploys go out on Tuesdays.\n")
    (root / "projects" / "runbook.md").write_text(LONG_NOTE)
    (root / "projects" / "plain.markdown").write_text("No front matter, no heading.\n")
    return root


def test_markdown_notes_are_chunked_tagged_and_sourced(manager: MemoryManager,
                                                       tmp_path: Path) -> None:
    root = _vault(tmp_path / "vault")
    counts = import_from(manager, "markdown", root)
    memories = list(_texts(manager).values())
    assert counts["imported"] == len(memories) == counts["items"]
    records: dict[str, list[Memory]] = {}
    for m in memories:
        records.setdefault(m.record.metadata["import"]["path"], [])
        records[m.record.metadata["import"]["path"]].append(m)
    assert set(records) == {"deploys.md", "projects/runbook.md", "projects/plain.markdown"}

    (deploys,) = records["deploys.md"]
    assert deploys.record.tags == ("deploy", "process")
    assert deploys.record.title == "Deploys"
    assert deploys.record.source == str(root.resolve() / "deploys.md")
    assert records["projects/plain.markdown"][0].record.title == "plain"

    runbook = records["projects/runbook.md"]
    assert len(runbook) > 1
    for m in runbook:
        assert len(m.text.encode()) <= MAX_CHUNK_BYTES
        assert m.record.tags == ("ops", "oncall")
        assert m.record.title.startswith("Runbook › Step ")
        assert m.record.metadata["front_matter"] == {
            "owner": "sam", "created": "2024-05-01"}
        assert m.record.metadata["import"]["chunks"] == len(runbook)
    joined = " ".join(m.text for m in sorted(
        runbook, key=lambda m: m.record.metadata["import"]["chunk"]))
    assert all(f"## Step {n}" in joined for n in range(1, 9))

    again = import_from(manager, "markdown", root)
    assert again["imported"] == 0 and again["deduplicated"] == counts["items"]


def test_markdown_front_matter_that_is_not_yaml_names_the_note(manager: MemoryManager,
                                                               tmp_path: Path) -> None:
    (tmp_path / "bad.md").write_text("---\ntags: [unclosed\n---\nbody\n")
    with pytest.raises(ValidationError, match=r"bad\.md: front matter"):
        import_from(manager, "markdown", tmp_path)


@settings(max_examples=150, deadline=None)
@given(body=st.lists(st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300),
    st.sampled_from(["# Title", "## Part", "```", "", "", "- item"]),
    st.text(alphabet="ab é€\n", min_size=200, max_size=3000),
), max_size=30).map("\n".join), limit=st.integers(min_value=16, max_value=700))
def test_chunks_fit_the_limit_and_lose_nothing(body: str, limit: int) -> None:
    chunks = chunk_markdown(body, limit)
    assert all(len(text.encode()) <= limit and text.strip() for _, text in chunks)
    squeeze = re.compile(r"\s+")
    assert squeeze.sub("", "".join(text for _, text in chunks)) == squeeze.sub("", body)


# ----------------------------------------------------------------- claude-code
def test_claude_code_instruction_files_and_auto_memory(manager: MemoryManager, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "repo"
    (project / ".claude" / "rules").mkdir(parents=True)
    (project / "pkg").mkdir()
    (project / "CLAUDE.md").write_text("# Repo\n\nRun `make test` before committing.\n")
    (project / ".claude" / "rules" / "style.md").write_text("Use type hints everywhere.\n")
    (project / "pkg" / "CLAUDE.md").write_text("pkg is generated; never edit it by hand.\n")
    config = tmp_path / "claude-home"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    memory_dir = config / "projects" / project_slug(project) / "memory"
    memory_dir.mkdir(parents=True)
    (memory_dir / "MEMORY.md").write_text("- [Testing](feedback_testing.md) — run tests\n")
    (memory_dir / "feedback_testing.md").write_text(
        "---\nname: Testing\ndescription: how to run tests\ntype: feedback\n---\n"
        "The user wants pytest -q, never the whole suite.\n")
    assert project_slug(project) == re.sub(r"[^A-Za-z0-9-]", "-", str(project.resolve()))

    counts = import_from(manager, "claude-code", project)
    assert counts["imported"] == 5
    stored = _by_text(manager)
    rule = stored["Use type hints everywhere."]
    assert rule.kind == "instruction" and "claude-code" in rule.tags
    assert rule.metadata["import"]["path"] == ".claude/rules/style.md"
    assert stored["pkg is generated; never edit it by hand."].kind == "instruction"
    feedback = stored["The user wants pytest -q, never the whole suite."]
    assert feedback.kind == "feedback" and feedback.title == "Testing"
    assert "auto-memory" in feedback.tags
    assert feedback.metadata["front_matter"]["description"] == "how to run tests"

    # ~/.claude itself: the same auto memory (already there) and nothing else new
    again = import_from(manager, "claude-code", config)
    assert again == {"items": 2, "imported": 0, "deduplicated": 2, "replaced": 0}
    assert import_from(manager, "claude-code", project)["imported"] == 0


# ----------------------------------------------------------------- mem0
MEM0 = {"results": [
    {"id": "6f1d2c1e-0b5a-4d4e-9d8e-1a2b3c4d5e6f", "memory": "Prefers vegetarian food",
     "hash": "a1b2", "metadata": {"source": "chat"}, "categories": ["food", "preferences"],
     "created_at": "2024-07-20T10:00:00-07:00", "updated_at": None, "user_id": "alex"},
    {"id": "0c9a", "memory": "Works at TechCorp as a senior engineer", "user_id": "alex"},
]}


def test_mem0_results_and_bare_list(manager: MemoryManager, tmp_path: Path) -> None:
    path = tmp_path / "mem0.json"
    path.write_text(json.dumps(MEM0))
    assert import_from(manager, "mem0", path)["imported"] == 2
    food = _by_text(manager)["Prefers vegetarian food"]
    assert food.kind == "fact" and food.tags == ("food", "preferences")
    assert food.metadata["import"]["created_at"] == "2024-07-20T10:00:00-07:00"
    assert food.metadata["import"]["user_id"] == "alex"
    assert food.metadata["mem0"] == {"source": "chat"}
    assert food.source == str(path.resolve())

    bare = tmp_path / "old.json"
    bare.write_text(json.dumps(MEM0["results"]))
    assert import_from(manager, "mem0", bare)["imported"] == 0
    (tmp_path / "other.json").write_text('{"memories_are": "elsewhere"}')
    with pytest.raises(ValidationError, match="not a mem0 export"):
        import_from(manager, "mem0", tmp_path / "other.json")


# ----------------------------------------------------------------- CLI
def test_cli_import_from_each_format_and_again(tmp_path: Path, outside_repo: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMVID_EMBEDDINGS", "0")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "no-claude"))
    kg = tmp_path / "memory.jsonl"
    _write_kg(kg, KG_LINES)
    mem0 = tmp_path / "mem0.json"
    mem0.write_text(json.dumps(MEM0))
    sources = {"kg-memory": kg, "markdown": _vault(tmp_path / "vault"), "mem0": mem0,
               "claude-code": tmp_path / "vault"}
    runner = CliRunner()

    def run(*args: str) -> dict[str, int]:
        result = runner.invoke(main, ["--data-dir", str(tmp_path / "data"), "--project",
                                      str(outside_repo), "--json", *args],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    for fmt, path in sources.items():
        first = run("import", "--from", fmt, str(path))
        assert set(first) == {"items", "imported", "deduplicated", "replaced"}
        again = run("import", "--from", fmt, str(path))
        assert again["imported"] == 0 and again["deduplicated"] == first["items"], fmt
    assert run("import", "--from", "markdown", str(tmp_path / "vault"))["imported"] == 0


def test_cli_offers_exactly_the_importers() -> None:
    option = next(p for p in import_command.params if p.name == "fmt")
    assert tuple(option.type.choices) == FORMATS


def test_progress_bar_advances_once_per_item(manager: MemoryManager, tmp_path: Path) -> None:
    bars: list[tuple[str, int | None, list[int]]] = []

    class Bar:
        def __init__(self, steps: list[int]) -> None:
            self.steps = steps

        def update(self, n: int) -> None:
            self.steps.append(n)

        def render_finish(self) -> None:
            self.steps.append(-1)

    def factory(label: str, total: int | None) -> Bar:
        bars.append((label, total, []))
        return Bar(bars[-1][2])

    counts = import_from(manager, "markdown", _vault(tmp_path / "v"), progress_factory=factory)
    ((label, total, steps),) = bars
    assert label == "importing" and total == counts["items"]
    assert steps == [1] * counts["items"] + [-1]


def test_service_keeps_the_format_name_and_makes_the_path_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the service runs commands in another directory, so the CLI makes the
    import path absolute; it used to take ``--from``'s value for the path."""
    monkeypatch.chdir(tmp_path)
    assert _absolute(["import", "--from", "markdown", "notes"]) == [
        "import", "--from", "markdown", str(tmp_path / "notes")]
    assert _absolute(["--scope", "global", "import", "dump.jsonl"]) == [
        "--scope", "global", "import", str(tmp_path / "dump.jsonl")]


def test_benchmark_vault_imports_once(tmp_path: Path) -> None:
    """benchmarks/bench_import.py at a small size: the real CLI in a subprocess, every chunk
    stored the first time, none the second."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_import import make_vault, run_import

    vault = make_vault(tmp_path / "vault", 200)
    (tmp_path / "data").mkdir()
    (tmp_path / "run").mkdir()
    first, _ = run_import(tmp_path / "data", vault, tmp_path / "run", "file")
    assert first["imported"] == first["items"] > 200  # the long notes give several chunks
    again, _ = run_import(tmp_path / "data", vault, tmp_path / "run", "file")
    assert again == {"items": first["items"], "imported": 0,
                     "deduplicated": first["items"], "replaced": 0}
