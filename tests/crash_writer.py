"""A writer that is killed mid-stream by tests/test_crash.py.

Stores (and sometimes deletes) memories forever, printing a line to stdout only AFTER each
call returned, i.e. after the write was acknowledged: ``S <id> <text>`` or ``D <id>``;
``d <id>`` announces a delete about to be issued.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from memvid_mcp.manager import MemoryManager


def main() -> None:
    data_dir, backend, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    manager = MemoryManager.open(
        data_dir, backend=backend, project=data_dir, embeddings=False,
        batch_max_memories=8, batch_max_seconds=0.02, checkpoint_wal_bytes=2048,
        lock_timeout=30,
    )
    stored: list[str] = []
    for n in range(100_000):
        if stored and rng.random() < 0.15:
            victim = stored.pop(rng.randrange(len(stored)))
            print(f"d {victim}", flush=True)  # intent: a kill now may or may not delete it
            manager.delete(victim)
            print(f"D {victim}", flush=True)
            continue
        # The third word is unique to this memory: the test searches for it after a crash.
        text = f"memory {seed}-{n} key{seed}x{n} " + "lorem ipsum dolor " * rng.randrange(1, 40)
        result = manager.store(text, tags=[f"t{n % 5}"])
        stored.append(result.id)
        print(f"S {result.id} {text}", flush=True)


if __name__ == "__main__":
    main()
