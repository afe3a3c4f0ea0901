"""The stdio MCP round trip, client to client, and what each hop adds.

A real MCP SDK client (``mcp.Client`` over ``StdioServerParameters``, the legacy handshake
that today's clients use) launches ``memvid-mcp`` as a client config does: a relay to the
data directory's service over its Unix socket; the service runs the MCP server over one
``MemoryManager``. It times, client to client:

- ``ping`` and ``tools/list`` (cache bypassed): trivial calls, so they isolate the transport;
- ``memory_search`` lexical and hybrid over real queries, each asked once per mode with a
  ``tags_any`` filter (as ``bench_search_speed.py``), so hybrid pays for embedding the query.

The same calls then run through a minimal standard-library client (``StdioPeer``: the same
relay and service without the SDK client's own parsing), the same client straight on the
service's socket (no relay), and in one process, labelled:
the same MCP server with the SDK's in-memory transport, and ``MemoryManager.search`` itself.
The differences are the hops: client SDK, relay, socket + service, MCP server, search.

Store: ``--quick`` builds 2,000 real texts in a temporary directory; ``--n N`` builds N
(``corpus.py`` gives the texts and cached vectors); ``--dir D`` keeps the store in
``D/file-N`` and reuses it on later runs. Figures carry the load average they were taken at.

``--hops`` runs only the SDK client, with every process marking its hops (``core/hops.py``,
``roundtrip_hops.py``): a table of where each call's time goes, and each process's CPU per call.
``--share`` alternates hybrid calls between the SDK client and ``MemoryManager.search`` on a
copy of the store in this process: what the service path adds to the search under one load
(figures from separate runs differ by more than that share on a shared machine, ADR 0036).

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_roundtrip.py --quick`` or
``... --dir /tmp/rt --n 100000 [--calls 200] [--queries 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_search_speed as speed
import corpus

Timings = dict[str, list[float]]


def launch_command() -> list[str]:
    """What an MCP client config runs: the ``memvid-mcp`` console script (``-m`` without it)."""
    script = shutil.which("memvid-mcp")
    return [script] if script else [sys.executable, "-m", "memvid_mcp"]


def child_env(args: argparse.Namespace, run_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")}
    env.update(MEMVID_EMBED_MODEL=args.model, MEMVID_RUN_DIR=run_dir, HF_HUB_OFFLINE="1",
               MEMVID_SERVICE_IDLE="30")
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    return env


def search_args(query: str, i: int, mode: str) -> dict[str, Any]:
    return {"query": query, "limit": 10, "mode": mode, "tags_any": speed.filters_for(i)}


async def timed(times: list[float], call: Callable[[], Awaitable[Any]]) -> Any:
    t0 = time.perf_counter()
    result = await call()
    times.append(time.perf_counter() - t0)
    return result


async def wait_for_hybrid(client: Any) -> None:
    """The model loads in the background: wait until hybrid search is hybrid."""
    deadline = time.monotonic() + 600
    while True:
        found = await client.call_tool("memory_search", {"query": "warm up", "limit": 10})
        if (found.structured_content or {}).get("mode") == "hybrid":
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"hybrid search never became available: {found.content}")
        await asyncio.sleep(0.5)


async def time_sdk_client(client: Any, args: argparse.Namespace, queries: list[str]) -> Timings:
    """The calls of one run through an SDK ``Client`` (stdio or in-memory)."""
    await wait_for_hybrid(client)
    out: Timings = {"ping": [], "tools/list": []}
    for _ in range(20):  # warm both paths before timing
        await client.send_ping()
    for _ in range(args.calls):
        await timed(out["ping"], client.send_ping)
    for _ in range(args.calls):
        await timed(out["tools/list"], lambda: client.list_tools(cache_mode="bypass"))
    for mode in ("lexical", "hybrid"):
        times = out.setdefault(f"memory_search {mode}", [])
        for i, q in enumerate(queries):
            result = await timed(times, lambda q=q, i=i, mode=mode: client.call_tool(
                "memory_search", search_args(q, i, mode)))
            assert not result.is_error, result.content
            assert result.structured_content["mode"] == mode, result.structured_content
    return out


async def stdio_sdk(args: argparse.Namespace, data: Path, repo: Path, env: dict[str, str],
                    queries: list[str]) -> Timings:
    from mcp import Client, StdioServerParameters

    command, *rest = launch_command()
    params = StdioServerParameters(command=command, args=[*rest, "--data-dir", str(data)],
                                   env=env, cwd=str(repo))
    async with Client(params, mode="legacy") as client:
        return await time_sdk_client(client, args, queries)


async def stdio_hops(args: argparse.Namespace, data: Path, repo: Path, env: dict[str, str],
                     queries: list[str]) -> None:
    """The SDK client's round trips with every process marking its hops (``--hops``)."""
    from mcp import Client, StdioServerParameters

    import roundtrip_hops as hops_report
    from memvid_mcp.core import hops
    from memvid_mcp.core.rundir import PID_NAME, RunDir

    directory = hops_report.trace_directory()
    hops_report.instrument_sdk_client()
    command, *rest = launch_command()
    params = StdioServerParameters(command=command, args=[*rest, "--data-dir", str(data)],
                                   env=dict(env, MEMVID_HOP_TRACE=directory), cwd=str(repo))
    os.environ["MEMVID_RUN_DIR"] = env["MEMVID_RUN_DIR"]
    try:
        async with Client(params, mode="legacy") as client:
            await wait_for_hybrid(client)
            for _ in range(20):
                await client.send_ping()
            pid = int((RunDir.for_data_dir(data).path / PID_NAME).read_text().split()[0])

            def search(mode: str) -> Any:
                return lambda i: client.call_tool("memory_search", search_args(
                    queries[i % len(queries)] + " " * (1 + i // len(queries)), i, mode))

            cpu = await hops_report.run(client, {
                "ping": lambda i: client.send_ping(), "lexical": search("lexical"),
                "hybrid": search("hybrid")}, max(len(queries), args.calls // 2), pid)
        calls = hops_report.split_calls(hops.read(directory))
        calls.pop("ping", None)
        print(f"\nhops, SDK client -> relay -> service ({speed.load()}); p50 / mean ms\n")
        print("\n".join(hops_report.hop_table(calls)))
        print(f"\nCPU per call ({speed.load()})\n")
        print("\n".join(cpu), flush=True)
    finally:
        hops.configure(None)
        shutil.rmtree(directory, ignore_errors=True)


def copy_store(data: Path, repo: Path, into: Path) -> tuple[Path, Path]:
    """A copy of the store whose project scope belongs to the copied repository (a project
    scope's directory is named after its repository's path)."""
    from memvid_mcp.core.scopes import ScopeLayout

    shutil.copytree(data, into / "data", symlinks=True)
    shutil.copytree(repo, into / "repo", symlinks=True)
    old = ScopeLayout(data, repo.resolve()).directory("project").name
    new = ScopeLayout(into / "data", (into / "repo").resolve()).directory("project")
    if (into / "data" / "projects" / old).is_dir():
        (into / "data" / "projects" / old).rename(new)
    return into / "data", into / "repo"


async def stdio_share(args: argparse.Namespace, data: Path, repo: Path, env: dict[str, str],
                      queries: list[str]) -> None:
    """``--share``: what the service path adds to the search, under one load. Hybrid calls
    alternate between the SDK client (relay, service; the service marks its hops) and
    ``MemoryManager.search`` in this process on a copy of the store: per call, the round
    trip, the search inside the service (its hop marks) and the same search here."""
    from mcp import Client, StdioServerParameters

    from memvid_mcp.core import hops
    from memvid_mcp.manager import MemoryManager

    directory = tempfile.mkdtemp(prefix="memvid-hops-")
    with tempfile.TemporaryDirectory(prefix="memvid-share-", ignore_cleanup_errors=True) as tmp:
        bare_data, bare_repo = copy_store(data, repo, Path(tmp))
        command, *rest = launch_command()
        params = StdioServerParameters(command=command, args=[*rest, "--data-dir", str(data)],
                                       env=dict(env, MEMVID_HOP_TRACE=directory), cwd=str(repo))
        trips: list[tuple[int, int]] = []
        bare: list[float] = []
        settings = speed.manager_settings(args, "file")
        with MemoryManager.open(bare_data, project=bare_repo, **settings) as m:
            assert m.embedder.wait_ready(600), m.embedder.state
            m.search("warm up the searchers", k=10)
            async with Client(params, mode="legacy") as client:
                await wait_for_hybrid(client)
                for i, q in enumerate(queries):
                    for turn in ((0, 1) if i % 2 else (1, 0)):
                        if turn:
                            m.embedder.clear_cache()
                            t0 = time.perf_counter()
                            m.search(q, k=10, mode="hybrid", tags_any=speed.filters_for(i))
                            bare.append(time.perf_counter() - t0)
                        else:
                            t0_ns = time.monotonic_ns()
                            await client.call_tool("memory_search", search_args(q, i, "hybrid"))
                            trips.append((t0_ns, time.monotonic_ns()))
        events = hops.read(directory)
        shutil.rmtree(directory, ignore_errors=True)
    inside, outside = [], []
    for start, end in trips:
        marks = {label: ns for ns, _, label in events if start <= ns <= end}
        if {"work.start", "search.done"} <= marks.keys():
            search = marks["search.done"] - marks["work.start"]
            inside.append(search / 1e9)
            outside.append((end - start - search) / 1e9)
    round_trips = [(end - start) / 1e9 for start, end in trips]
    print(f"\nhybrid memory_search, {len(trips)} calls each, alternating ({speed.load()}); "
          "p50 / p95 ms\n\n| figure | p50 / p95 ms |\n|---|---|")
    for name, values in (("stdio round trip, SDK client to client", round_trips),
                         ("MemoryManager.search inside the service", inside),
                         ("MemoryManager.search in this process", bare),
                         ("round trip less the search inside it", outside)):
        print(f"| {name} | {speed.pct(values, 0.5):.2f} / {speed.pct(values, 0.95):.2f} |",
              flush=True)


def stdio_peer(args: argparse.Namespace, data: Path, repo: Path, env: dict[str, str],
               queries: list[str]) -> Timings:
    """The same round trips through a standard-library JSON-RPC client (no SDK parsing)."""
    from memvid_mcp.client.stdio_peer import StdioPeer

    peer = StdioPeer([*launch_command(), "--data-dir", str(data)], env=env, cwd=repo)
    out: Timings = {"ping": [], "tools/list": []}
    try:
        for _ in range(20):
            peer.request("ping", {})
        for name, method in (("ping", "ping"), ("tools/list", "tools/list")):
            for _ in range(args.calls):
                t0 = time.perf_counter()
                reply = peer.request(method, {})
                out[name].append(time.perf_counter() - t0)
                assert "result" in reply, reply
        for mode in ("lexical", "hybrid"):
            times = out.setdefault(f"memory_search {mode}", [])
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                reply = peer.tool("memory_search", **search_args(q + " ", i, mode))
                times.append(time.perf_counter() - t0)
                assert reply["result"]["structuredContent"]["mode"] == mode, reply
    finally:
        peer.close()
    return out


def socket_direct(args: argparse.Namespace, data: Path, repo: Path, env: dict[str, str],
                  queries: list[str]) -> Timings:
    """The same JSON-RPC straight on the service's socket, without the relay: its hop cost."""
    import json

    from memvid_mcp.client.connect import open_connection
    from memvid_mcp.core.rundir import RunDir

    os.environ["MEMVID_RUN_DIR"] = env["MEMVID_RUN_DIR"]
    found = open_connection(RunDir.for_data_dir(data), "mcp", project=str(repo), spawn=False)
    assert found is not None, "no service runs"
    conn = found[0]
    next_id = 0

    def request(method: str, params: dict[str, Any]) -> dict[str, Any]:
        nonlocal next_id
        next_id += 1
        conn.send(json.dumps({"jsonrpc": "2.0", "id": next_id, "method": method,
                              "params": params}).encode() + b"\n")
        while True:
            reply: dict[str, Any] = json.loads(conn.readline(limit=1 << 26))
            if reply.get("id") == next_id:
                return reply

    request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "bench", "version": "1"}})
    conn.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    out: Timings = {"ping": [], "tools/list": []}
    try:
        for _ in range(20):
            request("ping", {})
        for name in ("ping", "tools/list"):
            for _ in range(args.calls):
                t0 = time.perf_counter()
                request(name, {})
                out[name].append(time.perf_counter() - t0)
        for mode in ("lexical", "hybrid"):
            times = out.setdefault(f"memory_search {mode}", [])
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                reply = request("tools/call", {"name": "memory_search",
                                               "arguments": search_args(q + "   ", i, mode)})
                times.append(time.perf_counter() - t0)
                assert reply["result"]["structuredContent"]["mode"] == mode, reply
    finally:
        conn.close()
    return out


def stop_service(data: Path, env: dict[str, str]) -> None:
    subprocess.run([*launch_command(), "--data-dir", str(data), "service", "--stop"],
                   env=env, capture_output=True, check=False)
    deadline = time.monotonic() + 60  # it flushes and closes its scopes, then exits
    while any(Path(env["MEMVID_RUN_DIR"]).glob("*/service.pid")) and \
            time.monotonic() < deadline:
        time.sleep(0.2)


async def in_process(args: argparse.Namespace, data: Path, repo: Path,
                     queries: list[str]) -> tuple[Timings, Timings]:
    """The MCP server in this process (SDK in-memory transport), then the manager itself."""
    from mcp import Client

    from memvid_mcp.core.config import Settings
    from memvid_mcp.manager import MemoryManager
    from memvid_mcp.mcp.server import build_server

    settings = speed.manager_settings(args, "file")
    with MemoryManager.open(data, project=repo, **settings) as m:
        assert m.embedder.wait_ready(600), m.embedder.state
        server = build_server(Settings(data_dir=data, project=repo, embed_model=args.model),
                              lambda: m)
        m.embedder.clear_cache()
        async with Client(server, mode="legacy") as client:
            served = await time_sdk_client(client, args, queries)
        m.embedder.clear_cache()
        direct: Timings = {}
        for mode in ("lexical", "hybrid"):
            times = direct.setdefault(f"memory_search {mode}", [])
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                m.search(q + "  ", k=10, mode=mode, tags_any=speed.filters_for(i))
                times.append(time.perf_counter() - t0)
    return served, direct


def report(label: str, timings: Timings) -> None:
    for name, times in timings.items():
        print(f"| {label} | {name} | {speed.pct(times, 0.5):.2f} / {speed.pct(times, 0.95):.2f}"
              f" | {len(times)} | {speed.load()} |", flush=True)


def store_for(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path]:
    root = (args.dir or tmp) / f"file-{args.n}"
    if not (root / "data").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        speed.build(root, "file", args)
    return root / "data", root / "repo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None, help="keep (and reuse) the store here")
    parser.add_argument("--calls", type=int, default=300, help="pings and tools/list calls")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="2,000 memories, 60 queries")
    parser.add_argument("--skip", default="", help="comma list of: sdk,peer,socket,inproc")
    parser.add_argument("--model", default=None)
    parser.add_argument("--hops", action="store_true",
                        help="only the SDK client, split into hops, with CPU per process")
    parser.add_argument("--share", action="store_true",
                        help="only hybrid: the SDK client's round trip and MemoryManager.search "
                             "on a copy of the store, call by call in turn")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.model = args.model or corpus.default_model()
    args.provider = None
    if args.quick:
        args.n, args.queries, args.calls = 2000, 60, 100
    skip = set(filter(None, args.skip.split(",")))
    queries = corpus.queries()[: args.queries]
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        data, repo = store_for(args, Path(tmp))
        run_dir = tempfile.mkdtemp(prefix="mvrt-", dir="/tmp")
        env = child_env(args, run_dir)
        print(f"{args.n:,} memories (file), {len(queries)} queries; p50 / p95 ms, "
              "client to client\n\n| path | call | p50 / p95 ms | calls | load |\n"
              "|---|---|---|---|---|", flush=True)
        try:
            if args.hops:
                asyncio.run(stdio_hops(args, data, repo, env, queries))
                return
            if args.share:
                asyncio.run(stdio_share(args, data, repo, env, queries))
                return
            if "sdk" not in skip:
                report("stdio: SDK client -> relay -> service",
                       asyncio.run(stdio_sdk(args, data, repo, env, queries)))
            if "peer" not in skip:
                report("stdio: plain JSON client -> relay -> service",
                       stdio_peer(args, data, repo, env, queries))
            if "socket" not in skip and "peer" not in skip:  # the peer's service is still up
                report("socket: plain JSON client -> service (no relay)",
                       socket_direct(args, data, repo, env, queries))
        finally:
            stop_service(data, env)
            shutil.rmtree(run_dir, ignore_errors=True)
        if "inproc" not in skip:
            served, direct = asyncio.run(in_process(args, data, repo, queries))
            report("in process: SDK client -> MCP server (memory transport)", served)
            report("in process: MemoryManager.search", direct)


if __name__ == "__main__":
    main()
