"""Frame payload format (version 1) and the packer that fills QR frames with bodies.

A segment's bodies are concatenated into one logical stream; the packer cuts that stream
into slices whose compressed form fills one QR symbol each. Cutting anywhere (not only at
body boundaries) wastes no capacity: small bodies share a frame, large ones span several.
Each payload says which pieces it carries, so a segment is self-describing even without
the manifest (byte layout in docs/format.md).

A segment with enough text (``DICT_MIN_RAW``) also carries a zstd dictionary trained on its
own bodies (ADR 0029): frames of ~6.5 KB of text compress a quarter smaller with it. The
dictionary is stored twice, in the segment's first frames (payload version 2), so one damaged
dictionary frame costs nothing; every body frame then needs it to decompress.
"""

from __future__ import annotations

import bisect
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import zstandard

from ...core.errors import CorruptionError
from ...core.varint import varint as _varint

MAGIC = b"MV"
VERSION = 1  # frames of a segment without a dictionary
VERSION_DICT = 2  # frames of a segment with one: the two flags below may be set
FLAG_CONT_IN = 0x01  # first piece continues a body begun in an earlier frame
FLAG_CONT_OUT = 0x02  # last piece continues in the next frame
FLAG_ZSTD = 0x04  # data is one zstd frame; otherwise stored as is
FLAG_DICT = 0x08  # (version 2) the zstd frame was compressed with the segment's dictionary
FLAG_DICT_PIECE = 0x10  # (version 2) the content is a slice of the dictionary, not bodies
_KNOWN_FLAGS = {VERSION: FLAG_CONT_IN | FLAG_CONT_OUT | FLAG_ZSTD,
                VERSION_DICT: FLAG_CONT_IN | FLAG_CONT_OUT | FLAG_ZSTD | FLAG_DICT
                | FLAG_DICT_PIECE}
DICT_MIN_RAW = 128 << 10  # below this much text a dictionary costs more than it saves
DICT_MAX = 64 << 10
DICT_COPIES = 2
_CRC = struct.Struct("<I")
MIN_CAPACITY = 64
_MAX_CONTENT = 1 << 24  # a frame never carries more than 16 MiB of decompressed content


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame payload. In a dictionary frame (``FLAG_DICT_PIECE``) ``first_ordinal``
    is the number of frames one copy of the dictionary spans, and the one piece is its slice."""

    index: int
    first_ordinal: int  # ordinal of the first piece's body among the segment's non-empty bodies
    flags: int
    piece_lengths: tuple[int, ...]
    content: bytes  # the decompressed slice of the segment stream


@dataclass(frozen=True, slots=True)
class Packed:
    """The payloads of one segment and where each body starts."""

    payloads: list[bytes]
    locations: list[tuple[int, int, int]]  # per body: (first frame, offset in its content, frames)
    content_lengths: list[int]
    dictionary_frames: int = 0  # frames holding the dictionary (all its copies); bodies follow


class DictionaryNeeded(CorruptionError):
    """A body frame compressed with its segment's dictionary, decoded without it."""


class SegmentDictionary:
    """A segment's zstd dictionary. Decompressors are built from it per thread (a zstandard
    decompressor is not thread-safe: a page's frames decode side by side, and one shared
    decompressor garbles them) and kept in that thread's short list (``_Decompressors``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._dict = zstandard.ZstdCompressionDict(data)

    @property
    def decompressor(self) -> zstandard.ZstdDecompressor:
        """A decompressor for this dictionary, this thread's own."""
        return _decompressors.get(self)

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        return zstandard.ZstdCompressor(level=level, dict_data=self._dict, write_checksum=False,
                                        write_dict_id=False)


class _Decompressors(threading.local):
    """This thread's decompressors for the dictionaries it used last. Each holds a ~46 KB
    context: kept for every segment and every thread, a store of a few hundred segments
    read by a search pool held tens of MB for little gain (a new one costs ~20 us)."""

    def __init__(self) -> None:
        self.recent: OrderedDict[SegmentDictionary, zstandard.ZstdDecompressor] = OrderedDict()

    def get(self, dictionary: SegmentDictionary) -> zstandard.ZstdDecompressor:
        found = self.recent.pop(dictionary, None)
        if found is None:
            found = zstandard.ZstdDecompressor(dict_data=dictionary._dict)
        self.recent[dictionary] = found
        while len(self.recent) > DECOMPRESSORS_PER_THREAD:
            self.recent.popitem(last=False)
        return found


