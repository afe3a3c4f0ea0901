"""Which memories of a scope share a content hash (dedup looks them up on every store).

Nearly every hash belongs to one memory, so that memory's id is kept as it is and a set only
when a second one arrives: a one-element set per memory cost ~216 bytes, ~21 MB at 100k.
"""

from __future__ import annotations


class IdsByHash:
    """Content hash -> ids of the memories with it (live or expired). Not thread-safe: the
    scope's lock guards it."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: dict[str, str | set[str]] = {}

    def add(self, sha: str, memory_id: str) -> None:
        same = self._ids.get(sha)
        if same is None:
            self._ids[sha] = memory_id
        elif isinstance(same, str):
            if same != memory_id:
                self._ids[sha] = {same, memory_id}
        else:
            same.add(memory_id)

    def discard(self, sha: str, memory_id: str) -> None:
        same = self._ids.get(sha)
        if same == memory_id:
            del self._ids[sha]
        elif isinstance(same, set):
            same.discard(memory_id)
            if len(same) == 1:
                self._ids[sha] = same.pop()

    def ids(self, sha: str) -> tuple[str, ...]:
        same = self._ids.get(sha)
        if same is None:
            return ()
        return (same,) if isinstance(same, str) else tuple(same)

    def __len__(self) -> int:
        return len(self._ids)
