"""Text embeddings: the only module that imports an embedding runtime.

Default: all-MiniLM-L6-v2 through onnxruntime + tokenizers (0.2-0.35 s cold start, ~100 MB)
instead of torch (8-13 s, ~490 MB), with the same vectors (ADR 0007). Every runtime import
happens inside a function, never at module import, so the server answers MCP ``initialize``
at once. A model is named by a hub id (``onnx/model.onnx`` + ``tokenizer.json`` fetched by
huggingface_hub into its cache) or a local directory: with an ONNX file it loads directly; a
sentence-transformers directory with only safetensors is converted once per user, in a
subprocess that imports torch, into the shared cache of ``model_cache`` (ADR 0015). The
``onnx-int8`` provider quantises that ONNX file once (per-channel int8: ~4x faster, cosine ~0.99 to
fp32; needs the ``onnx`` package). The optional ``sentence-transformers`` provider loads any
model that library supports.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt

from ..core.errors import EmbeddingUnavailable, ValidationError
from .heap import trim_soon
from .model_cache import (
    TORCH_HINT,
    WEIGHT_NAMES,
    convert_local,
    find_onnx,
    quantize_local,
)

__all__ = ["EmbeddingService", "OnnxEmbedder", "convert_local", "find_onnx", "load_embedder",
           "quantize_local", "resolve_onnx_model", "warmup"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PROVIDERS = ("onnx", "onnx-int8", "sentence-transformers")
# int8 per-channel weights: SciFact semantic nDCG@10 0.648 against 0.645 for float32, ~2x
# the speed (ADR 0007, addendum of issue 12)
DEFAULT_PROVIDER = "onnx-int8"
HUB_PROBE_TIMEOUT = 3.0
QUERY_CACHE_SIZE = 1024
# texts per model run: CPU per text grows with the batch (int8 MiniLM, ~285-byte notes, one
# thread: 5.1 ms at 1, 5.3 at 2, 5.5 at 4, 6.2 at 8, 9.9 at 32; ADR 0027)
DEFAULT_BATCH = 2
CLOSE_WAIT_SECONDS = 60.0  # close() waits this long for a model load in flight

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape (n, dim)."""

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def preload_runtime() -> None:
    """Import onnxruntime if installed (before usearch: the other order segfaults here)."""
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401


