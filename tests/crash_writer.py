"""A writer that is killed mid-stream by tests/test_crash.py.

Stores (and sometimes deletes) memories forever, printing a line to stdout only AFTER each
call returned, i.e. after the write was acknowledged: ``S <id> <text>`` or ``D <id>``;
``d <id>`` announces a delete about to be issued.
"""

from __future__ import annotations

import random
import sys
import threading
from pathlib import Path

from memvid_mcp.manager import MemoryManager


def group(manager: MemoryManager, seed: int) -> None:
    """Several sessions at once, single stores and ``store_many`` batches: group commit
    shares fsyncs between them, and each line is printed only after its call returned."""
    printing = threading.Lock()

    def session(worker: int) -> None:
        for n in range(100_000):
            texts = [f"memory {seed}-{worker}-{n}-{i} key{seed}x{worker}x{n}x{i} lorem ipsum"
                     for i in range(1 + n % 3)]
            if len(texts) == 1:
                ids = [manager.store(texts[0]).id]
            else:
                ids = [r.id for r in manager.store_many([{"text": t} for t in texts])]
            with printing:
                for memory_id, text in zip(ids, texts, strict=True):
                    print(f"S {memory_id} {text}", flush=True)

    threads = [threading.Thread(target=session, args=(w,), daemon=True) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    data_dir, backend, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    manager = MemoryManager.open(
        data_dir, backend=backend, project=data_dir, embeddings=False,
        batch_max_memories=8, batch_max_seconds=0.02, checkpoint_wal_bytes=2048,
        lock_timeout=30,
    )
    if sys.argv[4:] == ["group"]:
        group(manager, seed)
        return
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
