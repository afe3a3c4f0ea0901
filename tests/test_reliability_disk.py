"""Disk full and read-only directories (issue 6): a clear error, no partial state.

Running as root makes ``chmod`` ineffective and mounting a read-only file system needs
privileges, so the faults are injected where the operating system would report them: ``open``,
``os.open``, ``os.replace`` ... raise ``EROFS`` for paths under the data directory, and
``fsync``/``write`` raise ``ENOSPC``. The chmod variant runs too when not root.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from memvid_mcp.core import fsutil
from memvid_mcp.core.errors import StorageError
from memvid_mcp.manager import MemoryManager
from memvid_mcp.storage import filestore
from memvid_mcp.storage.video import store as video_store
from memvid_mcp.store import wal

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _open(data_dir: Path, project: Path, backend: str = "file", **kw: Any) -> MemoryManager:
    return MemoryManager.open(data_dir, backend=backend, project=project, embeddings=False, **kw)


def _seed(data_dir: Path, project: Path, backend: str = "file") -> dict[str, str]:
    texts = {}
    with _open(data_dir, project, backend) as m:
        for i in range(3):
            text = f"written before the fault {i}"
            texts[m.store(text).id] = text
    return texts


def _check_intact(data_dir: Path, project: Path, texts: dict[str, str],
                  backend: str = "file") -> None:
    with _open(data_dir, project, backend) as m:
        got = m.get(list(texts))
        assert {x.id: x.text for x in got.memories} == texts
        assert m.stats()[0].memories == len(texts)  # nothing half-written came back
        assert m.verify() == []
        m.store("the store accepts writes once the fault clears")


@contextmanager
def read_only_fs(root: Path) -> Iterator[None]:
    """Every write under ``root`` fails with EROFS, as on a read-only mount."""
    real_open, real_os_open = builtins.open, os.open
    real = {name: getattr(os, name) for name in ("replace", "rename", "unlink", "mkdir",
                                                 "truncate", "rmdir")}

    def inside(path: Any) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(root.resolve())
        except (TypeError, ValueError):
            return False

    def refuse(path: Any) -> OSError:
        return OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int) and inside(file) and set(mode) & set("wax+"):
            raise refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & WRITE_FLAGS and inside(path):
            raise refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guard(name: str) -> Any:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if inside(path):
                if name == "mkdir" and os.path.exists(path):
                    raise FileExistsError(errno.EEXIST, "File exists", os.fsdecode(path))
                raise refuse(path)
            return real[name](path, *args, **kwargs)
        return call

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", fake_open)
        mp.setattr(io, "open", fake_open)
        mp.setattr(os, "open", fake_os_open)
        for name in real:
            mp.setattr(os, name, guard(name))
        yield


class _FailingOs:
    """The ``os`` module, except that ``fsync`` reports a full disk."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


# ------------------------------------------------------------------ read-only


def test_read_only_directory_gives_a_clear_error(data_dir: Path, outside_repo: Path) -> None:
    texts = _seed(data_dir, outside_repo)
    with read_only_fs(data_dir):
        with _open(data_dir, outside_repo) as m, pytest.raises(StorageError) as caught:
            m.store("refused: the disk is read-only")
        message = str(caught.value)
        assert "not writable" in message and str(data_dir) in message
        assert "\n" not in message
        assert message.endswith("use --read-only (MEMVID_READ_ONLY=1)")  # what still works
        with _open(data_dir, outside_repo, read_only=True) as reader:  # reads still work
            assert {x.id: x.text for x in reader.get(list(texts)).memories} == texts
    _check_intact(data_dir, outside_repo, texts)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_chmod_read_only_directory(data_dir: Path, outside_repo: Path) -> None:
    texts = _seed(data_dir, outside_repo)
    scope = data_dir / "global"
    modes = {p: p.stat().st_mode for p in [scope, *scope.rglob("*")] if p.is_dir()}
    for path in modes:
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with _open(data_dir, outside_repo) as m, pytest.raises(StorageError, match="writable"):
            m.store("refused")
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    _check_intact(data_dir, outside_repo, texts)


