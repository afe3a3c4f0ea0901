"""A thread-safe LRU cache of frames, bounded in bytes.

Decoding a frame (video decode, then the QR read) costs milliseconds; a hit costs
microseconds, and neighbouring bodies of a frame come free with it. The video store keeps
two: checked QR payloads (the whole store, warmed) and a small one of decompressed content.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SizedLRU(Generic[V]):
    """Least-recently-used mapping whose values' total size (``sizeof``) stays within
    ``max_bytes``."""

    def __init__(self, max_bytes: int, sizeof: Callable[[V], int]) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._sizeof = sizeof
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: V) -> None:
        size = self._sizeof(value)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= self._sizeof(old)
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= self._sizeof(evicted)

    def put_if_room(self, key: Hashable, value: V) -> bool:
        """Add ``value`` only if it fits without evicting anything (a background warmer must
        not push out what readers used); False when it did not fit."""
        with self._lock:
            if key in self._items:
                return True
            size = self._sizeof(value)
            if self._bytes + size > self.max_bytes:
                return False
            self._items[key] = value
            self._bytes += size
            return True

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> None:
        """Drop entries whose key satisfies ``predicate``."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                self._bytes -= self._sizeof(self._items.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


class ByteLRU(SizedLRU[bytes]):
    """A ``SizedLRU`` of bytes values, sized by their length."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, len)
