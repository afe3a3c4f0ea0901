"""Every CLI command exits with its documented code under CPU load (issue 9, item 4).

Commands used to print their result and then abort (exit 134, ``terminate called without an
active exception``): every open started loading the model in a thread and the process exited
while onnxruntime initialised. Now only semantic search loads the model, and close() waits
for a load in flight. 100 commands of every kind run in 4 parallel sequences while two
processes spin on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.model]

MISSING_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """Two processes spinning: the 2-core machine is saturated, model loads are slow."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def _sequence(run, work: Path) -> None:  # type: ignore[no-untyped-def]
    """25 commands on one data directory: (arguments, expected exit code) each."""
    ids = [json.loads(run(["store", f"memory {i} about the release checklist and cats"], 0))
           ["id"] for i in range(6)]
    run(["search", "release checklist", "--mode", "lexical"], 0)
    found = json.loads(run(["search", "felines", "--k", "3"], 0))
    assert found["mode"] == "hybrid", found  # hybrid from the CLI still works
    run(["get", ids[0]], 0)
    run(["get", MISSING_ID], 1)  # documented: exit 1 when no id was found
    run(["list"], 0)
    run(["delete", ids[1]], 0)
    run(["stats"], 0)
    run(["info"], 0)
    run(["verify"], 0)
    run(["export", str(work / "out.jsonl")], 0)
    run(["import", str(work / "out.jsonl")], 0)
    run(["prune"], 0)
    run(["compact"], 0)
    run(["search", "memory", "--mode", "lexical"], 0)
    run(["verify"], 0)
    run(["list", "--limit", "2"], 0)
    run(["stats"], 0)
    run(["search", "cats", "--mode", "semantic"], 0)
    run(["get", ids[2], ids[3]], 0)


def test_every_command_exits_with_its_documented_code_under_load(
    tmp_path: Path, outside_repo: Path, onnx_model: str, cpu_load: None
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1",
           "MEMVID_EMBED_MODEL": onnx_model}
    outcomes: list[tuple[list[str], int, int, str]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        work = tmp_path / f"w{index}"
        work.mkdir()
        base = [sys.executable, "-m", "memvid_mcp", "--json", "--data-dir", str(work / "data"),
                "--project", str(outside_repo)]

        def run(args: list[str], expect: int) -> str:
            done = subprocess.run([*base, *args], env=env, capture_output=True, text=True,
                                  timeout=240, check=False)
            with lock:
                outcomes.append((args, expect, done.returncode, done.stderr[-500:]))
            return done.stdout

        try:
            _sequence(run, work)
        except BaseException as exc:  # reported below, with every exit code seen
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wrong = [(args, expect, code, err) for args, expect, code, err in outcomes if code != expect]
    assert wrong == [], wrong
    assert failures == [], failures
    assert len(outcomes) == 100
    assert {tuple(a[:1]) for a, *_ in outcomes} >= {
        ("store",), ("search",), ("get",), ("list",), ("delete",), ("stats",), ("info",),
        ("verify",), ("export",), ("import",), ("prune",), ("compact",)}


EXIT_WHILE_LOADING = """
import sys
from pathlib import Path
from memvid_mcp.manager import MemoryManager

m = MemoryManager.open(Path(sys.argv[1]), embed_model=sys.argv[2])
m.embedder.start()  # onnxruntime initialises in a thread while the process ends
if sys.argv[3] == "close":
    m.close()
sys.exit(0)
"""


def test_exit_during_a_model_load_never_aborts(tmp_path: Path, onnx_model: str,
                                               cpu_load: None) -> None:
    """With close() and without it (atexit), a process ending mid-load exits 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1"}

    def run(i: int) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-c", EXIT_WHILE_LOADING, str(tmp_path / f"d{i}"), onnx_model,
             "close" if i % 2 else "exit"],
            env=env, capture_output=True, text=True, timeout=240, check=False)
        return done.returncode, done.stderr[-300:]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(16)))
    assert [r for r in results if r[0] != 0] == []