def _can_mount_tmpfs() -> bool:
    """Root on Linux with mount allowed (as here and in CI): a real read-only file system."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(tempfile.mkdtemp())
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                              capture_output=True, timeout=10)
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], capture_output=True, timeout=10)
        return True
    finally:
        probe.rmdir()


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and mount for a tmpfs")
@pytest.mark.parametrize("backend", ["file", "video"])
def test_really_read_only_mount(tmp_path: Path, outside_repo: Path, backend: str) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        data_dir = mount / "data"
        texts = _seed(data_dir, outside_repo, backend)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with _open(data_dir, outside_repo, backend) as m, pytest.raises(StorageError) as caught:
            m.store("refused: the file system is read-only")
        assert "not writable" in str(caught.value) and "\n" not in str(caught.value)
        with _open(data_dir, outside_repo, backend, read_only=True) as reader:
            assert {x.id: x.text for x in reader.get(list(texts)).memories} == texts
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        _check_intact(data_dir, outside_repo, texts, backend)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


# ------------------------------------------------------------------ disk full


@pytest.mark.parametrize("backend", ["file", "video"])
def test_full_disk_on_the_wal_append_acknowledges_nothing(
        data_dir: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch,
        backend: str) -> None:
    texts = _seed(data_dir, outside_repo, backend)
    with _open(data_dir, outside_repo, backend) as m:
        kept = m.store("stored while there was space")
        texts[kept.id] = "stored while there was space"
        log = m._scope("global").wal
        path = log.current_path
        assert path is not None
        size = path.stat().st_size
        monkeypatch.setattr(wal, "os", _FailingOs())
        with pytest.raises(StorageError, match="no space left on device; nothing was written"):
            m.store("this one does not fit")
        assert path.stat().st_size == size  # the half frame was cut back
        monkeypatch.undo()
        assert not m.search("does not fit", mode="lexical").results
        after = m.store("space is back")
        texts[after.id] = "space is back"
    _check_intact(data_dir, outside_repo, texts, backend)


def test_full_disk_in_the_file_backend_keeps_the_body_in_the_wal(
        data_dir: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _seed(data_dir, outside_repo)
    with _open(data_dir, outside_repo, batch_max_seconds=3600) as m:
        result = m.store("acknowledged, waiting for the disk")
        texts[result.id] = "acknowledged, waiting for the disk"
        monkeypatch.setattr(filestore, "os", _FailingOs())
        with pytest.raises(StorageError, match="no space left"):
            m.flush()
        bodies = m._scope("global").directory / "bodies"
        assert not [p for p in bodies.rglob("*") if p.name.startswith(".")]  # no temp files
        assert m._scope("global").pending_count == 1  # still durable in the WAL
        assert m.get(result.id).memories[0].text == texts[result.id]
        monkeypatch.undo()
        m.flush()
        assert m._scope("global").pending_count == 0
    _check_intact(data_dir, outside_repo, texts)


def test_full_disk_while_sealing_a_segment_publishes_nothing(
        data_dir: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _seed(data_dir, outside_repo, "video")
    manifest = data_dir / "global" / "manifest.mvm"
    segments = data_dir / "global" / "segments"
    before = (manifest.read_bytes(), sorted(p.name for p in segments.iterdir()))

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with _open(data_dir, outside_repo, "video", batch_max_seconds=3600) as m:
        result = m.store("acknowledged, waiting for a segment")
        texts[result.id] = "acknowledged, waiting for a segment"
        monkeypatch.setattr(video_store, "_write_file", full)
        with pytest.raises(StorageError, match="sealing failed"):
            m.flush()
        assert (manifest.read_bytes(), sorted(p.name for p in segments.iterdir())) == before
        assert m.get(result.id).memories[0].text == texts[result.id]
        monkeypatch.undo()
    _check_intact(data_dir, outside_repo, texts, "video")


def test_full_disk_during_the_closing_checkpoint_loses_nothing(
        data_dir: Path, outside_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _seed(data_dir, outside_repo)
    snapshot = data_dir / "global" / "meta" / "snapshot.jsonl.zst"
    old = snapshot.read_bytes()
    m = _open(data_dir, outside_repo)
    for i in range(3):
        text = f"only in the WAL when the disk fills {i}"
        texts[m.store(text).id] = text
    m.flush()
    monkeypatch.setattr(fsutil, "os", _FailingOs())
    with pytest.raises(StorageError, match="no space left"):
        m.close()
    monkeypatch.undo()
    assert snapshot.read_bytes() == old  # the atomic write left the old snapshot whole
    assert not [p for p in snapshot.parent.iterdir() if ".tmp-" in p.name]
    _check_intact(data_dir, outside_repo, texts)
