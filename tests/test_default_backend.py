"""The default backend of new scopes is video (ADR 0020, ADR 0029); existing scopes keep theirs.

tests/conftest.py pins ``MEMVID_BACKEND=file`` for tests that do not choose; these tests remove
it to see what a user without configuration gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memvid_mcp.core.config import Settings
from memvid_mcp.manager import MemoryManager


def test_new_scopes_get_the_video_backend_by_default(
        data_dir: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMVID_BACKEND", raising=False)
    assert Settings().backend == "video" and Settings.from_env({}).backend == "video"
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        stored = m.store("a note in a scope made without any backend setting")
        m.flush(embed=False)
        assert m.stats()[0].backend == "video"
        assert m.get([stored.id]).memories[0].text.startswith("a note in a scope")
    scope = json.loads((data_dir / "global" / "scope.json").read_text())
    assert scope["backend"] == "video"
    assert list((data_dir / "global" / "segments").glob("seg-*.mp4"))


def test_an_existing_file_scope_keeps_the_file_backend(
        data_dir: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False,
                            backend="file") as m:
        kept = m.store("made when file was the default").id
    monkeypatch.delenv("MEMVID_BACKEND", raising=False)
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        assert m.stats()[0].backend == "file"
        assert m.get([kept]).memories[0].text == "made when file was the default"
    assert json.loads((data_dir / "global" / "scope.json").read_text())["backend"] == "file"
