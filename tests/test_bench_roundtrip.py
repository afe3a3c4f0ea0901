"""``benchmarks/bench_roundtrip.py --share``: the copy of the store it searches in process."""

from __future__ import annotations

import sys
from pathlib import Path

from memvid_mcp.manager import MemoryManager

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_roundtrip


def test_a_copied_store_keeps_its_project_scope(tmp_path: Path, repository: Path) -> None:
    """A project scope's directory is named after its repository's path, so a plain copy
    would search an empty project scope: the copy is renamed to its copied repository."""
    data = tmp_path / "data"
    with MemoryManager.open(data, project=repository, embeddings=False) as m:
        m.store("the deploy runs on Fridays", scope="project")
        m.store("the release train leaves on Mondays", scope="global")
    copy_data, copy_repo = bench_roundtrip.copy_store(data, repository, tmp_path / "copy")
    with MemoryManager.open(copy_data, project=copy_repo, embeddings=False) as m:
        found = m.search("deploy Fridays", k=5, mode="lexical", scopes="project")
        assert [hit.snippet for hit in found.results] == ["the deploy runs on Fridays"]
        assert m.search("release train", k=5, mode="lexical").results
