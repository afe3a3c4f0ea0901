"""Corruption is detected, named, and repaired without losing evidence or healthy memories."""

from __future__ import annotations

from pathlib import Path

from memvid_mcp.core.errors import CorruptionError
from memvid_mcp.manager import MemoryManager


def _open(data_dir: Path, project: Path) -> MemoryManager:
    return MemoryManager.open(data_dir, project=project, embeddings=False)


def test_damaged_body_is_quarantined_and_the_rest_served(data_dir: Path,
                                                        outside_repo: Path) -> None:
    with _open(data_dir, outside_repo) as m:
        ids = [m.store(f"healthy memory number {i}").id for i in range(5)]
        victim = m.store("this body will be damaged").id
        record = m._scope("global").record(victim)
        assert record is not None
        m.flush()
        for _ in range(2):  # two checkpoints: the WAL no longer holds the text
            m._scope("global").checkpoint(force=True)
    assert b"will be damaged" not in b"".join(
        p.read_bytes() for p in (data_dir / "global" / "wal").glob("*.log"))
    (target,) = (data_dir / "global" / "bodies").glob(f"*/{record.body_id}.mvb")
    original = target.read_bytes()
    damaged = original[:-5] + bytes(b ^ 0x55 for b in original[-5:])
    target.write_bytes(damaged)
    with _open(data_dir, outside_repo) as m:
        (problem,) = m.verify()
        assert problem.memory_ids == (victim,) and problem.path == str(target)
        assert len(m.get(ids).memories) == 5  # undamaged memories keep being served
        report = m.repair()["global"]
        assert report["memories_unreadable"] == [victim]
        quarantine = Path(report["quarantine"])
        assert (quarantine / "unreadable.jsonl").read_text().count(victim) == 1
        copies = list(quarantine.rglob("*.mvb"))
        assert [c.read_bytes() for c in copies] == [damaged]
        assert m.verify() == []
        assert len(m.get(ids).memories) == 5
        assert [h.id for h in m.search("damaged body").results] == []


def test_lexical_index_damage_is_rebuilt_on_open(data_dir: Path, outside_repo: Path) -> None:
    with _open(data_dir, outside_repo) as m:
        kept = m.store("an index that will be rebuilt").id
    meta = data_dir / "global" / "meta" / "lexical" / "memvid_lexical.json"
    meta.write_text("{not json")
    with _open(data_dir, outside_repo) as m:
        assert [h.id for h in m.search("index rebuilt").results] == [kept]


def test_truncated_wal_tail_is_reported_not_fatal(data_dir: Path, outside_repo: Path) -> None:
    with _open(data_dir, outside_repo) as m:
        kept = m.store("written before the damage").id
        m._scope("global").wal.append({"op": "put", "record": {}, "text": "x" * 50})
        wal_file = m._scope("global").wal.files()[-1]
        m._scope("global")._scope_lock.release()
        m._scope("global").lexical.close()
        m._stop.set()  # simulate a crash: background threads stop, nothing more is written
        for thread in m._threads:
            thread.join(timeout=30)
        m._closed = True
    wal_file.write_bytes(wal_file.read_bytes()[:-20])
    with _open(data_dir, outside_repo) as m:
        assert m.get(kept).memories
        problems = m.verify()
        assert any("torn" in p.message for p in problems)
        assert m.store("the store accepts new writes").scope == "global"


def test_damaged_snapshot_falls_back_to_the_previous_one(data_dir: Path,
                                                          outside_repo: Path) -> None:
    with _open(data_dir, outside_repo) as m:
        first = m.store("stored before the first checkpoint", tags=["a"]).id
        m._scope("global").checkpoint(force=True)
        second = m.store("stored between the checkpoints").id
        m.delete(first)
        third = m.store("stored after the last checkpoint").id
    meta = data_dir / "global" / "meta"
    assert (meta / "snapshot.prev.jsonl.zst").exists()
    snapshot = meta / "snapshot.jsonl.zst"
    damaged = bytearray(snapshot.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(damaged))
    with _open(data_dir, outside_repo) as m:
        assert m.get(first).missing == (first,)  # the delete after the old snapshot holds
        assert {x.text for x in m.get([second, third]).memories} == {
            "stored between the checkpoints", "stored after the last checkpoint"}
        assert any(p.path == str(snapshot) for p in m.verify())
        report = m.repair()["global"]
        assert str(snapshot) in report["files_quarantined"]
        assert m.verify() == []
    with _open(data_dir, outside_repo) as m:
        assert len(m.get([second, third]).memories) == 2 and m.verify() == []