DECOMPRESSORS_PER_THREAD = 8
_decompressors = _Decompressors()


def assemble_dictionary(pieces: dict[int, Frame], path: str) -> SegmentDictionary:
    """The dictionary from the dictionary frames that decoded (``pieces`` by frame index):
    each slice from whichever copy holds it."""
    if not pieces:
        raise CorruptionError(path, "segment dictionary frames unreadable")
    per_copy = next(iter(pieces.values())).first_ordinal
    parts = []
    for k in range(per_copy):
        frame = next((pieces[k + c * per_copy] for c in range(DICT_COPIES)
                      if k + c * per_copy in pieces), None)
        if frame is None:
            raise CorruptionError(path, f"segment dictionary slice {k}: no copy decodes")
        parts.append(frame.content)
    try:
        return SegmentDictionary(b"".join(parts))
    except zstandard.ZstdError as exc:
        raise CorruptionError(path, f"segment dictionary: {exc}") from None


def _read_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 56:
            raise CorruptionError("frame", f"truncated or overlong varint ({what})")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def encode_frame(
    index: int, first_ordinal: int, flags: int, piece_lengths: Sequence[int], data: bytes,
    version: int = VERSION,
) -> bytes:
    """Serialise one payload: header, piece table, data, CRC32 of everything before it."""
    head = bytearray(MAGIC)
    head.append(version)
    head.append(flags)
    head += _varint(index)
    head += _varint(first_ordinal)
    head += _varint(len(piece_lengths))
    for length in piece_lengths:
        head += _varint(length)
    head += data
    return bytes(head) + _CRC.pack(zlib.crc32(head))


def is_dictionary_piece(payload: bytes) -> bool:
    """Whether a (checked) payload carries a slice of its segment's dictionary."""
    return len(payload) > 3 and payload[2] == VERSION_DICT and bool(payload[3] & FLAG_DICT_PIECE)


class CheckedFrame(NamedTuple):
    """A payload whose checks passed (magic, version, CRC32, flags, piece table), kept in
    its compressed form with what reading its content needs: the read path's cache holds
    these, so a hit decompresses without re-walking the header (ADR 0034)."""

    number: int  # the frame's index in its segment
    flags: int
    total: int  # the content's length, from the piece table
    data: bytes  # the zstd frame (or the stored content)

    @property
    def size(self) -> int:
        """Bytes it holds, for a cache's bound (the data and a fixed allowance)."""
        return len(self.data) + 96


def _parse(payload: bytes, path: str) -> tuple[int, int, int, list[int], bytes]:
    """(index, first ordinal, flags, piece lengths, data) of a payload that passes every
    check short of decompressing its data."""
    if len(payload) < 9 or payload[:2] != MAGIC:
        raise CorruptionError(path, "not a memvid frame payload (bad magic)")
    version = payload[2]
    if version not in _KNOWN_FLAGS:
        raise CorruptionError(path, f"unsupported frame format version {version}")
    body, (crc,) = payload[:-4], _CRC.unpack(payload[-4:])
    if zlib.crc32(body) != crc:
        raise CorruptionError(path, "frame payload checksum mismatch")
    flags = body[3]
    if flags & ~_KNOWN_FLAGS[version]:
        raise CorruptionError(path, f"unknown frame flags {flags:#x}")
    pos = 4
    index, pos = _read_varint(body, pos, "index")
    first, pos = _read_varint(body, pos, "first ordinal")
    count, pos = _read_varint(body, pos, "piece count")
    if count > len(body):
        raise CorruptionError(path, "piece count larger than the payload")
    lengths = []
    for _ in range(count):
        length, pos = _read_varint(body, pos, "piece length")
        lengths.append(length)
    if sum(lengths) > _MAX_CONTENT:
        raise CorruptionError(path, "frame content too large")
    return index, first, flags, lengths, body[pos:]


def check_frame(payload: bytes, path: str = "frame") -> CheckedFrame:
    """``payload`` checked and reduced to what ``frame_content`` needs."""
    index, _, flags, lengths, data = _parse(payload, path)
    return CheckedFrame(index, flags, sum(lengths), data)


