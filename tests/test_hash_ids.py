"""IdsByHash (the dedup lookup) answers like a plain dict of sets under any add/discard mix."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from memvid_mcp.store.hash_ids import IdsByHash

ops = st.lists(st.tuples(st.booleans(), st.sampled_from("abc"), st.sampled_from("wxyz")),
               max_size=60)


@given(ops)
def test_matches_a_dict_of_sets(steps: list[tuple[bool, str, str]]) -> None:
    index, reference = IdsByHash(), {}
    for add, sha, memory_id in steps:
        if add:
            index.add(sha, memory_id)
            reference.setdefault(sha, set()).add(memory_id)
        else:
            index.discard(sha, memory_id)
            reference.get(sha, set()).discard(memory_id)
            if not reference.get(sha, True):
                del reference[sha]
        for key in "abc":
            assert sorted(index.ids(key)) == sorted(reference.get(key, ()))
        assert len(index) == len(reference)


def test_a_lone_id_is_kept_without_a_set() -> None:
    index = IdsByHash()
    index.add("h", "m1")
    assert index._ids == {"h": "m1"}  # no per-memory set: what saves ~216 B a memory
    index.add("h", "m2")
    index.discard("h", "m1")
    assert index._ids == {"h": "m2"}
