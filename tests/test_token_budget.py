"""memory_search's max_tokens: the whole answer fits, and at least one result comes back.

The answer is what a model sees: the structured content and the text block (the same JSON),
measured with the documented estimate (``mcp/budget.py``). The property runs random budgets
from 50 to 5000 tokens, limits and queries over 1,000 memories, some long, some not ASCII.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from mcp import Client

from memvid_mcp.core.config import Settings
from memvid_mcp.manager import MemoryManager
from memvid_mcp.mcp.budget import MIN_TOKENS, answer_tokens, estimate_tokens, fit_search
from memvid_mcp.mcp.server import build_server

WORDS = [f"w{n}" for n in range(200)] + ["deploy", "staging", "café", "データ", "🚀", "naïve"]
COMMON = WORDS[:40]  # every memory has several of these: any query of them matches


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("budget")
    (root / "work").mkdir()
    settings = Settings(data_dir=root / "data", embeddings=False, project=root / "work")
    rng = random.Random(13)
    manager = MemoryManager(settings)
    items = []
    for n in range(1000):
        length = rng.choice([5, 20, 80, 400, 1500])
        words = rng.choices(COMMON, k=3) + rng.choices(WORDS, k=length)
        items.append({"text": " ".join(words) + f" #{n}",
                      "title": f"memory {n} " + " ".join(rng.choices(WORDS, k=rng.randint(0, 12)))
                      if n % 3 else None,
                      "tags": rng.sample(WORDS, rng.randint(0, 6)),
                      "kind": rng.choice(["note", "decision", "preference"])})
    manager.store_many(items)
    yield build_server(settings, lambda: manager)
    manager.close()


async def _search(server: Any, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
    async with Client(server, mode="legacy") as client:
        result = await client.call_tool("memory_search", args)
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error, text
    assert result.structured_content is not None
    return result.structured_content, text


@settings_(max_examples=150, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget=st.integers(50, 5000), limit=st.integers(1, 100),
       query=st.lists(st.sampled_from(COMMON), min_size=1, max_size=3),
       max_chars=st.one_of(st.none(), st.integers(200, 200_000)))
def test_any_budget_fits_and_returns_at_least_one_result(
    served: Any, budget: int, limit: int, query: list[str], max_chars: int | None
) -> None:
    args: dict[str, Any] = {"query": " ".join(query), "limit": limit, "max_tokens": budget,
                            "mode": "lexical"}
    if max_chars is not None:
        args["max_chars"] = max_chars
    data, text = anyio.run(_search, served, args)
    seen = estimate_tokens(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    assert seen + estimate_tokens(text) <= budget
    assert len(data["results"]) >= 1
    assert all(hit["id"] and "snippet" in hit for hit in data["results"])
    if not data.get("truncated"):
        assert "omitted" not in data or data["omitted"] == 0  # nothing cut: a whole page


def test_a_roomy_budget_changes_nothing(served: Any) -> None:
    plain, _ = anyio.run(_search, served, {"query": "deploy w1", "limit": 3, "mode": "lexical"})
    roomy, _ = anyio.run(_search, served, {"query": "deploy w1", "limit": 3, "mode": "lexical",
                                           "max_tokens": 100_000})
    assert roomy == plain and plain["truncated"] is False and plain["omitted"] == 0


def test_cut_results_move_to_the_next_page(served: Any) -> None:
    """Results a budget leaves out come first on the next page: none is skipped."""
    query = {"query": "w1 w2", "mode": "lexical"}
    whole, _ = anyio.run(_search, served, {**query, "limit": 20})
    cut, _ = anyio.run(_search, served, {**query, "limit": 20, "max_tokens": 600})
    kept = len(cut["results"])
    assert 1 <= kept < 20 and cut["truncated"] and cut["omitted"] == 20 - kept
    nxt, _ = anyio.run(_search, served, {**query, "limit": 20 - kept,
                                         "cursor": cut["next_cursor"]})
    ids = [h["id"] for h in cut["results"]] + [h["id"] for h in nxt["results"]]
    assert ids == [h["id"] for h in whole["results"]]


def test_the_tightest_answer_still_names_one_memory() -> None:
    hits = [{"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "score": 1.0, "title": "t" * 300,
             "snippet": "データ" * 300, "tags": ["x"] * 20, "kind": "note", "scope": "global",
             "created_at": "2026-01-01T00:00:00.000Z"}] * 5
    data = {"results": hits, "next_cursor": "c" * 40, "mode": "lexical", "scopes": ["global"],
            "note": None, "truncated": False, "omitted": 0}
    fitted, kept = fit_search(data, MIN_TOKENS)
    assert kept == 1 and answer_tokens(fitted) <= MIN_TOKENS
    assert fitted["results"][0]["id"] == hits[0]["id"] and fitted["truncated"] is True


def test_a_budget_below_the_floor_is_refused_naming_the_argument(served: Any) -> None:
    async def call() -> str:
        async with Client(served, mode="legacy") as client:
            result = await client.call_tool("memory_search", {"query": "w1", "max_tokens": 10})
        assert result.is_error
        return result.content[0].text  # type: ignore[union-attr]

    assert anyio.run(call) == "max_tokens: must be from 50 to 100000 (got 10)"
