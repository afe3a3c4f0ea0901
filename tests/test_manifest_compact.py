"""The compact binary manifest (ADR 0019): round trips, size, damage, and the crash-safe
conversion of a 0.1.0 ``manifest.jsonl`` on open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ulid import ULID

from memvid_mcp.manager import MemoryManager
from memvid_mcp.storage.video import VideoStore, manifest

FIXTURE = Path(__file__).with_name("fixtures") / "scopes-0.1.0.tar.gz"
SRC = str(Path(__file__).resolve().parents[1] / "src")

_ulids = st.binary(min_size=16, max_size=16).map(lambda b: str(ULID.from_bytes(b)))
_ids = st.one_of(_ulids, st.text(min_size=1, max_size=12))
_n = st.integers(0, 10**9)
_hex32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
_seg = st.fixed_dictionaries({
    "op": st.just("seg"), "seg": _ulids, "frames": _n, "bytes": _n, "mvi_bytes": _n,
    "bodies": _n, "raw": _n, "profile": st.sampled_from(["archival", "portable"]),
    "codec": st.sampled_from(["ffv1", "h264"]), "px": st.integers(1, 8),
    "ecc": st.sampled_from("LMQH"), "ts": st.sampled_from(["", "2026-12-01T10:00:00.000Z"]),
}, optional={"mp4_sha256": _hex32})
_put = st.builds(
    lambda body_id, sha, seg, frame, offset, length, frames: {
        "op": "put", "body_id": body_id, "sha256": sha, "len": length, "seg": seg,
        "frame": frame, "offset": offset, "length": length, "frames": frames,
        "qr_version": 40, "ecc": "L", "ts": "2026-12-01T10:00:00.000Z"},
    _ids, _hex32, _ulids, _n, _n, _n, st.integers(1, 50))
_del = st.builds(lambda ids, ts: {"op": "del", "ids": ids, "ts": ts},
                 st.lists(_ids, max_size=5), st.sampled_from(["", "2026-12-01T10:00:00.000Z"]))
_drop = st.builds(lambda seg: {"op": "drop", "seg": seg}, _ulids)


def _expected(record: dict[str, object]) -> dict[str, object]:
    """What reading a record back gives: a put keeps its location and 8 bytes of its hash."""
    out = dict(record)
    if out["op"] == "seg" and "mp4_sha256" in out:
        out["mvi_sha256"] = out["mp4_sha256"]
    if out["op"] == "put":
        for key in ("qr_version", "ecc", "ts"):
            out.pop(key)
        out["sha256"] = str(out["sha256"])[: 2 * manifest.HASH_BYTES]
    out["v"] = 2 if out["op"] == "seg" and "mp4_sha256" in out else 1
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_seg, _put, _del, _drop), max_size=40))
def test_compact_records_round_trip(records: list[dict[str, object]]) -> None:
    for record in records:
        if record["op"] == "seg" and "mp4_sha256" in record:
            record["mvi_sha256"] = record["mp4_sha256"]
    parsed = manifest.parse(manifest.HEADER + manifest.encode_records(records))
    assert parsed.problems == [] and not parsed.torn_tail
    assert parsed.records == [_expected(r) for r in records]


def test_a_record_the_binary_types_cannot_hold_is_kept_exactly() -> None:
    odd = [{"op": "put", "body_id": "x", "sha256": "ab" * 32, "len": 3, "seg": "not-a-ulid",
            "frame": 0, "offset": 0, "length": 3, "frames": 1},
           {"op": "purge", "ids": ["a"], "why": "a field a later version adds"},
           {"op": "seg", "seg": str(ULID()), "frames": 1, "bytes": 1, "mvi_bytes": 1,
            "bodies": 1, "raw": 1, "profile": "archival", "codec": "ffv1", "px": 1, "ecc": "L",
            "ts": "", "cadence": "age"}]
    parsed = manifest.parse(manifest.HEADER + manifest.encode_records(odd))
    assert parsed.problems == []
    assert [{k: v for k, v in r.items() if k != "v"} for r in parsed.records] == odd


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise(data: bytes) -> None:
    for blob in (data, manifest.HEADER + data, b"P" + data):
        parsed = manifest.parse_compact(blob)
        assert parsed.good_size <= len(blob)


def _puts(n: int, seg: str | None = None) -> list[dict[str, object]]:
    seg = seg or str(ULID())
    return [{"op": "put", "body_id": str(ULID()), "sha256": f"{i:064x}", "len": 700,
             "seg": seg, "frame": i // 10, "offset": (i % 10) * 700, "length": 700,
             "frames": 1} for i in range(n)]


def test_a_damaged_record_loses_only_its_own_group() -> None:
    records = _puts(3 * manifest.PUT_GROUP)
    data = bytearray(manifest.HEADER + manifest.encode_records(records))
    data[len(data) // 2] ^= 0xFF  # inside the middle group
    parsed = manifest.parse_compact(bytes(data))
    ids = {r["body_id"] for r in parsed.records}
    groups = [{r["body_id"] for r in records[i:i + manifest.PUT_GROUP]}
              for i in range(0, len(records), manifest.PUT_GROUP)]
    assert groups[0] <= ids and groups[2] <= ids and not groups[1] & ids
    assert len(parsed.problems) == 1 and "damaged" in parsed.problems[0]
    assert not parsed.torn_tail and parsed.good_size == len(data)


def test_a_torn_tail_is_detected_and_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / manifest.FILE_NAME
    first, second = _puts(3), _puts(2)
    whole = manifest.HEADER + manifest.encode_records(first)
    path.write_bytes(whole + manifest.encode_records(second)[:-7])
    m = manifest.Manifest(path)
    parsed = m.load()
    assert parsed.torn_tail and len(parsed.records) == 3 and parsed.good_size == len(whole)
    m.append(second)
    again = manifest.Manifest(path).load()
    assert again.problems == [] and [r["body_id"] for r in again.records] == [
        r["body_id"] for r in first + second]


def test_bytes_per_memory_and_against_json_lines() -> None:
    """10,000 memories in segments of 93 bodies (64 KiB of 700-byte notes), 10% deleted."""
    records: list[dict[str, object]] = []
    for _ in range(108):
        seg = str(ULID())
        records.append({"op": "seg", "seg": seg, "frames": 10, "bytes": 40000,
                        "mvi_bytes": 400, "bodies": 93, "raw": 65100, "profile": "archival",
                        "codec": "ffv1", "px": 1, "ecc": "L", "ts": "2026-12-01T10:00:00.000Z",
                        "mp4_sha256": "ab" * 32, "mvi_sha256": "cd" * 32})
        records += _puts(93, seg)
    puts = [r for r in records if r["op"] == "put"][:10_000]
    records.append({"op": "del", "ids": [r["body_id"] for r in puts[::10]], "ts": ""})
    compact = len(manifest.HEADER + manifest.encode_records(records))
    legacy = len(b"".join(manifest.encode_line(r) for r in records))
    assert compact / 10_044 <= 40, compact / 10_044
    assert legacy / compact > 7


# ------------------------------------------------------------------ 0.1.0 manifests


def _to_legacy(root: Path) -> bytes:
    """Rewrite a store's manifest as 0.1.0 JSON lines (keeping v2 seg lines' checksums)."""
    compact = root / manifest.FILE_NAME
    records = manifest.parse(compact.read_bytes()).records
    data = b"".join(manifest.encode_line(r) for r in records)
    (root / manifest.LEGACY_NAME).write_bytes(data)
    compact.unlink()
    return data


def _bodies(n: int) -> dict[str, bytes]:
    return {str(ULID()): f"body {i}: ".encode() + os.urandom(200).hex().encode()
            for i in range(n)}


def test_a_legacy_manifest_is_converted_by_the_writer_and_keeps_v2_checksums(
        tmp_path: Path) -> None:
    bodies = _bodies(40)
    store = VideoStore(tmp_path)
    items = list(bodies.items())
    store.put_many(items[:20])
    store.put_many(items[20:])
    store.delete_many([items[0][0]])
    store.close()
    legacy = _to_legacy(tmp_path)
    assert legacy.count(b'"mp4_sha256"') == 2
    reader = VideoStore(tmp_path, read_only=True)  # reads it, converts nothing
    assert {k: reader.get(k) for k in list(bodies)[1:]} == dict(items[1:])
    assert not (tmp_path / manifest.FILE_NAME).exists()
    writer = VideoStore(tmp_path)
    assert not (tmp_path / manifest.LEGACY_NAME).exists()
    compact = (tmp_path / manifest.FILE_NAME).read_bytes()
    assert len(compact) * 5 < len(legacy)
    assert {k: writer.get(k) for k in list(bodies)[1:]} == dict(items[1:])
    assert not writer.contains(items[0][0])
    assert writer.verify() == []
    seg_records = [r for r in manifest.parse(compact).records if r["op"] == "seg"]
    assert all(len(r["mp4_sha256"]) == 64 for r in seg_records) and len(seg_records) == 2
    mp4 = sorted((tmp_path / "segments").glob("seg-*.mp4"))[0]
    data = bytearray(mp4.read_bytes())
    data[5] ^= 0x01  # a container byte: only the whole-file checksum can see it
    mp4.write_bytes(bytes(data))
    problems = VideoStore(tmp_path).verify()
    assert [p.path for p in problems] == [str(mp4)] and "SHA-256" in problems[0].message


def test_a_damaged_legacy_manifest_is_kept_in_the_quarantine(tmp_path: Path) -> None:
    store = VideoStore(tmp_path)
    store.put_many(list(_bodies(3).items()))
    store.close()
    legacy = bytearray(_to_legacy(tmp_path))
    legacy[legacy.rindex(b'"body_id"') + 14] ^= 0x01  # the last put line's checksum fails
    (tmp_path / manifest.LEGACY_NAME).write_bytes(bytes(legacy))
    VideoStore(tmp_path).close()
    (kept,) = (tmp_path / "quarantine").glob(f"*/{manifest.LEGACY_NAME}")
    assert kept.read_bytes() == bytes(legacy)


_KILLER = """
import os, signal, sys
from pathlib import Path
from memvid_mcp.storage.video import manifest, VideoStore
from memvid_mcp.core import fsutil
point = sys.argv[2]
real_replace, real_unlink = os.replace, Path.unlink
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def replace(src, dst):
    if point == "before-rename":
        die()
    real_replace(src, dst)
    if point == "after-rename":
        die()
