"""Benchmark the video backend on a mixed corpus of real chunks; prints one table.

    python benchmarks/bench_video.py [--chunks N] [--profiles archival,portable]

Corpus (read at run time, never committed): SciFact abstracts, MemoryBank dialogue turns
and Python source chunks of the standard library, interleaved in equal thirds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import zstandard

from memvid_mcp.storage.video import VideoStore

DATA = Path(os.environ.get("MEMVID_BENCH_DATA", "/work/shared/data"))


def scifact(limit: int) -> list[bytes]:
    out = []
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            out.append(f"{doc.get('title', '')}\n{doc.get('text', '')}".strip().encode())
            if len(out) >= limit:
                break
    return out


def dialogue(limit: int) -> list[bytes]:
    data = json.loads((DATA / "memorybank_en" / "memory_bank_en.json").read_text("utf-8"))
    out = []
    for person in data.values():
        for day, turns in sorted(person.get("history", {}).items()):
            for turn in turns:
                text = f"[{day}] User: {turn.get('query', '')}\nAI: {turn.get('response', '')}"
                out.append(text.encode())
    return out[:limit]


def code(limit: int) -> list[bytes]:
    """Chunks of ~30 lines from stdlib modules, cut at blank lines where possible."""
    out: list[bytes] = []
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")):
        lines = path.read_text("utf-8", errors="replace").splitlines()
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if (len(chunk) >= 30 and not line.strip()) or len(chunk) >= 60:
                text = "\n".join(chunk).strip()
                if len(text) > 80:
                    out.append(f"# {path.name}\n{text}".encode())
                chunk = []
            if len(out) >= limit:
                return out
    return out


def corpus(n: int) -> list[bytes]:
    """Equal thirds where possible; MemoryBank has ~570 turns, prose and code fill the rest."""
    talk = dialogue(n // 3 + 1)
    half = (n - len(talk)) // 2 + 1
    parts = [scifact(half), talk, code(half)]
    mixed = []
    for i in range(max(len(p) for p in parts)):
        mixed += [p[i] for p in parts if i < len(p)]
    mixed = mixed[:n]
    if len(mixed) < n:
        raise SystemExit(f"only {len(mixed)} chunks available")
    return mixed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pinned(cpu: int) -> set[int] | None:
    """Pin to one core (sealing is measured on one core); returns the old mask to restore."""
    if cpu < 0 or not hasattr(os, "sched_setaffinity"):
        return None
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    return old


def run(profile: str, chunks: list[bytes], batch: int, samples: int, cpu: int) -> dict[str, float]:
    raw = sum(len(c) for c in chunks)
    items = [(f"{i:08d}", c) for i, c in enumerate(chunks)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = VideoStore(root, profile=profile)
        old_mask = pinned(cpu)
        start = time.process_time()
        wall = time.perf_counter()
        for i in range(0, len(items), batch):
            store.put_many(items[i : i + batch])
        cpu_s = time.process_time() - start
        wall = time.perf_counter() - wall
        if old_mask:
            os.sched_setaffinity(0, old_mask)  # reads may use any core, as a server's would
        stats = store.stats().details
        problems = store.verify()
        store.close()
        rng = random.Random(7)
        sample = rng.sample(items, min(samples, len(items)))
        cold_store = VideoStore(root, profile=profile, cache_bytes=0)
        cold, cold_cpu = [], []
        for body_id, body in sample:
            c = time.thread_time()
            t = time.perf_counter()
            got = cold_store.get(body_id)
            cold.append(time.perf_counter() - t)
            cold_cpu.append(time.thread_time() - c)
            assert got == body
        warm_store = VideoStore(root, profile=profile)
        for body_id, _ in sample:
            warm_store.get(body_id)
        warm = []
        for body_id, _ in sample:
            t = time.perf_counter()
            warm_store.get(body_id)
            warm.append(time.perf_counter() - t)
    bad_frames = sum(1 for p in problems if p.message.startswith("frame"))
    return {
        "mp4_per_raw": stats["mp4_bytes"] / raw,
        "mvi_per_mem": stats["mvi_bytes"] / len(chunks),
        "manifest_per_mem": stats["manifest_bytes"] / len(chunks),
        "frames": stats["frames"],
        "decoded": 100.0 * (stats["frames"] - bad_frames) / stats["frames"],
        "problems": len(problems),
        "seal_per_s_cpu": len(chunks) / cpu_s,
        "seal_per_s_wall": len(chunks) / wall,
        "cold_p50": statistics.median(cold) * 1e3,
        "cold_p95": pct(cold, 0.95) * 1e3,
        "cold_cpu_p50": statistics.median(cold_cpu) * 1e3,
        "cold_cpu_p95": pct(cold_cpu, 0.95) * 1e3,
        "warm_p50": statistics.median(warm) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=256, help="bodies per put_many (segment)")
    parser.add_argument("--samples", type=int, default=500, help="gets timed per profile")
    parser.add_argument("--profiles", default="archival,portable")
    parser.add_argument("--cpu", type=int, default=0, help="seal on this core (-1: no pinning)")
    args = parser.parse_args()
    chunks = corpus(args.chunks)
    raw = sum(len(c) for c in chunks)
    z3 = zstandard.ZstdCompressor(level=3)
    per_chunk = sum(len(z3.compress(c)) for c in chunks) / raw
    whole = len(zstandard.ZstdCompressor(level=19).compress(b"".join(chunks))) / raw
    print(
        f"corpus: {len(chunks)} chunks (prose, dialogue, code), {raw:,} raw bytes, "
        f"mean {raw / len(chunks):.0f} B; batch {args.batch}; sealing pinned to cpu {args.cpu}"
    )
    print()
    print("| storage of the same text | bytes per raw text byte |")
    print("|---|---|")
    print("| raw text | 1.000 |")
    print(f"| zstd-3 per chunk | {per_chunk:.3f} |")
    print(f"| zstd-19 of the whole corpus (no random access) | {whole:.3f} |")
    profiles = args.profiles.split(",")
    results = {p: run(p, chunks, args.batch, args.samples, args.cpu) for p in profiles}
    for name, r in results.items():
        print(f"| video `{name}`: segment .mp4 bytes | **{r['mp4_per_raw']:.3f}** |")
    print()
    cols = [
        ("profile", lambda n, r: n),
        ("mp4 B/raw B", lambda n, r: f"{r['mp4_per_raw']:.3f}"),
        (".mvi B/memory", lambda n, r: f"{r['mvi_per_mem']:.2f}"),
        ("manifest B/memory", lambda n, r: f"{r['manifest_per_mem']:.1f}"),
        ("frames", lambda n, r: f"{r['frames']:.0f}"),
        ("decoded %", lambda n, r: f"{r['decoded']:.1f}"),
        ("seal mem/s (cpu)", lambda n, r: f"{r['seal_per_s_cpu']:.0f}"),
        ("seal mem/s (wall)", lambda n, r: f"{r['seal_per_s_wall']:.0f}"),
        ("get cold p50 / p95 ms", lambda n, r: f"{r['cold_p50']:.2f} / {r['cold_p95']:.2f}"),
        (
            "cold cpu p50 / p95 ms",
            lambda n, r: f"{r['cold_cpu_p50']:.2f} / {r['cold_cpu_p95']:.2f}",
        ),
        ("get warm p50 ms", lambda n, r: f"{r['warm_p50']:.4f}"),
    ]
    print("| " + " | ".join(c for c, _ in cols) + " |")
    print("|" + "---|" * len(cols))
    for name, r in results.items():
        print("| " + " | ".join(cell(name, r) for _, cell in cols) + " |")
    targets = {"archival": 0.75, "portable": 4.0}
    print()
    for name, r in results.items():
        ok = (
            r["mp4_per_raw"] <= targets.get(name, 99)
            and r["decoded"] == 100.0
            and r["cold_p50"] <= 5
            and r["cold_p95"] <= 12
            and r["warm_p50"] <= 0.2
        )
        print(
            f"{name}: size/decode/latency targets {'met' if ok else 'NOT met'}; "
            f"sealing {r['seal_per_s_cpu']:.0f} mem/s per CPU-second (target >= 300)"
        )


if __name__ == "__main__":
    main()
