"""Write-ahead log: framing round trips, torn tails, corruption, rotation."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from memvid_mcp.core.errors import CorruptionError
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
