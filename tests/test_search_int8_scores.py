"""int8_scores: onnxruntime's integer kernel gives the float product of query and codes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memvid_mcp.search import int8_scores


def _reference(codes_t: np.ndarray, query: np.ndarray) -> np.ndarray:
    out: np.ndarray = query.astype(np.float64) @ codes_t.astype(np.float64)
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 300), st.integers(0, 2**31 - 1))
def test_scores_equal_the_float_product(dim: int, n: int, seed: int) -> None:
    """Any query, any codes: the two-part int8 query loses < 1e-4 of the largest possible
    score (the ranking is the float one, not an approximation)."""
    rng = np.random.default_rng(seed)
    codes_t = rng.integers(-127, 128, (dim, n), dtype=np.int8)
    query = rng.standard_normal(dim).astype(np.float32) * rng.choice([1e-3, 1.0, 1e3])
    got = int8_scores.dot_columns(codes_t, query)
    bound = 127.0 * float(np.abs(query).sum())
    assert got.shape == (n,) and got.dtype == np.float32
    assert np.abs(got - _reference(codes_t, query)).max() <= 1e-4 * bound + 1e-6


def test_onnxruntime_serves_and_numpy_gives_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    codes_t = rng.integers(-127, 128, (384, 2000), dtype=np.int8)
    query = rng.standard_normal(384).astype(np.float32)
    assert int8_scores._get_session() is not None  # the kernel, not the fallback, is used
    fast = int8_scores.dot_columns(codes_t, query)
    monkeypatch.setattr(int8_scores, "_session", None)
    monkeypatch.setattr(int8_scores, "_session_failed", True)
    slow = int8_scores.dot_columns(codes_t, query)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-3)
    bound = 127.0 * float(np.abs(query).sum())
    assert np.abs(fast - _reference(codes_t, query)).max() <= 1e-5 * bound


def test_zero_query_scores_zero() -> None:
    codes_t = np.ones((8, 5), dtype=np.int8)
    assert not int8_scores.dot_columns(codes_t, np.zeros(8, dtype=np.float32)).any()
