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
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.model]

MISSING_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


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
    tmp_path: Path, outside_repo: Path, onnx_model: str
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

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    wrong = [(args, expect, code, err) for args, expect, code, err in outcomes if code != expect]
    assert wrong == [], wrong
    assert failures == [], failures
    assert len(outcomes) == 100
    assert {tuple(a[:1]) for a, *_ in outcomes} >= {
        ("store",), ("search",), ("get",), ("list",), ("delete",), ("stats",), ("info",),
        ("verify",), ("export",), ("import",), ("prune",), ("compact",)}
