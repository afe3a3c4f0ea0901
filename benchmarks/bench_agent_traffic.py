"""An agent storing one note at a time: segments, bytes and write amplification (ADR 0018).

    python benchmarks/bench_agent_traffic.py [--notes 400] [--gap 60] [--old-cadence]

Each note is stored alone, ``--gap`` simulated seconds after the previous one (a clock is
injected into the scope, so the run takes seconds, not hours); after each store the
background work runs once (the batcher's tick and the compactor's steps), exactly as the
service would. ``--old-cadence`` seals every 2 s like 0.1.0 (one segment per note here).
Corpus: the interleaved chunks of bench_video.py (SciFact, MemoryBank, stdlib code).
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

from bench_video import corpus
from memvid_mcp.manager import MemoryManager


def kind_of(path: Path, scope: Path) -> str:
    rel = path.relative_to(scope)
    if rel.parts[0] == "segments":
        return f"segments/*{path.suffix}"
    if rel.parts[0] == "meta":
        return "meta/" + (rel.parts[1] if len(rel.parts) > 2 else rel.name)
    return rel.parts[0] if len(rel.parts) > 1 else rel.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=400)
    parser.add_argument("--gap", type=float, default=60.0, help="simulated seconds between")
    parser.add_argument("--old-cadence", action="store_true")
    args = parser.parse_args()
    notes = [c.decode() for c in corpus(args.notes)]
    raw = sum(len(n.encode()) for n in notes)
    cadence = dict(seal_min_bytes=1, seal_max_seconds=2.0) if args.old_cadence else {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        now = [1_900_000_000.0]
        with MemoryManager.open(data, backend="video", project=Path(tmp), embeddings=False,
                                auto_compact=False, **cadence) as m:
            store = m._scope("global")
            store.clock = lambda: now[0]
            most = 0
            for text in notes:
                m.store(text)
                now[0] += args.gap
                with m._maint_lock:  # one batcher tick
                    if store.due():
                        store.write_batch()
                    store.apply_deletes()
                    store.commit_indexes()
                    store.checkpoint()
                if not args.old_cadence:
                    while store.compact_step() is not None:  # the compactor's steps
                        pass
                most = max(most, store.stats()["segments"])
            before_close = store.stats()
        with MemoryManager.open(data, backend="video", project=Path(tmp), embeddings=False,
                                auto_compact=False) as m:
            stats = m._scope("global").stats()
        scope = data / "global"
        sizes: dict[str, int] = defaultdict(int)
        files = 0
        for path in scope.rglob("*"):
            if path.is_file():
                files += 1
                sizes[kind_of(path, scope)] += path.stat().st_size
    total = sum(sizes.values())
    print(f"{args.notes} notes, {raw:,} raw bytes, one every {args.gap:g} s "
          f"({'0.1.0 cadence' if args.old_cadence else 'ADR 0018 cadence'})")
    print(f"segments: {stats['segments']} after close ({before_close['segments']} before the "
          f"final seal, at most {most} at any time); files in the scope: {files}")
    print(f".mp4 bytes per raw byte: {stats['mp4_bytes'] / raw:.3f}; whole scope: "
          f"{total / raw:.3f}")
    print(f"write amplification (segment bytes written / raw stored): "
          f"{stats['write_amplification']:.3f}; raw re-sealed by compaction / raw stored: "
          f"{stats['rewrite_ratio']:.3f}")
    print("| file kind | bytes | per raw byte |")
    print("|---|---|---|")
    for kind, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {size:,} | {size / raw:.3f} |")


if __name__ == "__main__":
    main()