def frame_content(frame: CheckedFrame, path: str = "frame",
                  dictionary: SegmentDictionary | None = None) -> bytes:
    """The content of a checked frame (decompressed and its length checked); a frame that
    needs its segment's dictionary, given none, raises DictionaryNeeded."""
    flags, total, data = frame.flags, frame.total, frame.data
    if flags & FLAG_DICT and dictionary is None:
        raise DictionaryNeeded(path, "frame needs its segment's dictionary")
    if flags & FLAG_ZSTD:
        decompressor = (dictionary.decompressor if flags & FLAG_DICT and dictionary
                        else zstandard.ZstdDecompressor())
        try:
            content = decompressor.decompress(data, max_output_size=total or 1)
        except zstandard.ZstdError as exc:
            raise CorruptionError(path, f"zstd: {exc}") from None
    else:
        content = bytes(data)
    if len(content) != total:
        raise CorruptionError(path, "frame content length does not match its piece table")
    return content


def decode_frame(payload: bytes, path: str = "frame",
                 dictionary: SegmentDictionary | None = None) -> Frame:
    """Parse and check one payload; any damage raises CorruptionError naming ``path``; a
    frame that needs its segment's dictionary, given none, raises DictionaryNeeded."""
    index, first, flags, lengths, data = _parse(payload, path)
    content = frame_content(CheckedFrame(index, flags, sum(lengths), data), path, dictionary)
    return Frame(index, first, flags, tuple(lengths), content)


class _Stream:
    """The concatenated non-empty bodies of one segment, with piece lookups."""

    def __init__(self, bodies: Sequence[bytes]) -> None:
        self.parts = [b for b in bodies if b]
        self.data = b"".join(self.parts)
        self.starts: list[int] = []
        pos = 0
        for part in self.parts:
            self.starts.append(pos)
            pos += len(part)

    def pieces(self, a: int, b: int) -> tuple[int, int, list[int]]:
        """(first ordinal, flags, piece lengths) for the stream slice [a, b)."""
        first = bisect.bisect_right(self.starts, a) - 1
        lengths = []
        i = first
        while i < len(self.parts) and self.starts[i] < b:
            start, end = self.starts[i], self.starts[i] + len(self.parts[i])
            lengths.append(min(end, b) - max(start, a))
            i += 1
        flags = 0
        if self.starts[first] < a:
            flags |= FLAG_CONT_IN
        last = i - 1
        if self.starts[last] + len(self.parts[last]) > b:
            flags |= FLAG_CONT_OUT
        return first, flags, lengths


