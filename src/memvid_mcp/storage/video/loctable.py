"""Where each live body lies in the segments: a mapping packed into arrays.

A video store keeps one location per live body. As a dict of tuples that cost ~350 bytes a
body (the id string, the tuple, its int and hash-string objects): 35 MB of a 100k-memory
serving process. Here the bulk of the table is a few numpy columns sorted by id (~70 bytes a
body, ADR 0034); bodies sealed since the last packing wait in a small dict that is folded in
when it grows. Readers never lock: the packed part and that dict are replaced together as one
object, and a delete only clears a row's ``alive`` flag.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

MAX_PACKED_ID = 64  # bytes (UTF-8); longer ids stay in the dict
FOLD_MIN = 4096  # the dict is folded into the arrays past this many bodies (and a quarter)
_FIELDS = ("seg", "frame", "offset", "length", "frames", "ts")
_ROW = np.dtype([(name, "<u4") for name in _FIELDS])
_UINT32 = 1 << 32


class Loc(NamedTuple):
    """Where one body lies: its segment, first frame, offset in that frame's content, length,
    the frames it spans, its SHA-256 (hex, whole or a prefix) and when it was sealed."""

    seg: str
    frame: int
    offset: int
    length: int
    frames: int
    sha256: str
    ts: str


class _Packed:
    """Rows sorted by id; ``alive`` is the only part that changes after packing."""

    __slots__ = ("alive", "keys", "live", "over", "rows", "segs", "sha", "stamps")

    def __init__(self, keys: npt.NDArray[np.bytes_], rows: npt.NDArray[np.void],
                 sha: npt.NDArray[np.bytes_], segs: list[str], stamps: list[str],
                 over: dict[str, Loc]) -> None:
        self.keys = keys
        self.rows = rows
        self.sha = sha
        self.alive = np.ones(len(keys), dtype=bool)
        self.segs = segs
        self.stamps = stamps
        self.over = over  # bodies not (yet) in the arrays
        self.live = len(keys)  # rows still alive

    def row(self, body_id: str) -> int:
        """The alive row of ``body_id``, or -1."""
        try:
            key = body_id.encode("utf-8")
        except UnicodeEncodeError:
            return -1
        keys = self.keys
        i = int(keys.searchsorted(key))
        if i < len(keys) and keys[i] == key and self.alive[i]:
            return i
        return -1

    def loc(self, i: int) -> Loc:
        seg, frame, offset, length, frames, ts = self.rows[i].item()
        return Loc(self.segs[seg], frame, offset, length, frames, self.sha[i].decode("ascii"),
                   self.stamps[ts])


def _packable(body_id: str, loc: Loc) -> bytes | None:
    """The id's key in the arrays, or None when it must stay in the dict: a NUL at its end
    (fixed-width byte strings drop trailing NULs), too long, not UTF-8 encodable, or values
    the columns cannot hold."""
    return _simple(body_id, loc.sha256, (loc.frame, loc.offset, loc.length, loc.frames))


def _pack(items: Iterator[tuple[str, Loc]]) -> _Packed:
    keys: list[bytes] = []
    rows: list[tuple[int, int, int, int, int, int]] = []
    shas: list[bytes] = []
    over: dict[str, Loc] = {}
    seg_no: dict[str, int] = {}
    ts_no: dict[str, int] = {}
    for body_id, loc in items:
        key = _packable(body_id, loc)
        if key is None:
            over[body_id] = loc
            continue
        seg = seg_no.setdefault(loc.seg, len(seg_no))
        ts = ts_no.setdefault(loc.ts, len(ts_no))
        keys.append(key)
        rows.append((seg, loc.frame, loc.offset, loc.length, loc.frames, ts))
        shas.append(loc.sha256.encode("ascii"))
    key_array = np.array(keys, dtype=f"S{max(map(len, keys), default=1)}")
    order = np.argsort(key_array, kind="stable")
    row_array = np.array(rows, dtype=_ROW)[order] if rows else np.zeros(0, dtype=_ROW)
    sha_array = np.array(shas, dtype=f"S{max(map(len, shas), default=1)}")[order]
    segs = [sys.intern(s) for s in seg_no]
    stamps = [sys.intern(t) for t in ts_no]
    return _Packed(key_array[order], row_array, sha_array, segs, stamps, over)


def _simple(body_id: str, sha: str, nums: tuple[int, int, int, int]) -> bytes | None:
    """The id's key when this put fits the columns; None for any other (kept as a tuple)."""
    try:
        key = body_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if not key or len(key) > MAX_PACKED_ID or key.endswith(b"\0"):
        return None
    if not sha.isascii() or sha.endswith("\0") or len(sha) > 128 or "\0" in sha:
        return None
    if max(nums) >= _UINT32 or min(nums) < 0:
        return None
    return key


