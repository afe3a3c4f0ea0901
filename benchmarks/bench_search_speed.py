"""Search latency on the path agents use: ``MemoryManager.search`` and an MCP stdio round trip.

Corpus: ``--n`` real texts (``corpus.memory_texts``: MemoryBank turns, SciFact sentences and
windows of adjacent sentences), half in the project scope of a git repository, half in the
global scope, both searched as by default; every memory carries 2 of 8 tags and one of 4
kinds. Queries: 300 SciFact claims + 99 MemoryBank questions, each asked once per mode, with a
``tags_any`` filter (two tags, ~44% of memories pass), the query-vector cache cleared before
each mode, so every semantic/hybrid figure pays for embedding the query.

Phases, per backend: build the store through the manager (corpus vectors from the on-disk
cache of ``corpus.py``, computed by the same model; the graph built as the product builds it),
close; then a **fresh process** opens it as the server would and times
``MemoryManager.search`` for lexical / semantic / hybrid (60 hybrid searches right after
opening are timed apart: a video store warms its frame cache then, ADR 0032; the modes are
timed once it is warm) and reports its RSS; then a real
``memvid-mcp`` launched over stdio (as an MCP client config does: a relay to the per-user
service) times ``memory_search`` client to client, once the service's video stores report
their frame cache warm in ``memory_stats``. Once: bulk ingest with **uncached**
embeddings (``--ingest`` notes of ~300 bytes, store_many + flush). Component figures
(query embedding alone, exact ``VectorIndex.search`` at 20k) are printed labelled as such.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_search_speed.py [--n 100000]
[--backends file,video] [--quick]``. ``--quick``: 3,000 memories, 60 queries, file backend.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus

TAGS = ("work", "home", "python", "health", "travel", "music", "urgent", "idea")
KINDS = ("note", "fact", "todo", "decision")
MODES = ("lexical", "semantic", "hybrid")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def filters_for(i: int) -> list[str]:
    rng = random.Random(i)
    return rng.sample(TAGS, 2)


def manager_settings(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "embed_model": args.model}
    if args.provider:
        out["embed_provider"] = args.provider
    return out


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def build(root: Path, backend: str, args: argparse.Namespace) -> tuple[Path, Path]:
    from memvid_mcp.manager import MemoryManager

    data, repo = root / "data", make_repo(root)
    texts = corpus.memory_texts(args.n)
    rng = random.Random(7)
    started = time.perf_counter()
    with MemoryManager.open(data, project=repo, **manager_settings(args, backend)) as m:
        cache = corpus.CachedEmbeddings(m.embedder.model_id)
        m.embedder.embed_documents = cache.wrap(  # type: ignore[method-assign]
            m.embedder.embed_documents)
        for start in range(0, len(texts), 1000):
            m.store_many([{"text": t, "tags": rng.sample(TAGS, 2), "kind": rng.choice(KINDS),
                           "scope": "project" if i % 2 else "global"}
                          for i, t in enumerate(texts[start:start + 1000], start)])
        m.flush()
        stored = time.perf_counter() - started
        for store in m._scopes.values():  # the product builds graphs in the background
            if len(store.vectors) >= store.vectors.exact_limit:
                store.vectors.build_graph()
        print(f"  built {args.n:,} memories ({backend}) in {stored:.0f} s + graphs "
              f"{time.perf_counter() - started - stored:.0f} s; cache misses {cache.misses}; "
              f"{load()}", flush=True)
    return data, repo


def serve(args: argparse.Namespace) -> None:
    """The fresh server-like process: open, load the model, time each mode. It caps its
    malloc arenas first, as the service and the in-process server do (ADR 0034)."""
    from memvid_mcp.manager import MemoryManager
    from memvid_mcp.search.heap import limit_malloc_arenas

    limit_malloc_arenas()
    queries = corpus.queries()[: args.queries]
    out: dict[str, Any] = {}
    started = time.perf_counter()
    with MemoryManager.open(args.serve, project=args.repo,
                            **manager_settings(args, args.backend)) as m:
        assert m.embedder.wait_ready(600), m.embedder.state
        m.search("warm up the searchers", k=10)
        out["open_s"] = time.perf_counter() - started
        # right after opening, a video store still warms its frame cache (ADR 0032): the
        # first searches, timed as such, then the rest once warm, as a serving process is
        # for all but its first seconds
        m.embedder.clear_cache()
        times = []
        for i, q in enumerate(queries[-60:]):
            t0 = time.perf_counter()
            m.search(q, k=10, mode="hybrid", tags_any=filters_for(i))
            times.append(time.perf_counter() - t0)
        out["first_hybrid"] = [pct(times, 0.5), pct(times, 0.95)]
        backends = [s.backend for s in m._scopes.values() if hasattr(s, "backend")]
        while any(getattr(b, "warming", False) for b in backends):
            time.sleep(0.1)
        out["warm_s"] = time.perf_counter() - started
        for mode in MODES:
            m.embedder.clear_cache()
            times = []
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                result = m.search(q, k=10, mode=mode, tags_any=filters_for(i))
                times.append(time.perf_counter() - t0)
                assert result.mode == mode, (result.mode, result.note)
            out[mode] = [pct(times, 0.5), pct(times, 0.95)]
        m.embedder.clear_cache()
        times = []
        for q in queries:
            t0 = time.perf_counter()
            m.embedder.embed_query(q + " ")
            times.append(time.perf_counter() - t0)
        out["embed_query"] = [pct(times, 0.5), pct(times, 0.95)]
        out["rss_mb"] = rss_mb()
        out["graphs"] = {s.name: s.vectors.uses_graph for s in m._scopes.values()}
    print(json.dumps(out))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_serve(data: Path, repo: Path, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--serve", str(data), "--repo", str(repo),
           "--backend", backend, "--queries", str(args.queries), "--model", args.model]
    if args.provider:
        cmd += ["--provider", args.provider]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


async def stdio_round_trips(data: Path, repo: Path, args: argparse.Namespace) -> list[float]:
    from mcp import Client, StdioServerParameters

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMVID_")}
    env["MEMVID_EMBED_MODEL"] = args.model
    env["MEMVID_RUN_DIR"] = tempfile.mkdtemp(prefix="mvb-")
    if args.provider:
        env["MEMVID_EMBED_PROVIDER"] = args.provider
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "memvid_mcp", "--data-dir", str(data)],
                                   env=env, cwd=str(repo))
    queries = corpus.queries()[: args.queries]
    times = []
    async with Client(params) as client:
        deadline = time.monotonic() + 600
        while True:  # the service loads the model in the background: wait for hybrid
            found = await client.call_tool("memory_search", {"query": "warm up", "limit": 10})
            content = found.structured_content or {}
            if content.get("mode") == "hybrid" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        while time.monotonic() < deadline:  # a video store warms its frame cache (ADR 0032)
            stats = (await client.call_tool("memory_stats", {})).structured_content or {}
            if not any(s.get("details", {}).get("warming") for s in stats.get("scopes", [])):
                break
            await asyncio.sleep(0.5)
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            result = await client.call_tool(
                "memory_search", {"query": q, "limit": 10, "tags_any": filters_for(i)})
            times.append(time.perf_counter() - t0)
            assert not result.is_error, result.content
    subprocess.run([sys.executable, "-m", "memvid_mcp", "--data-dir", str(data), "service",
                    "--stop"], env=env, capture_output=True, check=False)
    deadline = time.monotonic() + 30  # --stop asks; the service closes its scopes, then exits
    while any(Path(env["MEMVID_RUN_DIR"]).glob("*/service.pid")) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    shutil.rmtree(env["MEMVID_RUN_DIR"], ignore_errors=True)
    return times


def ingest(args: argparse.Namespace) -> str:
    """Bulk import of ~300-byte notes with real, uncached embeddings, until every vector is in."""
    from memvid_mcp.manager import MemoryManager

    texts = [t for t in corpus.memory_texts(60_000)[20_000:] if 250 <= len(t) <= 350]
    texts = texts[: args.ingest]
    with tempfile.TemporaryDirectory() as tmp, MemoryManager.open(
            Path(tmp) / "data", project=Path(tmp), **manager_settings(args, "file")) as m:
        assert m.embedder.wait_ready(600), m.embedder.state
        m.embedder.embed_documents(["warm up"])
        started = time.perf_counter()
        m.store_many([{"text": t} for t in texts])
        m.flush()
        took = time.perf_counter() - started
    mean = sum(map(len, texts)) / len(texts)
    return (f"| bulk ingest, {len(texts)} notes of {mean:.0f} B, real embeddings, "
            f"store_many + flush | {len(texts) / took:.0f} memories/s | {load()} |")


def exact_component(args: argparse.Namespace) -> str:
    """VectorIndex.search directly over 20k cached real vectors (a component figure)."""
    import numpy as np

    from memvid_mcp.core.config import default_cache_dir
    from memvid_mcp.search.embed import EmbeddingService
    from memvid_mcp.search.vectors import VectorIndex

    service = EmbeddingService(args.model, default_cache_dir(),
                               **({"provider": args.provider} if args.provider else {}))
    cache = corpus.CachedEmbeddings(service.model_id)
    texts = corpus.memory_texts(20_000)
    _missing, rows = cache.lookup(texts)
    if rows is None:
        return "| exact VectorIndex.search at 20k | (vectors not cached yet) | |"
    index = VectorIndex(None, dim=rows.shape[1], exact_limit=10**9)
    index.upsert([str(i) for i in range(len(rows))], rows)
    queries = rows[np.random.default_rng(0).choice(len(rows), 300, replace=False)] + 0.01
    for q in queries[:20]:
        index.search(q, 50)
    timing: dict[str, list[float]] = {"no filter": [], "filter (44% pass)": []}
    for name, allowed in (("no filter", None), ("filter (44% pass)",
                                                lambda d: hash(d) % 9 < 4)):
        for q in queries:
            t0 = time.perf_counter()
            index.search(q, 50, allowed=allowed)
            timing[name].append(time.perf_counter() - t0)
    cells = "; ".join(f"{n} {pct(t, 0.5):.2f} / {pct(t, 0.95):.2f} ms" for n, t in timing.items())
    return f"| component: exact VectorIndex.search, k=50, 20k real vectors | {cells} | {load()} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--backends", default="file,video")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--ingest", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-stdio", action="store_true")
    parser.add_argument("--model", default=None)
    parser.add_argument("--provider", default=None, help="default: the shipped provider")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.model = args.model or corpus.default_model()
    if args.serve:
        serve(args)
        return
    if args.quick:
        args.n, args.queries, args.ingest = 3000, 60, 200
        args.backends = "file"
    print(f"| figure | value | load |\n|---|---|---|\n{ingest(args)}", flush=True)
    print(exact_component(args), flush=True)
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            data, repo = build(Path(tmp), backend, args)
            r = run_serve(data, repo, backend, args)
            tag = f"{backend}, {args.n:,} memories"
            for mode in MODES:
                p50, p95 = r[mode]
                print(f"| MemoryManager.search {mode} p50 / p95 ms ({tag}, uncached, filters) | "
                      f"{p50:.2f} / {p95:.2f} | {load()} |")
            print(f"| MemoryManager.search hybrid p50 / p95 ms ({tag}), the 60 searches right "
                  f"after opening (cache warming) | {r['first_hybrid'][0]:.2f} / "
                  f"{r['first_hybrid'][1]:.2f} | opened in {r['open_s']:.1f} s, warm after "
                  f"{r['warm_s']:.1f} s |")
            print(f"| component: query embedding alone p50 / p95 ms | "
                  f"{r['embed_query'][0]:.2f} / {r['embed_query'][1]:.2f} | {load()} |")
            print(f"| serving process RSS after the run ({tag}); graphs {r['graphs']} | "
                  f"{r['rss_mb']:.0f} MB | {load()} |", flush=True)
            if not args.no_stdio:
                times = asyncio.run(stdio_round_trips(data, repo, args))
                print(f"| stdio MCP memory_search round trip p50 / p95 ms ({tag}) | "
                      f"{pct(times, 0.5):.2f} / {pct(times, 0.95):.2f} | {load()} |", flush=True)


if __name__ == "__main__":
    main()