def test_get_serves_healthy_ids_beside_a_damaged_one(data_dir: Path, outside_repo: Path) -> None:
    with _open(data_dir, outside_repo) as m:
        healthy = m.store("a healthy neighbour").id
        victim = m.store("the damaged one").id
        record = m._scope("global").record(victim)
        assert record is not None
    (target,) = (data_dir / "global" / "bodies").glob(f"*/{record.body_id}.mvb")
    target.write_bytes(target.read_bytes()[:-3] + b"\x00\x00\x00")
    with _open(data_dir, outside_repo) as m:
        result = m.get([healthy, victim])
        assert [x.id for x in result.memories] == [healthy]
        assert [p.memory_ids for p in result.damaged] == [(victim,)]
        assert result.to_dict()["damaged"][0]["path"] == str(target)


def test_verify_names_memories_missing_from_the_lexical_index(data_dir: Path,
                                                             outside_repo: Path) -> None:
    with _open(data_dir, outside_repo) as m:
        kept = m.store("a memory about quokkas").id
        lost = m.store("a memory about wombats").id
        scope = m._scope("global")
        scope.lexical.delete([lost])  # what a commit claiming an unapplied record leaves
        scope.lexical.commit(scope.wal.last_seq)
        assert m.get([kept, lost]).missing == ()
        (problem,) = m.verify()
        assert problem.memory_ids == (lost,)
        assert problem.path.endswith("lexical") and "missing from the lexical index" in \
            problem.message
        m.repair()
        assert m.verify() == []
        assert [h.id for h in m.search("wombats", mode="lexical").results] == [lost]


def test_verify_names_memories_with_no_vector_once_the_scope_has_vectors(
        data_dir: Path, outside_repo: Path) -> None:
    import numpy as np

    with _open(data_dir, outside_repo) as m:
        ids = [m.store(f"memory number {i} about kiwis").id for i in range(4)]
        scope = m._scope("global")
        assert m.verify() == []  # no vectors yet: nothing is expected of the vector index
        bodies = sorted(scope._by_body)
        scope.add_vectors(bodies, np.random.default_rng(0).random((4, 384), dtype=np.float32))
        scope.embed_queue.clear()  # all embedded
        assert m.verify() == []
        victim_body = scope.records().__next__().body_id
        victim = scope._by_body[victim_body]
        scope.vectors.delete([victim_body])  # a vector lost, and nothing queued to redo it
        (problem,) = m.verify()
        assert problem.memory_ids == (victim,) and victim in ids
        assert problem.path.endswith("vectors") and "no vector" in problem.message
        m.repair()
        assert list(scope.embed_queue) == [victim_body]  # re-embedded by the next pass
        assert m.verify() == []


def test_a_damaged_lexical_doc_store_never_blinds_search_silently(data_dir: Path,
                                                                 outside_repo: Path) -> None:
    """Regression (corruption sweep, 2026-11-29): a flipped byte in tantivy's stored fields
    changed the ids search returns while the term dictionary still found the right ones, and
    verify re-checked with the latter, so lexical search went blind with nothing reported."""
    words = [f"zq{i}xw" for i in range(8)]
    with _open(data_dir, outside_repo) as m:
        ids = {word: m.store(f"the note that mentions {word} only").id for word in words}
    (doc_store,) = (data_dir / "global" / "meta" / "lexical").glob("*.store")
    pristine = doc_store.read_bytes()
    blinded = 0
    for at in range(8, min(len(pristine), 48), 4):
        damaged = bytearray(pristine)
        damaged[at] ^= 0x01
        doc_store.write_bytes(bytes(damaged))
        with _open(data_dir, outside_repo) as m:
            try:
                misses = [w for w in words
                          if [h.id for h in m.search(w, mode="lexical").results][:1] != [ids[w]]]
            except CorruptionError:
                misses = words
            problems = m.verify()
        if misses:
            blinded += 1
            assert any(p.path.endswith("lexical") for p in problems), (at, misses)
    doc_store.write_bytes(pristine)
    assert blinded  # the flips did hit what search returns (else this test checks nothing)