def _fixed(buf: bytearray, ends: array[int]) -> npt.NDArray[np.bytes_]:
    """Concatenated byte strings (``ends``: where each stops) as one fixed-width array."""
    n = len(ends)
    stop = np.frombuffer(ends, dtype=np.uint64).astype(np.int64) if n else np.zeros(0, np.int64)
    start = np.concatenate((np.zeros(1, np.int64), stop[:-1]))
    lengths = stop - start
    width = max(1, int(lengths.max(initial=0)))
    out = np.zeros((n, width), dtype=np.uint8)
    data = np.frombuffer(buf, dtype=np.uint8)
    if len(data):
        rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
        out[rows, np.arange(len(data), dtype=np.int64) - np.repeat(start, lengths)] = data
    return out.view(f"S{width}").reshape(n)


Dead = dict[tuple[str, str], tuple[Loc, float, str]]  # (segment, id) -> (loc, deleted at, ts)


class LocBuilder:
    """A manifest's puts and deletes, in order, collected as columns: loading 100k bodies
    made ~15 MB of small objects that, freed, left their pages resident (ADR 0034)."""

    def __init__(self) -> None:
        self._keys = bytearray()
        self._key_ends: array[int] = array("Q")
        self._shas = bytearray()
        self._sha_ends: array[int] = array("Q")
        self._cols: tuple[array[int], ...] = tuple(array("I") for _ in _FIELDS)
        self._segs: dict[str, int] = {}
        self._stamps: dict[str, int] = {}
        self._odd: dict[str, list[tuple[int, Loc]]] = {}  # puts the columns cannot hold, by id
        self._dels: dict[str, list[tuple[int, float, str]]] = {}  # id -> (puts before, when, ts)

    def put(self, body_id: str, loc: Loc) -> None:
        row = len(self._key_ends)
        key = _simple(body_id, loc.sha256, (loc.frame, loc.offset, loc.length, loc.frames))
        if key is None:
            self._odd.setdefault(body_id, []).append((row, loc))
            key, sha, values = b"\0", b"", (0, 0, 0, 0, 0, 0)  # a key no simple id has
        else:
            sha = loc.sha256.encode("ascii")
            values = (self._segs.setdefault(loc.seg, len(self._segs)), loc.frame, loc.offset,
                      loc.length, loc.frames, self._stamps.setdefault(loc.ts, len(self._stamps)))
        self._keys += key
        self._key_ends.append(len(self._keys))
        self._shas += sha
        self._sha_ends.append(len(self._shas))
        for column, value in zip(self._cols, values, strict=True):
            column.append(value)

    def delete(self, body_id: str, when: float, ts: str) -> None:
        self._dels.setdefault(body_id, []).append((len(self._key_ends), when, ts))

    def build(self) -> tuple[LocTable, Dead]:
        """The live bodies (a put replaces an earlier one of its id; a delete removes the
        put before it), and the deleted ones: as replaying the puts and deletes in order."""
        keys = _fixed(self._keys, self._key_ends)
        sha = _fixed(self._shas, self._sha_ends)
        rows = np.zeros(len(keys), dtype=_ROW)
        for name, column in zip(_FIELDS, self._cols, strict=True):
            rows[name] = np.frombuffer(column, dtype=np.uint32) if len(column) else 0
        segs = [sys.intern(s) for s in self._segs]
        stamps = [sys.intern(t) for t in self._stamps]
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        last = np.ones(len(keys), dtype=bool)  # the last put of each id: live unless deleted
        last[:-1] = ordered[:-1] != ordered[1:]
        alive = np.zeros(len(keys), dtype=bool)
        alive[order[last]] = True
        alive[keys == b"\0"] = False  # placeholders of odd puts
        packed = _Packed(keys, rows, sha, segs, stamps, {})
        over: dict[str, Loc] = {}
        dead: Dead = {}
        for body_id in set(self._dels) | set(self._odd):
            puts: list[tuple[int, Loc, bool]] = [(r, loc, False) for r, loc in
                                                 self._odd.get(body_id, [])]
            key = _simple(body_id, "", (0, 0, 0, 0))
            if key is not None:
                lo = int(ordered.searchsorted(key, "left"))
                hi = int(ordered.searchsorted(key, "right"))
                puts += [(int(r), packed.loc(int(r)), True) for r in order[lo:hi]]
                alive[order[lo:hi]] = False
            puts.sort(key=lambda put: put[0])
            current: tuple[int, Loc, bool] | None = None
            events = iter(puts)
            pending = next(events, None)
            for before, when, ts in self._dels.get(body_id, []):
                while pending is not None and pending[0] < before:
                    current, pending = pending, next(events, None)
                if current is not None:
                    dead[(current[1].seg, body_id)] = (current[1], when, ts)
                    current = None
            for put in ([pending] if pending is not None else []) + list(events):
                current = put
            if current is not None:
                if current[2]:
                    alive[current[0]] = True
                else:
                    over[body_id] = current[1]
        keep = order[alive[order]]  # alive rows, sorted by key
        table = LocTable()
        table._state = _Packed(keys[keep], rows[keep], sha[keep], segs, stamps, over)
        return table, dead


