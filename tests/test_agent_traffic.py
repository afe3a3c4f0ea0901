"""The video store under agent traffic (issue 11, items 1-4; ADR 0018): sealing cadence,
background compaction, where a body's text lives, and delete that deletes.

Real video segments (PyAV, zxing-cpp); segments are read back with tests/format_reader.py,
written from docs/format.md alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from format_reader import every_file_text, segment_stream
from memvid_mcp.cli.main import main as cli_main
from memvid_mcp.manager import MemoryManager
from memvid_mcp.storage.video import VideoStore, tiering
from memvid_mcp.storage.video.store import SEGMENT_RAW_LIMIT
from memvid_mcp.store.scope_store import ScopeStore

MINUTE = 60.0


def note(n: int, size: int = 480) -> str:
    """A distinct note of about ``size`` bytes; its first words are unique to it."""
    words = f"agent note {n} zq{n}marker "
    return (words + "the build uses ninja and caches objects per branch " * 20)[:size]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _open(data: Path, project: Path, **overrides: Any) -> MemoryManager:
    return MemoryManager.open(data, backend="video", project=project, embeddings=False,
                              **overrides)


def _tick(m: MemoryManager, store: ScopeStore) -> None:
    """What the background batcher does on each tick."""
    with m._maint_lock:
        if store.due():
            store.write_batch()
        store.apply_deletes()
        store.commit_indexes()
        store.checkpoint()


def _segments(scope: Path) -> list[Path]:
    return sorted((scope / "segments").glob("seg-*.mp4"))


@pytest.fixture
def clocked(data_dir: Path, outside_repo: Path) -> Iterator[tuple[MemoryManager, ScopeStore,
                                                                   Clock]]:
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        store = m._scope("global")
        clock = Clock()
        store.clock = clock
        yield m, store, clock


# ------------------------------------------------------------------------- cadence


def test_one_note_a_minute_seals_nothing_until_the_age_limit(clocked: Any,
                                                              data_dir: Path) -> None:
    m, store, clock = clocked
    for n in range(15):  # minutes 0..14: the oldest has waited less than 15 minutes
        m.store(note(n))
        _tick(m, store)
        assert _segments(data_dir / "global") == [], f"sealed after note {n}"
        clock.now += MINUTE
    m.store(note(15))  # minute 15: the first note reached the age limit
    _tick(m, store)
    (segment,) = _segments(data_dir / "global")
    stream = segment_stream(segment)
    assert all(note(n).encode() in stream for n in range(16))  # one segment, all 16 notes
    assert store.pending_count == 0


def test_notes_seal_at_the_size_threshold(data_dir: Path, outside_repo: Path) -> None:
    with _open(data_dir, outside_repo, auto_compact=False, seal_max_seconds=10_000_000,
               batch_max_memories=100_000) as m:
        store = m._scope("global")
        store.clock = clock = Clock()
        n = 0
        while store.stats()["pending_text_bytes"] + len(note(n)) < m.settings.seal_min_bytes:
            m.store(note(n))
            _tick(m, store)
            clock.now += MINUTE
            n += 1
        assert _segments(data_dir / "global") == [] and n > 100
        m.store(note(n))  # crosses 64 KiB
        _tick(m, store)
        assert len(_segments(data_dir / "global")) == 1
        assert [r.id for r in m.get([m.list(limit=1).memories[0].id]).memories]


def test_pending_age_survives_a_reopen(data_dir: Path, outside_repo: Path) -> None:
    """A body waiting in the WAL keeps its age across a restart (not reset to zero)."""
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        store = m._scope("global")
        memory_id = m.store(note(1)).id
        # close seals everything: simulate a process that died with the body pending
        store.write_batch = lambda **_: 0  # type: ignore[method-assign]
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        store = m._scope("global")
        assert store.pending_count == 1
        clock = Clock()
        clock.now = m.get(memory_id).memories[0].record.updated_at.timestamp()
        clock.now += m.settings.seal_max_seconds - 1
        store.clock = clock
        assert not store.due()
        clock.now += 1
        assert store.due()


# ------------------------------------------------------------------------- compaction


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=300_000), min_size=1, max_size=80))
def test_merges_rewrite_each_byte_a_bounded_number_of_times(sizes: list[int]) -> None:
    base, cap = 64 << 10, SEGMENT_RAW_LIMIT
    bound = tiering.merge_rewrite_bound(base, cap)
    assert bound == 3
    segs: dict[str, tuple[int, dict[int, int]]] = {}  # ulid -> (live, {body: rewrites})
    serial = 0
    for body, size in enumerate(sizes):
        serial += 1
        segs[f"{serial:026d}"] = (size, {body: 0})
        while True:
            plans = tiering.plan([tiering.SegmentInfo(u, live, live) for u, (live, _) in
                                  segs.items()], base=base, cap=cap, live_threshold=0.7,
                                 purge_before=None)
            if not plans:
                break
            group = plans[0].segments
            assert plans[0].reason == "merge"
            tiers = {tiering.tier(segs[u][0], base) for u in group}
            assert len(tiers) == 1  # one tier at a time
            merged = sum(segs[u][0] for u in group)
            assert tiering.tier(merged, base) > tiers.pop() and merged <= cap
            bodies = {b: r + 1 for u in group for b, r in segs.pop(u)[1].items()}
            serial += 1
            segs[f"{serial:026d}"] = (merged, bodies)
    assert max(r for _, bodies in segs.values() for r in bodies.values()) <= bound
    for t in range(bound):  # no tier that merges is left with enough to merge
        assert sum(live for live, _ in segs.values() if tiering.tier(live, base) == t) \
            < tiering.next_floor(t, base) or \
            sum(1 for live, _ in segs.values() if tiering.tier(live, base) == t) < 2


def test_background_steps_merge_small_segments_within_the_rewrite_bound(tmp_path: Path) -> None:
    base = 2048
    store = VideoStore(tmp_path, tier_base=base)
    moves: dict[str, int] = {}
    for n in range(24):  # 24 tiny seals, as age-limited seals of a quiet agent make
        store.put_many([(f"b{n}", note(n, 400).encode())])
    assert store.stats().details["segments"] == 24
    while True:
        before = dict(store._loc)
        tiers = {s.ulid: tiering.tier(s.live_bytes, base) for s in store._segs.values()}
        if store.compact_step() is None:
            break
        for body_id, loc in store._loc.items():
            if loc.seg != before[body_id].seg:
                moves[body_id] = moves.get(body_id, 0) + 1
                new_tier = tiering.tier(store._segs[loc.seg].live_bytes, base)
                assert new_tier > tiers[before[body_id].seg]  # every move goes up a tier
    details = store.stats().details
    assert details["segments"] < 24 / 4
    assert max(moves.values()) <= tiering.merge_rewrite_bound(base, SEGMENT_RAW_LIMIT)
    assert details["rewrite_ratio"] == pytest.approx(
        sum(moves[b] * len(note(int(b[1:]), 400)) for b in moves) / (24 * 400), abs=1e-3)
    assert details["write_amplification"] > 0
    store.close()
    reopened = VideoStore(tmp_path, tier_base=base)
    assert all(reopened.get(f"b{n}") == note(n, 400).encode() for n in range(24))
    assert reopened.stats().details["rewrite_ratio"] == details["rewrite_ratio"]  # persisted
    reopened.close()


def test_the_compactor_thread_merges_without_anyone_asking(data_dir: Path,
                                                           outside_repo: Path) -> None:
    import memvid_mcp.manager as manager_module

    old = manager_module.COMPACT_INTERVAL_SECONDS
    manager_module.COMPACT_INTERVAL_SECONDS = 0.1
    try:
        with _open(data_dir, outside_repo, seal_min_bytes=2048) as m:
            ids = []
            for n in range(8):
                ids.append(m.store(note(n)).id)
                m.flush()  # one segment each
            store = m._scope("global")
            deadline = threading.Event()
            for _ in range(600):  # the compactor works on its own; wait for its result
                if store.stats()["segments"] < 8:
                    break
                deadline.wait(0.1)
            assert store.stats()["segments"] < 8
            assert [x.text for x in m.get(ids).memories] == [note(n) for n in range(8)]
    finally:
        manager_module.COMPACT_INTERVAL_SECONDS = old


def test_store_get_and_search_complete_while_a_compaction_is_encoding(
        data_dir: Path, outside_repo: Path) -> None:
    with _open(data_dir, outside_repo, auto_compact=False, seal_min_bytes=1024) as m:
        old_ids = []
        for n in range(6):
            old_ids.append(m.store(note(n)).id)
            m.flush()
        store = m._scope("global")
        backend = store.backend
        assert isinstance(backend, VideoStore)
        encoding, release = threading.Event(), threading.Event()
        real_seal = backend._seal

        def held_seal(bodies: list[bytes]) -> Any:
            encoding.set()
            release.wait(120)  # held mid-compaction (inside the backend's writer lock)
            return real_seal(bodies)

        backend._seal = held_seal  # type: ignore[method-assign]
        outcome: list[Any] = []
        worker = threading.Thread(target=lambda: outcome.append(store.compact_step()))
        worker.start()
        try:
            assert encoding.wait(60)
            fresh = m.store("stored while the compactor encodes zqduring").id
            hits = m.search("zqduring", mode="lexical").results
            got = m.get([*old_ids, fresh])
            old_hit = m.search("zq3marker", mode="lexical").results
            assert worker.is_alive()  # all of the above finished with compaction in progress
        finally:
            release.set()
            worker.join(120)
        backend._seal = real_seal  # type: ignore[method-assign]
        assert [h.id for h in hits] == [fresh] and old_hit[0].id == old_ids[3]
        assert [x.text for x in got.memories] == [note(n) for n in range(6)] + [
            "stored while the compactor encodes zqduring"]
        assert outcome and outcome[0] is not None and outcome[0].segments_removed >= 2
        assert [x.text for x in m.get(old_ids).memories] == [note(n) for n in range(6)]


# ------------------------------------------------------------------------- plaintext


def _holders(root: Path, text: str) -> list[str]:
    return [str(p.relative_to(root)) for p, data in every_file_text(root).items()
            if text.encode() in data]


def test_after_flush_and_one_checkpoint_only_segments_and_the_wal_tail_hold_text(
        data_dir: Path, outside_repo: Path) -> None:
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        store = m._scope("global")
        sealed = [note(n) for n in range(40)]
        for text in sealed:
            m.store(text)
        m.flush()
        pending = note(1000)
        m.store(pending)  # stays unsealed: below every threshold
        store.checkpoint()  # one checkpoint (the batcher runs one every tick)
        root = data_dir / "global"
        for text in sealed:
            holders = _holders(root, text)
            assert holders and all(h.startswith("segments/seg-") and h.endswith(".mp4")
                                   for h in holders), holders
        holders = _holders(root, pending)  # the unsealed body: only in the WAL
        assert holders and all(h.startswith("wal/") for h in holders), holders
        assert store.stats()["pending_bodies"] == 1
    # and after reopening, every text is still served
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        assert {x.text for x in m.get([r.id for r in m.list(limit=100).memories]).memories} \
            == set(sealed) | {pending}


def test_a_damaged_snapshot_still_opens_after_the_text_left_the_wal(
        data_dir: Path, outside_repo: Path) -> None:
    """The previous snapshot plus the scrubbed WAL still rebuild every memory."""
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        store = m._scope("global")
        first = [m.store(note(n)).id for n in range(5)]
        m.flush()
        store.checkpoint(force=True)
        second = [m.store(note(n)).id for n in range(5, 10)]
        m.flush()
        m.delete(first[0])
        _tick(m, store)
    snapshot = data_dir / "global" / "meta" / "snapshot.jsonl.zst"
    snapshot.write_bytes(b"\x00" * 40)
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        got = m.get(first + second)
        assert got.missing == (first[0],)
        assert [x.text for x in got.memories] == [note(n) for n in range(1, 10)]
        assert any("snapshot" in p.path for p in m.verify())


# ------------------------------------------------------------------------- delete


def test_delete_with_purge_removes_the_text_from_every_file(data_dir: Path,
                                                            outside_repo: Path) -> None:
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        ids = [m.store(note(n)).id for n in range(30)]
        m.flush()
        waiting = m.store(note(500)).id  # deleted while still pending (never sealed)
        assert m.delete([ids[3], ids[17], waiting], purge=True) == 3
        root = data_dir / "global"
        for n in (3, 17, 500):
            assert _holders(root, note(n)) == [], n
            assert _holders(root, f"zq{n}marker ") == [], n
        for n in (0, 4, 29):
            assert _holders(root, note(n))  # the others are still stored
        assert m.get([ids[3]]).missing == (ids[3],)
        assert len(m.get(ids).memories) == 28
        assert m.verify() == []
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        assert len(m.get(ids).memories) == 28 and m.verify() == []


def test_deleted_text_leaves_segments_by_itself_after_the_purge_delay(clocked: Any,
                                                                      data_dir: Path) -> None:
    m, store, clock = clocked
    ids = [m.store(note(n)).id for n in range(30)]
    m.flush()
    m.delete(ids[5])
    _tick(m, store)
    root = data_dir / "global"
    assert _holders(root, note(5))  # hidden, still in its segment
    assert m.get(ids[5]).missing == (ids[5],)
    assert store.compact_step() is None  # within the purge delay: a single delete waits
    clock.now = time.time() + m.settings.purge_after_seconds + 1
    assert store.compact_step() is not None
    assert _holders(root, note(5)) == []
    assert len(m.get(ids).memories) == 29


def test_the_purge_deadline_survives_a_restart(data_dir: Path, outside_repo: Path) -> None:
    """A deleted body's place and deletion time stay in the manifest across a compaction."""
    with _open(data_dir, outside_repo, auto_compact=False, seal_min_bytes=1024) as m:
        with m._maint_lock:  # the batcher waits: the 20 notes make one segment, not 2-3
            ids = [m.store(note(n)).id for n in range(20)]
        m.flush()
        m.delete(ids[2])
        m.flush()
        for n in range(100, 104):
            m.store(note(n))
            m.flush()
        store = m._scope("global")
        backend = store.backend
        assert isinstance(backend, VideoStore)
        merged = backend.compact_step()  # merges the four small ones, not the larger one
        assert merged is not None and merged.segments_removed >= 2
        assert backend.stats().details["deleted_text_bytes"] == len(note(2))
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        store = m._scope("global")
        backend = store.backend
        assert isinstance(backend, VideoStore)
        assert backend.stats().details["deleted_text_bytes"] == len(note(2))
        assert backend.compact_step(time.time()) is None  # not yet due
        report = backend.compact_step(time.time() + m.settings.purge_after_seconds + 5)
        assert report is not None
        assert _holders(data_dir / "global", note(2)) == []


