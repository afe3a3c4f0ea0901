"""Every MCP client config in README.md and docs/mcp-clients.md starts a working server.

The configs are parsed out of the documents (JSON ``mcpServers`` blocks and ``claude mcp add``
command lines), so the docs and this test cannot drift: a config added to the docs is tested,
and a placeholder the test does not know fails it. Each stdio config is launched with its exact
command and arguments (placeholders substituted: the checkout, a repository, a venv's command)
and must answer ``initialize`` and ``tools/list``; each HTTP config is a URL and headers that
a running ``memvid-mcp serve --transport http`` must accept.

``uvx`` runs for real when it is installed (the ``[test]`` extra installs uv): ``--from
CHECKOUT`` builds this checkout; the after-publication form ``memvid-mcp@0.2.0`` is resolved
from a wheel built from this checkout (``UV_FIND_LINKS``), since the release is not on PyPI.
Without uvx, the command uvx would run (the ``memvid-mcp`` console script with the same
arguments) is launched instead and ``test_uvx_is_installed`` says so by skipping.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "docs" / "mcp-clients.md")
TOKEN = "t0ken-for-the-config-test-0123456789abcdef"
CLAUDE_OPTIONS = {"--scope", "-s", "--transport", "-t", "--header", "-H", "--env", "-e"}


@dataclass(frozen=True)
class Config:
    """One client config as the docs give it: a command to launch, or a URL to connect to."""

    where: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _json_configs(name: str, text: str) -> list[Config]:
    configs = []
    for number, block in enumerate(re.findall(r"```json\n(.*?)```", text, re.S), 1):
        data = json.loads(block)
        for server in data.get("mcpServers", {}).values():
            where = f"{name} json block {number}"
            if "command" in server:
                configs.append(Config(where, server["command"], tuple(server.get("args", ())),
                                      dict(server.get("env", {}))))
            else:
                configs.append(Config(where, url=server["url"],
                                      headers=dict(server.get("headers", {}))))
    return configs


def _claude_configs(name: str, text: str) -> list[Config]:
    configs = []
    for match in re.finditer(r"claude mcp add ([^`\n#]+)", text.replace("\\\n", " ")):
        argv = shlex.split(match.group(1))
        where = f"{name}: claude mcp add {match.group(1).strip()}"
        positional: list[str] = []
        headers: dict[str, str] = {}
        env: dict[str, str] = {}
        i = 0
        while i < len(argv):
            if argv[i] == "--":
                configs.append(Config(where, argv[i + 1], tuple(argv[i + 2:]), env))
                break
            if argv[i] in CLAUDE_OPTIONS:
                option, value = argv[i], argv[i + 1]
                if option in ("--header", "-H"):
                    key, _, header = value.partition(":")
                    headers[key.strip()] = header.strip()
                elif option in ("--env", "-e"):
                    key, _, setting = value.partition("=")
                    env[key] = setting
                i += 2
                continue
            positional.append(argv[i])
            i += 1
        else:
            configs.append(Config(where, url=positional[1], headers=headers))
    return configs


def documented_configs() -> list[Config]:
    configs = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        name = doc.relative_to(ROOT).as_posix()
        configs += _json_configs(name, text) + _claude_configs(name, text)
    return configs


CONFIGS = documented_configs()
STDIO = [c for c in CONFIGS if c.command]
HTTP = [c for c in CONFIGS if c.url]


def test_the_docs_have_the_configs_this_test_expects() -> None:
    assert len(STDIO) >= 10 and len(HTTP) >= 3
    first = _json_configs("README.md", DOCS[0].read_text(encoding="utf-8"))[0]
    assert (first.command, first.args) == ("uvx", ("--from", "/path/to/memvid-mcp",
                                                    "memvid-mcp"))
    assert any(c.args == ("memvid-mcp@0.2.0",) for c in STDIO)  # the after-publication form


# ----------------------------------------------------------------- stdio
@pytest.fixture(scope="session")
def published_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A folder with this checkout's wheel, standing in for PyPI's memvid-mcp 0.2.0."""
    if shutil.which("uv") is None:
        return None
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(["uv", "build", "--wheel", "--out-dir", str(out), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    return out


def _substitute(value: str, repository: Path) -> str:
    installed = shutil.which("memvid-mcp") or str(Path(sys.executable).parent / "memvid-mcp")
    for placeholder, real in (("/path/to/venv/bin/memvid-mcp", installed),
                              ("/path/to/memvid-mcp", str(ROOT)),
                              ("/Users/me/src/my-repo", str(repository)),
                              ("/absolute/path/to/repo", str(repository))):
        value = value.replace(placeholder, real)
    assert "/path/to" not in value and "/Users/me" not in value, f"unknown placeholder {value}"
    return value


def _what_uvx_runs(args: list[str]) -> list[str]:
    """``uvx [--from X] memvid-mcp[@V] ARGS`` runs the package's console script with ARGS."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] == "--from" else rest[1:]
    assert rest and re.fullmatch(r"memvid-mcp(@[\w.]+)?", rest[0]), args
    return ["memvid-mcp", *rest[1:]]


async def _tool_names(params: StdioServerParameters) -> list[str]:
    with anyio.fail_after(420):  # uvx's first run downloads the dependencies
        async with Client(params) as client:
            return [tool.name for tool in (await client.list_tools()).tools]


@pytest.mark.parametrize("config", STDIO, ids=[f"{c.where}: {c.command} {' '.join(c.args)}"
                                               for c in STDIO])
def test_stdio_config_starts_a_server(config: Config, tmp_path: Path, repository: Path,
                                      published_wheel: Path | None) -> None:
    assert config.command is not None
    command = _substitute(config.command, repository)
    args = [_substitute(a, repository) for a in config.args]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MEMVID_") or k in ("MEMVID_RUN_DIR", "MEMVID_SERVICE_IDLE")}
    env.update({"MEMVID_DATA_DIR": str(tmp_path / "data"), "MEMVID_EMBEDDINGS": "0",
                **config.env})
    if command == "uvx" and shutil.which("uvx"):
        env.pop("PYTHONPATH", None)  # uvx's own environment, not this checkout's sys.path
        if published_wheel is not None:
            env["UV_FIND_LINKS"] = str(published_wheel)
    elif command == "uvx":
        command, *args = _what_uvx_runs(args)
    work = tmp_path / "client-cwd"
    work.mkdir()
    names = anyio.run(_tool_names, StdioServerParameters(
        command=command, args=args, env=env, cwd=str(work)))
    assert "memory_store" in names and "memory_search" in names


def test_uvx_is_installed() -> None:
    if shutil.which("uvx") is None:
        pytest.skip("uvx is not installed: the uvx configs ran the command uvx would run "
                    "(the memvid-mcp console script with the same arguments)")


# ----------------------------------------------------------------- HTTP
@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> object:
    """``memvid-mcp serve --transport http --port 0`` with a token, as the docs run it."""
    data = tmp_path_factory.mktemp("http-data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")}
    env.update({"MEMVID_EMBEDDINGS": "0", "MEMVID_HTTP_TOKEN": TOKEN,
                "MEMVID_RUN_DIR": os.environ["MEMVID_RUN_DIR"]})
    proc = subprocess.Popen([sys.executable, "-m", "memvid_mcp", "--data-dir", str(data),
                             "serve", "--transport", "http", "--port", "0"],
                            env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    url = None
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"serving MCP on (http://\S+/mcp)", line)
        url = found.group(1) if found else None
        assert line or proc.poll() is None, "the HTTP server exited"
    assert url is not None
    yield url
    proc.terminate()
    proc.wait(30)


@pytest.mark.parametrize("config", HTTP, ids=[c.where for c in HTTP])
def test_http_config_reaches_the_server(config: Config, http_server: str) -> None:
    assert config.url is not None and config.url.endswith("/mcp")
    assert re.fullmatch(r"https?://(127\.0\.0\.1:8765|memory\.example\.com)/mcp", config.url)
    headers = {k: v.replace("<token>", TOKEN).replace("$MEMVID_HTTP_TOKEN", TOKEN)
               for k, v in config.headers.items()}
    if not headers:  # a loopback config without a token: the server has one, so add it
        headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "config-test", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    answer = httpx.post(http_server, json=body, headers={**accept, **headers}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["serverInfo"]["name"]
    if config.headers:
        refused = httpx.post(http_server, json=body, headers=accept, timeout=30)
        assert refused.status_code == 401


def test_server_json_describes_this_package() -> None:
    """server.json (MCP Registry, schema 2025-12-11) matches pyproject.toml and the README's
    ownership marker, within the registry's limits."""
    import tomllib

    server = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert server["$schema"].endswith("/2025-12-11/server.schema.json")
    assert re.fullmatch(r"io\.github\.[\w-]+/[\w.-]+", server["name"])
    assert f"<!-- mcp-name: {server['name']} -->" in DOCS[0].read_text(encoding="utf-8")
    assert len(server["description"]) <= 100
    assert server["version"] == project["version"]
    (package,) = server["packages"]
    assert package["registryType"] == "pypi" and package["identifier"] == project["name"]
    assert package["version"] == project["version"] and package["transport"] == {"type": "stdio"}
    documented = set(re.findall(r"`(MEMVID_\w+)`", DOCS[0].read_text(encoding="utf-8")))
    assert {v["name"] for v in package["environmentVariables"]} <= documented