class LocTable(Mapping[str, Loc]):
    """body id -> ``Loc``. Reads are lock-free; writes come from one writer at a time (the
    store's write lock)."""

    def __init__(self, items: Mapping[str, Loc] | None = None) -> None:
        self._state = _pack(iter((items or {}).items()))

    # ------------------------------------------------------------------ reading

    def get(self, body_id: str, default: Loc | None = None) -> Loc | None:  # type: ignore[override]
        state = self._state
        found = state.over.get(body_id)
        if found is not None:
            return found
        i = state.row(body_id)
        if i < 0:  # a packed body given a new place moves to ``over`` before its row dies
            return state.over.get(body_id, default)
        return state.loc(i)

    def __getitem__(self, body_id: str) -> Loc:
        found = self.get(body_id)
        if found is None:
            raise KeyError(body_id)
        return found

    def __contains__(self, body_id: object) -> bool:
        if not isinstance(body_id, str):
            return False
        state = self._state
        if body_id in state.over or state.row(body_id) >= 0:
            return True
        return body_id in state.over  # moved there while its row was looked up (``get``)

    def __len__(self) -> int:
        state = self._state
        return state.live + len(state.over)

    def __iter__(self) -> Iterator[str]:
        return (body_id for body_id, _ in self._rows())

    def items(self) -> ItemsView[str, Loc]:
        return _Items(self)

    def values(self) -> ValuesView[Loc]:
        return _Values(self)

    def _rows(self) -> Iterator[tuple[str, Loc]]:
        state = self._state
        for i in np.flatnonzero(state.alive).tolist():
            if state.alive[i]:
                yield state.keys[i].decode("utf-8"), state.loc(i)
        yield from list(state.over.items())

    def segment_totals(self) -> dict[str, tuple[int, int]]:
        """Per segment: its live bodies and their bytes."""
        state = self._state
        seg = state.rows["seg"][state.alive]
        counts = np.bincount(seg, minlength=len(state.segs)).tolist()
        sizes = np.bincount(seg, weights=state.rows["length"][state.alive],
                            minlength=len(state.segs)).tolist()
        out = {state.segs[n]: (count, int(size))
               for n, (count, size) in enumerate(zip(counts, sizes, strict=True)) if count}
        for loc in list(state.over.values()):
            count, size = out.get(loc.seg, (0, 0))
            out[loc.seg] = (count + 1, size + loc.length)
        return out

    def segments(self) -> set[str]:
        """The segments that hold at least one live body."""
        state = self._state
        used = np.unique(state.rows["seg"][state.alive]).tolist()
        return {state.segs[n] for n in used} | {loc.seg for loc in list(state.over.values())}

    # ------------------------------------------------------------------ writing

    def __setitem__(self, body_id: str, loc: Loc) -> None:
        state = self._state
        i = state.row(body_id)
        if i >= 0:  # a new place for a packed body: the old row dies, the dict has it
            state.over[body_id] = loc
            state.alive[i] = False
            state.live -= 1
        else:
            state.over[body_id] = loc
        self._maybe_fold()

    def update(self, locs: Mapping[str, Loc]) -> None:
        for body_id, loc in locs.items():
            self[body_id] = loc

    def moved(self, locs: Mapping[str, Loc]) -> LocTable:
        """A new table: this one with the bodies of ``locs`` at their new places (a
        compaction's result, swapped in whole once its manifest is written)."""
        table = LocTable()
        known = set()
        rows = []
        for body_id, loc in self._rows():
            rows.append((body_id, locs.get(body_id, loc)))
            known.add(body_id)
        rows += [(i, loc) for i, loc in locs.items() if i not in known]
        table._state = _pack(iter(rows))
        return table

    def pop(self, body_id: str) -> Loc:
        """Remove ``body_id`` and return where it lay (KeyError when it is not here)."""
        state = self._state
        found = state.over.pop(body_id, None)
        if found is not None:
            return found
        i = state.row(body_id)
        if i < 0:
            raise KeyError(body_id)
        found = state.loc(i)
        state.alive[i] = False
        state.live -= 1
        return found

    def _maybe_fold(self) -> None:
        state = self._state
        if len(state.over) > FOLD_MIN + state.live // 4:
            self.fold()

    def fold(self) -> None:
        """Pack every body into the arrays again (dead rows dropped), replacing the state in
        one assignment: a reader holds either the old state or the new one, both whole."""
        self._state = _pack(self._rows())


class _Items(ItemsView[str, Loc]):
    _mapping: LocTable

    def __iter__(self) -> Iterator[tuple[str, Loc]]:
        return self._mapping._rows()


class _Values(ValuesView[Loc]):
    _mapping: LocTable

    def __iter__(self) -> Iterator[Loc]:
        return (loc for _, loc in self._mapping._rows())
