"""usearch HNSW parameters at 100k: recall@10 (after exact rescoring) and latency.

A component benchmark (usearch directly, not the product's path), labelled as such. Uses the
real corpus and the document vectors cached by ``corpus.py`` (shipped int8 model) and 300 real
queries; compares f32 and f16 graphs over ``expansion_search`` values. ADR 0006 records the
output.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_hnsw_params.py [--n 100000]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from memvid_mcp.search.embed import preload_runtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    preload_runtime()  # before usearch: the other order segfaults (ADR 0006)
    from usearch.index import Index

    queries = corpus.queries()[:300]
    service = corpus.product_embedder("onnx-int8")
    x = corpus.CachedEmbeddings(service.model_id).embed(
        corpus.memory_texts(args.n), service.embed_documents, progress=True)
    q = np.stack([service.embed_query(t) for t in queries])
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    print(f"{args.n} vectors, {len(queries)} queries")
    print("| dtype | expansion_search | recall@10 | p50 ms |")
    print("|---|---|---|---|")
    for dtype in ("f32", "f16"):
        index = Index(ndim=x.shape[1], metric="ip", dtype=dtype, connectivity=16, expansion_add=200)
        started = time.perf_counter()
        index.add(np.arange(len(x), dtype=np.uint64), x, threads=2)
        build = time.perf_counter() - started
        for ef in (64, 96, 128, 200, 300):
            index.expansion_search = ef
            recalls, times = [], []
            for i in range(len(q)):
                t = time.perf_counter()
                keys = np.asarray(index.search(q[i], 10).keys, dtype=np.int64)
                top = keys[np.argsort(-(x[keys] @ q[i]))[:10]]
                times.append(time.perf_counter() - t)
                recalls.append(len(set(top) & set(truth[i])) / 10)
            print(f"| {dtype} | {ef} | {np.mean(recalls):.3f} | {np.median(times) * 1000:.2f} |")
        print(
            f"| {dtype} | build {build:.0f} s (2 threads)"
            f" | memory {index.memory_usage / 1e6:.0f} MB | |"
        )


if __name__ == "__main__":
    main()
