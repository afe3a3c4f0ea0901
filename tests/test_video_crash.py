"""SIGKILL a writer mid-seal and mid-compaction: nothing acknowledged is ever lost."""

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
from memvid_mcp.storage.video import VideoStore

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")

CHILD = r"""
import random, sys
from pathlib import Path
from memvid_mcp.storage.video import VideoStore

def body(b, i):
    rng = random.Random(b * 1000 + i)
    return " ".join(rng.choice(["alpha", "beta", "gamma", "Δelta", "{x: 1}"])
                    for _ in range(rng.randint(5, 300))).encode()

root, mode = Path(sys.argv[1]), sys.argv[2]
store = VideoStore(root)
if mode == "seal":
    start = int(sys.argv[3])
    for b in range(start, start + 400):
        store.put_many([(f"{b}-{i}", body(b, i)) for i in range(25)])
        print(f"ack {b}", flush=True)
else:
    for b in range(12):
        store.put_many([(f"{b}-{i}", body(b, i)) for i in range(40)])
    doomed = [f"{b}-{i}" for b in range(12) for i in range(40) if i % 3]
    store.delete_many(doomed)
    print("compacting", flush=True)
    store.compact()
    print("compacted", flush=True)
"""


MANAGER_CHILD = r"""
import random, sys
from pathlib import Path
from memvid_mcp.manager import MemoryManager

data, seed = Path(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
m = MemoryManager.open(data, backend="video", project=data, embeddings=False,
                       batch_max_memories=24, batch_max_seconds=0.05, lock_timeout=30)
for n in range(100_000):
    text = f"video {seed}-{n} vkey{seed}x{n}" + " alpha beta Δelta" * rng.randrange(1, 80)
    memory_id = m.store(text).id
    print(f"S {memory_id} {text}", flush=True)
"""


def body(b: int, i: int) -> bytes:
    rng = random.Random(b * 1000 + i)
    words = ["alpha", "beta", "gamma", "Δelta", "{x: 1}"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(5, 300))).encode()


def _damage(store: VideoStore) -> list[str]:
    """verify() findings other than a torn manifest tail (an unacknowledged append)."""
    return [p.message for p in store.verify() if "torn" not in p.message]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], wanted: str, deadline: float) -> list[str]:
    lines: list[str] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith(wanted):
            break
    return lines


def _rest_after_kill(proc: subprocess.Popen[str]) -> str:
    """What a killed child printed after the lines already read, through the same text
    stream: ``communicate(timeout=...)`` reads the pipe's descriptor and drops what
    ``readline`` had already buffered (a lost "d <id>" line made the purge test expect a
    memory it had seen deleted)."""
    proc.wait(timeout=30)
    assert proc.stdout is not None
    return proc.stdout.read()


def test_sigkill_during_sealing_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(1234)
    acked: list[int] = []
    start = 0
    for _round in range(3):
        proc = _spawn(str(tmp_path), "seal", str(start))
        try:
            first = _read_until(proc, "ack", time.monotonic() + 60)
            assert first, "child never acknowledged a batch"
            time.sleep(rng.uniform(0.0, 0.6))  # a random instant, usually mid-seal
            proc.send_signal(signal.SIGKILL)
            rest = _rest_after_kill(proc).splitlines()
        finally:
            if proc.poll() is None:
                proc.kill()
        batches = [int(x.split()[1]) for x in first + rest if x.startswith("ack")]
        acked += batches
        start = max(batches) + 1 if batches else start
        store = VideoStore(tmp_path)
        for b in acked:
            for i in range(25):
                assert store.get(f"{b}-{i}") == body(b, i)
        assert _damage(store) == []
        store.close()
    assert len(acked) >= 3


def test_sigkill_during_compaction_loses_nothing(tmp_path: Path) -> None:
    live = {f"{b}-{i}": body(b, i) for b in range(12) for i in range(0, 40, 3)}
    for round_, delay in enumerate((0.05, 0.25, 0.6)):
        root = tmp_path / f"r{round_}"
        proc = _spawn(str(root), "compact")
        try:
            lines = _read_until(proc, "compacting", time.monotonic() + 120)
            assert lines and lines[-1] == "compacting"
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        store = VideoStore(root)
        assert sorted(store.ids()) == sorted(live)
        for body_id, data in live.items():
            assert store.get(body_id) == data
        assert _damage(store) == []
        store.compact()  # finishes the job and removes whatever the crash orphaned
        names = {p.name.split(".")[0] for p in (root / "segments").iterdir()}
        assert len(names) == store.stats().details["segments"]
        store.close()
        reopened = VideoStore(root)
        assert all(reopened.get(k) == v for k, v in live.items())