def _l2(arr: npt.NDArray[Any]) -> Vectors:
    arr = np.asarray(arr, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


# ---------------------------------------------------------------------- onnx provider


class OnnxEmbedder:
    """tokenizers + onnxruntime + mean (or CLS) pooling + L2 norm, all in numpy."""

    def __init__(
        self,
        model_dir: Path,
        *,
        batch_size: int = DEFAULT_BATCH,
        threads: int = 1,
        onnx_file: Path | None = None,
    ) -> None:
        model_dir = Path(model_dir)
        onnx_path = onnx_file or find_onnx(model_dir)
        if onnx_path is None:
            raise EmbeddingUnavailable(f"{model_dir}: no onnx/model.onnx or model.onnx")
        tokenizer_path = model_dir / "tokenizer.json"
        if not tokenizer_path.is_file():
            raise EmbeddingUnavailable(f"{model_dir}: no tokenizer.json")
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingUnavailable(f"embedding runtime not installed: {exc}") from exc
        self.batch_size = max(1, batch_size)
        self.max_length = _max_length(model_dir)
        self.pooling = _pooling(model_dir)
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
            tokenizer.enable_truncation(max_length=self.max_length)
            tokenizer.no_padding()
            self._tokenizer = tokenizer
            # One session, one thread per run, never spinning; documents run ``threads``
            # batches at once from as many Python threads (onnxruntime runs a session
            # concurrently, without the GIL). Small runs side by side use 2 cores better
            # than one run split across 2 intra-op threads, which wait on each other (and
            # spin) on a busy machine: 79 against 37 texts/s at load 5 (ADR 0027); a
            # second session per thread count would hold the weights twice.
            self._session = _session(ort, onnx_path)
            self.workers = max(1, threads)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EmbeddingUnavailable(f"{onnx_path}: cannot load model: {exc}") from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name
        self._dim = int(self._session.get_outputs()[0].shape[-1] or 0) or self._probe_dim()
        self.path = onnx_path
        self.provider = "onnx"  # load_embedder names an int8 model "onnx-int8"

    def _probe_dim(self) -> int:
        return int(self._run(["x"]).shape[1])

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        # sort by length so each batch pads little; restore the order at the end
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        batches = [order[start : start + self.batch_size]
                   for start in range(0, len(order), self.batch_size)]

        def run(idx: list[int]) -> None:
            out[idx] = self._run([texts[i] for i in idx])

        if self.workers == 1 or len(batches) == 1:
            for idx in batches:
                run(idx)
        else:
            with ThreadPoolExecutor(min(self.workers, len(batches)),
                                    thread_name_prefix="memvid-embed") as pool:
                for _ in pool.map(run, batches):  # re-raises a worker's exception
                    pass
        trim_soon()  # the batches' activations are freed: give the pages back when idle
        return out

    def embed_one(self, text: str) -> Vectors:
        """The vector of one text (a query), on the single-thread session."""
        vector: Vectors = self._run([text])[0]
        return vector

    def _run(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        width = max(1, max(len(e.ids) for e in encodings))
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        types = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            types[row, :n] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {name: value for name, value in feeds.items() if name in self._inputs}
        hidden = self._session.run([self._output], feeds)[0]
        if hidden.ndim == 2:  # a model that pools itself
            return _l2(hidden)
        if self.pooling == "cls":
            return _l2(hidden[:, 0])
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        return _l2(summed / np.clip(weights.sum(axis=1), 1e-9, None))


def _session(ort: Any, onnx_path: Path) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # parallelism comes from concurrent runs (embed)
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False  # the arena grew to GBs after big batches
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _max_length(model_dir: Path) -> int:
    seq = _read_json(model_dir / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(seq, int) and seq > 0:
        return seq
    pos = _read_json(model_dir / "config.json").get("max_position_embeddings")
    return min(pos, 512) if isinstance(pos, int) and pos > 0 else 512


def _pooling(model_dir: Path) -> str:
    config = _read_json(model_dir / "1_Pooling" / "config.json")
    if config.get("pooling_mode_cls_token") and not config.get("pooling_mode_mean_tokens"):
        return "cls"
    return "mean"


# ---------------------------------------------------------------------- resolving models


def looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else names a directory."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def resolve_onnx_model(model: str, cache_dir: Path, *,
                       cancel: threading.Event | None = None) -> Path:
    """A directory holding tokenizer.json and an ONNX file for ``model`` (hub id or path).

    May download (hub) or convert (local safetensors, in a subprocess, once per user; setting
    ``cancel`` stops the conversion); raises ``EmbeddingUnavailable`` with the reason when
    neither works.
    """
    local = Path(model).expanduser()
    if local.is_dir():
        local = local.resolve()
        if find_onnx(local) is not None:
            return local
        if any((local / name).is_file() for name in WEIGHT_NAMES):
            return convert_local(local, cache_dir, cancel=cancel)
        raise EmbeddingUnavailable(f"{local}: neither an ONNX file nor model weights found")
    if looks_like_path(model) or not model.strip():
        raise EmbeddingUnavailable(f"{model}: no such model directory")
    return _hub_model(model, cache_dir)


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def _probe_hub() -> None:
    """Fail in seconds, not minutes: huggingface_hub retries an unreachable host 5 times."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return  # a proxy decides reachability; let the hub client try
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT):
            pass
    except OSError as exc:
        raise EmbeddingUnavailable(
            f"cannot reach {endpoint} ({exc}) and the model is not in the Hugging Face cache;"
            " run `memvid-mcp warmup` while online, or set MEMVID_EMBED_MODEL to a local"
            " directory"
        ) from exc


def _hub_model(repo_id: str, cache_dir: Path) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - a dependency
        raise EmbeddingUnavailable(f"huggingface_hub not installed: {exc}") from exc
    required = ("onnx/model.onnx", "tokenizer.json")
    optional = ("config.json", "sentence_bert_config.json", "1_Pooling/config.json")

    def fetch(local_only: bool) -> Path:
        paths = [
            hf_hub_download(repo_id, name, local_files_only=local_only, etag_timeout=5)
            for name in required
        ]
        for name in optional:
            with contextlib.suppress(Exception):
                hf_hub_download(repo_id, name, local_files_only=local_only, etag_timeout=5)
        model_dir = Path(paths[1]).parent
        return model_dir

    try:
        return fetch(local_only=True)  # cached: no network at all
    except Exception as exc:  # huggingface_hub raises many types
        if _offline():
            raise EmbeddingUnavailable(
                f"{repo_id}: not in the Hugging Face cache and HF_HUB_OFFLINE is set ({exc});"
                " run `memvid-mcp warmup` while online, or point MEMVID_EMBED_MODEL at a local"
                " directory"
            ) from exc
    _probe_hub()
    try:
        return fetch(local_only=False)
    except Exception as exc:
        raise EmbeddingUnavailable(f"{repo_id}: download failed: {exc}") from exc


# ---------------------------------------------------------------------- torch provider


class SentenceTransformerEmbedder:
    """The optional provider: any model sentence-transformers supports (imports torch)."""

    def __init__(self, model: str, *, batch_size: int = DEFAULT_BATCH) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingUnavailable(
                f"the sentence-transformers provider is not installed: {TORCH_HINT}"
            ) from exc
        local = Path(model).expanduser()
        kwargs: dict[str, Any] = {"device": "cpu"}
        if not local.is_dir() and _offline():
            kwargs["local_files_only"] = True
        try:
            self._model = SentenceTransformer(str(local) if local.is_dir() else model, **kwargs)
        except Exception as exc:
            raise EmbeddingUnavailable(f"{model}: cannot load: {exc}") from exc
        self.batch_size = batch_size
        model_any: Any = self._model
        getter = getattr(model_any, "get_embedding_dimension", None)
        getter = getter or model_any.get_sentence_embedding_dimension
        self._dim = int(getter())

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _l2(vectors)


def default_threads() -> int:
    """Document batches embedded at once (one single-thread onnxruntime run each): one per
    core, capped at 4 so the server never takes a whole workstation. A query is one run."""
    return max(1, min(4, os.cpu_count() or 1))


def load_embedder(
    model: str, cache_dir: Path, *, provider: str = "onnx", batch_size: int = DEFAULT_BATCH,
    threads: int = 0, cancel: threading.Event | None = None,
) -> Embedder:
    """Load (download/convert first if needed) an embedder; raises EmbeddingUnavailable.

    ``threads`` 0 means ``default_threads()``; ``cancel`` stops a conversion in progress."""
    threads = threads or default_threads()
    if provider == "onnx":
        return OnnxEmbedder(resolve_onnx_model(model, cache_dir, cancel=cancel),
                            batch_size=batch_size, threads=threads)
    if provider == "onnx-int8":
        fp32 = resolve_onnx_model(model, cache_dir, cancel=cancel)
        try:
            int8 = quantize_local(fp32, cache_dir, cancel=cancel)
        except EmbeddingUnavailable as exc:
            if cancel is not None and cancel.is_set():
                raise
            # without the onnx package (or a failed quantisation) the float32 model still
            # serves: same space to ~0.99 cosine, named "onnx" so its vectors are labelled
            log.warning("int8 model unavailable (%s); using the float32 model", exc)
            fallback = OnnxEmbedder(fp32, batch_size=batch_size, threads=threads)
            fallback.provider = "onnx"
            return fallback
        embedder = OnnxEmbedder(int8, batch_size=batch_size, threads=threads)
        embedder.provider = "onnx-int8"
        return embedder
    if provider == "sentence-transformers":
        return SentenceTransformerEmbedder(model, batch_size=batch_size)
    raise ValidationError("embed_provider", f"must be one of {', '.join(PROVIDERS)}")


# ---------------------------------------------------------------------- the service


class EmbeddingService:
    """Loads the model in a background thread, only once asked to (``start``); search
    degrades to lexical until it is ready.

    ``state`` is ``disabled``, ``idle`` (not asked for yet), ``loading``, ``ready`` or
    ``unavailable: <reason>`` (what ``stats`` shows). Query embeddings are kept in an LRU cache.
    ``close`` stops a conversion and waits (bounded) for an onnxruntime load in flight: a
    process that exits while onnxruntime initialises aborts (``terminate called without an
    active exception``, exit code 134), so every service still loading at interpreter exit is
    closed by an atexit hook too.
    """

    def __init__(
        self,
        model: str,
        cache_dir: Path,
        *,
        enabled: bool = True,
        provider: str = DEFAULT_PROVIDER,
        batch_size: int = DEFAULT_BATCH,
        cache_size: int = QUERY_CACHE_SIZE,
        threads: int = 0,
    ) -> None:
        if provider not in PROVIDERS:
            raise ValidationError("embed_provider", f"must be one of {', '.join(PROVIDERS)}")
        self.model = model
        self.provider = provider
        self.cache_dir = Path(cache_dir)
        self.batch_size = batch_size
        self.threads = threads
        self._enabled = enabled
        self._state = "disabled" if not enabled else "idle"
        self._embedder: Embedder | None = None
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._lock = threading.Lock()  # state and the query cache
        self._thread: threading.Thread | None = None
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._cache_size = cache_size
        self.load_seconds: float | None = None
        if not enabled:
            self._done.set()

    @property
    def model_id(self) -> str:
        """Names the vectors' space: vectors from another model id must be recomputed."""
        return f"{self.provider}:{self.model}"

    def start(self) -> None:
        """Begin loading in a background thread (idempotent; a no-op once closed)."""
        with self._lock:
            if not self._enabled or self._thread is not None or self._cancel.is_set():
                return
            self._state = "loading"
            self._thread = threading.Thread(target=self._load, name="memvid-embed-load",
                                            daemon=True)
            _loading.add(self)
            self._thread.start()

    def _load(self) -> None:
        started = time.monotonic()
        try:
            embedder = load_embedder(
                self.model, self.cache_dir, provider=self.provider, batch_size=self.batch_size,
                threads=self.threads, cancel=self._cancel,
            )
        except Exception as exc:  # any failure means lexical-only search, never a crash
            reason = str(exc) if isinstance(exc, EmbeddingUnavailable) else repr(exc)
            with self._lock:
                self._state = f"unavailable: {reason}"
            if not self._cancel.is_set():
                log.warning("embedding model unavailable, search is lexical only: %s", reason)
        else:
            with self._lock:
                self._embedder = embedder
                self.provider = getattr(embedder, "provider", self.provider)
                self._state = "ready"
            self.load_seconds = time.monotonic() - started
            log.info("embedding model %s ready in %.2f s", self.model, self.load_seconds)
        finally:
            self._done.set()
            _loading.discard(self)

    @property
    def loading(self) -> bool:
        """True while a load runs (started, not finished either way)."""
        return self._thread is not None and not self._done.is_set()

    def close(self, timeout: float = CLOSE_WAIT_SECONDS) -> bool:
        """Stop a conversion in progress and wait up to ``timeout`` s for a load in flight.

        No load starts afterwards. True when no load is running any more."""
        with self._lock:
            self._cancel.set()
            thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the embedding model is still loading after %.0f s", timeout)
                return False
        return True

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    @property
    def ready(self) -> bool:
        return self._embedder is not None

    @property
    def enabled(self) -> bool:
        return self._enabled

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Start loading if needed, block until it finished (either way) or ``timeout``;
        True when the model is ready."""
        self.start()
        if self._thread is not None or not self._enabled:
            self._done.wait(timeout)
        return self.ready

    def _require(self) -> Embedder:
        embedder = self._embedder
        if embedder is None:
            raise EmbeddingUnavailable(f"embedding model {self.state}")
        return embedder

    @property
    def dim(self) -> int:
        """The model's dimension; raises EmbeddingUnavailable until it is ready."""
        return self._require().dim

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """Vectors for texts to store (call from a background worker, in small batches)."""
        embedder = self._require()
        return embedder.embed(texts)  # onnxruntime sessions run concurrently

    def embed_query(self, text: str) -> Vectors:
        """The vector of a query, shape (dim,), from the LRU cache when seen before."""
        embedder = self._require()
        with self._lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        one = getattr(embedder, "embed_one", None)
        vector: Vectors = one(text) if one is not None else embedder.embed([text])[0]
        vector.setflags(write=False)
        with self._lock:
            self._cache[text] = vector
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


_loading: weakref.WeakSet[EmbeddingService] = weakref.WeakSet()


@atexit.register
def _close_loading_services() -> None:
    """At interpreter exit, never let a load run on into onnxruntime's teardown."""
    for service in list(_loading):
        service.close()


def warmup(model: str, cache_dir: Path, *, provider: str = DEFAULT_PROVIDER) -> str:
    """Fetch/convert and load the model now (the ``memvid-mcp warmup`` command)."""
    started = time.monotonic()
    embedder = load_embedder(model, cache_dir, provider=provider)
    embedder.embed(["warm up"])
    return f"{model}: {embedder.dim}-d, ready in {time.monotonic() - started:.2f} s"
