"""MemoryManager behaviour: dedup, replace, delete, list, TTL, scopes, read-your-writes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memvid_mcp.core.errors import ScopeError, ValidationError
from memvid_mcp.manager import MemoryManager

# every test runs against the embedded engine and the team engine (ADR 0025)
pytestmark = pytest.mark.usefixtures("engine")


def test_store_get_round_trips_exact_text(manager: MemoryManager) -> None:
    text = "  Exact text\twith  odd spacing, ünïcödé and emoji 🧠\n"
    result = manager.store(text, title="t", tags="a,b", kind="fact", metadata={"k": [1]})
    assert not result.deduplicated and result.scope == "global"
    (memory,) = manager.get(result.id).memories
    assert memory.text == text
    assert memory.record.tags == ("a", "b")
    assert memory.record.metadata == {"k": [1]}
    assert memory.record.size == len(text.encode())


def test_exact_duplicate_folds_and_merges_tags(manager: MemoryManager) -> None:
    first = manager.store("Deploys go out on Tuesdays.", tags=["ops"])
    again = manager.store("\nDeploys go out on Tuesdays.  \r\n", tags=["process"])
    assert again.deduplicated and again.id == first.id and again.sha256 == first.sha256
    (memory,) = manager.get(first.id).memories
    assert memory.record.tags == ("ops", "process")
    assert memory.text == "Deploys go out on Tuesdays."
    assert len(manager.list().memories) == 1


def test_store_with_existing_id_replaces(manager: MemoryManager) -> None:
    first = manager.store("version one of the plan")
    second = manager.store("version two of the plan", id=first.id)
    assert second.replaced and second.id == first.id
    (memory,) = manager.get(first.id).memories
    assert memory.text == "version two of the plan"
    manager.flush()
    hits = manager.search("version one plan", mode="lexical").results
    assert [h.snippet for h in hits] == ["version two of the plan"]


def test_read_your_writes(manager: MemoryManager) -> None:
    stored = manager.store("The staging database password rotates monthly")
    hits = manager.search("when does the staging password rotate?").results
    assert hits and hits[0].id == stored.id
    assert "staging" in hits[0].snippet


def test_delete_leaves_no_ghosts(manager: MemoryManager) -> None:
    keep = manager.store("kubernetes cluster upgrade notes")
    gone = manager.store("kubernetes cluster teardown checklist")
    assert manager.delete(gone.id) == 1
    assert manager.delete(gone.id) == 0
    assert manager.get([gone.id, keep.id]).missing == (gone.id,)
    assert [h.id for h in manager.search("kubernetes cluster").results] == [keep.id]
    manager.flush()
    assert [h.id for h in manager.search("kubernetes cluster").results] == [keep.id]


def test_search_filters_apply_before_the_cut(manager: MemoryManager) -> None:
    for i in range(30):
        manager.store(f"release note number {i}", tags=["release"], kind="note")
    for i in range(5):
        manager.store(f"release decision number {i}", tags=["decision"], kind="decision")
    result = manager.search("release number", k=5, kind="decision")
    assert len(result.results) == 5
    assert {h.kind for h in result.results} == {"decision"}
    assert len(manager.search("release", k=3, tags_any="decision").results) == 3
    assert manager.search("release", tags_all=["decision", "release"]).results == ()


def test_search_pagination_with_cursor(manager: MemoryManager) -> None:
    for i in range(12):
        manager.store(f"paging test memory {i}")
    first = manager.search("paging memory", k=5, mode="lexical")
    assert first.next_cursor
    second = manager.search("paging memory", k=5, mode="lexical", cursor=first.next_cursor)
    assert not {h.id for h in first.results} & {h.id for h in second.results}
    with pytest.raises(ValidationError, match="cursor"):
        manager.search("another query", cursor=first.next_cursor)


def test_list_pages_newest_first(manager: MemoryManager) -> None:
    ids = [manager.store(f"listed memory {i}").id for i in range(7)]
    page = manager.list(limit=4)
    assert [m.id for m in page.memories] == ids[::-1][:4]
    rest = manager.list(limit=4, cursor=page.next_cursor)
    assert [m.id for m in rest.memories] == ids[::-1][4:]
    assert rest.next_cursor is None


def test_ttl_expiry_is_honoured_and_pruned(manager: MemoryManager) -> None:
    short = manager.store("expires very soon", ttl_seconds=0.05)
    lasting = manager.store("stays around")
    time.sleep(0.1)
    assert manager.get(short.id).missing == (short.id,)
    assert [h.id for h in manager.search("expires soon stays").results] == [lasting.id]
    assert manager.prune_expired() == 1
    assert len(manager.list().memories) == 1


def test_bad_input_writes_nothing(manager: MemoryManager) -> None:
    with pytest.raises(ValidationError):
        manager.store_many([{"text": "fine"}, {"text": ""}])
    with pytest.raises(ValidationError, match=r"items\[1\]\.text"):
        manager.store_many([{"text": "fine"}, {"text": "   "}])
    with pytest.raises(ScopeError):
        manager.store("needs a repo", scope="project")
    with pytest.raises(ValidationError, match="query"):
        manager.search("   ")
    assert manager.list().memories == ()


def test_secrets_are_redacted_and_reported(manager: MemoryManager) -> None:
    result = manager.store("the key is AKIAABCDEFGHIJKLMNOP, keep it safe")
    assert result.redactions == ("aws_access_key",)
    (memory,) = manager.get(result.id).memories
    assert "AKIA" not in memory.text and "[REDACTED:aws_access_key]" in memory.text


def test_everything_survives_reopen(data_dir: Path, outside_repo: Path) -> None:
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        kept = m.store("persisted across restarts", tags=["x"])
        gone = m.store("deleted before restart")
        m.delete(gone.id)
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        assert m.get(kept.id).memories[0].text == "persisted across restarts"
        assert m.get(gone.id).missing == (gone.id,)
        assert [h.id for h in m.search("persisted restarts").results] == [kept.id]
        assert m.verify() == []


def test_scopes_inside_a_repository(data_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with MemoryManager.open(data_dir, project=repo, embeddings=False) as m:
        project = m.store("project fact: uses poetry")
        shared = m.store("global fact: prefers tabs", scope="global")
        committed = m.store("committed fact: API is v2", scope="committed")
        assert project.scope == "project"
        searched = {h.id for h in m.search("fact").results}
        assert searched == {project.id, shared.id}  # project + global by default
        assert {h.id for h in m.search("fact", scopes=["committed"]).results} == {committed.id}
        assert (repo / ".memvid").is_dir()
    other = tmp_path / "other"
    (other / ".git").mkdir(parents=True)
    with MemoryManager.open(data_dir, project=other, embeddings=False) as m:
        assert {h.id for h in m.search("fact").results} == {shared.id}  # no bleeding


def test_checkpoint_then_reopen(data_dir: Path, outside_repo: Path) -> None:
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False,
                            checkpoint_wal_bytes=512, batch_max_memories=4) as m:
        ids = [m.store(f"checkpointed memory {i}").id for i in range(40)]
        m.delete(ids[:5])
        m.flush()
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        got = m.get(ids)
        assert len(got.memories) == 35 and set(got.missing) == set(ids[:5])
        assert m.verify() == []


def test_parallel_calls_in_one_process_are_safe(data_dir: Path, outside_repo: Path) -> None:
    import threading

    errors: list[BaseException] = []
    stored: dict[str, str] = {}
    deleted: set[str] = set()
    lock = threading.Lock()

    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False,
                            batch_max_memories=8, batch_max_seconds=0.01,
                            checkpoint_wal_bytes=4096) as m:
        def worker(n: int) -> None:
            try:
                for i in range(40):
                    text = f"thread {n} memory {i} " + "pad " * (i % 7)
                    result = m.store(text, tags=[f"t{n}"])
                    with lock:
                        stored[result.id] = text
                    if i % 5 == 0:
                        m.delete(result.id)
                        with lock:
                            deleted.add(result.id)
                    m.search(f"thread {n} memory", k=5)
                    m.list(limit=5)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        live = {i: t for i, t in stored.items() if i not in deleted}
        got = m.get(list(live))
        assert {mem.id: mem.text for mem in got.memories} == live
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        assert len(m.get(list(live)).memories) == len(live)
        assert set(m.get(list(deleted)).missing) == deleted
        assert m.verify() == []


def test_secrets_outside_the_text_are_redacted_and_reported_by_field(
        data_dir: Path, outside_repo: Path) -> None:
    aws, github = "AKIA" + "ABCDEFGHIJKLMNOP", "ghp_" + "A1b2C3d4" * 5
    stripe = "sk_live_" + "0123456789abcdefXYZ"
    with MemoryManager.open(data_dir, project=outside_repo, embeddings=False) as m:
        result = m.store(
            f"plain text with {stripe}",
            title=f"keys {aws}",
            tags=["ci", github],
            source=f"https://ci.example/run?token={github}",
            metadata={"ci": {"token": github, "hosts": ["a", f"b {aws}"]}, aws: "key as name",
                      "n": 3},
        )
        assert result.redactions == (
            "aws_access_key:metadata.<key>", "aws_access_key:metadata.ci.hosts[1]",
            "aws_access_key:title", "github_token:metadata.ci.token", "github_token:source",
            "github_token:tags", "stripe_key")
        (memory,) = m.get(result.id).memories
        record = memory.record
        assert record.title == "keys [REDACTED:aws_access_key]"
        assert record.tags == ("ci", "[REDACTED:github_token]")
        assert record.source == "https://ci.example/run?token=[REDACTED:github_token]"
        assert record.metadata == {
            "ci": {"token": "[REDACTED:github_token]",
                   "hosts": ["a", "b [REDACTED:aws_access_key]"]},
            "[REDACTED:aws_access_key]": "key as name", "n": 3}
        assert memory.text == "plain text with [REDACTED:stripe_key]"
    on_disk = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    for secret in (aws, github, stripe):
        assert secret.encode() not in on_disk
