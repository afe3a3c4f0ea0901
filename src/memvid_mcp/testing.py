"""The one behaviour suite every storage backend's tests subclass.

    class TestMyStoreContract(StorageContract):
        def make_store(self, root: Path) -> StorageAdapter:
            return MyStore(root)

pytest collects the ``test_*`` methods of the subclass. ``make_store`` is called again on the
same ``root`` to check that everything survives a close and reopen.
"""

from __future__ import annotations

import abc
from pathlib import Path

import pytest

from .core.errors import NotFoundError
from .storage.base import StorageAdapter


def _body(i: int, size: int = 60) -> bytes:
    base = f"memory {i}: the quick brown fox jumps over the lazy dog; ünïcödé ✓ 漢字 "
    return (base * (size // len(base) + 1)).encode("utf-8")[:size].rstrip(b"\x80\xbf")


class StorageContract(abc.ABC):
    """Behaviour required of every ``StorageAdapter``."""

    @abc.abstractmethod
    def make_store(self, root: Path) -> StorageAdapter:
        """A fresh adapter on ``root`` (called again on the same root to test reopening)."""

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        path = tmp_path / "scope"
        path.mkdir()
        return path

    def _reopen(self, store: StorageAdapter, root: Path) -> StorageAdapter:
        store.close()
        return self.make_store(root)

    def test_conforms_to_protocol(self, root: Path) -> None:
        store = self.make_store(root)
        assert isinstance(store, StorageAdapter)
        assert store.capabilities.name
        store.close()

    def test_put_then_get_exact_bytes(self, root: Path) -> None:
        store = self.make_store(root)
        items = [(f"b{i:03d}", _body(i, 40 + i * 7)) for i in range(20)]
        store.put_many(items)
        for body_id, data in items:
            assert store.get(body_id) == data
        store.close()

    def test_get_many_skips_missing(self, root: Path) -> None:
        store = self.make_store(root)
        store.put_many([("a", b"alpha"), ("b", b"beta")])
        got = store.get_many(["a", "nope", "b"])
        assert got == {"a": b"alpha", "b": b"beta"}
        store.close()

    def test_missing_body_raises_not_found(self, root: Path) -> None:
        store = self.make_store(root)
        with pytest.raises(NotFoundError):
            store.get("does-not-exist")
        assert not store.contains("does-not-exist")
        store.close()

    def test_unusual_bodies_round_trip(self, root: Path) -> None:
        store = self.make_store(root)
        items = [
            ("nonascii", "Grüße, 世界! emoji 🧠 and RTL שלום".encode()),
            ("binaryish", bytes(range(256)) * 3),
            ("one", b"x"),
            ("large", _body(7, 300_000)),
            ("nul", b"a\x00b\x00" * 100),
        ]
        store.put_many(items)
        for body_id, data in items:
            assert store.get(body_id) == data
        store = self._reopen(store, root)
        for body_id, data in items:
            assert store.get(body_id) == data
        store.close()

    def test_reput_same_id_is_noop(self, root: Path) -> None:
        store = self.make_store(root)
        store.put_many([("same", b"first")])
        store.put_many([("same", b"first")])
        assert store.get("same") == b"first"
        assert sorted(store.ids()) == ["same"]
        store.close()

    def test_contains_and_ids(self, root: Path) -> None:
        store = self.make_store(root)
        store.put_many([(f"id{i}", _body(i)) for i in range(5)])
        assert all(store.contains(f"id{i}") for i in range(5))
        assert sorted(store.ids()) == [f"id{i}" for i in range(5)]
        store.close()

    def test_delete_tombstones_durably(self, root: Path) -> None:
        store = self.make_store(root)
        store.put_many([(f"d{i}", _body(i)) for i in range(6)])
        assert store.delete_many(["d1", "d3", "unknown"]) == 2
        assert store.delete_many(["d1"]) == 0
        assert not store.contains("d1")
        with pytest.raises(NotFoundError):
            store.get("d3")
        store = self._reopen(store, root)
        assert sorted(store.ids()) == ["d0", "d2", "d4", "d5"]
        assert store.get("d4") == _body(4)
        store.close()

    def test_survives_reopen(self, root: Path) -> None:
        store = self.make_store(root)
        store.put_many([("p", b"persisted"), ("q", _body(2, 5000))])
        store.put_many([("r", b"second batch")])
        store = self._reopen(store, root)
        assert store.get("p") == b"persisted"
        assert store.get("q") == _body(2, 5000)
        assert store.get("r") == b"second batch"
        store.close()

    def test_verify_clean_store(self, root: Path) -> None:
        store = self.make_store(root)
        store.put_many([(f"v{i}", _body(i, 500)) for i in range(10)])
        seen: list[tuple[int, int]] = []
        assert store.verify(progress=lambda done, total: seen.append((done, total))) == []
        store.close()

    def test_compact_keeps_live_bodies(self, root: Path) -> None:
        store = self.make_store(root)
        for batch in range(3):
            store.put_many([(f"c{batch}-{i}", _body(batch * 100 + i, 300)) for i in range(10)])
        store.delete_many([f"c{b}-{i}" for b in range(3) for i in range(10) if i % 3])
        report = store.compact()
        assert report.bytes_reclaimed >= 0
        live = sorted(store.ids())
        assert live == sorted(f"c{b}-{i}" for b in range(3) for i in range(0, 10, 3))
        for body_id in live:
            batch, index = (int(part) for part in body_id[1:].split("-"))
            assert store.get(body_id) == _body(batch * 100 + index, 300)
        store = self._reopen(store, root)
        assert sorted(store.ids()) == live
        assert store.verify() == []
        store.close()

    def test_stats_count_live_bodies(self, root: Path) -> None:
        store = self.make_store(root)
        store.put_many([("s1", b"12345"), ("s2", b"1234567890")])
        store.delete_many(["s1"])
        stats = store.stats()
        assert stats.bodies == 1
        assert stats.body_bytes == 10
        assert stats.stored_bytes > 0
        store.close()

    def test_close_is_idempotent(self, root: Path) -> None:
        store = self.make_store(root)
        store.close()
        store.close()
