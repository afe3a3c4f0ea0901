"""Project rules a reviewer would otherwise have to remember.

- only server.py imports mcp; only the video codec imports av/zxingcpp; only the embedding
  modules import an embedding runtime;
- no print() in the package (stdout is the MCP wire on stdio);
- importing the package (what the server does at start) loads no heavy runtime;
- the public facade is exactly __all__; ruff and mypy are clean.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import memvid_mcp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "memvid_mcp"
EMBED_RUNTIMES = {"onnxruntime", "tokenizers", "torch", "transformers",
                  "sentence_transformers", "huggingface_hub", "onnx"}
ALLOWED = {
    "mcp": {"server.py"},
    "av": {"storage/video/codec.py"},
    "zxingcpp": {"storage/video/codec.py"},
    **{name: {"search/embed.py", "search/onnx_export.py"} for name in EMBED_RUNTIMES},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_heavy_imports_stay_in_their_modules() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        for name in _imports(path):
            if name in ALLOWED and rel not in ALLOWED[name]:
                offenders.append(f"{rel} imports {name}")
    assert offenders == []


def test_no_print_in_the_package() -> None:
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                calls.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert calls == []


def test_importing_the_package_loads_no_heavy_runtime() -> None:
    code = ("import sys, memvid_mcp, memvid_mcp.manager, memvid_mcp.cli; "
            "print(sorted(m for m in ('torch','onnxruntime','transformers','av','zxingcpp',"
            "'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]"


def test_public_facade_is_exactly_all() -> None:
    for name in memvid_mcp.__all__:
        assert hasattr(memvid_mcp, name), name
    assert "MemoryManager" in memvid_mcp.__all__
    assert issubclass(memvid_mcp.ValidationError, memvid_mcp.MemvidError)


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_is_clean() -> None:
    proc = subprocess.run(["ruff", "check", "src", "tests", "benchmarks"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
