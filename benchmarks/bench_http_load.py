"""HTTP server under concurrent MCP clients: throughput, latency, errors, lost writes.

Starts the real server (``memvid-mcp serve --transport http`` as a subprocess, 127.0.0.1, an
ephemeral port), then ``--clients`` concurrent SDK clients (streamable HTTP) issue a fixed
total of ``--requests`` tool calls mixing store / search / get / delete. Afterwards every
acknowledged, undeleted memory must come back with its exact text and every acknowledged
delete must stay deleted; the server is stopped and the store verified on disk. The server's
log is checked for any memory text. Bounded by the request count and ``--max-seconds``.

Run: ``python benchmarks/bench_http_load.py [--clients 16] [--requests 3200]
[--backend file] [--embeddings]``. Prints throughput and p50/p95/max latency per tool;
exits 1 on any error or lost write.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from memvid_mcp.manager import MemoryManager

MIX = (("memory_store", 0.40), ("memory_search", 0.30), ("memory_get", 0.20),
       ("memory_delete", 0.10))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start listening")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(url: str, clients: int, requests: int, seed: int, max_seconds: float
               ) -> dict[str, Any]:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    acked: dict[str, str] = {}
    deleted: set[str] = set()
    per_client = [requests // clients + (1 if i < requests % clients else 0)
                  for i in range(clients)]

    async def one_client(index: int, count: int) -> None:
        rng = random.Random(seed * 1000 + index)
        mine: list[str] = []
        async with Client(url) as client:
            for n in range(count):
                roll, name = rng.random(), "memory_store"
                for tool, share in MIX:
                    if roll < share:
                        name = tool
                        break
                    roll -= share
                if name in ("memory_get", "memory_delete") and not mine:
                    name = "memory_store"
                if name == "memory_store":
                    text = f"client {index} note {n}: {rng.getrandbits(64):x} " + \
                        "alpha beta gamma " * rng.randrange(1, 20)
                    args: dict[str, Any] = {"text": text, "tags": [f"c{index}"]}
                elif name == "memory_search":
                    args = {"query": f"client {index} note {rng.randrange(max(n, 1))}", "k": 5}
                elif name == "memory_get":
                    args = {"ids": [rng.choice(mine)]}
                else:
                    args = {"ids": [mine.pop(rng.randrange(len(mine)))]}
                start = time.perf_counter()
                result = await client.call_tool(name, args)
                latencies[name].append(time.perf_counter() - start)
                if result.is_error or result.structured_content is None:
                    text_out = result.content[0].text if result.content else ""  # type: ignore[union-attr]
                    errors.append(f"{name}: {text_out[:200]}")
                    continue
                out = result.structured_content
                if name == "memory_store":
                    acked[out["id"]] = args["text"]
                    mine.append(out["id"])
                elif name == "memory_delete":
                    deleted.add(args["ids"][0])
                    acked.pop(args["ids"][0], None)
                elif name == "memory_get" and out["memories"][0]["text"] != acked.get(
                        args["ids"][0]):
                    errors.append(f"get returned different text for {args['ids'][0]}")

    started = time.perf_counter()
    with anyio.fail_after(max_seconds):
        async with anyio.create_task_group() as tg:
            for i, count in enumerate(per_client):
                tg.start_soon(one_client, i, count)
    elapsed = time.perf_counter() - started

    lost = resurrected = changed = 0
    async with Client(url) as client:
        ids = list(acked)
        for i in range(0, len(ids), 100):
            got = (await client.call_tool("memory_get", {"ids": ids[i:i + 100]}))
            assert got.structured_content is not None
            lost += len(got.structured_content["missing"])
            changed += sum(1 for m in got.structured_content["memories"]
                           if m["text"] != acked[m["id"]])
        gone = list(deleted)
        for i in range(0, len(gone), 100):
            got = await client.call_tool("memory_get", {"ids": gone[i:i + 100]})
            assert got.structured_content is not None
            resurrected += len(got.structured_content["memories"])
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed, "acked": acked,
            "deleted": deleted, "lost": lost, "changed": changed, "resurrected": resurrected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3200, help="total tool calls")
    parser.add_argument("--backend", default="file", choices=["file", "video"])
    parser.add_argument("--embeddings", action="store_true", help="load the model (hybrid)")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="memvid-http-") as tmp:
        data_dir = Path(tmp) / "data"
        log_path = Path(tmp) / "server.log"
        port = free_port()
        env = {**os.environ, "MEMVID_EMBEDDINGS": "1" if args.embeddings else "0",
               "MEMVID_BACKEND": args.backend}
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "memvid_mcp", "--data-dir", str(data_dir), "--project",
                 str(data_dir), "serve", "--transport", "http", "--host", "127.0.0.1",
                 "--port", str(port)], stdout=log, stderr=log, env=env)
            try:
                wait_listening(port, server, 60)
                result = anyio.run(load, f"http://127.0.0.1:{port}/mcp", args.clients,
                                   args.requests, args.seed, args.max_seconds)
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        with MemoryManager.open(data_dir, backend=args.backend, project=data_dir,
                                embeddings=False) as manager:
            problems = manager.verify()
            on_disk = manager.get(list(result["acked"])) if result["acked"] else None
            lost_on_disk = len(on_disk.missing) if on_disk else 0
        server_log = log_path.read_text(errors="replace")
        leaked = sum(1 for text in result["acked"].values() if text[:40] in server_log)

    lat = result["latencies"]
    total = sum(len(v) for v in lat.values())
    print(f"bench_http_load: {args.clients} clients, {total} requests, backend "
          f"{args.backend}, embeddings {'on' if args.embeddings else 'off'}, "
          f"{os.cpu_count()} cpus, python {sys.version.split()[0]}")
    print(f"throughput: {total / result['elapsed']:.0f} requests/s over "
          f"{result['elapsed']:.1f} s")
    print("| tool | requests | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, _ in MIX:
        values = lat.get(name, [])
        if values:
            print(f"| {name} | {len(values)} | {statistics.median(values) * 1000:.1f} | "
                  f"{percentile(values, 0.95) * 1000:.1f} | {max(values) * 1000:.1f} |")
    every = [v for values in lat.values() for v in values]
    print(f"| all | {len(every)} | {statistics.median(every) * 1000:.1f} | "
          f"{percentile(every, 0.95) * 1000:.1f} | {max(every) * 1000:.1f} |")
    print(f"errors: {len(result['errors'])}; acknowledged stores kept: {len(result['acked'])}; "
          f"deletes: {len(result['deleted'])}; lost writes: {result['lost']} (after restart: "
          f"{lost_on_disk}); changed text: {result['changed']}; resurrected: "
          f"{result['resurrected']}; verify problems: {len(problems)}; memory text in the "
          f"server log: {leaked}")
    for error in result["errors"][:5]:
        print(f"  {error}")
    bad = (len(result["errors"]) + result["lost"] + lost_on_disk + result["changed"]
           + result["resurrected"] + len(problems) + leaked)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
