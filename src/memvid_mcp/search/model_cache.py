"""The shared cache of converted models: one conversion per model, never orphaned, never torn.

Converting a safetensors directory to ONNX costs ~25 s of CPU and 0.5-0.8 GB in a torch
subprocess, so it must happen once per model for every process of the user, not once per
process or data directory (ADR 0015):

- entries live in the user cache directory (``Settings.cache_dir``), named by the model's
  identity (resolved path + name, size and mtime of its weights);
- one process converts, under ``fcntl.flock`` on ``<entry>.lock``; the others wait for it
  (polling, so a closing process can stop waiting) and then load its result;
- the converter writes a temporary directory, fsyncs it, writes ``complete.json`` (sizes of
  every file) last, and renames it into place; an entry without a matching ``complete.json``
  is half-written and is converted again;
- the converter dies with its parent (``PR_SET_PDEATHSIG`` set by the child itself on Linux),
  and ``cancel_conversions`` (close, atexit) terminates it, so no converter outlives the
  process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import EmbeddingUnavailable
from ..core.fsutil import fsync_dir

log = logging.getLogger(__name__)

CONVERT_TIMEOUT = 900.0
MARKER = "complete.json"
MARKER_VERSION = 1
ONNX_NAMES = ("onnx/model.onnx", "model.onnx")
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
TORCH_HINT = 'pip install "memvid-mcp[torch]"'
_POLL_SECONDS = 0.2
_TERMINATE_GRACE = 5.0

_live: set[subprocess.Popen[str]] = set()  # converters this process started and still runs
_live_lock = threading.Lock()


def find_onnx(model_dir: Path) -> Path | None:
    for name in ONNX_NAMES:
        if (model_dir / name).is_file():
            return model_dir / name
    return None


def source_key(src: Path) -> str:
    """The model's identity: its resolved path and the name, size and mtime of its weights."""
    weights = [src / n for n in WEIGHT_NAMES if (src / n).is_file()]
    stamp = [f"{w.name}:{w.stat().st_mtime_ns}:{w.stat().st_size}" for w in weights]
    raw = "\n".join([str(src.resolve()), *stamp])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def convert_local(src: Path, cache_dir: Path, *, timeout: float = CONVERT_TIMEOUT,
                  cancel: threading.Event | None = None) -> Path:
    """The ONNX copy of a local transformers/sentence-transformers directory, made once.

    Cached as ``cache_dir/onnx/<name>-<identity key>``; the export runs in a subprocess so this
    process never imports torch.
    """
    dst = Path(cache_dir) / "onnx" / f"{src.name}-{source_key(src)}"
    return ensure_entry(src, dst, [], timeout=timeout, cancel=cancel)


def quantize_local(src: Path, cache_dir: Path, *, timeout: float = CONVERT_TIMEOUT,
                   cancel: threading.Event | None = None) -> Path:
    """An int8 (per-channel, dynamic) copy of the ONNX model in ``src``, made once."""
    onnx_file = find_onnx(src)
    if onnx_file is None:
        raise EmbeddingUnavailable(f"{src}: no ONNX file to quantise")
    stat = onnx_file.stat()
    raw = f"{onnx_file.resolve()}:{stat.st_mtime_ns}:{stat.st_size}"
    key = hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]
    dst = Path(cache_dir) / "int8" / f"{src.name}-{key}"
    return ensure_entry(src, dst, ["--int8"], timeout=timeout, cancel=cancel)


def entry_is_complete(dst: Path) -> bool:
    """True when ``dst`` was fully written: its marker lists every file at its size."""
    try:
        marker = json.loads((dst / MARKER).read_text(encoding="utf-8"))
        files = marker["files"]
        if marker.get("version") != MARKER_VERSION or not isinstance(files, dict) or not files:
            return False
        for name, size in files.items():
            if (dst / name).stat().st_size != size:
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return find_onnx(dst) is not None and (dst / "tokenizer.json").is_file()


