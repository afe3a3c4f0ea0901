"""A reader of video segments written from docs/format.md alone (no memvid_mcp import).

It decodes every frame of a ``.mp4`` with PyAV, reads the QR symbol with zxing-cpp (raw
bytes), checks the frame payload (magic, version, CRC32), and returns the decompressed data
of every frame in order: the segment's byte stream, in which every body sealed in it lies
whole. Tests use it to prove what text a segment holds, without trusting our codec.
"""

from __future__ import annotations

import contextlib
import shutil
import zlib
from pathlib import Path

import av
import numpy as np
import zstandard
import zxingcpp


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _payload(image: np.ndarray) -> bytes:
    for scale in (1, 4):  # 1 px per module reads as is for most readers; else upscale
        candidate = np.kron(image, np.ones((scale, scale), dtype=image.dtype)) if scale > 1 \
            else image
        found = [b for b in zxingcpp.read_barcodes(candidate) if b.valid]
        if found:
            return bytes(found[0].bytes)
    raise AssertionError("a frame holds no readable QR symbol")


def frame_data(payload: bytes, dictionary: bytes | None = None) -> tuple[int, int, int, bytes]:
    """(frame index, flags, first ordinal, decompressed data) of one frame payload, checked
    as format.md says; version-2 frames with flag 0x08 need the segment's ``dictionary``."""
    assert payload[:2] == b"MV" and payload[2] in (1, 2), "not a version-1/2 frame payload"
    assert zlib.crc32(payload[:-4]) == int.from_bytes(payload[-4:], "little"), "bad CRC32"
    flags, pos = payload[3], 4
    index, pos = _varint(payload, pos)
    first, pos = _varint(payload, pos)
    count, pos = _varint(payload, pos)
    lengths = []
    for _ in range(count):
        n, pos = _varint(payload, pos)
        lengths.append(n)
    data = payload[pos:-4]
    if flags & 0x08:
        assert dictionary is not None, "a dictionary frame must come first"
        data = zstandard.ZstdDecompressor(
            dict_data=zstandard.ZstdCompressionDict(dictionary)).decompress(data)
    elif flags & 0x04:
        data = zstandard.ZstdDecompressor().decompress(data)
    assert sum(lengths) == len(data), "piece lengths do not add up"
    return index, flags, first, data


def segment_stream(mp4: Path) -> bytes:
    """The concatenated bodies of every frame of a segment, in frame order."""
    return segment_parts(mp4)[1]


def segment_parts(mp4: Path) -> tuple[bytes, bytes]:
    """(the segment's dictionary, b"" without one; the concatenated bodies). The dictionary
    frames, flag 0x10, come first: one copy of its slices, then the other."""
    parts: list[bytes] = []
    slices: list[bytes] = []
    dictionary: bytes | None = None
    with av.open(str(mp4)) as container:
        for n, frame in enumerate(container.decode(video=0)):
            index, flags, first, data = frame_data(_payload(frame.to_ndarray(format="gray")),
                                                   dictionary)
            assert index == n, f"frame {n} says it is frame {index}"
            if flags & 0x10:
                if n < first:  # the first copy
                    slices.append(data)
                dictionary = b"".join(slices)
            else:
                parts.append(data)
    return dictionary or b"", b"".join(parts)


def every_file_text(root: Path) -> dict[Path, bytes]:
    """Every file under ``root`` as the bytes a person could read from it: raw bytes, plus
    the decompressed content of zstd files and the frame stream of video segments."""
    out: dict[Path, bytes] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a temporary file (the lexical index's) gone since listing
            continue
        if data[:4] == b"\x28\xb5\x2f\xfd":  # a zstd frame (the snapshots)
            with contextlib.suppress(zstandard.ZstdError):
                data += zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30)
        if path.suffix == ".mvb" and data[:4] == b"MVB1":  # file backend: header, zstd frame
            data += zstandard.ZstdDecompressor().decompress(data[14:], max_output_size=1 << 30)
        if path.suffix == ".mp4":  # the bodies, and the dictionary trained from them
            data += b"".join(segment_parts(path))
        out[path] = data
    return out


def copy_live_tree(src: Path, dst: Path) -> None:
    """Copy a data directory while its process still runs, as a crash would leave it: the
    lock file is left out, and a temporary file the lexical index removed after the listing
    is simply not in the copy."""
    def copy_if_still_there(a: str, b: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.copy2(a, b)

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("LOCK"),
                    copy_function=copy_if_still_there)
