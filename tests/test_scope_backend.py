"""A scope's backend is the scope's own (scope.json), and repair never drops a text that still
exists somewhere in the scope (issue 9, item 3; ADR 0012)."""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path

import pytest

from memvid_mcp.core.config import Settings
from memvid_mcp.core.validation import validate_store
from memvid_mcp.manager import MemoryManager
from memvid_mcp.store.scope_store import ScopeStore

FIXTURE = Path(__file__).with_name("fixtures") / "scopes-0.1.0.tar.gz"


def _open(data_dir: Path, project: Path, backend: str | None = None) -> MemoryManager:
    return MemoryManager.open(data_dir, project=project, embeddings=False, backend=backend)


def _unpack(tmp_path: Path, name: str) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path / "fixtures", filter="data")
    return tmp_path / "fixtures" / name


def _scope_json(scope: Path) -> dict:
    return json.loads((scope / "scope.json").read_text())


def _wal_text(scope: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (scope / "wal").glob("*.log"))


def _trim_wal(m: MemoryManager) -> None:
    """Two checkpoints: the WAL no longer holds the texts, only the backend does."""
    m.flush()
    for _ in range(2):
        m._scope("global").checkpoint(force=True)


def test_a_file_scope_opened_with_the_video_setting_stays_a_file_scope(
        data_dir: Path, outside_repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    with _open(data_dir, outside_repo, "file") as m:
        ids = [m.store(f"stored through the file backend, note {i}").id for i in range(3)]
        _trim_wal(m)
    caplog.clear()
    with caplog.at_level(logging.INFO), _open(data_dir, outside_repo, "video") as m:
        got = m.get(ids)
        assert len(got.memories) == 3 and got.damaged == () and got.missing == ()
        assert m.verify() == []
        assert len(m.search("file backend note", mode="lexical").results) == 3
        assert m.stats()[0].backend == "file"
        assert [s["backend"] for s in m.info()["scopes"] if s["name"] == "global"] == ["file"]
        assert m.repair()["global"]["memories_unreadable"] == []
        assert len(m.get(ids).memories) == 3
    notices = [r for r in caplog.records if "applies to new scopes" in r.getMessage()]
    assert len(notices) == 1 and notices[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not (data_dir / "global" / "segments").exists()
    assert _scope_json(data_dir / "global")["backend"] == "file"


def test_a_new_scope_records_the_configured_backend(data_dir: Path, outside_repo: Path) -> None:
    with _open(data_dir, outside_repo, "video") as m:
        m.store("a new scope takes the configured backend")
    raw = _scope_json(data_dir / "global")
    assert (raw["backend"], raw["identity"], raw["format"], raw["kind"]) == (
        "video", 2, 1, "memvid-scope")
    assert isinstance(raw["crc32"], int) and raw["created_at"]


@pytest.mark.parametrize("name, backend", [("file", "file"), ("video", "video")])
def test_a_010_scope_without_scope_json_keeps_its_backend(tmp_path: Path, outside_repo: Path,
                                                           name: str, backend: str) -> None:
    data = _unpack(tmp_path, name)
    other = "file" if backend == "video" else "video"
    with _open(data, outside_repo, other) as m:
        listed = m.list().memories
        assert len(listed) == 4
        assert len(m.get([r.id for r in listed]).memories) == 4
        assert m.verify() == []
        assert m.stats()[0].backend == backend
    assert _scope_json(data / "global")["backend"] == backend


@pytest.mark.parametrize("setting", ["file", "video"])
def test_a_mixed_010_scope_loses_nothing_and_repair_drops_nothing(
        tmp_path: Path, outside_repo: Path, setting: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """0.1.0 let a file client and a video client write one scope: each saw the other's
    memories as damaged, and ``--backend video repair`` removed them."""
    data = _unpack(tmp_path, "mixed")
    with _open(data, outside_repo, setting) as m:
        ids = [r.id for r in m.list().memories]
        assert len(ids) == 6
        got = m.get(ids)
        assert len(got.memories) == 6 and got.damaged == ()
        assert len(m.search("client set to the video backend", mode="lexical").results) >= 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        report = m.repair()["global"]
        assert report["memories_unreadable"] == []
        assert len(m.get(ids).memories) == 6
        assert m.verify() == []
    with _open(data, outside_repo, setting) as m:
        assert len(m.get(ids).memories) == 6


def test_repair_restores_a_damaged_body_whose_text_is_still_in_the_wal(
        data_dir: Path, outside_repo: Path) -> None:
    """A crash between storing a body and releasing its WAL text (ADR 0018) leaves the text
    in the log: repair finds it there."""
    settings = Settings.from_env(data_dir=data_dir, embeddings=False)
    store = ScopeStore("global", data_dir / "global", settings)
    victim = store.store(validate_store(settings, "the WAL still holds this text"))[0].id
    body_id = store.record(victim).body_id  # type: ignore[union-attr]
    store.write_batch(everything=True)  # stored; no background tick released the text yet
    as_crashed = {p.name: p.read_bytes() for p in (data_dir / "global" / "wal").glob("*.log")}
    store.close()
    assert b"the WAL still holds this text" not in _wal_text(data_dir / "global")
    for name, data in as_crashed.items():  # the log as the crash would have left it
        (data_dir / "global" / "wal" / name).write_bytes(data)
    assert b"the WAL still holds this text" in _wal_text(data_dir / "global")
    (target,) = (data_dir / "global" / "bodies").glob(f"*/{body_id}.mvb")
    target.write_bytes(target.read_bytes()[:-3] + b"\x00\x00\x00")
    with _open(data_dir, outside_repo) as m:
        assert m.get(victim).damaged
        report = m.repair()["global"]
        assert (report["memories_unreadable"], report["memories_restored"]) == ([], [victim])
        (memory,) = m.get(victim).memories
        assert memory.text == "the WAL still holds this text"
        assert m.verify() == []
    with _open(data_dir, outside_repo) as m:
        assert m.get(victim).memories[0].text == "the WAL still holds this text"


def test_a_repair_that_quarantines_writes_the_text_into_the_quarantine(
        data_dir: Path, outside_repo: Path) -> None:
    text = "this body will be damaged, and its text goes to the quarantine"
    with _open(data_dir, outside_repo) as m:
        victim = m.store(text).id
        body_id = m._scope("global").record(victim).body_id
        _trim_wal(m)
    assert text.encode() not in _wal_text(data_dir / "global")
    (target,) = (data_dir / "global" / "bodies").glob(f"*/{body_id}.mvb")
    damaged = bytearray(target.read_bytes())
    damaged[damaged.index(b"damaged")] ^= 0x01  # one letter of the text itself
    target.write_bytes(bytes(damaged))
    with _open(data_dir, outside_repo) as m:
        report = m.repair()["global"]
        assert report["memories_unreadable"] == [victim]
        (line,) = (Path(report["quarantine"]) / "unreadable.jsonl").read_text().splitlines()
        saved = json.loads(line)
        assert saved["id"] == victim and saved["text_matches_sha256"] is False
        assert saved["text"] == text.replace("damaged", "eamaged", 1)
