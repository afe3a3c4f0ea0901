"""The video store's packed location table (ADR 0034) against a plain dict replay."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memvid_mcp.storage.video import loctable
from memvid_mcp.storage.video.loctable import Loc, LocBuilder, LocTable

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEGS = ["01J0000000000000000000000A", "01J0000000000000000000000B", "01J0000000000000000000000C"]
# simple ULID-like ids, ids that share a prefix, and ids the arrays cannot hold (kept aside)
IDS = st.sampled_from(["01HZZZZZZZZZZZZZZZZZZZZZZ1", "01HZZZZZZZZZZZZZZZZZZZZZZ2", "a", "ab",
                       "käse-数据", "x" * 80, "ends-with-nul\0", "\udcff-lone-surrogate"])
LOCS = st.builds(
    Loc, st.sampled_from(SEGS), st.integers(0, 3000), st.integers(0, 1 << 20),
    st.one_of(st.integers(0, 5000), st.just(1 << 33)), st.integers(1, 4),
    st.sampled_from(["0123456789abcdef", "f" * 64, ""]),
    st.sampled_from(["", "2026-11-29T12:00:00.000Z"]))
OPS = st.lists(st.one_of(st.tuples(st.just("put"), IDS, LOCS),
                         st.tuples(st.just("del"), IDS, st.floats(0, 1e9))), max_size=40)


def _replay(ops: list[tuple[str, str, object]]) -> tuple[dict[str, Loc], dict[object, object]]:
    """What the store's loader did before the builder: a dict, a put replaces, a delete
    moves the current one to the dead."""
    live: dict[str, Loc] = {}
    dead: dict[object, object] = {}
    for op, body_id, arg in ops:
        if op == "put":
            assert isinstance(arg, Loc)
            live[body_id] = arg
        else:
            gone = live.pop(body_id, None)
            if gone is not None:
                dead[(gone.seg, body_id)] = (gone, arg, "ts")
    return live, dead


def _same(table: LocTable, expected: dict[str, Loc]) -> None:
    assert len(table) == len(expected)
    assert dict(table.items()) == expected
    assert sorted(table) == sorted(expected)
    assert list(table.values()).count(None) == 0 and len(list(table.values())) == len(expected)
    for body_id, loc in expected.items():
        assert body_id in table and table[body_id] == loc and table.get(body_id) == loc
    for body_id in ("01HZZZZZZZZZZZZZZZZZZZZZZ3", "01HZZZZZZZZZZZZZZZZZZZZZZ", "nope"):
        assert body_id not in expected and body_id not in table and table.get(body_id) is None
    totals: dict[str, tuple[int, int]] = {}
    for loc in expected.values():
        count, size = totals.get(loc.seg, (0, 0))
        totals[loc.seg] = (count + 1, size + loc.length)
    assert table.segment_totals() == totals
    assert table.segments() == set(totals)


@FAST
@given(OPS)
def test_loading_puts_and_deletes_gives_what_replaying_them_into_a_dict_gives(
        ops: list[tuple[str, str, object]]) -> None:
    builder = LocBuilder()
    for op, body_id, arg in ops:
        if op == "put":
            assert isinstance(arg, Loc)
            builder.put(body_id, arg)
        else:
            assert isinstance(arg, float)
            builder.delete(body_id, arg, "ts")
    table, dead = builder.build()
    expected, expected_dead = _replay(ops)
    _same(table, expected)
    assert dead == expected_dead


@FAST
@given(OPS, st.lists(st.tuples(IDS, LOCS), max_size=30), st.integers(0, 6))
def test_a_table_changed_in_place_and_folded_matches_a_dict(
        ops: list[tuple[str, str, object]], later: list[tuple[str, Loc]], fold_min: int) -> None:
    live, _ = _replay(ops)
    table = LocTable(live)
    loctable_fold_min = loctable.FOLD_MIN
    loctable.FOLD_MIN = fold_min  # fold often: every path through the arrays is taken
    try:
        for n, (body_id, loc) in enumerate(later):
            if n % 3 == 2:
                assert table.pop(body_id) == live.pop(body_id) if body_id in live else (
                    body_id not in table)
            else:
                table[body_id] = live[body_id] = loc
            _same(table, live)
        moved = {i: loc._replace(frame=loc.frame + 1) for i, loc in list(live.items())[::2]}
        _same(table.moved(moved), {**live, **moved})
        table.fold()
        _same(table, live)
    finally:
        loctable.FOLD_MIN = loctable_fold_min


def test_a_reader_finds_a_body_moved_while_it_looked_up_its_row(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers take no lock: a packed body given a new place by the writer between the
    reader's look at ``over`` and its row lookup is still found, at its new place."""
    old = Loc("01ARZ3NDEKTSV4RRFFQ69G5FAV", 1, 0, 10, 1, "ab" * 32, "t")
    new = old._replace(seg="01ARZ3NDEKTSV4RRFFQ69G5FAW")
    table = LocTable({"body": old})
    real_row = loctable._Packed.row
    moved: list[bool] = []

    def row(self: loctable._Packed, body_id: str) -> int:
        if not moved:  # the writer runs between the reader's two looks
            moved.append(True)
            table["body"] = new
        return real_row(self, body_id)

    monkeypatch.setattr(loctable._Packed, "row", row)
    assert table.get("body") == new
    moved.clear()
    table.fold()
    assert table.get("body") == new and "body" in table
    moved.clear()
    assert "body" in table
