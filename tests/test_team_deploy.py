"""The team deployment example (docker-compose.yml, deploy/): documented, not run here (no
Docker engine), so these checks keep it from rotting: the YAML parses, every file it mounts or
builds from exists (or is the operator's, git-ignored and documented), the serve flags it passes
are real ones, and the proxy, bucket and engine settings agree with each other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from memvid_mcp.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
# created by the operator (secrets): never in git, each explained in docs/team.md
OPERATOR_FILES = {"deploy/team.env", "deploy/tokens.json"}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _referenced_files(data: dict[str, Any]) -> set[str]:
    files: set[str] = set()
    for service in data["services"].values():
        build = service.get("build")
        if isinstance(build, dict):
            context = build.get("context", ".")
            files.add(str(Path(context) / build.get("dockerfile", "Dockerfile")))
        env_files = service.get("env_file", [])
        files.update([env_files] if isinstance(env_files, str) else env_files)
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith(("./", "/")):
                files.add(source)
    return {str(Path(f)) for f in files}


def test_the_compose_file_parses_and_has_the_team_services() -> None:
    data = _compose()
    services = data["services"]
    assert {"postgres", "minio", "minio-setup", "memvid-1", "memvid-2", "proxy"} <= set(services)
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert services["memvid-2"]["image"] == services["memvid-1"]["image"]  # the YAML anchor


def test_every_referenced_file_exists_or_is_the_operators() -> None:
    referenced = _referenced_files(_compose())
    assert "Dockerfile" in referenced and "deploy/Caddyfile" in referenced
    missing = {f for f in referenced if not (ROOT / f).exists()} - OPERATOR_FILES
    assert missing == set()
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    guide = (ROOT / "docs" / "team.md").read_text(encoding="utf-8")
    for secret in OPERATOR_FILES & referenced:
        assert secret in ignored, f"{secret} must be git-ignored"
        assert secret in guide, f"docs/team.md must say how to create {secret}"
    assert (ROOT / "deploy" / "team.env.example").exists()
    assert "deploy" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()


def test_the_instances_run_real_serve_flags_and_the_engine_settings() -> None:
    services = _compose()["services"]
    for name in ("memvid-1", "memvid-2"):
        service = services[name]
        command = service["command"]
        assert command[:3] == ["serve", "--transport", "http"]
        serve = main.commands["serve"]
        serve.make_context("serve", list(command[1:]))  # click rejects an unknown flag
        assert "--stateless" in command and "--tokens-file" in command
        env = service["environment"]
        assert env["MEMVID_DATABASE_URL"].startswith("postgresql://")
        assert env["MEMVID_SEGMENT_URL"].startswith("s3://")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert service["build"]["args"]["MEMVID_EXTRAS"] == "team"
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG MEMVID_EXTRAS" in dockerfile


def test_the_proxy_the_bucket_and_the_instances_agree() -> None:
    services = _compose()["services"]
    caddy = (ROOT / "deploy" / "Caddyfile").read_text(encoding="utf-8")
    upstreams = set(re.findall(r"(memvid-\d+):(\d+)", caddy))
    assert upstreams == {("memvid-1", "8765"), ("memvid-2", "8765")}
    assert "round_robin" in caddy
    port = services["memvid-1"]["command"][services["memvid-1"]["command"].index("--port") + 1]
    assert port == "8765"
    bucket = services["memvid-1"]["environment"]["MEMVID_SEGMENT_URL"].split("/")[2]
    setup = (ROOT / "deploy" / "minio-setup.sh").read_text(encoding="utf-8")
    assert f"team/{bucket}" in setup
