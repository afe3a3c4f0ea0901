"""VectorIndex: exact and HNSW search, filters before the cut, no ghosts, persistence."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
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


def row_file(path: Path) -> Path:
    """The one row file of a format-3 index (``vectors-<n>.i8``)."""
    (found,) = path.glob("vectors-*.i8")
    return found


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


def test_graph_hits_are_the_first_allowed_rescored_from_the_codes() -> None:
    """The graph path takes the first k allowed candidates in the graph's order and rescores
    only those: every score is the float query against the row's codes, best first, and no
    row the filter refused is among them (ADR 0033)."""
    x = vecs(600, seed=4)
    ids = [f"v{i}" for i in range(600)]
    index = VectorIndex(None, dim=DIM, exact_limit=100)
    index.upsert(ids, x)
    wait_graph(index)
    rows = dequantize(*quantize(x))
    for q in x[:20]:
        hits = index.search(q, 30, allowed=lambda d: int(d[1:]) % 3 == 0)
        assert len(hits) == 30 and all(int(d[1:]) % 3 == 0 for d in names(hits))
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        for doc_id, score in hits:
            assert score == pytest.approx(float(rows[int(doc_id[1:])] @ q), abs=1e-5)
        truth = [d for d in brute(x, ids, q, 600) if int(d[1:]) % 3 == 0][:10]
        assert len(set(names(hits)[:10]) & set(truth)) >= 9


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
    again.close()
    # a crash after appending but before the meta update: the tail is dropped
    with open(row_file(path), "ab") as f:
        f.write(b"\x01\x00\x00\x00" + b"\x00" * (DIM + 20))
    with open(row_file(path).with_suffix(".del"), "ab") as f:
        f.write(b'["-", 7]\n')
    third = VectorIndex(path, dim=DIM)
    assert len(third) == 39 and third.has("v7")
    assert third.verify() == []
    with open(row_file(path), "r+b") as f:  # a flipped byte inside the rows
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert any(row_file(path).name in p for p in third.verify())
    with pytest.raises(CorruptionError):
        VectorIndex(path, dim=DIM + 1)
    third.close()


def test_corruption_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "vec"
    index = VectorIndex(path, dim=DIM)
    index.upsert(["a", "b"], vecs(2))
    index.commit(1)
    index.close()
    with open(row_file(path), "r+b") as f:
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
    meta = json.loads((path / "vectors.json").read_text(encoding="utf-8"))
    assert meta["rows"] == 1200 and row_file(path).stat().st_size < 1200 * (DIM + 8)
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
    """ADR 0021/0027: a format-1 index opens, becomes format 3 (under a third of the
    bytes), keeps its seq and ids, searches the same, and verifies clean; the float32 file
    and its log are gone."""
    path = tmp_path / "vec"
    x = vecs(300, seed=7)
    ids = [f"v{i}" for i in range(300)]
    write_format_1(path, x, ids)
    reader = VectorIndex(path, dim=DIM, read_only=True)  # a reader converts in memory only
    assert len(reader) == 300 and (path / "vectors.f32").exists()
    assert names(reader.search(x[9], 1)) == ["v9"] and reader.verify() == []
    reader.close()
    index = VectorIndex(path, dim=DIM)
    assert not (path / "vectors.f32").exists() and not (path / "vectors.log").exists()
    assert row_file(path).stat().st_size < 300 * DIM * 4 / 3
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
    assert not list(path.glob("vectors-*"))


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


def write_format_2(path: Path, x: np.ndarray, ids: list[str], deleted: list[str],
                   seq: int = 9) -> None:
    """An index as ADR 0021 wrote it: rows of a float32 scale and int8 codes, JSON log."""
    import zlib

    path.mkdir(parents=True)
    peak = np.abs(x).max(axis=1)
    codes = np.clip(np.rint(x / (peak / 127.0)[:, None]), -127, 127).astype(np.int8)
    rows = np.empty((len(x), DIM + 4), dtype=np.uint8)
    rows[:, :4] = (peak / 127.0).astype("<f4").view(np.uint8).reshape(len(x), 4)
    rows[:, 4:] = codes.view(np.uint8)
    data = rows.tobytes()
    lines = [json.dumps(["+", i, d]) for i, d in enumerate(ids)]
    lines += [json.dumps(["-", d]) for d in deleted]
    log = "".join(line + "\n" for line in lines).encode()
    (path / "vectors.q8").write_bytes(data)
    (path / "vectors.log").write_bytes(log)
    meta = {"version": 2, "dim": DIM, "rows": len(x), "log_bytes": len(log),
            "committed_seq": seq, "generation": 3, "data_crc": zlib.crc32(data),
            "log_crc": zlib.crc32(log)}
    (path / "vectors.json").write_text(json.dumps(meta), encoding="utf-8")


def test_format_2_index_is_converted_on_open(tmp_path: Path) -> None:
    """ADR 0027: a format-2 index (vectors.q8 + vectors.log) becomes format 3 on open with
    the same row numbers (a saved graph stays valid), ids, deletes, seq and generation; a
    reader converts in memory only."""
    path = tmp_path / "vec"
    x = vecs(200, seed=11)
    ids = [f"v{i}" for i in range(200)]
    ids[150] = "v3"  # a replaced id: row 3 is dead, row 150 holds v3
    write_format_2(path, x, ids, deleted=["v10", "v11"])
    reader = VectorIndex(path, dim=DIM, read_only=True)
    assert len(reader) == 197 and (path / "vectors.q8").exists()
    assert reader.verify() == []
    reader.close()
    index = VectorIndex(path, dim=DIM)
    assert not any((path / n).exists() for n in ("vectors.q8", "vectors.log"))
    assert len(index) == 197 and index.committed_seq == 9 and index.verify() == []
    assert not index.has("v10") and not index.has("v11") and index.has("v3")
    assert names(index.search(x[150], 1)) == ["v3"]
    assert names(index.search(x[42], 1)) == ["v42"]
    meta = json.loads((path / "vectors.json").read_text(encoding="utf-8"))
    assert meta["version"] == 3 and meta["rows"] == 200 and meta["generation"] == 3
    index.upsert(["new"], vecs(1, seed=12))
    index.commit(10)
    index.close()  # dead rows: compacted on close (no graph)
    again = VectorIndex(path, dim=DIM)
    assert len(again) == 198 and again.committed_seq == 10 and again.verify() == []
    assert sorted(again.ids()) == sorted({*ids, "new"} - {"v10", "v11"})
    assert json.loads((path / "vectors.json").read_text(encoding="utf-8"))["rows"] == 198
    again.close()


def test_close_compacts_dead_rows_and_small_frames(tmp_path: Path) -> None:
    """Notes stored one commit at a time, 10% deleted: after close the files hold the live
    rows only, in full frames (issue 11's footprint: no dead rows, no per-row log line)."""
    from ulid import ULID

    path = tmp_path / "vec"
    rng = np.random.default_rng(13)
    x = rng.standard_normal((400, 384)).astype(np.float32)
    index = VectorIndex(path, dim=384)
    ids = [str(ULID()) for _ in range(400)]
    for i, doc_id in enumerate(ids):
        index.upsert([doc_id], x[i : i + 1])
        if i % 10 == 9:
            index.delete([ids[i - 5]])
        index.commit(i)
    before = sum(f.stat().st_size for f in path.iterdir())
    index.close()
    after = sum(f.stat().st_size for f in path.iterdir())
    again = VectorIndex(path, dim=384)
    assert len(again) == 360 and again.verify() == []
    assert not again.has(ids[4]) and again.has(ids[5])
    assert names(again.search(x[123], 1)) == [ids[123]]
    (rows,) = (f for f in path.iterdir() if f.suffix == ".i8")
    assert rows.stat().st_size <= 360 * (384 + 27)  # codes + a text ULID, no dead rows
    assert after < before * 0.9
    assert after / 360 <= 384 + 30  # whole directory per live row (was 388 + ~45 + dead)
    again.close()


def test_stray_files_of_an_interrupted_rewrite_are_ignored(tmp_path: Path) -> None:
    """A crash while a rewrite wrote the next files (before the meta names them) leaves
    the index as it was; a crash after the meta leaves the previous files, removed on open."""
    path = tmp_path / "vec"
    x = vecs(30, seed=14)
    index = VectorIndex(path, dim=DIM)
    index.upsert([f"v{i}" for i in range(30)], x)
    index.commit(1)
    index.close()
    current = row_file(path)
    (path / "vectors-99.i8").write_bytes(b"half written")
    (path / "vectors-99.del").write_bytes(b"")
    (path / "vectors-0.del.tmp").write_bytes(b"")
    again = VectorIndex(path, dim=DIM)
    assert len(again) == 30 and again.verify() == []
    left = {p.name for p in path.glob("vectors*")}
    assert current.name in left and "vectors.json" in left
    assert not left - {current.name, current.with_suffix(".del").name, "vectors.json"}
    again.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["up", "del", "commit", "reopen"]),
                          st.integers(0, 11)), max_size=40))