class Packer:
    """Fills frames of ``capacity`` bytes: estimate the slice, compress, correct, stop.

    A secant step on the compressed size lands within ~0.5% of the capacity in 2-4
    compressions per frame, instead of re-compressing after every added body. With
    ``dictionaries`` (the default) a stream of at least ``DICT_MIN_RAW`` bytes gets a
    dictionary trained on it when the saving it measures outweighs the frames it costs.
    """

    def __init__(self, capacity: int, level: int = 19, *, dictionaries: bool = True) -> None:
        if capacity < MIN_CAPACITY:
            raise ValueError("frame capacity too small")
        self.capacity = capacity
        self.dictionaries = dictionaries
        self._level = level
        self._plain = zstandard.ZstdCompressor(level=level, write_checksum=False)
        self._zstd = self._plain
        self._version = VERSION
        self._zstd_flags = 0  # FLAG_DICT while body frames use the dictionary
        self._piece_flags = 0  # FLAG_DICT_PIECE while dictionary frames are made
        self._first: int | None = None  # dictionary frames: frames per copy
        self._ratio = 0.45

    def _payload(self, stream: _Stream, index: int, a: int, b: int) -> bytes:
        first, flags, lengths = stream.pieces(a, b)
        if self._first is not None:
            first = self._first
        flags |= self._piece_flags
        raw = stream.data[a:b]
        packed = self._zstd.compress(raw)
        if len(packed) < len(raw):
            return encode_frame(index, first, flags | FLAG_ZSTD | self._zstd_flags, lengths,
                                packed, self._version)
        return encode_frame(index, first, flags, lengths, raw, self._version)

    def _fill(self, stream: _Stream, index: int, a: int) -> tuple[int, bytes]:
        """The longest slice from ``a`` (within tolerance) whose payload fits."""
        remaining = len(stream.data) - a
        cap = self.capacity
        best_len, best = 0, b""
        fail = remaining + 1
        length = min(remaining, max(1, int((cap - 24) / self._ratio)))
        for _ in range(8):
            payload = self._payload(stream, index, a, a + length)
            if len(payload) <= cap:
                best_len, best = length, payload
                if length == remaining or len(payload) >= cap - 20:
                    break
            else:
                fail = length
            if fail - best_len <= 4:
                break
            guess = int(length * (cap - 10) / len(payload))
            guess = min(guess, int(length * 1.3) + 1, fail - 1)
            if guess <= best_len:
                guess = (best_len + fail) // 2
            length = min(guess, remaining)
        while best_len == 0:  # pathological: halve until something fits
            length = max(1, length // 2)
            payload = self._payload(stream, index, a, a + length)
            if len(payload) <= cap:
                best_len, best = length, payload
        if best_len >= 256:
            self._ratio = max(0.05, min(1.0, (len(best) - 16) / best_len))
        return best_len, best

    def _slices(self, stream: _Stream, first_index: int) -> tuple[list[bytes], list[int]]:
        """Payloads filling frames from ``first_index`` on, and the slice length of each."""
        payloads: list[bytes] = []
        taken_lengths: list[int] = []
        pos = 0
        while pos < len(stream.data):
            taken, payload = self._fill(stream, first_index + len(payloads), pos)
            payloads.append(payload)
            taken_lengths.append(taken)
            pos += taken
        return payloads, taken_lengths

    def train(self, data: bytes) -> SegmentDictionary | None:
        """A dictionary for ``data`` when it pays: the saving it measures on slices spread
        over the stream must exceed 1.5 times what its copies cost in frames."""
        if not self.dictionaries or len(data) < DICT_MIN_RAW:
            return None
        size = min(DICT_MAX, max(8 << 10, len(data) // 32))
        samples: list[bytes] = [data[i:i + 1024] for i in range(0, len(data), 1024)]
        try:
            dictionary = SegmentDictionary(
                zstandard.train_dictionary(size, list(samples)).as_bytes())
        except zstandard.ZstdError:
            return None
        step = max(1, len(data) // 8)
        probes = [data[i:i + (6 << 10)] for i in range(0, len(data), step)][:8]
        with_dict = dictionary.compressor(self._level)
        saved = sum(len(self._plain.compress(p)) - len(with_dict.compress(p)) for p in probes)
        saving = saved / sum(len(p) for p in probes) * len(data)
        cost = DICT_COPIES * len(self._plain.compress(dictionary.data))
        return dictionary if saving > 1.5 * cost else None

    def pack(self, bodies: Sequence[bytes]) -> Packed:
        """Payloads for ``bodies`` in order, and each body's (frame, offset, frames)."""
        stream = _Stream(bodies)
        payloads: list[bytes] = []
        lengths: list[int] = []
        dictionary = self.train(stream.data)
        if dictionary is not None:
            self._version, self._piece_flags = VERSION_DICT, FLAG_DICT_PIECE
            dict_stream = _Stream([dictionary.data])
            self._first = 0
            _, cuts = self._slices(dict_stream, 0)
            self._first = per_copy = len(cuts)
            for copy in range(DICT_COPIES):
                start = 0
                for k, taken in enumerate(cuts):
                    payloads.append(self._payload(dict_stream, copy * per_copy + k, start,
                                                  start + taken))
                    lengths.append(taken)
                    start += taken
            self._zstd, self._zstd_flags = dictionary.compressor(self._level), FLAG_DICT
            self._first, self._piece_flags, self._ratio = None, 0, 0.35
        base = len(payloads)
        total = len(stream.data)
        body_payloads: list[bytes] = []
        taken_lengths = [0]
        if total == 0:
            payloads.append(encode_frame(base, 0, 0, [], b"", self._version))
        else:
            body_payloads, taken_lengths = self._slices(stream, base)
        payloads += body_payloads
        lengths += taken_lengths
        bounds = [0]
        for taken in taken_lengths[:-1]:
            bounds.append(bounds[-1] + taken)
        self._zstd, self._zstd_flags, self._version = self._plain, 0, VERSION
        locations = []
        start = 0
        for body in bodies:
            frame = max(0, bisect.bisect_right(bounds, start) - 1)
            if start == total:
                frame = len(bounds) - 1
            end_frame = frame
            if body:
                end_frame = bisect.bisect_right(bounds, start + len(body) - 1) - 1
            locations.append((base + frame, start - bounds[frame], end_frame - frame + 1))
            start += len(body)
        return Packed(payloads, locations, lengths, base)
