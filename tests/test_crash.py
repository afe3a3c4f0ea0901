"""Kill -9 at random instants loses no acknowledged memory and resurrects no deleted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memvid_mcp.manager import MemoryManager

WRITER = Path(__file__).with_name("crash_writer.py")


def _apply(line: str, acked: dict[str, str], deleted: set[str], doubtful: set[str]) -> None:
    kind, memory_id, *rest = line.rstrip("\n").split(" ", 2)
    if kind == "S":
        acked[memory_id] = rest[0]
    elif kind == "d":
        doubtful.add(memory_id)  # in flight: either outcome is correct
    else:
        doubtful.discard(memory_id)
        deleted.add(memory_id)
        acked.pop(memory_id, None)


def _run_and_kill(data_dir: Path, backend: str, seed: int, min_acks: int,
                  acked: dict[str, str], deleted: set[str], doubtful: set[str]) -> None:
    proc = subprocess.Popen([sys.executable, str(WRITER), str(data_dir), backend, str(seed)],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    target = min_acks + random.Random(seed).randrange(min_acks)
    count = 0
    while count < target and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        _apply(line, acked, deleted, doubtful)
        count += 1
    proc.send_signal(signal.SIGKILL)
    for line in proc.stdout:  # acknowledged before the kill, still in the pipe
        if line.endswith("\n"):
            _apply(line, acked, deleted, doubtful)
    proc.wait(timeout=30)
    assert count >= min_acks, f"writer produced only {count} acknowledgements"


@pytest.mark.parametrize("backend", ["file", "video"])
def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, backend: str) -> None:
    data_dir = tmp_path / "data"
    acked: dict[str, str] = {}
    deleted: set[str] = set()
    doubtful: set[str] = set()
    for trial in range(4):
        _run_and_kill(data_dir, backend, seed=trial, min_acks=40, acked=acked,
                      deleted=deleted, doubtful=doubtful)
        with MemoryManager.open(data_dir, backend=backend, project=data_dir,
                                embeddings=False) as manager:
            for memory_id in doubtful:  # settle the in-flight delete as the store did
                if manager.get(memory_id).missing:
                    deleted.add(memory_id)
                    acked.pop(memory_id, None)
            doubtful.clear()
            got = manager.get(list(acked)) if acked else None
            if got is not None:
                assert got.missing == ()
                assert {m.id: m.text for m in got.memories} == acked
            if deleted:
                assert set(manager.get(list(deleted)).missing) == deleted
            assert manager.verify() == []
            probe = manager.store(f"after crash {trial}")  # still accepts writes
            acked[probe.id] = f"after crash {trial}"
