"""The writer that ``bench_crash.py`` kills with SIGKILL at random instants.

Stores, deletes, seals (``flush``) and compacts forever, printing a line to stdout only AFTER
a call returned (i.e. was acknowledged): ``S <id> <text>`` after a store, ``D <id>`` after a
delete; ``d <id>`` announces a delete about to be issued (a kill then may or may not delete
it), ``F``/``C`` announce a flush/compaction about to start, ``f``/``c`` that it ended.

Run: ``python benchmarks/crash_worker.py DATA_DIR file|video SEED [ONNX_MODEL_DIR]`` (with a
model directory, embeddings are on: the background embedder runs while it is killed).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from memvid_mcp.manager import MemoryManager


def main() -> None:
    data_dir, backend, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    model = sys.argv[4] if len(sys.argv) > 4 else None
    rng = random.Random(seed)
    manager = MemoryManager.open(
        data_dir, backend=backend, project=data_dir, embeddings=model is not None,
        embed_model=model,
        batch_max_memories=8, batch_max_seconds=0.02, checkpoint_wal_bytes=4096,
        lock_timeout=60,
    )
    print("ready", flush=True)
    stored: list[str] = []
    for n in range(1_000_000):
        roll = rng.random()
        if stored and roll < 0.15:
            victim = stored.pop(rng.randrange(len(stored)))
            print(f"d {victim}", flush=True)
            manager.delete(victim)
            print(f"D {victim}", flush=True)
        elif roll < 0.19:
            print("F", flush=True)
            manager.flush()
            print("f", flush=True)
        elif roll < 0.21:
            print("C", flush=True)
            manager.compact()
            print("c", flush=True)
        else:
            # The third word is unique: the harness searches for it after the crash.
            words = "lorem ipsum dolor " * rng.randrange(1, 60)
            text = f"crash {seed}-{n} ckey{seed}x{n} Δ {words}"
            result = manager.store(text, tags=[f"t{n % 7}"])
            stored.append(result.id)
            print(f"S {result.id} {text}", flush=True)


if __name__ == "__main__":
    main()
