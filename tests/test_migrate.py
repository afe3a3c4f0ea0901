"""``memvid-mcp migrate --to video|file``: a scope changes backend in place, loses nothing
when killed at any point, keeps serving writes meanwhile, and runs in the service when one
runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memvid_mcp.client.stdio_peer import StdioPeer
from memvid_mcp.client.stdio_peer import structured as _structured
from memvid_mcp.manager import MemoryManager

pytestmark = pytest.mark.timeout(300)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _open(data: Path, project: Path, backend: str = "file") -> MemoryManager:
    return MemoryManager.open(data, project=project, embeddings=False, backend=backend)


def _seed(data: Path, project: Path, backend: str = "file", n: int = 40) -> dict[str, str]:
    texts = {}
    with _open(data, project, backend) as m:
        for i in range(n):
            text = f"note {i} uniqword{i} about the deploy window " + "filler text " * (i % 7)
            texts[m.store(text).id] = text
        m.flush()
        for memory_id in list(texts)[::10]:
            m.delete(memory_id)
            del texts[memory_id]
    return texts


def _check(data: Path, project: Path, texts: dict[str, str], backend: str) -> None:
    with _open(data, project, "file" if backend == "video" else "video") as m:
        got = m.get(list(texts))
        assert {x.id: x.text for x in got.memories} == texts
        assert got.damaged == () and got.missing == ()
        assert m.verify() == []
        some = next(iter(texts))
        word = texts[some].split()[2]
        assert [r.id for r in m.search(word, mode="lexical").results][:1] == [some]
        assert m.stats()[0].backend == backend
    scope = json.loads((data / "global" / "scope.json").read_text())
    assert scope["backend"] == backend


def _backend_files(scope: Path, backend: str) -> list[Path]:
    names = ["bodies"] if backend == "file" else ["segments", "manifest.mvm", "manifest.jsonl"]
    return [scope / n for n in names if (scope / n).exists()]


def test_file_to_video_and_back_loses_nothing(data_dir: Path, outside_repo: Path) -> None:
    texts = _seed(data_dir, outside_repo)
    scope = data_dir / "global"
    with _open(data_dir, outside_repo) as m:
        seen: list[tuple[int, int]] = []
        report = m.migrate("video", progress=lambda d, t: seen.append((d, t)))
        assert (report["source"], report["target"], report["memories"]) == ("file", "video",
                                                                          len(texts))
        assert report["copied"] == len(texts) and seen[-1] == (len(texts), len(texts))
        assert m.get(list(texts)).memories[0].text == texts[next(iter(texts))]
        late = m.store("stored after the migration, sealed in a segment").id
        texts[late] = "stored after the migration, sealed in a segment"
    assert _backend_files(scope, "file") == [] and (scope / "manifest.mvm").exists()
    _check(data_dir, outside_repo, texts, "video")
    with _open(data_dir, outside_repo) as m:
        again = m.migrate("video")
        assert (again["copied"], again["removed_files"]) == (0, 0)
        back = m.migrate("file")
        assert back["memories"] == len(texts)
    assert _backend_files(scope, "video") == []
    _check(data_dir, outside_repo, texts, "file")


def test_writes_and_deletes_during_the_copy_are_kept(data_dir: Path,
                                                     outside_repo: Path) -> None:
    texts = _seed(data_dir, outside_repo)
    with _open(data_dir, outside_repo) as m:
        victim = next(iter(texts))
        events: dict[str, str] = {}

        def meanwhile(done: int, total: int) -> None:
            if not events:  # between the bulk copy and the swap: a store and a delete
                events["new"] = m.store("written while the scope migrates").id
                m.delete(victim)
                m.flush(embed=False)

        m.migrate("video", progress=meanwhile)
        texts[events["new"]] = "written while the scope migrates"
        del texts[victim]
        assert m.get(victim).memories == ()
    _check(data_dir, outside_repo, texts, "video")


_KILLER = """
import os, shutil, signal, sys
from pathlib import Path
from memvid_mcp.manager import MemoryManager
from memvid_mcp.store import migrate, scope_meta
point = sys.argv[3]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
migrate.BATCH_BODIES = 8
real_write, real_rmtree = migrate.write_scope_meta, shutil.rmtree
def write(directory, meta):
    if point == "before-commit":
        die()
    real_write(directory, meta)
    if point == "after-commit":
        die()
