"""VectorIndex: exact and HNSW search, filters before the cut, no ghosts, persistence."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from memvid_mcp.core.errors import CorruptionError, ValidationError
from memvid_mcp.search.vectors import VectorIndex, dequantize, quantize

DIM = 16


def vecs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    out: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def names(hits: list[tuple[str, float]]) -> list[str]:
    return [h for h, _ in hits]


def brute(x: np.ndarray, ids: list[str], q: np.ndarray, k: int) -> list[str]:
    """Exact ranking over the rows the index stores (int8 with a scale per row)."""
    scores = dequantize(*quantize(x)) @ q
    return [ids[i] for i in np.argsort(-scores)[:k]]


def wait_graph(index: VectorIndex, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not index.uses_graph and time.monotonic() < deadline:
        time.sleep(0.01)
    assert index.uses_graph


def test_exact_search_and_validation() -> None:
    x = vecs(200)
    ids = [f"v{i}" for i in range(200)]
    index = VectorIndex(None, dim=DIM)
    index.upsert(ids, x * 3.0)  # normalised on the way in
    assert len(index) == 200 and index.has("v7") and not index.has("nope")
    assert sorted(index.ids()) == sorted(ids)
    for q in x[:10]:
        assert names(index.search(q, 5)) == brute(x, ids, q, 5)
    hit, score = index.search(x[3], 1)[0]
    assert hit == "v3" and score == pytest.approx(1.0, abs=1e-3)  # int8 rows (ADR 0021)
    assert index.search(x[0], 0) == []
    assert len(index.search(x[0], 500)) == 200
    with pytest.raises(ValidationError):
        index.upsert(["a"], np.zeros((1, DIM + 1), dtype=np.float32))
    with pytest.raises(ValidationError):
        index.upsert(["a", "b"], x[:1])
    with pytest.raises(ValidationError):
        index.upsert(["a"], np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(ValidationError):
        index.upsert(["a", "a"], x[:2])


@pytest.mark.parametrize("graph", [False, True])
def test_replace_and_delete_leave_no_ghosts(graph: bool) -> None:
    x = vecs(300)
    ids = [f"v{i}" for i in range(300)]
    index = VectorIndex(None, dim=DIM, exact_limit=100 if graph else 10_000)
    index.upsert(ids, x)
    if graph:
        wait_graph(index)
    index.upsert(["v0"], x[1:2])  # v0 now points where v1 is
    assert names(index.search(x[0], 300)).count("v0") == 1
    assert set(names(index.search(x[1], 2))) == {"v0", "v1"}
    index.delete(["v1", "v2", "unknown"])
    everything = names(index.search(x[2], 300))
    assert "v1" not in everything and "v2" not in everything
    assert len(everything) == len(index) == 298
    assert names(index.search(x[0], 1)) != ["v0"] or index.search(x[0], 1)[0][1] < 0.999


@pytest.mark.parametrize("graph", [False, True])
def test_allowed_filter_applies_before_the_cut(graph: bool) -> None:
    x = vecs(400, seed=1)
    ids = [f"v{i}" for i in range(400)]
    index = VectorIndex(None, dim=DIM, exact_limit=100 if graph else 10_000)
    index.upsert(ids, x)
    if graph:
        wait_graph(index)

    def rare(doc_id: str) -> bool:
        return int(doc_id[1:]) % 97 == 0  # 5 of 400

    hits = index.search(x[0], 5, allowed=rare)
    assert sorted(names(hits)) == ["v0", "v194", "v291", "v388", "v97"]
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    even = index.search(x[3], 10, allowed=lambda d: int(d[1:]) % 2 == 0)
    assert len(even) == 10 and all(int(d[1:]) % 2 == 0 for d in names(even))
    assert names(even) == [d for d in brute(x, ids, x[3], 400) if int(d[1:]) % 2 == 0][:10]


def test_hnsw_recall_on_clustered_data() -> None:
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((50, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 50, 3000)] + 0.3 * rng.standard_normal((3000, DIM))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"v{i}" for i in range(3000)]
    index = VectorIndex(None, dim=DIM, exact_limit=1000)
    index.upsert(ids, x)
    wait_graph(index)
    recall = np.mean(
        [len(set(names(index.search(q, 10))) & set(brute(x, ids, q, 10))) / 10 for q in x[:100]]
    )
    assert recall >= 0.95


def test_persistence_seq_and_crash_tail(tmp_path: Path) -> None:
    path = tmp_path / "vec"
    x = vecs(50)
    index = VectorIndex(path, dim=DIM)
    assert index.committed_seq == -1
    index.upsert([f"v{i}" for i in range(40)], x[:40])
    index.delete(["v5"])
    assert index.maybe_commit(16, interval=3600) is False  # too soon
    assert index.maybe_commit(17, interval=0) is True
    assert index.maybe_commit(18, interval=0) is False  # nothing new
    index.upsert([f"v{i}" for i in range(40, 50)], x[40:])  # never committed
    index.close()
    again = VectorIndex(path, dim=DIM)
    assert again.committed_seq == 17 and len(again) == 39
    assert not again.has("v5") and not again.has("v45")
    assert names(again.search(x[7], 1)) == ["v7"]
    # a crash after appending but before the meta update: the tail is dropped
    with open(path / "vectors.q8", "ab") as f:
        f.write(b"\x00" * (DIM + 4) * 3)
    with open(path / "vectors.log", "ab") as f:
        f.write(b'["+", 999, "ghost"]\n')
    again.close()
    third = VectorIndex(path, dim=DIM)
    assert len(third) == 39 and not third.has("ghost")
    assert third.verify() == []
    with open(path / "vectors.q8", "r+b") as f:  # a flipped byte inside a row
        f.seek(5 * (DIM + 4) + 7)
        byte = f.read(1)
        f.seek(5 * (DIM + 4) + 7)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert any("vectors.q8" in p for p in third.verify())
    with pytest.raises(CorruptionError):
        VectorIndex(path, dim=DIM + 1)
    third.close()


def test_corruption_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "vec"
    index = VectorIndex(path, dim=DIM)
    index.upsert(["a", "b"], vecs(2))
    index.commit(1)
    index.close()
    with open(path / "vectors.q8", "r+b") as f:
        f.truncate(10)
    with pytest.raises(CorruptionError):
        VectorIndex(path, dim=DIM)
    (path / "vectors.json").write_text("{", encoding="utf-8")
    with pytest.raises(CorruptionError):
        VectorIndex(path, dim=DIM)
    (path / "vectors.json").unlink()
    with pytest.raises(CorruptionError):
        VectorIndex(path, dim=DIM)


def test_graph_saved_and_reloaded_with_compaction(tmp_path: Path) -> None:
    path = tmp_path / "vec"
    x = vecs(2600, seed=3)
    ids = [f"v{i}" for i in range(2600)]
    index = VectorIndex(path, dim=DIM, exact_limit=500)
    index.upsert(ids[:1500], x[:1500])
    index.build_graph()
    wait_graph(index)
    index.commit(1)
    index.close()
    assert (path / "hnsw.usearch").exists()
    again = VectorIndex(path, dim=DIM, exact_limit=500)
    assert again.uses_graph  # loaded, not rebuilt
    again.upsert(ids[1500:], x[1500:])
    again.delete(ids[:1400])  # most rows dead: compaction at the next commit
    again.commit(2)
    assert len(again) == 1200
    assert names(again.search(x[2000], 1)) == ["v2000"]
    assert "v3" not in names(again.search(x[3], 50))
    again.close()
    third = VectorIndex(path, dim=DIM, exact_limit=500)
    assert len(third) == 1200 and third.committed_seq == 2
    assert names(third.search(x[2500], 1)) == ["v2500"]
    assert (path / "vectors.q8").stat().st_size == 1200 * (DIM + 4)
    assert third.verify() == []
    third.close()


def test_concurrent_writer_and_searchers() -> None:
    x = vecs(600, seed=4)
    index = VectorIndex(None, dim=DIM, exact_limit=200)
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                for doc_id, _ in index.search(x[0], 10, allowed=lambda d: d != "v1"):
                    assert doc_id != "v1"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(0, 600, 10):
        index.upsert([f"v{j}" for j in range(i, i + 10)], x[i : i + 10])
        index.delete([f"v{i + 3}"])
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 540


def test_graph_then_onnxruntime_does_not_crash() -> None:
    """usearch imported before onnxruntime makes ``import onnxruntime`` segfault here; the
    index imports onnxruntime first (ADR 0006). Run in a subprocess: a crash is a signal."""
    code = (
        "import numpy as np\n"
        "from memvid_mcp.search.vectors import VectorIndex, dequantize, quantize\n"
        "v = VectorIndex(None, dim=8, exact_limit=10)\n"
        "v.upsert([str(i) for i in range(20)], np.random.default_rng(0).random((20, 8)))\n"
        "v.build_graph()\n"
        "assert v.uses_graph\n"
        "import onnxruntime\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr)


def write_format_1(path: Path, x: np.ndarray, ids: list[str], seq: int = 5) -> None:
    """An index as 0.1.0 wrote it: float32 rows in vectors.f32, CRC-32s in the meta."""
    import json
    import zlib

    path.mkdir(parents=True)
    data = np.ascontiguousarray(x, dtype="<f4").tobytes()
    log = "".join(json.dumps(["+", i, d]) + "\n" for i, d in enumerate(ids)).encode()
    (path / "vectors.f32").write_bytes(data)
    (path / "vectors.log").write_bytes(log)
    meta = {"version": 1, "dim": x.shape[1], "rows": len(x), "log_bytes": len(log),
            "committed_seq": seq, "generation": 0, "data_crc": zlib.crc32(data),
            "log_crc": zlib.crc32(log)}
    (path / "vectors.json").write_text(json.dumps(meta), encoding="utf-8")


def test_float32_index_is_converted_to_int8_on_open(tmp_path: Path) -> None:
    """ADR 0021: a format-1 index opens, becomes vectors.q8 (a quarter of the bytes), keeps
    its seq and ids, searches the same, and verifies clean; the float32 file is gone."""
    path = tmp_path / "vec"
    x = vecs(300, seed=7)
    ids = [f"v{i}" for i in range(300)]
    write_format_1(path, x, ids)
    reader = VectorIndex(path, dim=DIM, read_only=True)  # a reader converts in memory only
    assert len(reader) == 300 and (path / "vectors.f32").exists()
    assert names(reader.search(x[9], 1)) == ["v9"] and reader.verify() == []
    reader.close()
    index = VectorIndex(path, dim=DIM)
    assert not (path / "vectors.f32").exists()
    assert (path / "vectors.q8").stat().st_size == 300 * (DIM + 4)
    assert index.committed_seq == 5 and len(index) == 300 and index.verify() == []
    for i in (0, 42, 299):
        assert names(index.search(x[i], 1)) == [f"v{i}"]
    index.upsert(["new"], vecs(1, seed=8))
    index.commit(6)
    index.close()
    again = VectorIndex(path, dim=DIM)
    assert len(again) == 301 and again.committed_seq == 6 and again.verify() == []
    again.close()


def test_conversion_interrupted_after_the_meta_removes_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "vec"
    x = vecs(20, seed=9)
    write_format_1(path, x, [f"v{i}" for i in range(20)])
    saved = (path / "vectors.f32").read_bytes()
    VectorIndex(path, dim=DIM).close()
    (path / "vectors.f32").write_bytes(saved)  # as if the crash came before the unlink
    index = VectorIndex(path, dim=DIM)
    assert not (path / "vectors.f32").exists() and len(index) == 20
    index.close()


def test_damaged_float32_index_is_not_converted(tmp_path: Path) -> None:
    """A flipped byte in the float32 rows must surface (the manager re-embeds), not be
    hidden behind a fresh checksum of the converted file."""
    path = tmp_path / "vec"
    write_format_1(path, vecs(20, seed=10), [f"v{i}" for i in range(20)])
    raw = bytearray((path / "vectors.f32").read_bytes())
    raw[77] ^= 0xFF
    (path / "vectors.f32").write_bytes(bytes(raw))
    assert VectorIndex.verify_files(path)
    with pytest.raises(CorruptionError):
        VectorIndex(path, dim=DIM)
    assert not (path / "vectors.q8").exists()


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=DIM, max_size=DIM))
def test_int8_rows_keep_the_direction(values: list[float]) -> None:
    """Any non-zero vector survives quantisation with cosine >= 0.99 (error <= scale / 2
    per component, scale = peak / 127)."""
    arr = np.asarray([values], dtype=np.float32)
    norm = float(np.linalg.norm(arr))
    assume(norm > 1e-6)
    approx = dequantize(*quantize(arr))
    cosine = float(approx[0] @ arr[0]) / (float(np.linalg.norm(approx)) * norm)
    assert cosine >= 0.99