def test_purge_command_erases_everything_already_deleted(data_dir: Path,
                                                         outside_repo: Path) -> None:
    with _open(data_dir, outside_repo, auto_compact=False) as m:
        ids = [m.store(note(n)).id for n in range(12)]
        m.flush()
        m.delete(ids[:4])
    assert _holders(data_dir / "global", note(1))
    result = CliRunner().invoke(cli_main, ["--data-dir", str(data_dir), "--project",
                                           str(outside_repo), "--json", "purge"])
    assert result.exit_code == 0, result.output
    for n in range(4):
        assert _holders(data_dir / "global", note(n)) == []
    assert _holders(data_dir / "global", note(7))


def test_cli_delete_purge_with_the_file_backend(data_dir: Path, outside_repo: Path) -> None:
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False,
                            backend="file") as m:
        ids = [m.store(note(n)).id for n in range(5)]
        m.flush()
        body = m._scope("global").record(ids[1]).body_id  # type: ignore[union-attr]
    assert list((data_dir / "global" / "bodies").glob(f"*/{body}.mvb"))
    result = CliRunner().invoke(cli_main, ["--data-dir", str(data_dir), "--project",
                                           str(outside_repo), "--json", "delete", "--purge",
                                           ids[1]])
    assert result.exit_code == 0, result.output
    assert '"purged": true' in result.output
    assert not list((data_dir / "global" / "bodies").glob(f"*/{body}.mvb"))
    assert _holders(data_dir / "global", note(1)) == []
    assert _holders(data_dir / "global", note(2))
