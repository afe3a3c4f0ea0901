"""Kill -9 at random instants loses no acknowledged memory and resurrects no deleted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memvid_mcp.manager import MemoryManager

WRITER = Path(__file__).with_name("crash_writer.py")


def _stop_background(m: MemoryManager) -> None:
    m._stop.set()
    m._nudge()
    for thread in m._threads:
        thread.join(timeout=30)


def _abandon(m: MemoryManager) -> None:
    """What SIGKILL leaves behind: uncommitted index changes are lost, nothing is closed."""
    _stop_background(m)
    for store in m._scopes.values():
        store.lexical.close()  # rolls back what was not committed
        store.wal.close()
        store._scope_lock.release()
    m._closed = True


def test_a_commit_between_wal_append_and_upsert_leaves_the_memory_searchable(
        data_dir: Path, outside_repo: Path) -> None:
    """The batcher commits the lexical index while a store is between its WAL append and its
    upsert; a crash then must not leave a memory that get returns and search never finds."""
    m = MemoryManager.open(data_dir, project=outside_repo, embeddings=False)
    earlier = m.store("an earlier memory about otters").id
    scope = m._scope("global")
    _stop_background(m)  # the interleaving below is the only commit
    original = scope.lexical.upsert

    def upsert_after_a_background_commit(docs):  # type: ignore[no-untyped-def]
        batcher = threading.Thread(target=scope.commit_indexes, kwargs={"force": True})
        batcher.start()
        batcher.join(timeout=30)
        original(docs)

    scope.lexical.upsert = upsert_after_a_background_commit  # type: ignore[method-assign]
    victim = m.store("the memory in the window mentions zebracorns").id
    _abandon(m)
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as reopened:
        assert [x.id for x in reopened.get([earlier, victim]).memories] == [earlier, victim]
        hits = reopened.search("zebracorns", mode="lexical").results
        assert [h.id for h in hits] == [victim]
        assert reopened.verify() == []


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
                  acked: dict[str, str], deleted: set[str], doubtful: set[str],
                  mode: tuple[str, ...] = ()) -> None:
    proc = subprocess.Popen([sys.executable, str(WRITER), str(data_dir), backend, str(seed),
                             *mode],
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
            for memory_id, text in acked.items():  # durable AND searchable
                token = text.split()[2]
                hits = manager.search(token, mode="lexical", k=3).results
                assert memory_id in [h.id for h in hits], f"{memory_id} ({token}) not found"
            assert manager.verify() == []
            probe = f"memory probe-{trial} keyprobe{trial} written after the crash"
            acked[manager.store(probe).id] = probe  # still accepts writes


def test_sigkill_during_group_commits_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Four sessions storing at once (single stores and batches share fsyncs): every store
    acknowledged before SIGKILL is there afterwards, text and search."""
    data_dir = tmp_path / "data"
    acked: dict[str, str] = {}
    for trial in range(3):
        _run_and_kill(data_dir, "file", seed=trial, min_acks=60, acked=acked, deleted=set(),
                      doubtful=set(), mode=("group",))
        with MemoryManager.open(data_dir, backend="file", project=data_dir,
                                embeddings=False) as manager:
            got = manager.get(list(acked))
            assert got.missing == ()
            assert {m.id: m.text for m in got.memories} == acked
            for memory_id, text in random.Random(trial).sample(sorted(acked.items()), 20):
                hits = manager.search(text.split()[2], mode="lexical", k=3).results
                assert memory_id in [h.id for h in hits]
            assert manager.verify() == []
