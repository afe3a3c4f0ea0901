"""A team-engine instance in its own process, driven by tests/test_team.py.

``store <data_dir> <n> <tag>``: store ``n`` shared texts (the other worker stores the same),
printing ``S <index> <id> <deduplicated>`` after each store is acknowledged.
``seal-and-hang <data_dir> <n>``: store ``n`` memories (``S <id>`` after each), then seal them;
after uploading the segment's first object it prints ``UPLOADED`` and hangs before the
publishing transaction, waiting for the test's SIGKILL.
The database and bucket come from MEMVID_DATABASE_URL / MEMVID_SEGMENT_URL and AWS_*.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from memvid_mcp.manager import MemoryManager


def shared_text(i: int) -> str:
    return f"shared decision {i}: both instances store exactly this text"


def main() -> None:
    mode, data_dir, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    manager = MemoryManager.open(data_dir, project=data_dir, embeddings=False,
                                 seal_min_bytes=1 << 30, batch_max_memories=100_000)
    if mode == "store":
        for i in range(n):
            result = manager.store(shared_text(i), tags=[sys.argv[4]])
            print(f"S {i} {result.id} {int(result.deduplicated)}", flush=True)
        manager.close()
        return
    ids = [manager.store(f"acknowledged before the seal {i}").id for i in range(n)]
    for memory_id in ids:
        print(f"S {memory_id}", flush=True)
    store = manager._scope("global")
    bucket = store.bucket  # type: ignore[attr-defined]
    real_upload = bucket.upload

    def upload_then_hang(scope_key: str, path: Path) -> None:
        real_upload(scope_key, path)
        print("UPLOADED", flush=True)
        threading.Event().wait()  # killed here: uploaded, not published

    bucket.upload = upload_then_hang
    store.write_batch(everything=True)


if __name__ == "__main__":
    main()
