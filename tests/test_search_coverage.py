"""A search result's mode and note say what was really used (issue 9, items 6 and 7).

- hybrid only when the vector ranking covered some memories, with a note when it covered only
  some; lexical with a note when no memory has a vector yet (item 7);
- a read-only instance beside a writer embeds nothing, logs no errors, and serves semantic
  search from the vectors the writer committed, following the writer's changes (item 6).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from memvid_mcp.manager import MemoryManager

pytestmark = pytest.mark.model

TOPICS = [
    "The quarterly budget review moved to Thursday afternoon.",
    "Our tabby cat sleeps on the windowsill every morning.",
    "Use ruff for linting and mypy for type checks in CI.",
    "The database migration needs a maintenance window.",
    "Grandma's apple pie recipe uses cinnamon and nutmeg.",
    "The staging server certificate expires next month.",
    "Jogging three times a week improved my sleep.",
    "The API rate limit is 100 requests per minute per token.",
    "Tomatoes need six hours of direct sunlight a day.",
    "The invoice from the print shop is still unpaid.",
    "Rust's borrow checker prevents data races at compile time.",
    "The team offsite is planned for the mountains in June.",
]
# shares no word with the cat memory: only the vector ranking can find it
SEMANTIC_QUERY = "where does the kitten nap"


def _cat_id(manager: MemoryManager) -> str:
    return next(r.id for r in manager.list(limit=100).memories
                if "tabby" in manager.get(r.id).memories[0].text)


def test_hybrid_label_follows_vector_coverage(data_dir: Path, outside_repo: Path,
                                              onnx_model: str) -> None:
    """The transition from no vectors to all vectors, step by step (no background timing)."""
    with MemoryManager.open(data_dir, project=outside_repo, embed_model=onnx_model,
                            embed_batch=1) as m:
        m._embed_pass = lambda: False  # type: ignore[method-assign]  # the test embeds
        for text in TOPICS:
            m.store(text)
        assert m.embedder.wait_ready(120), m.embedder.state
        store = m._scopes["global"]

        # the model is ready but no memory has a vector: that is a lexical search
        first = m.search(SEMANTIC_QUERY)
        assert first.mode == "lexical", first
        assert first.note and f"0 of {len(TOPICS)}" in first.note
        semantic_only = m.search(SEMANTIC_QUERY, mode="semantic")
        assert semantic_only.mode == "lexical" and "0 of" in (semantic_only.note or "")

        # a batch taken by the embed worker but not yet embedded: still no vector at all
        batch = store.take_embed_batch(100)
        assert len(batch) == len(TOPICS) and not store.embed_queue
        in_flight = m.search(SEMANTIC_QUERY)
        assert in_flight.mode == "lexical", in_flight
        assert in_flight.note and f"0 of {len(TOPICS)}" in in_flight.note

        # some vectors: hybrid, and the note says how much the vectors cover
        vectors = m.embedder.embed_documents([text for _, text in batch])
        cat = next(i for i, (_, text) in enumerate(batch) if "tabby" in text)
        part = sorted({cat, 0, 1, 2})
        store.add_vectors([batch[i][0] for i in part], vectors[part])
        partial = m.search(SEMANTIC_QUERY)
        assert partial.mode == "hybrid", partial
        assert partial.note == (f"semantic search covers {len(part)} of {len(TOPICS)} "
                                "memories so far; the rest are found by keywords only")
        assert partial.results[0].id == _cat_id(m)  # the vector ranking really contributed

        # every vector: hybrid with nothing to say
        rest = [i for i in range(len(batch)) if i not in part]
        store.add_vectors([batch[i][0] for i in rest], vectors[rest])
        full = m.search(SEMANTIC_QUERY)
        assert full.mode == "hybrid" and full.note is None, full
        assert m.search(SEMANTIC_QUERY, mode="semantic").mode == "semantic"
        assert m.search(SEMANTIC_QUERY, mode="lexical").mode == "lexical"


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from memvid_mcp.manager import MemoryManager

    data, project, model, ready = sys.argv[1:5]
    topics = sys.argv[5:]
    with MemoryManager.open(Path(data), project=Path(project), embed_model=model) as m:
        for text in topics:
            m.store(text)
        m.flush()  # every memory in storage and both indexes, vectors committed
        Path(ready).write_text("ready")
        for i in range(40):  # keep writing while the reader runs
            m.store(f"writer note number {i} about the release checklist")
            time.sleep(0.15)
            if i % 5 == 4:
                m.flush()
        m.flush()
""")


def test_read_only_beside_a_writer_embeds_nothing_and_logs_no_errors(
    data_dir: Path, outside_repo: Path, onnx_model: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ready = tmp_path / "writer-ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1"}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir), str(outside_repo), onnx_model,
         str(ready), *TOPICS],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert writer.poll() is None, writer.communicate()
            assert time.monotonic() < deadline, "the writer never got ready"
            time.sleep(0.1)
        caplog.set_level(logging.INFO, logger="memvid_mcp")
        with MemoryManager.open(data_dir, project=outside_repo, embed_model=onnx_model,
                                read_only_fallback=True, lock_timeout=0.0) as reader:
            assert reader.embedder.wait_ready(120), reader.embedder.state
            hybrid, semantic = [], []
            first_count = last_count = -1
            until = time.monotonic() + 4.0
            while time.monotonic() < until:  # the background loop runs meanwhile
                hybrid.append(reader.search(SEMANTIC_QUERY, k=3))
                semantic.append(reader.search(SEMANTIC_QUERY, k=3, mode="semantic"))
                stores = list(reader._scopes.values())
                assert stores and all(s.read_only for s in stores)
                assert all(len(s.embed_queue) == 0 for s in stores), "a reader queued work"
                last_count = sum(len(s.vectors) for s in stores)
                first_count = last_count if first_count < 0 else first_count
                time.sleep(0.2)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], [r.getMessage() for r in errors]
        assert len(hybrid) >= 5
        assert all(r.mode == "hybrid" for r in hybrid), [(r.mode, r.note) for r in hybrid]
        assert all(r.mode == "semantic" for r in semantic)
        assert all("tabby" in r.results[0].snippet for r in semantic)
        assert last_count > first_count >= len(TOPICS), "the reader missed the writer's vectors"
    finally:
        _out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