def unlink(self, missing_ok=False):
    real_unlink(self, missing_ok=missing_ok)
    if point == "after-unlink" and self.name == manifest.LEGACY_NAME:
        die()
os.replace = replace
Path.unlink = unlink
if point == "mid-write":
    def fsync(fd):
        die()
    os.fsync = fsync
VideoStore(Path(sys.argv[1]))
"""


@pytest.mark.parametrize("point", ["mid-write", "before-rename", "after-rename",
                                   "after-unlink"])
def test_sigkill_during_the_conversion_loses_nothing(tmp_path: Path, point: str) -> None:
    bodies = _bodies(30)
    store = VideoStore(tmp_path)
    store.put_many(list(bodies.items()))
    store.close()
    _to_legacy(tmp_path)
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(tmp_path), point], env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    legacy_left = (tmp_path / manifest.LEGACY_NAME).exists()
    assert legacy_left == (point in ("mid-write", "before-rename", "after-rename"))
    reopened = VideoStore(tmp_path)
    assert {k: reopened.get(k) for k in bodies} == bodies
    assert reopened.verify() == []
    assert not (tmp_path / manifest.LEGACY_NAME).exists()
    assert (tmp_path / manifest.FILE_NAME).exists()


def test_the_010_video_fixture_opens_converted_and_verifies_clean(
        tmp_path: Path, outside_repo: Path) -> None:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path / "fixtures", filter="data")
    data = tmp_path / "fixtures" / "video"
    scope = data / "global"
    legacy_size = (scope / manifest.LEGACY_NAME).stat().st_size
    with MemoryManager.open(data, project=outside_repo, embeddings=False) as m:
        listed = m.list().memories
        assert len(listed) == 4
        assert len(m.get([r.id for r in listed]).memories) == 4
        assert m.verify() == []
    assert not (scope / manifest.LEGACY_NAME).exists()
    assert (scope / manifest.FILE_NAME).stat().st_size * 3 < legacy_size
