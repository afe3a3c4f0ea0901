"""One writer process per scope: a second one waits, then fails clearly or reads only."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from memvid_mcp.core.errors import ReadOnlyError, StoreLockedError
from memvid_mcp.manager import MemoryManager

HOLDER = textwrap.dedent("""
    import sys
    from memvid_mcp.manager import MemoryManager
    m = MemoryManager.open(sys.argv[1], project=sys.argv[1], embeddings=False)
    m.store("written by the holder")
    m.flush()
    print("ready", flush=True)
    sys.stdin.read()   # hold the lock until the test closes our stdin
    m.close()
""")


@pytest.fixture
def holder(tmp_path: Path):
    data_dir = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(data_dir)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield data_dir
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_second_writer_waits_then_fails_clearly(holder: Path) -> None:
    with (
        MemoryManager.open(holder, project=holder, embeddings=False,
                           lock_timeout=0.3) as manager,
        pytest.raises(StoreLockedError, match="in use by another memvid-mcp process"),
    ):
        manager.store("should not be written")


def test_second_process_can_read_only(holder: Path) -> None:
    with MemoryManager.open(holder, project=holder, embeddings=False, lock_timeout=0.2,
                            read_only_fallback=True) as manager:
        hits = manager.search("holder", mode="lexical").results
        assert [h.snippet for h in hits] == ["written by the holder"]
        with pytest.raises(ReadOnlyError):
            manager.store("refused")


def test_cli_reports_the_lock_in_one_line(holder: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "memvid_mcp", "--data-dir", str(holder), "--project",
         str(holder), "store", "blocked"],
        capture_output=True, text=True, timeout=60,
        env={"MEMVID_LOCK_TIMEOUT": "0.3", "MEMVID_EMBEDDINGS": "0", "PATH": "/usr/bin"},
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "in use by another" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(data_dir)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait(timeout=30)
    with MemoryManager.open(data_dir, project=data_dir, embeddings=False,
                            lock_timeout=2) as manager:
        assert manager.store("the lock died with its holder").scope == "global"


WRITER_THEN_WAIT = textwrap.dedent("""
    import sys
    from memvid_mcp.manager import MemoryManager
    m = MemoryManager.open(sys.argv[1], project=sys.argv[1], embeddings=False)
    m.store("first from the holder")
    m.flush()
    print("ready", flush=True)
    sys.stdin.readline()
    m.store("second from the holder")
    m.flush()
    print("wrote", flush=True)
    sys.stdin.readline()
    m.close()
""")


def test_read_only_fallback_follows_the_writer_and_takes_over(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", WRITER_THEN_WAIT, str(data_dir)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    with MemoryManager.open(data_dir, project=data_dir, embeddings=False, lock_timeout=0.2,
                            read_only_fallback=True) as manager:
        assert len(manager.list().memories) == 1
        with pytest.raises(ReadOnlyError):
            manager.store("refused while the holder lives")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "wrote"
        deadline = time.monotonic() + 10
        while len(manager.list().memories) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(manager.list().memories) == 2  # the read-only view followed the writer
        proc.stdin.write("exit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
        taken = manager.store("written after the holder left")
        assert taken.scope == "global"
        assert len(manager.list().memories) == 3
