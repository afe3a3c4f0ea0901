"""Claude Code's memory: CLAUDE.md instruction files and its per-project auto memory.

Claude Code reads ``CLAUDE.md``, ``CLAUDE.local.md``, ``.claude/CLAUDE.md`` and
``.claude/rules/*.md`` in a project (and ``~/.claude/CLAUDE.md``, ``~/.claude/rules/``
for the user), and keeps its own notes per project in
``~/.claude/projects/<project path, '/' as '-'>/memory/`` (``MEMORY.md``, an index, plus topic
files whose front matter has ``name``, ``description`` and ``type``: user, feedback,
project, reference). ``PATH`` is a project directory (its files, and its auto memory
when there is one), the ``~/.claude`` directory itself (the user files and every project's
auto memory), or one file. Instruction files become ``kind`` instruction; auto memory keeps
its ``type`` as the kind. ``CLAUDE_CONFIG_DIR`` moves ``~/.claude``, as in Claude Code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..core.errors import ValidationError
from .base import Item
from .markdown import note_items

INSTRUCTION_NAMES = ("CLAUDE.md", "CLAUDE.local.md")
SKIP_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", ".memvid"}


def config_dir() -> Path:
    """Where Claude Code keeps its user files (``CLAUDE_CONFIG_DIR``, else ~/.claude)."""
    configured = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".claude"


def project_slug(project: Path) -> str:
    """The folder name Claude Code gives a project under ``projects/``: its absolute path
    with every character other than a letter, digit or '-' replaced by '-'."""
    return re.sub(r"[^A-Za-z0-9-]", "-", str(project.resolve()))


def _instruction_files(project: Path) -> list[Path]:
    found = []
    for directory, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS
                         and (not d.startswith(".") or d == ".claude"))
        here = Path(directory)
        found += [here / name for name in INSTRUCTION_NAMES if name in files]
        if here.name == ".claude":
            found += [here / name for name in ("CLAUDE.md",) if name in files]
            rules = here / "rules"
            if rules.is_dir():
                found += sorted(rules.rglob("*.md"))
    return sorted(set(found))


def _auto_memory(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.md")) if directory.is_dir() else []


class ClaudeCodeImporter:
    name = "claude-code"
    summary = "CLAUDE.md files and Claude Code's per-project auto memory (~/.claude/projects)"

    def read(self, path: Path) -> list[Item]:
        root = path.expanduser().resolve()
        if root.is_file():
            return note_items(root, relative=root.name, fmt=self.name, kind="instruction",
                              extra_tags=("claude-code",))
        if not root.is_dir():
            raise ValidationError(str(path), "is neither a file nor a directory")
        items: list[Item] = []
        if root == config_dir().resolve() or (
                root.name == ".claude" and (root / "projects").is_dir()):
            for file in [root / "CLAUDE.md", *sorted((root / "rules").rglob("*.md"))]:
                if file.is_file():
                    items += note_items(file, relative=file.relative_to(root).as_posix(),
                                        fmt=self.name, kind="instruction",
                                        extra_tags=("claude-code",))
            for memory_dir in sorted((root / "projects").glob("*/memory")):
                items += self._auto(memory_dir, root)
            return items
        for file in _instruction_files(root):
            items += note_items(file, relative=file.relative_to(root).as_posix(),
                                fmt=self.name, kind="instruction", extra_tags=("claude-code",))
        memory_dir = config_dir() / "projects" / project_slug(root) / "memory"
        return items + self._auto(memory_dir, memory_dir.parent.parent)

    def _auto(self, memory_dir: Path, base: Path) -> list[Item]:
        items: list[Item] = []
        for file in _auto_memory(memory_dir):
            relative = file.relative_to(base).as_posix() if file.is_relative_to(base) \
                else str(file)
            items += note_items(file, relative=relative, fmt=self.name,
                                extra_tags=("claude-code", "auto-memory"))
        return items
