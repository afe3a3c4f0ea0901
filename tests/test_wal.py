"""Write-ahead log: framing round trips, torn tails, corruption, rotation."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memvid_mcp.core.errors import CorruptionError, StorageError
from memvid_mcp.manager import MemoryManager
from memvid_mcp.store import wal as wal_module
from memvid_mcp.store.wal import FILE_MAGIC, WriteAheadLog, decode_records, encode_record

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


@given(st.lists(payloads, max_size=8))
def test_records_round_trip(items: list[dict]) -> None:
    data = FILE_MAGIC + b"".join(encode_record(i + 1, p) for i, p in enumerate(items))
    records, stopped = decode_records(data, "x.log")
    assert stopped is None
    assert [r.payload for r in records] == items
    assert [r.seq for r in records] == list(range(1, len(items) + 1))


@given(st.lists(payloads, min_size=1, max_size=5), st.data())
def test_any_truncation_keeps_the_whole_records_before_it(items: list[dict], data) -> None:
    frames = [encode_record(i + 1, p) for i, p in enumerate(items)]
    blob = FILE_MAGIC + b"".join(frames)
    cut = data.draw(st.integers(len(FILE_MAGIC), len(blob)))
    records, stopped = decode_records(blob[:cut], "x.log")
    whole = 0
    pos = len(FILE_MAGIC)
    for frame in frames:
        if pos + len(frame) <= cut:
            whole += 1
        pos += len(frame)
    assert len(records) == whole
    assert (stopped is None) == (cut == len(blob) or cut in _boundaries(frames))


def _boundaries(frames: list[bytes]) -> set[int]:
    out, pos = {len(FILE_MAGIC)}, len(FILE_MAGIC)
    for frame in frames:
        pos += len(frame)
        out.add(pos)
    return out


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_garbage_never_raises_anything_but_corruption(blob: bytes) -> None:
    try:
        decode_records(FILE_MAGIC + blob, "x.log")
        decode_records(blob, "x.log")
    except CorruptionError:
        pass


@given(st.lists(payloads, min_size=2, max_size=5), st.data())
def test_flipped_byte_is_detected(items: list[dict], data) -> None:
    blob = bytearray(FILE_MAGIC + b"".join(encode_record(i + 1, p) for i, p in enumerate(items)))
    index = data.draw(st.integers(len(FILE_MAGIC), len(blob) - 1))
    blob[index] ^= data.draw(st.integers(1, 255))
    records, stopped = decode_records(bytes(blob), "x.log")
    assert stopped is not None
    assert len(records) < len(items)


def test_append_replay_and_reopen(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    assert wal.replay()[0] == []
    seqs = [wal.append({"n": i}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    wal.close()
    wal = WriteAheadLog(tmp_path / "wal")
    records, report = wal.replay()
    assert [r.payload["n"] for r in records] == list(range(5))
    assert report.torn_tail is None and report.problems == []
    assert wal.append({"n": 5}) == 6  # continues the sequence in a fresh file
    wal.close()
    assert len(wal.files()) == 2


def test_torn_tail_is_skipped_and_reported(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    wal.replay()
    for i in range(3):
        wal.append({"n": i})
    wal.close()
    (path,) = wal.files()
    path.write_bytes(path.read_bytes()[:-4])
    wal = WriteAheadLog(tmp_path / "wal")
    records, report = wal.replay()
    assert [r.payload["n"] for r in records] == [0, 1]
    assert report.torn_tail == str(path)
    assert wal.append({"n": "new"}) == 3


def test_damage_in_an_older_file_is_a_problem_not_a_stop(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    wal.replay()
    wal.append({"n": 0})
    wal.append({"n": 1})
    wal.rotate()
    wal.append({"n": 2})
    wal.close()
    first, _second = wal.files()
    data = bytearray(first.read_bytes())
    data[-2] ^= 0xFF
    first.write_bytes(bytes(data))
    records, report = WriteAheadLog(tmp_path / "wal").replay()
    assert [r.payload["n"] for r in records] == [0, 2]
    assert report.problems and report.problems[0][0] == str(first)


def test_drop_through_removes_only_covered_files(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "wal")
    wal.replay()
    wal.append({"n": 1})
    wal.append({"n": 2})
    wal.rotate()
    wal.append({"n": 3})
    wal.rotate()
    wal.append({"n": 4})
    assert wal.drop_through(2) == 1
    assert wal.drop_through(2) == 0
    assert wal.drop_through(10) == 1  # never the file being appended to
    records, _ = WriteAheadLog(tmp_path / "wal").replay()
    assert [r.payload["n"] for r in records] == [4]


def test_sequence_resumes_after_the_snapshot_when_every_file_was_dropped(tmp_path: Path) -> None:
    from memvid_mcp.core.config import Settings
    from memvid_mcp.core.validation import validate_store
    from memvid_mcp.store.scope_store import ScopeStore

    settings = Settings(data_dir=tmp_path, embeddings=False)
    scope = ScopeStore("global", tmp_path / "g", settings)
    first, _, _ = scope.store(validate_store(settings, "before the checkpoint"))
    scope.write_batch(everything=True)
    assert scope.checkpoint(force=True)
    scope.lexical.close()  # simulate a crash: no close(), just drop the locks
    scope._scope_lock.release()
    scope = ScopeStore("global", tmp_path / "g", settings)
    assert scope.wal.last_seq >= scope.snapshot_seq > 0
    second, _, _ = scope.store(validate_store(settings, "after the checkpoint"))
    scope.lexical.close()
    scope._scope_lock.release()
    scope = ScopeStore("global", tmp_path / "g", settings)
    assert scope.record(first.id) is not None and scope.record(second.id) is not None
    scope.close()


class _SlowFsync:
    """``os`` with an fsync that takes a while and is counted: concurrent writers pile up
    behind it, as they do behind a real disk's flush."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fsync(self, fd: int) -> None:
        self.calls += 1
        time.sleep(0.02)
        os.fsync(fd)


