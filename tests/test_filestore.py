"""FileStore: the shared contract plus its own corruption checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from memvid_mcp.core.errors import CorruptionError
from memvid_mcp.storage.base import StorageAdapter
from memvid_mcp.storage.filestore import FileStore
from memvid_mcp.testing import StorageContract


class TestFileStoreContract(StorageContract):
    def make_store(self, root: Path) -> StorageAdapter:
        return FileStore(root)


def _only_file(root: Path) -> Path:
    (path,) = list((root / "bodies").glob("*/*.mvb"))
    return path


def test_flipped_byte_is_detected(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put_many([("01ABC", b"hello world " * 50)])
    path = _only_file(tmp_path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as info:
        store.get("01ABC")
    assert str(path) in str(info.value)
    (problem,) = store.verify()
    assert problem.path == str(path)
    assert problem.memory_ids == ("01ABC",)


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put_many([("01XYZ", b"some body text")])
    path = _only_file(tmp_path)
    path.write_bytes(path.read_bytes()[:6])
    store = FileStore(tmp_path)
    with pytest.raises(CorruptionError):
        store.get("01XYZ")
    assert len(store.verify()) == 1


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put_many([("01AAA", b"kept")])
    leftover = _only_file(tmp_path).parent / ".01BBB.mvb.tmp-123"
    leftover.write_bytes(b"half")
    store = FileStore(tmp_path)
    assert not leftover.exists()
    assert sorted(store.ids()) == ["01AAA"]
