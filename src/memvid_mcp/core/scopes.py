"""Where each scope's data lives.

- ``global``: one per user, ``<data_dir>/global``.
- ``project``: one per git repository, kept OUTSIDE the repository:
  ``<data_dir>/projects/<repo-name>-<sha256(realpath)[:12]>``.
- ``committed``: inside the repository, ``<repo>/.memvid/``, meant to be checked in. Its
  ``.gitignore`` (written when the scope is first opened for writing) keeps out what is not
  durable data: the writer's lock, temporary files and the indexes every clone rebuilds.

The repository is the one containing ``Settings.project`` or else the working directory.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ScopeError, StorageError
from .fsutil import atomic_write, ensure_dir
from .models import SCOPES

COMMITTED_DIR = ".memvid"
READ_ONLY_HINT = "to read the memories without writing, use --read-only (MEMVID_READ_ONLY=1)"
# What the committed scope keeps out of git. Committed: the records (meta/snapshot*, wal/*.log)
# and the texts (bodies/, or segments/ and manifest.mvm). Everything below is per machine.
COMMITTED_GITIGNORE = """\
# Written by memvid-mcp. Commit the rest of this directory: it is the durable data
# (meta/snapshot*, wal/*.log, and bodies/ or segments/ + manifest.mvm).
# Held by the running writer:
LOCK
# Temporary files of interrupted writes:
.*.tmp*
*.tmp
# Rebuilt on open from the records (the lexical index, with tantivy's lock files):
meta/lexical/
# Recomputed from the texts by the embedding model:
meta/vectors/
meta/embedding.json
# Local evidence kept by repair and by recovery from a torn write:
quarantine/
wal/*.torn
"""
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def find_repo_root(start: Path) -> Path | None:
    """The nearest ancestor of ``start`` (inclusive) that holds a ``.git`` entry."""
    try:
        path = start.resolve()
    except OSError:
        return None
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class ScopeLayout:
    data_dir: Path
    repo_root: Path | None

    @classmethod
    def resolve(cls, data_dir: Path, project: Path | None) -> ScopeLayout:
        start = project if project is not None else Path.cwd()
        return cls(data_dir=data_dir, repo_root=find_repo_root(start))

    @property
    def available(self) -> tuple[str, ...]:
        return SCOPES if self.repo_root is not None else ("global",)

    @property
    def default_write_scope(self) -> str:
        return "project" if self.repo_root is not None else "global"

    @property
    def default_search_scopes(self) -> tuple[str, ...]:
        return ("project", "global") if self.repo_root is not None else ("global",)

    def check(self, scope: str) -> str:
        """Validate a scope name; ScopeError if unknown or not available here."""
        if scope not in SCOPES:
            raise ScopeError(f"scope: unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
        if scope != "global" and self.repo_root is None:
            raise ScopeError(
                f"scope: {scope!r} needs a git repository, and the working directory is not "
                "inside one; pass --project PATH (or MEMVID_PROJECT) or use scope 'global'"
            )
        return scope

    def directory(self, scope: str) -> Path:
        self.check(scope)
        if scope == "global":
            return self.data_dir / "global"
        assert self.repo_root is not None
        if scope == "committed":
            return self.repo_root / COMMITTED_DIR
        digest = hashlib.sha256(str(self.repo_root).encode()).hexdigest()[:12]
        name = _SAFE_NAME.sub("-", self.repo_root.name)[:40] or "repo"
        return self.data_dir / "projects" / f"{name}-{digest}"


def ensure_scope_dir(name: str, directory: Path) -> Path:
    """Create a scope's directory for writing; the committed scope also gets its
    ``.gitignore`` (kept if one exists). A directory that cannot be written is a one-line
    ``StorageError`` suggesting ``--read-only``."""
    try:
        ensure_dir(directory)
        gitignore = directory / ".gitignore"
        if name == "committed" and not gitignore.exists():
            atomic_write(gitignore, COMMITTED_GITIGNORE.encode())
    except StorageError as exc:
        raise StorageError(f"{exc}; {READ_ONLY_HINT}") from exc
    return directory
