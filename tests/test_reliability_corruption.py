"""Corruption matrix (issue 6): every durable file kind x {flipped byte, truncation}.

Each case builds a small store, closes it (or, for the WAL, takes a crash image: a copy of the
directory while the writer is still open, so the WAL still holds records), damages one file,
reopens, and checks:

- detection: ``verify`` names the damaged file and, where bodies are affected, the memory ids;
- everything undamaged keeps being served with its exact text;
- ``repair`` leaves ``verify`` clean (or the remaining problems are the ones it says it cannot
  fix), with the damaged original preserved under ``quarantine/``.

A damaged metadata snapshot is survived: the previous snapshot and the WAL back to it are kept
(see docs/reliability.md). A flipped byte in the vector rows (``vectors-<n>.i8``) is found by
verify's CRC check and repair re-embeds the rows from the bodies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from format_reader import copy_live_tree
from memvid_mcp.core.errors import CorruptionError, NotFoundError, StorageError
from memvid_mcp.core.models import Problem
from memvid_mcp.manager import MemoryManager
from memvid_mcp.search.lexical import META_FILE, LexicalDoc, LexicalIndex
from memvid_mcp.storage.video import mvi

N_MEMORIES = 8


@dataclass
class Built:
    data: Path  # the data dir to reopen (a crash image for WAL cases)
    project: Path
    backend: str
    texts: dict[str, str]  # memory id -> exact text
    body_of: dict[str, str]  # body id -> memory id

    @property
    def scope(self) -> Path:
        return self.data / "global"

    def open(self) -> MemoryManager:
        return MemoryManager.open(self.data, backend=self.backend, project=self.project,
                                  embeddings=False)


def build(tmp: Path, backend: str, *, crash_image: bool = False) -> Built:
    data, project = tmp / "data", tmp / "work"
    project.mkdir(exist_ok=True)
    m = MemoryManager.open(data, backend=backend, project=project, embeddings=False,
                           checkpoint_wal_bytes=1 << 30)
    texts = {}
    for i in range(N_MEMORIES):
        text = f"memory {i} about topic{i} Δ " + "filler words " * (i * 15)
        texts[m.store(text, tags=[f"t{i}"]).id] = text
    m.flush()
    scope = m._scope("global")
    body_of = dict(scope._by_body)
    bodies = sorted(body_of)
    vectors = np.random.default_rng(0).random((len(bodies), 384), dtype=np.float32)
    scope.add_vectors(bodies, vectors)  # real vector files without loading a model
    scope.commit_indexes(force=True)
    if crash_image:
        image = tmp / "image"
        copy_live_tree(data, image)
        m.close()
        return Built(image, project, backend, texts, body_of)
    m.close()
    return Built(data, project, backend, texts, body_of)


def damage(path: Path, fault: str, at: int | None = None) -> bytes:
    """Flip one byte (at ``at``, default the middle) or cut the file in half; returns it."""
    data = path.read_bytes()
    if fault == "flip":
        i = len(data) // 2 if at is None else at
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    else:
        data = data[: len(data) // 2 if at is None else at]
    path.write_bytes(data)
    return data


def served(m: MemoryManager, texts: dict[str, str]) -> dict[str, str]:
    """Memories readable with their exact text, one id at a time (a damaged one raises)."""
    out = {}
    for memory_id, text in texts.items():
        try:
            got = m.get(memory_id).memories
        except (CorruptionError, NotFoundError):  # damaged, or its location was lost
            continue
        if got:
            assert got[0].text == text, "a memory was served with changed text"
            out[memory_id] = text
    return out


def quarantined(scope: Path, relative: str) -> list[bytes]:
    return [p.read_bytes() for p in (scope / "quarantine").glob(f"*/{relative}")]


def names(problems: list[Problem], path: Path) -> list[Problem]:
    return [p for p in problems if Path(p.path) == path or p.path.startswith(f"{path}")]


# ------------------------------------------------------------------------- WAL


@pytest.mark.parametrize("fault", ["flip", "truncate"])
def test_wal_damage(tmp_path: Path, fault: str) -> None:
    built = build(tmp_path, "file", crash_image=True)
    # the file holding the records (the batcher may have rotated to a new one already, when
    # it let go of the stored bodies' text)
    wal = max((built.scope / "wal").glob("*.log"), key=lambda p: p.stat().st_size)
    damaged = damage(wal, fault)
    with built.open() as m:
        problems = m.verify()
        assert names(problems, wal), problems  # detected, file named
        kept = served(m, built.texts)
        assert 0 < len(kept) < N_MEMORIES  # records before the damage are replayed
        report = m.repair()["global"]
        assert str(wal) in report["files_quarantined"]
        assert m.verify() == []
        assert served(m, built.texts) == kept
        m.store("the store accepts writes after a repair")
    assert quarantined(built.scope, f"wal/{wal.name}") == [damaged]
    if fault == "flip":
        # Damage with records after it is reported as damage, never as a harmless torn tail,
        # and the bodies of the memories it hid are saved, not deleted.
        assert not any("torn" in p.message for p in problems)
        (orphans,) = (built.scope / "quarantine").glob("*/orphan-bodies.jsonl")
        saved = {json.loads(line)["text"] for line in orphans.read_text().splitlines()}
        assert saved | set(kept.values()) == set(built.texts.values())
    with built.open() as m:
        assert m.verify() == []


# -------------------------------------------------------------------- snapshot


@pytest.mark.parametrize("fault", ["flip", "truncate"])
def test_snapshot_damage_falls_back_to_the_retained_wal(tmp_path: Path, fault: str) -> None:
    """The WAL is kept back to the previous snapshot, so a damaged snapshot is named by
    verify while every memory is still served; repair writes a fresh one."""
    built = build(tmp_path, "file")
    snapshot = built.scope / "meta" / "snapshot.jsonl.zst"
    damaged = damage(snapshot, fault)
    with built.open() as m:
        assert names(m.verify(), snapshot)
        assert served(m, built.texts) == built.texts
        assert snapshot.read_bytes() == damaged  # evidence untouched until repair copies it
        m.repair()
        assert m.verify() == []
        assert served(m, built.texts) == built.texts
    assert quarantined(built.scope, "meta/snapshot.jsonl.zst") == [damaged]
    proc = subprocess.run(
        [sys.executable, "-m", "memvid_mcp", "--data-dir", str(built.data), "--project",
         str(built.project), "verify"],
        capture_output=True, text=True, timeout=60,
        env={"MEMVID_EMBEDDINGS": "0", "PATH": "/usr/bin",  # the code under test, not main's
             **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------- file-backend body


@pytest.mark.parametrize("fault", ["flip", "truncate"])
def test_body_file_damage(tmp_path: Path, fault: str) -> None:
    built = build(tmp_path, "file")
    target = sorted((built.scope / "bodies").glob("*/*.mvb"))[-1]
    victim = built.body_of[target.stem]
    damaged = damage(target, fault)
    with built.open() as m:
        (problem,) = m.verify()
        assert problem.path == str(target) and problem.memory_ids == (victim,)
        healthy = {i: t for i, t in built.texts.items() if i != victim}
        assert served(m, built.texts) == healthy
        report = m.repair()["global"]
        # The body file was the only copy of a stored text (the WAL lets go of it once it
        # is stored, ADR 0018): the memory is quarantined with what could be salvaged.
        assert (report["memories_unreadable"], report["memories_restored"]) == ([victim], [])
        assert m.verify() == []
        assert served(m, built.texts) == healthy
    assert quarantined(built.scope, f"bodies/{target.parent.name}/{target.name}") == [damaged]
    (line,) = [json.loads(x) for x in quarantined(built.scope, "unreadable.jsonl")[0].splitlines()]
    assert line["id"] == victim and line["text_matches_sha256"] is False


# ---------------------------------------------------------------- rebuildable indexes


@pytest.mark.parametrize(
    ("relative", "fault"),
    [
        ("meta/lexical/memvid_lexical.json", "flip"),
        ("meta/lexical/memvid_lexical.json", "truncate"),
        ("meta/vectors/vectors.json", "flip"),
        ("meta/vectors/vectors.json", "truncate"),
        ("meta/vectors/vectors-*.i8", "truncate"),
        ("meta/vectors/vectors-*.i8", "flip"),
    ],
)
def test_index_damage_is_rebuilt_and_kept(tmp_path: Path, relative: str, fault: str) -> None:
    built = build(tmp_path, "file")
    (target,) = built.scope.glob(relative)
    relative = target.relative_to(built.scope).as_posix()
    at = 20 if relative.endswith(".json") and fault == "flip" else None  # inside a value
    damaged = damage(target, fault, at)
    with built.open() as m:
        problems = m.verify()
        assert any(relative.rsplit("/", 1)[0] in p.path for p in problems), problems
        assert served(m, built.texts) == built.texts
        hits = m.search("topic3", mode="lexical").results
        assert [h.id for h in hits][:1] == [i for i, t in built.texts.items() if "topic3" in t]
        m.repair()
        assert m.verify() == []
    assert quarantined(built.scope, relative) == [damaged]  # moved aside, not deleted
    with built.open() as m:
        assert m.verify() == []
        assert m.stats()[0].memories == N_MEMORIES


def test_flipped_vector_row_is_detected_and_re_embedded(tmp_path: Path) -> None:
    """The vector row and delete files carry CRC-32s that verify checks; repair rebuilds the index
    (the rows are recomputed from the bodies); nothing is lost or served wrongly meanwhile."""
    built = build(tmp_path, "file")
    (rows,) = (built.scope / "meta" / "vectors").glob("vectors-*.i8")
    damage(rows, "flip")
    with built.open() as m:
        assert names(m.verify(), rows)
        assert served(m, built.texts) == built.texts
        m.repair()
        assert m.verify() == []
        store = m._scope("global")
        assert len(store.vectors) == 0 and len(store.embed_queue) == N_MEMORIES


# ------------------------------------------------------------------ video backend


def _segment(built: Built, suffix: str) -> Path:
    (path,) = sorted((built.scope / "segments").glob(f"seg-*.{suffix}"))
    return path


@pytest.mark.parametrize("fault", ["flip", "truncate"])
def test_manifest_damage(tmp_path: Path, fault: str) -> None:
    built = build(tmp_path, "video")
    manifest = built.scope / "manifest.mvm"
    # Damage the last record (the put group of the last seal): its memories lose their
    # location.
    data = manifest.read_bytes()
    last = _last_record_start(data)
    at = last + (len(data) - last) // 2
    damaged = damage(manifest, fault, at)
    with built.open() as m:
        problems = m.verify()
        assert names(problems, manifest)
        # The lost location is healed: the body is found again in its segment (read without
        # the manifest, matched by size and SHA-256) and sealed again.
        assert served(m, built.texts) == built.texts
        report = m.repair()["global"]
        assert report["memories_unreadable"] == []
        remaining = m.verify()
        # A damaged manifest record stays reported until compaction rewrites the manifest.
        assert all(Path(p.path) == manifest and not p.memory_ids for p in remaining)
        assert served(m, built.texts) == built.texts
    # The healed body was sealed (appended) before repair copied the manifest, and a torn
    # tail is cut before an append: the copy keeps every whole record before the damage.
    (copy,) = quarantined(built.scope, "manifest.mvm")
    assert copy.startswith(damaged[:last])


def _last_record_start(data: bytes) -> int:
    from memvid_mcp.storage.video import manifest

    pos = start = len(manifest.HEADER)
    while pos < len(data):
        start = pos
        pos = manifest._record_at(data, pos)[1]
    return start


@pytest.mark.parametrize("fault", ["flip", "truncate"])
def test_frame_index_damage(tmp_path: Path, fault: str) -> None:
    built = build(tmp_path, "video")
    index, segment = _segment(built, "mvi"), _segment(built, "mp4")
    mp4_bytes = segment.read_bytes()
    damaged = damage(index, fault)
    with built.open() as m:
        problems = m.verify()
        (problem,) = names(problems, index)
        assert set(problem.memory_ids) == set(built.texts)  # every body of the segment
        report = m.repair()["global"]
        # The .mp4 still holds every text: read through its container, restored into a new
        # segment, none dropped.
        assert report["memories_unreadable"] == []
        assert sorted(report["memories_restored"]) == sorted(built.texts)
        assert m.verify() == []
        assert served(m, built.texts) == built.texts
        m.store("the store accepts writes after a repair")
    # The damaged index AND its segment (which still holds the text) are kept.
    assert quarantined(built.scope, f"segments/{index.name}") == [damaged]
    assert quarantined(built.scope, f"segments/{segment.name}") == [mp4_bytes]


@pytest.mark.parametrize("fault", ["flip", "truncate"])
def test_segment_damage(tmp_path: Path, fault: str) -> None:
    built = build(tmp_path, "video")
    segment, index_path = _segment(built, "mp4"), _segment(built, "mvi")
    index = mvi.loads(index_path.read_bytes())
    first = index.frames[0]
    # Inside the first frame's packet: a flip in its middle, or a cut through it.
    damaged = damage(segment, fault, first.offset + first.size // 2)
    with built.open() as m:
        problems = names(m.verify(), segment)
        assert problems
        affected = {i for p in problems for i in p.memory_ids}
        assert affected, problems  # the memories in the damaged frame are named
        healthy = {i: t for i, t in built.texts.items() if i not in affected}
        assert served(m, built.texts) == healthy
        report = m.repair()["global"]
        # The damaged frame held the only copy of their text (ADR 0018): quarantined; the
        # rest of the segment's memories are rewritten and keep being served.
        assert set(report["memories_unreadable"]) | set(report["memories_restored"]) \
            == affected
        assert m.verify() == []
        assert served(m, built.texts) == {**healthy, **{
            i: built.texts[i] for i in report["memories_restored"]}}
    assert quarantined(built.scope, f"segments/{segment.name}") == [damaged]


# -------------------------------------------------------------------------- CLI


def test_cli_repair_quarantines_and_comes_back_clean(tmp_path: Path) -> None:
    built = build(tmp_path, "file")
    target = sorted((built.scope / "bodies").glob("*/*.mvb"))[0]
    damage(target, "flip")
    base = [sys.executable, "-m", "memvid_mcp", "--data-dir", str(built.data), "--project",
            str(built.project), "--json"]
    env = {"MEMVID_EMBEDDINGS": "0", "PATH": "/usr/bin",  # the code under test, not main's
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    verify = subprocess.run([*base, "verify"], capture_output=True, text=True, timeout=60,
                            env=env)
    assert verify.returncode == 1
    (problem,) = json.loads(verify.stdout)["problems"]
    assert problem["path"] == str(target)
    assert problem["memory_ids"] == [built.body_of[target.stem]]
    repair = subprocess.run([*base, "repair"], capture_output=True, text=True, timeout=60,
                            env=env)
    assert repair.returncode == 0, repair.stderr
    out = json.loads(repair.stdout)
    assert out["remaining_problems"] == []
    assert Path(out["scopes"]["global"]["quarantine"]).is_dir()
    clean = subprocess.run([*base, "verify"], capture_output=True, text=True, timeout=60,
                           env=env)
    assert clean.returncode == 0 and json.loads(clean.stdout)["ok"] is True


# ------------------------------------------------ crash leftovers in the lexical index


def _doc(i: int) -> LexicalDoc:
    return LexicalDoc(id=f"id{i}", text=f"text {i}", title=None, tags=(), kind="note",
                      created_at=datetime.now(UTC), pinned=False)


def test_files_of_a_commit_killed_midway_do_not_block_the_next(tmp_path: Path) -> None:
    """Found by benchmarks/bench_crash.py: a writer killed after tantivy wrote a delete file
    but before meta.json left ``<seg>.<opstamp>.del``; replaying the same operations after the
    restart reached the same opstamp and every commit failed (FileAlreadyExists)."""
    root = tmp_path / "lexical"
    index = LexicalIndex(root)
    index.upsert([_doc(i) for i in range(10)])
    index.commit(1)
    index.close()
    before = (root / "meta.json").read_bytes(), (root / META_FILE).read_bytes()
    index = LexicalIndex(root)
    index.delete(["id1", "id2"])
    index.commit(2)
    index.close()
    assert list(root.glob("*.del"))
    (root / "meta.json").write_bytes(before[0])  # as if killed before meta.json was replaced
    (root / META_FILE).write_bytes(before[1])
    index = LexicalIndex(root)
    index.delete(["id1", "id2"])  # the same replayed operations: the same opstamp
    index.commit(2)
    assert [i for i, _ in index.search("text", 20)] == [f"id{i}" for i in range(10)
                                                         if i not in (1, 2)]
    index.close()


def test_a_lexical_index_that_cannot_commit_is_rebuilt_on_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = build(tmp_path, "file")
    real_commit = LexicalIndex.commit
    calls = {"n": 0}

    def fail_once(self: LexicalIndex, seq: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StorageError(f"{built.scope}/meta/lexical: lexical commit failed: "
                               "FileAlreadyExists")
        real_commit(self, seq)

    monkeypatch.setattr(LexicalIndex, "commit", fail_once)
    with built.open() as m:
        assert served(m, built.texts) == built.texts
        hits = m.search("topic5", mode="lexical").results
        assert [h.id for h in hits][:1] == [i for i, t in built.texts.items() if "topic5" in t]
        assert names(m.verify(), built.scope / "meta" / "lexical")
        m.repair()
        assert m.verify() == []
    assert list((built.scope / "quarantine").glob("*/meta/lexical/meta.json"))


# ------------------------------------------------------------- read-only verify


def _tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_verify_checks_vectors_and_lexical_and_writes_nothing(
        tmp_path: Path) -> None:
    """`memvid-mcp --read-only verify` (and the CLI's verify, which always opens read-only)
    used to skip the vector files and the writer's lexical index: damage printed ok."""
    built = build(tmp_path, "file")
    (rows,) = (built.scope / "meta" / "vectors").glob("vectors-*.i8")
    damage(rows, "flip")
    lexical_meta = built.scope / "meta" / "lexical" / META_FILE
    lexical_meta.write_text("{not json")
    before = _tree(built.data)
    with MemoryManager.open(built.data, project=built.project, embeddings=False,
                            read_only=True) as reader:
        problems = reader.verify()
        assert served(reader, built.texts) == built.texts
    assert names(problems, rows), problems
    assert names(problems, lexical_meta.parent), problems
    assert _tree(built.data) == before  # not one byte, name or mtime changed
    cli = subprocess.run(
        [sys.executable, "-m", "memvid_mcp", "--data-dir", str(built.data), "--project",
         str(built.project), "--json", "--read-only", "verify"],
        capture_output=True, text=True, timeout=60,
        env={"MEMVID_EMBEDDINGS": "0", "PATH": "/usr/bin",
             "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert cli.returncode == 1, cli.stderr
    paths = {p["path"] for p in json.loads(cli.stdout)["problems"]}
    assert str(rows) in paths and any(p.startswith(str(lexical_meta.parent)) for p in paths)
    assert _tree(built.data) == before
