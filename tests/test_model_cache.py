"""The shared model cache (issue 9, item 5; ADR 0015): short commands start no conversion, a
conversion runs once per model under a lock, never outlives its process, and a half-written
entry is never used."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CONVERTER = "memvid_mcp.search.onnx_export"


def converters(marker: str) -> list[int]:
    """Live converter processes whose command line mentions ``marker`` (read from /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        text = [a.decode("utf-8", "replace") for a in args]
        if state != "Z" and CONVERTER in text and any(marker in a for a in text):
            found.append(int(proc.name))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def env_for(cache: Path, model: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1",
            "MEMVID_CACHE_DIR": str(cache), "MEMVID_EMBED_MODEL": model}


@pytest.mark.model
@pytest.mark.slow
def test_short_commands_start_no_conversion(tmp_path: Path, outside_repo: Path,
                                            model_path: str) -> None:
    """42 commands used to leave 21 converters (7 GB) running; now none starts one."""
    env = env_for(tmp_path / "cache", model_path)
    base = [sys.executable, "-m", "memvid_mcp", "--data-dir", str(tmp_path / "data"),
            "--project", str(outside_repo)]
    commands = [["store", f"note {i} about the deploy"] for i in range(3)]
    commands += [["search", "deploy", "--mode", "lexical"], ["list"], ["stats"], ["info"],
                 ["verify"], ["prune"], ["compact"]]
    try:
        for args in commands:
            done = subprocess.run([*base, *args], env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
            assert done.returncode == 0, (args, done.stderr)
        time.sleep(0.5)  # a converter would be importing torch by now
        assert converters(str(tmp_path)) == []
        assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.onnx"))
    finally:
        kill_all(converters(str(tmp_path)))


PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from memvid_mcp.search.embed import EmbeddingService

    model, cache, how = sys.argv[1:4]
    service = EmbeddingService(model, Path(cache))
    service.start()
    time.sleep(120)  # killed (SIGKILL) or interrupted (SIGTERM -> exit) meanwhile
""")


@pytest.mark.model
@pytest.mark.parametrize("how", ["SIGKILL", "exit"])
def test_converter_dies_with_its_process(tmp_path: Path, model_path: str, how: str) -> None:
    cache = tmp_path / "cache"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, model_path, str(cache), how],
                              env=env_for(cache, model_path), stderr=subprocess.PIPE,
                              text=True)
    try:
        assert wait_until(lambda: converters(str(cache)), 60), "no converter started"
        if how == "SIGKILL":
            parent.kill()
        else:  # a normal interpreter exit while the conversion runs in a daemon thread
            parent.send_signal(signal.SIGINT)
        parent.wait(timeout=60)
        if how == "exit":  # atexit stopped and reaped it before the process ended
            assert converters(str(cache)) == [], "the converter outlived its process"
        else:  # the kernel SIGKILLs it as its parent dies (an orphan converts on for ~10 s)
            assert wait_until(lambda: not converters(str(cache)), 3), "the converter outlived it"
        assert not list(cache.rglob("model.onnx"))  # stopped, not finished
    finally:
        parent.kill()
        kill_all(converters(str(cache)))
        parent.communicate()


CONVERT = textwrap.dedent("""
    import sys, logging
    from pathlib import Path
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from memvid_mcp.search.embed import OnnxEmbedder, resolve_onnx_model

    out = resolve_onnx_model(sys.argv[1], Path(sys.argv[2]))
    print(out, OnnxEmbedder(out).embed(["hello"]).shape)
""")


@pytest.mark.model
@pytest.mark.slow
def test_two_processes_convert_once_and_redo_a_torn_entry(tmp_path: Path,
                                                          model_path: str) -> None:
    from memvid_mcp.search.model_cache import MARKER, entry_is_complete, find_onnx, source_key

    src = Path(model_path)
    cache = tmp_path / "cache"
    entry = cache / "onnx" / f"{src.name}-{source_key(src)}"
    # a half-written entry, as an interrupted copy or conversion leaves it: files, no marker
    entry.mkdir(parents=True)
    (entry / "model.onnx").write_bytes(b"\x08\x07" * 1000)
    (entry / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes()[:100])
    procs = [subprocess.Popen([sys.executable, "-c", CONVERT, model_path, str(cache)],
                              env=env_for(cache, model_path), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=280) for p in procs]
    finally:
        for p in procs:
            p.kill()
        kill_all(converters(str(cache)))
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.split() == [str(entry), "(1,", "384)"], out
    logs = "".join(err for _, err in outputs)
    assert logs.count("to ONNX once") == 1, logs  # one conversion for both processes
    assert entry_is_complete(entry) and (entry / MARKER).is_file()
    assert find_onnx(entry) is not None
    assert not list(entry.parent.glob("*.tmp*"))
