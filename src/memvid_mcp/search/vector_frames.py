"""The row file of a format-3 vector index: frames of int8 codes and their ids.

Why: an index is append-only (a commit adds the rows since the last one), yet most of its
bytes should be as small as the data allows. A frame holds ``n`` rows: their ``n * dim``
int8 codes, then their ids (LEB128 length + UTF-8 each), zstd-compressed when that is
smaller (a frame of one row is stored raw; a compacted frame of thousands of rows saves
~8% on real codes and most of the id bytes). Row numbers are positions: the k-th row of
the file is row k, so no log line per row is needed (ADR 0027).

Frame: little-endian header ``rows u32, stored_bytes u32, codec u8`` (codec 0 raw,
1 zstd), then ``stored_bytes`` of payload. The file's committed length and CRC-32 live in
the index's meta file.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import zstandard

from ..core.varint import varint as _varint

HEADER = struct.Struct("<IIB")
RAW, ZSTD = 0, 1
FRAME_ROWS = 4096  # rows per frame when a whole file is (re)written
ZSTD_LEVEL = 3  # level 9 saves nothing more on codes and is 4x slower

Codes = npt.NDArray[np.int8]


def encode(codes: Codes, ids: Sequence[str], frame_rows: int = FRAME_ROWS) -> bytes:
    """Frames for ``codes`` (rows x dim, int8) and their ids, ``frame_rows`` rows a frame."""
    if len(codes) != len(ids):
        raise ValueError(f"{len(ids)} ids for {len(codes)} rows")
    out = bytearray()
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    for start in range(0, len(ids), frame_rows):
        part = ids[start : start + frame_rows]
        body = bytearray(np.ascontiguousarray(codes[start : start + frame_rows]).tobytes())
        for doc_id in part:
            raw = doc_id.encode("utf-8")
            body += _varint(len(raw)) + raw
        packed = compressor.compress(bytes(body))
        codec, stored = (ZSTD, packed) if len(packed) < len(body) else (RAW, bytes(body))
        out += HEADER.pack(len(part), len(stored), codec) + stored
    return bytes(out)


def decode(data: bytes, dim: int) -> tuple[Codes, list[str], int]:
    """Codes (rows x dim), ids and the number of frames; ValueError when malformed."""
    blocks: list[Codes] = []
    ids: list[str] = []
    frames = pos = 0
    decompressor = zstandard.ZstdDecompressor()
    while pos < len(data):
        if pos + HEADER.size > len(data):
            raise ValueError(f"frame header cut at byte {pos}")
        rows, stored, codec = HEADER.unpack_from(data, pos)
        pos += HEADER.size
        payload = data[pos : pos + stored]
        if len(payload) != stored:
            raise ValueError(f"frame at byte {pos} cut short")
        pos += stored
        if codec == ZSTD:
            try:
                payload = decompressor.decompress(payload, max_output_size=rows * (dim + 1024))
            except zstandard.ZstdError as exc:
                raise ValueError(f"frame {frames}: {exc}") from exc
        elif codec != RAW:
            raise ValueError(f"frame {frames}: unknown codec {codec}")
        size = rows * dim
        if len(payload) < size:
            raise ValueError(f"frame {frames}: {len(payload)} bytes for {rows} rows")
        blocks.append(np.frombuffer(payload, dtype=np.int8, count=size).reshape(rows, dim))
        at = size
        for _ in range(rows):
            length = shift = 0
            while True:
                if at >= len(payload):
                    raise ValueError(f"frame {frames}: ids cut short")
                byte = payload[at]
                at += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            if at + length > len(payload):
                raise ValueError(f"frame {frames}: ids cut short")
            ids.append(payload[at : at + length].decode("utf-8"))
            at += length
        if at != len(payload):
            raise ValueError(f"frame {frames}: {len(payload) - at} stray bytes")
        frames += 1
    codes = np.concatenate(blocks) if blocks else np.zeros((0, dim), dtype=np.int8)
    return codes, ids, frames