def test_concurrent_appends_share_fsyncs_and_all_replay(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    log = WriteAheadLog(tmp_path / "wal")
    log.append({"op": "first"})  # the file exists: what follows is record fsyncs only
    slow = _SlowFsync()
    monkeypatch.setattr(wal_module, "os", slow)
    start = threading.Barrier(8)
    seqs: list[int] = []

    def writer(n: int) -> None:
        start.wait()
        for i in range(5):
            seqs.append(log.append({"op": "put", "n": n, "i": i}))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert slow.calls < 40 / 2  # 40 acknowledged appends, far fewer fsyncs
    assert log.durable_seq == log.last_seq == 41
    log.close()
    monkeypatch.undo()
    records, report = WriteAheadLog(tmp_path / "wal").replay()
    assert [r.seq for r in records] == list(range(1, 42)) and sorted(seqs) == list(range(2, 42))
    assert report.problems == [] and report.torn_tail is None


def test_a_failed_fsync_fails_every_record_it_held_and_cuts_them_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = WriteAheadLog(tmp_path / "wal")
    kept = log.append({"op": "kept"})
    size = log.bytes_in_current_file
    first, second = log.write({"op": "a"}), log.write({"op": "b"})

    class Failing:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def fsync(fd: int) -> None:
            raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(wal_module, "os", Failing())
    with pytest.raises(StorageError):
        log.sync(second)
    monkeypatch.undo()
    with pytest.raises(StorageError):  # the other record of the failed group fails too
        log.sync(first)
    assert log.bytes_in_current_file == size
    later = log.append({"op": "later"})
    assert later > second  # a lost sequence number is never handed out again
    log.close()
    records, report = WriteAheadLog(tmp_path / "wal").replay()
    assert [(r.seq, r.payload["op"]) for r in records] == [(kept, "kept"), (later, "later")]
    assert report.problems == []


def test_store_many_costs_one_record_fsync_per_batch(
        data_dir: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False,
                            batch_max_seconds=3600) as m:
        m.store("the WAL file exists before the batch")
        slow = _SlowFsync()
        monkeypatch.setattr(wal_module, "os", slow)
        results = m.store_many([{"text": f"batch note {i} about herons"} for i in range(30)])
        assert slow.calls == 1  # one fsync acknowledges all 30 (was one per memory)
        monkeypatch.undo()
        assert len({r.id for r in results}) == 30
        log = m._scope("global").wal
        assert log.durable_seq == log.last_seq
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as again:
        assert again.get([r.id for r in results]).missing == ()
