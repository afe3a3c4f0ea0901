"""Vectors belong to one model: changing the model re-embeds instead of mixing spaces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from memvid_mcp.manager import MemoryManager
from memvid_mcp.search.filters import SearchFilters


def test_changing_the_model_drops_and_requeues_vectors(data_dir: Path,
                                                       outside_repo: Path) -> None:
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        for i in range(3):
            m.store(f"memory {i}")
        store = m._scope("global")
        store.use_model("onnx:model-a", 384)
        bodies = list(store.embed_queue)
        store.add_vectors(bodies, np.ones((len(bodies), 384), dtype=np.float32))
        store.embed_queue.clear()
        assert len(store.vectors) == 3
        store.use_model("onnx:model-a", 384)  # the same model: nothing changes
        assert len(store.vectors) == 3
        store.use_model("onnx:model-b", 768)  # another model and dimension
        assert len(store.vectors) == 0 and store.vectors.dim == 768
        assert sorted(store.embed_queue) == sorted(bodies)
        old_space_query = np.ones(384, dtype=np.float32)
        assert store.vector_search(old_space_query, 5, SearchFilters()) == []
    recorded = json.loads((data_dir / "global" / "meta" / "embedding.json").read_text())
    assert recorded == {"model": "onnx:model-b", "dim": 768}