def ensure_entry(src: Path, dst: Path, flags: list[str], *, timeout: float,
                 cancel: threading.Event | None = None) -> Path:
    """Return ``dst`` complete, converting ``src`` into it unless another process did."""
    if entry_is_complete(dst):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with _entry_lock(dst, deadline, cancel):
        if entry_is_complete(dst):  # converted by the process we waited for
            return dst
        if dst.exists():
            log.warning("%s is incomplete (an interrupted conversion); converting again", dst)
            shutil.rmtree(dst, ignore_errors=True)
        for stale in dst.parent.glob(f"{dst.name}.tmp*"):  # left by a killed converter
            shutil.rmtree(stale, ignore_errors=True)
        tmp = dst.with_name(f"{dst.name}.tmp{os.getpid()}")
        try:
            _run_converter(src, tmp, flags, deadline, cancel)
            _seal(tmp)
            os.replace(tmp, dst)
            fsync_dir(dst.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


@contextlib.contextmanager
def _entry_lock(dst: Path, deadline: float, cancel: threading.Event | None) -> Iterator[None]:
    """Hold ``<dst>.lock`` exclusively; wait (cancellably, until ``deadline``) for another
    process converting the same model."""
    with open(dst.with_name(dst.name + ".lock"), "a+b") as handle:
        announced = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    log.info("another process is converting %s; waiting for it", dst.name)
                    announced = True
                if cancel is not None and cancel.is_set():
                    raise EmbeddingUnavailable("model loading was cancelled (closing)") from None
                if time.monotonic() >= deadline:
                    raise EmbeddingUnavailable(
                        f"{dst.name}: another process is still converting this model"
                    ) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run_converter(src: Path, tmp: Path, flags: list[str], deadline: float,
                   cancel: threading.Event | None) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    command = [sys.executable, "-m", "memvid_mcp.search.onnx_export",
               "--parent", str(os.getpid()), *flags, str(src), str(tmp)]
    log.info("converting %s to ONNX once (subprocess)", src)
    started = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with _live_lock:
        _live.add(proc)
    out, err = "", ""
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    _stop(proc)
                    raise EmbeddingUnavailable(
                        "model conversion was cancelled (closing)") from None
                if time.monotonic() >= deadline:
                    _stop(proc)
                    raise EmbeddingUnavailable(
                        f"{src}: ONNX conversion timed out") from None
    finally:
        with _live_lock:
            _live.discard(proc)
        if proc.poll() is None:  # an exception escaped the loop: never leave it running
            _stop(proc)
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-1:] or ["no output"]
        if proc.returncode == 3:
            need = "quantising it needs onnx" if flags else "converting it needs torch"
            raise EmbeddingUnavailable(f"{src}: {need}: {TORCH_HINT}")
        raise EmbeddingUnavailable(f"{src}: ONNX conversion failed: {tail[0]}")
    log.info("converted %s in %.1f s", src, time.monotonic() - started)


def _stop(proc: subprocess.Popen[str]) -> None:
    """Terminate, then kill, a converter; reap it."""
    with contextlib.suppress(OSError):
        proc.terminate()
    try:
        proc.communicate(timeout=_TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=_TERMINATE_GRACE)


def cancel_conversions() -> None:
    """Stop every converter this process still runs (interpreter exit calls it).

    Signals only: the thread that started a converter still owns its pipes and reaps it."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.terminate()
    limit = time.monotonic() + _TERMINATE_GRACE
    for proc in procs:
        while proc.poll() is None and time.monotonic() < limit:
            time.sleep(0.05)
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()


atexit.register(cancel_conversions)


def _seal(tmp: Path) -> None:
    """fsync every file the converter wrote, then write the marker that makes it complete."""
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        files[path.relative_to(tmp).as_posix()] = path.stat().st_size
    if find_onnx(tmp) is None or not (tmp / "tokenizer.json").is_file():
        raise EmbeddingUnavailable(f"{tmp}: the converter wrote no model.onnx/tokenizer.json")
    with open(tmp / MARKER, "w", encoding="utf-8") as handle:
        json.dump({"version": MARKER_VERSION, "files": files}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    for directory in {tmp, *(p.parent for p in tmp.rglob("*"))}:
        fsync_dir(directory)