def test_reopened_index_equals_the_committed_history(ops: list[tuple[str, int]]) -> None:
    """Any sequence of upserts, deletes, commits and reopens (with close-time compaction):
    the reopened index holds exactly the committed ids, each with its latest vector."""
    import tempfile

    x = vecs(12 * 50, seed=15)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vec"
        index = VectorIndex(path, dim=DIM)
        live: dict[str, int] = {}  # id -> row of x, as committed
        pending = dict(live)
        for step, (op, key) in enumerate(ops):
            doc_id = f"d{key}"
            if op == "up":
                index.upsert([doc_id], x[step : step + 1])
                pending[doc_id] = step
            elif op == "del":
                index.delete([doc_id])
                pending.pop(doc_id, None)
            elif op == "commit":
                index.commit(step)
                live = dict(pending)
            else:
                index.close()  # uncommitted changes are dropped
                index = VectorIndex(path, dim=DIM)
                pending = dict(live)
        index.commit(len(ops))
        live = dict(pending)
        index.close()
        again = VectorIndex(path, dim=DIM)
        assert sorted(again.ids()) == sorted(live)
        for doc_id, row in live.items():
            stored = again.vector(doc_id)
            assert stored is not None and float(stored @ x[row]) > 0.99
        assert again.verify() == []
        again.close()