def rmtree(path, *a, **k):
    real_rmtree(path, *a, **k)
    if point == "mid-remove":
        die()
migrate.write_scope_meta, migrate.shutil.rmtree = write, rmtree
def progress(done, total):
    if point == "mid-copy" and 0 < done < total:
        die()
m = MemoryManager.open(sys.argv[1], project=sys.argv[2], embeddings=False)
m.migrate(sys.argv[4], progress=progress)
"""


@pytest.mark.parametrize("target", ["video", "file"])
@pytest.mark.parametrize("point", ["mid-copy", "before-commit", "after-commit", "mid-remove"])
def test_sigkill_at_each_step_then_reopen_loses_nothing(
        data_dir: Path, outside_repo: Path, point: str, target: str) -> None:
    source = "file" if target == "video" else "video"
    texts = _seed(data_dir, outside_repo, source, n=30)
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(data_dir), str(outside_repo),
                           point, target], env=env, capture_output=True, timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    committed = point in ("after-commit", "mid-remove")
    _check(data_dir, outside_repo, texts, target if committed else source)
    with _open(data_dir, outside_repo) as m:  # a rerun finishes the job
        m.migrate(target)
    assert _backend_files(data_dir / "global", source) == []
    _check(data_dir, outside_repo, texts, target)


def test_the_cli_killed_at_random_instants_loses_nothing(data_dir: Path,
                                                         outside_repo: Path) -> None:
    texts = _seed(data_dir, outside_repo, n=60)
    env = {**os.environ, "PYTHONPATH": SRC}
    cli = [sys.executable, "-m", "memvid_mcp", "--data-dir", str(data_dir), "migrate"]
    for delay in (0.8, 1.6, 2.4):
        target = "video" if json.loads((data_dir / "global" / "scope.json").read_text())[
            "backend"] == "file" else "file"
        proc = subprocess.Popen([*cli, "--to", target], env=env, cwd=outside_repo,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        backend = json.loads((data_dir / "global" / "scope.json").read_text())["backend"]
        _check(data_dir, outside_repo, texts, backend)
    done = subprocess.run([*cli, "--to", "video"], env=env, cwd=outside_repo,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "already uses the video backend" in done.stdout or "moved" in done.stdout
    _check(data_dir, outside_repo, texts, "video")


@pytest.fixture
def service_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    run = tempfile.mkdtemp(prefix="mvm-")  # short: socket paths have at most 107 bytes
    values = dict(os.environ, MEMVID_DATA_DIR=str(tmp_path / "data"), MEMVID_RUN_DIR=run,
                  MEMVID_EMBEDDINGS="0", MEMVID_SERVICE_IDLE="30", PYTHONPATH=SRC)
    values.pop("MEMVID_SERVICE", None)
    yield values
    subprocess.run([sys.executable, "-m", "memvid_mcp", "service", "--stop"], env=values,
                   capture_output=True, timeout=60)
    shutil.rmtree(run, ignore_errors=True)


def test_migrate_runs_in_the_service_during_a_session(service_env: dict[str, str],
                                                      outside_repo: Path) -> None:
    client = StdioPeer([sys.executable, "-m", "memvid_mcp"], env=service_env,
                       cwd=outside_repo, name="agent")
    ids = [_structured(client.tool("memory_store", text=f"agent note {i} about kafka"))["id"]
           for i in range(5)]
    done = subprocess.run([sys.executable, "-m", "memvid_mcp", "--json", "migrate", "--to",
                           "video"], env=service_env, cwd=outside_repo, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["source"], report["target"], report["memories"]) == ("file", "video", 5)
    # the session goes on, against the migrated scope in the same service
    later = _structured(client.tool("memory_store", text="agent note after the migration"))
    got = _structured(client.tool("memory_get", ids=[*ids, later["id"]]))
    assert len(got["memories"]) == 6
    stats = subprocess.run([sys.executable, "-m", "memvid_mcp", "--json", "stats"],
                           env=service_env, cwd=outside_repo, capture_output=True, text=True,
                           timeout=60)
    assert json.loads(stats.stdout)["scopes"][0]["backend"] == "video", stats.stdout
    assert client.close() == 0
    scope = Path(service_env["MEMVID_DATA_DIR"]) / "global"
    assert not (scope / "bodies").exists() and (scope / "manifest.mvm").exists()
