"""The committed scope (``<repo>/.memvid/``) is meant to be checked in.

Its ``.gitignore`` keeps out what is not durable data (the writer's lock, tantivy's lock and
index files, vectors, temporary files), and what git does keep is enough: a fresh clone opens
the scope and finds every memory. Real ``git`` on a real repository.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from memvid_mcp.core.scopes import COMMITTED_GITIGNORE
from memvid_mcp.manager import MemoryManager

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout


def _repo(path: Path) -> Path:
    path.mkdir()
    _git(path, "init", "-q")
    _git(path, "config", "user.email", "test@example.invalid")
    _git(path, "config", "user.name", "test")
    return path


@pytest.mark.parametrize("backend", ["file", "video"])
def test_git_keeps_the_durable_data_and_a_clone_finds_every_memory(
        tmp_path: Path, backend: str) -> None:
    repo = _repo(tmp_path / "repo")
    texts = ["the build uses ninja", "release branches are cut on Mondays"]
    with MemoryManager.open(tmp_path / "data", project=repo, backend=backend,
                            embeddings=False) as m:
        ids = [m.store(text, scope="committed").id for text in texts]
        m.flush()
        assert (repo / ".memvid" / ".gitignore").read_text() == COMMITTED_GITIGNORE
        _git(repo, "add", "-A")  # while the writer holds its lock and indexes are open
    _git(repo, "commit", "-q", "-m", "memories")
    tracked = _git(repo, "ls-files").split()
    assert ".memvid/.gitignore" in tracked
    assert not [f for f in tracked if f.endswith("LOCK") or f.endswith(".lock")]
    assert not [f for f in tracked if f.startswith((".memvid/meta/lexical/",
                                                    ".memvid/meta/vectors/"))]
    assert any(f.startswith(".memvid/meta/snapshot") or f.startswith(".memvid/wal/")
               for f in tracked)
    assert any(f.startswith((".memvid/bodies/", ".memvid/segments/")) for f in tracked)

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, timeout=60)
    with MemoryManager.open(tmp_path / "other-data", project=clone, backend=backend,
                            embeddings=False) as m:
        got = m.get(ids, scopes=["committed"])
        assert sorted(x.text for x in got.memories) == sorted(texts)
        found = m.search("ninja build", scopes=["committed"], mode="lexical")
        assert [h.id for h in found.results] == [ids[0]]
    # Opening for writing checkpoints (new snapshot, older WAL files dropped): durable data a
    # user may commit. The lock and the rebuilt indexes never show up as untracked.
    status = _git(clone, "status", "--porcelain", "--untracked-files=all").splitlines()
    untracked = [line[3:] for line in status if line.startswith("??")]
    assert all(f.startswith((".memvid/meta/snapshot", ".memvid/wal/")) for f in untracked), status
    ignored = _git(clone, "status", "--porcelain", "--ignored", "--untracked-files=all")
    assert ".memvid/LOCK" in ignored and ".memvid/meta/lexical/" in ignored


def test_an_existing_gitignore_is_kept(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    (repo / ".memvid").mkdir()
    (repo / ".memvid" / ".gitignore").write_text("# mine\n")
    with MemoryManager.open(tmp_path / "data", project=repo, embeddings=False) as m:
        m.store("x", scope="committed")
    assert (repo / ".memvid" / ".gitignore").read_text() == "# mine\n"


def test_other_scopes_get_no_gitignore(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    with MemoryManager.open(tmp_path / "data", project=repo, embeddings=False) as m:
        m.store("private to this machine", scope="project")
        m.store("for this user", scope="global")
    assert list((tmp_path / "data").rglob(".gitignore")) == []