def test_graph_of_an_older_format_is_rebuilt_not_loaded(tmp_path: Path) -> None:
    """ADR 0027: the graph holds int8 codes compared by cosine; a saved f16 graph (no
    "format" in hnsw.json) is rebuilt in the background instead of being misread."""
    path = tmp_path / "vec"
    x = vecs(700, seed=16)
    ids = [f"v{i}" for i in range(700)]
    index = VectorIndex(path, dim=DIM, exact_limit=500)
    index.upsert(ids, x)
    index.build_graph()
    index.commit(1)
    index.close()
    meta = json.loads((path / "hnsw.json").read_text(encoding="utf-8"))
    assert meta["format"] == "i8-cos"
    del meta["format"]
    (path / "hnsw.json").write_text(json.dumps(meta), encoding="utf-8")
    again = VectorIndex(path, dim=DIM, exact_limit=500)
    assert names(again.search(x[5], 1)) == ["v5"]  # exact until the new graph serves
    wait_graph(again)
    assert names(again.search(x[6], 1)) == ["v6"]
    again.close()
    assert json.loads((path / "hnsw.json").read_text(encoding="utf-8"))["format"] == "i8-cos"


def test_the_scopes_of_one_search_share_the_query_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two indexes (two scopes) searched with the same vector normalise and quantise it
    once (ADR 0037); another vector gets its own forms, never the last one's."""
    from memvid_mcp.search import vectors as vectors_module

    x = vecs(300, seed=6)
    first, second = (VectorIndex(None, dim=DIM, exact_limit=100) for _ in range(2))
    for index, part in ((first, x[:150]), (second, x[150:])):
        index.upsert([f"v{i}" for i in range(len(part))], part)
        wait_graph(index)
    made: list[int] = []
    real = vectors_module.quantize

    def counting(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        made.append(len(arr))
        return real(arr)

    monkeypatch.setattr(vectors_module, "quantize", counting)
    query = x[7] * 3.0  # not unit length: the forms are the normalised vector's
    expected = [index.search(query, 5) for index in (first, second)]
    made.clear()
    vectors_module._LastQuery.entry = None
    assert [index.search(query, 5) for index in (first, second)] == expected
    assert made == [1]
    other = x[200]
    unit, codes = vectors_module._query_forms(other, DIM)
    assert np.allclose(unit, other / np.linalg.norm(other))
    assert np.array_equal(codes, real(unit[None, :])[0][0])
    with pytest.raises(ValidationError):
        first.search(np.full(DIM, np.nan, dtype=np.float32), 5)