def test_sigkill_of_a_sealing_manager_leaves_every_memory_got_and_found(tmp_path: Path) -> None:
    """Through the manager: killed while the batcher seals segments, every acknowledged memory
    is returned by get AND found by a lexical search for a word only it contains."""
    data = tmp_path / "data"
    acked: dict[str, str] = {}
    rng = random.Random(99)
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", MANAGER_CHILD, str(data), str(round_)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            first = _read_until(proc, "S", time.monotonic() + 60)
            assert first, "child never acknowledged a store"
            time.sleep(rng.uniform(0.2, 1.0))  # several seals are in progress by now
            proc.send_signal(signal.SIGKILL)
            rest = _rest_after_kill(proc).split("\n")
        finally:
            if proc.poll() is None:
                proc.kill()
        for line in first + rest[:-1]:  # the last piece may be cut by the kill
            if line.startswith("S "):
                _, memory_id, text = line.split(" ", 2)
                acked[memory_id] = text
        with MemoryManager.open(data, backend="video", project=data,
                                embeddings=False) as manager:
            got = manager.get(list(acked))
            assert got.missing == () and {x.id: x.text for x in got.memories} == acked
            for memory_id, text in acked.items():
                hits = manager.search(text.split()[2], mode="lexical", k=3).results
                assert memory_id in [h.id for h in hits], text.split()[2]
            assert [p for p in manager.verify() if "torn" not in p.message] == []
    assert len(acked) >= 30


COMPACTING_CHILD = r"""
import random, sys, threading
from pathlib import Path
import memvid_mcp.manager as manager_module
from memvid_mcp.manager import MemoryManager
from memvid_mcp.storage.video import VideoStore

manager_module.COMPACT_INTERVAL_SECONDS = 0.05  # the compactor looks for work all the time
real_rewrite = VideoStore._rewrite

out = threading.Lock()

def say(line):  # whole lines only: the compactor thread prints too
    with out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

def announced(self, victims, progress):
    say("C")  # a background rewrite starts now
    return real_rewrite(self, victims, progress)

VideoStore._rewrite = announced
data, seed, purge = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "purge"
rng = random.Random(seed)
m = MemoryManager.open(data, backend="video", project=data, embeddings=False,
                       seal_min_bytes=2048, batch_max_memories=100_000, lock_timeout=30)
stored = []
for n in range(100_000):
    if purge and stored and rng.random() < 0.25:
        victim = stored.pop(rng.randrange(len(stored)))
        say(f"d {victim}")
        m.delete(victim, purge=True)
        say(f"D {victim}")
        continue
    text = f"crash {seed}-{n} ckey{seed}x{n} " + "lorem ipsum dolor " * rng.randrange(1, 60)
    memory_id = m.store(text).id
    stored.append(memory_id)
    say(f"S {memory_id} {text}")
"""


def _kill_after(data: Path, seed: int, mode: str, wanted: str, count: int,
                rng: random.Random) -> list[str]:
    """Run the child until it printed ``wanted`` ``count`` times, SIGKILL it a random
    instant later, and return every complete line it printed."""
    proc = subprocess.Popen([sys.executable, "-c", COMPACTING_CHILD, str(data), str(seed), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        seen = 0
        deadline = time.monotonic() + 120
        while seen < count and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            seen += line.startswith(wanted)
        assert seen >= count, f"the child never printed {wanted!r} {count} times"
        time.sleep(rng.uniform(0.0, 0.3))  # usually in the middle of the next one
        proc.send_signal(signal.SIGKILL)
        rest = _rest_after_kill(proc).split("\n")
    finally:
        if proc.poll() is None:
            proc.kill()
    return lines + rest[:-1]  # the last piece may be cut by the kill


def _check_acknowledged(data: Path, acked: dict[str, str], gone: dict[str, str]) -> None:
    from format_reader import every_file_text

    with MemoryManager.open(data, backend="video", project=data, embeddings=False,
                            auto_compact=False) as manager:
        got = manager.get(list(acked))
        assert got.missing == () and {x.id: x.text for x in got.memories} == acked
        for memory_id, text in list(acked.items())[-10:]:
            hits = manager.search(text.split()[2], mode="lexical", k=3).results
            assert memory_id in [h.id for h in hits], text.split()[2]
        assert not gone or manager.get(list(gone)).memories == ()
        assert [p for p in manager.verify() if "torn" not in p.message] == []
    files = every_file_text(data)
    for text in gone.values():  # a purge that returned erased its text from every file
        assert not [p for p, content in files.items() if text.encode() in content], text


def test_sigkill_during_background_compaction_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random(7)
    acked: dict[str, str] = {}
    for round_ in range(3):
        for line in _kill_after(data, round_, "store", "C", 2 + round_, rng):
            if line.startswith("S "):
                _, memory_id, text = line.split(" ", 2)
                acked[memory_id] = text
        _check_acknowledged(data, acked, {})
    assert len(acked) >= 20


def test_sigkill_during_purge_loses_nothing_and_resurrects_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random(11)
    acked: dict[str, str] = {}
    texts: dict[str, str] = {}
    gone: dict[str, str] = {}
    for round_ in range(3):
        for line in _kill_after(data, round_ + 10, "purge", "D", 3 + round_, rng):
            kind, _, rest = line.partition(" ")
            if kind == "S":
                memory_id, text = rest.split(" ", 1)
                acked[memory_id] = texts[memory_id] = text
            elif kind == "d":  # a kill now may or may not delete it
                acked.pop(rest, None)
            elif kind == "D":
                gone[rest] = texts[rest]
        _check_acknowledged(data, acked, gone)
    assert len(gone) >= 5
