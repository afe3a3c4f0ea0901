"""Project rules a reviewer would otherwise have to remember.

- layers in folders, imports flowing down only (ARCHITECTURE section 2): core < storage, search
  < store < manager < mcp < cli; storage and search never import each other;
- only mcp/ imports mcp; only the video codec imports av/zxingcpp; only the embedding
  modules import an embedding runtime;
- no print() in the package (stdout is the MCP wire on stdio);
- importing the package (what the server does at start) loads no heavy runtime;
- the public facade is exactly __all__; ruff and mypy are clean;
- the licence pyproject.toml names is the LICENSE file shipped with the source.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import memvid_mcp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "memvid_mcp"
EMBED_RUNTIMES = {"onnxruntime", "tokenizers", "torch", "transformers",
                  "sentence_transformers", "huggingface_hub", "onnx"}
ALLOWED = {
    "mcp": {"mcp/server.py", "mcp/http_security.py", "mcp/schemas.py", "mcp/stream.py"},
    "mcp_types": {"mcp/stream.py"},
    "av": {"storage/video/codec.py"},
    "zxingcpp": {"storage/video/codec.py"},
    **{name: {"search/embed.py", "search/onnx_export.py"} for name in EMBED_RUNTIMES},
    # onnxruntime's integer GEMM scores int8 vector rows (ADR 0027)
    "onnxruntime": {"search/embed.py", "search/onnx_export.py", "search/int8_scores.py"},
    "onnx": {"search/embed.py", "search/onnx_export.py", "search/int8_scores.py"},
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


# Each top-level part of the package and its rank: a module imports only parts of a lower rank
# (or its own part). Equal ranks are peers that must not import each other.
LAYERS = {
    "core": 0,
    "storage": 1, "search": 1,
    "store": 2, "team": 2,
    "manager": 3, "testing": 3,
    "mcp": 4, "transfer": 4, "team_migrate": 4, "importers": 4, "client": 4,
    "service": 5,
    "cli": 6,
    "__init__": 6, "__main__": 6,
}


def _internal_imports(path: Path) -> set[str]:
    """The top-level parts of memvid_mcp that a module imports (relative or absolute)."""
    rel_parts = path.relative_to(PACKAGE).with_suffix("").parts
    package = rel_parts[:-1]
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(package[: len(package) - (node.level - 1)])
            target = base + (node.module.split(".") if node.module else [])
            if target:
                parts.add(target[0])
            else:  # "from . import x" at the top: x is the part
                parts.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("memvid_mcp."):
            parts.add(node.module.split(".")[1])
    return parts


def test_layers_import_downwards_only() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).with_suffix("").parts[0]
        assert own in LAYERS, f"{own} has no layer: add it to LAYERS"
        for part in _internal_imports(path) - {own, "__version__"}:
            if part == "__init__" or part not in LAYERS:
                continue
            if LAYERS[part] >= LAYERS[own] and own not in ("__init__", "__main__"):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {part}")
    assert offenders == []


def test_no_print_in_the_package() -> None:
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                calls.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert calls == []


def test_importing_the_package_loads_no_heavy_runtime() -> None:
    code = ("import sys, memvid_mcp, memvid_mcp.manager, memvid_mcp.cli.main; "
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


def test_the_declared_licence_is_the_license_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 memvid-mcp developers" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in text


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
