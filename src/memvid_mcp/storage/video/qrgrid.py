"""Read a QR symbol we wrote ourselves straight from its module grid (ADR 0032).

A frame of the lossless profile is the symbol at one pixel per module, where it was put,
every pixel 0 or 255. Reading it needs no detection, sampling or thresholding, and no error
correction if nothing was damaged: the codewords are taken in placement order, unmasked and
de-interleaved with tables computed once per version, and the byte-mode segment is returned
when it is the symbol's only segment (anything else is left to the standard reader).
There is no error correction here, so the caller must check the result (the frame index
holds every payload's CRC32) and fall back to a full reader (zxing) when it does not match.
Layout and tables per ISO/IEC 18004 (the block tables as in Project Nayuki's QR library).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

QUIET_ZONE = 4  # modules of white around the symbol (the QR standard asks for 4)
_ECC_FORMAT_BITS = {"L": 1, "M": 0, "Q": 3, "H": 2}
# error-correction codewords per block and number of blocks, per ECC level, by version 1..40
_ECC_PER_BLOCK = {
    "L": (7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28, 28, 28,
          30, 30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
    "M": (10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26, 26, 28,
          28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28),
    "Q": (13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30, 28, 30,
          30, 30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
    "H": (17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28, 30, 24,
          30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
}
_BLOCKS = {
    "L": (1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8, 8, 9, 9, 10, 12, 12, 12, 13,
          14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25),
    "M": (1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17, 18, 20, 21, 23,
          25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49),
    "Q": (1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20, 23, 23, 25, 27, 29,
          34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68),
    "H": (1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25, 25, 34, 30, 32, 35,
          37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81),
}


def _format_code(ecc: str, mask: int) -> int:
    data = _ECC_FORMAT_BITS[ecc] << 3 | mask
    rem = data
    for _ in range(10):
        rem = (rem << 1) ^ ((rem >> 9) * 0x537)
    return (data << 10 | rem) ^ 0x5412


_FORMATS = {_format_code(e, m): (e, m) for e in _ECC_FORMAT_BITS for m in range(8)}


def _alignment_positions(version: int) -> list[int]:
    if version == 1:
        return []
    count = version // 7 + 2
    step = 26 if version == 32 else (version * 4 + count * 2 + 1) // (count * 2 - 2) * 2
    size = version * 4 + 17
    return [6, *sorted(size - 7 - i * step for i in range(count - 1))]


@functools.lru_cache(maxsize=8)
def _function_modules(version: int) -> npt.NDArray[np.bool_]:
    size = version * 4 + 17
    fn = np.zeros((size, size), dtype=bool)
    fn[6, :] = fn[:, 6] = True  # timing patterns
    fn[:9, :9] = fn[:9, size - 8:] = fn[size - 8:, :9] = True  # finders, separators, format
    positions = _alignment_positions(version)
    last = len(positions) - 1
    for i, y in enumerate(positions):
        for j, x in enumerate(positions):
            if (i, j) not in ((0, 0), (0, last), (last, 0)):
                fn[y - 2:y + 3, x - 2:x + 3] = True
    if version >= 7:  # version information, two 6x3 blocks
        fn[:6, size - 11:size - 8] = fn[size - 11:size - 8, :6] = True
    return fn


@functools.lru_cache(maxsize=8)
def _placement(version: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Row and column of each data bit, in the order the codeword stream is placed."""
    size = version * 4 + 17
    fn = _function_modules(version)
    rows: list[int] = []
    cols: list[int] = []
    right = size - 1
    while right >= 1:
        if right == 6:
            right = 5
        upward = (right + 1) & 2 == 0
        for vert in range(size):
            y = size - 1 - vert if upward else vert
            for x in (right, right - 1):
                if not fn[y, x]:
                    rows.append(y)
                    cols.append(x)
        right -= 2
    count = len(rows) // 8 * 8  # remainder bits carry nothing
    return np.array(rows[:count], dtype=np.intp), np.array(cols[:count], dtype=np.intp)


@functools.lru_cache(maxsize=32)
def _mask_bits(version: int, mask: int) -> npt.NDArray[np.bool_]:
    rows, cols = _placement(version)
    y, x = rows, cols
    flips = (
        (x + y) % 2 == 0,
        y % 2 == 0,
        x % 3 == 0,
        (x + y) % 3 == 0,
        (x // 3 + y // 2) % 2 == 0,
        x * y % 2 + x * y % 3 == 0,
        (x * y % 2 + x * y % 3) % 2 == 0,
        ((x + y) % 2 + x * y % 3) % 2 == 0,
    )
    return np.asarray(flips[mask], dtype=bool)


@functools.lru_cache(maxsize=32)
def _data_order(version: int, ecc: str) -> npt.NDArray[np.intp]:
    """Positions in the interleaved codeword stream of the data codewords, in data order."""
    raw = len(_placement(version)[0]) // 8
    blocks, ecc_len = _BLOCKS[ecc][version - 1], _ECC_PER_BLOCK[ecc][version - 1]
    short = blocks - raw % blocks
    short_len = raw // blocks  # codewords of a short block, its ECC included
    data_len = [short_len - ecc_len + (b >= short) for b in range(blocks)]
    # (block, index in block) of each interleaved codeword; a short block is one data
    # codeword shorter, and its ECC codewords follow at the same indexes as a long one's
    order = [(b, i) for i in range(short_len + 1) for b in range(blocks)
             if i != short_len - ecc_len or b >= short]
    starts = np.cumsum([0, *data_len[:-1]])
    out = np.empty(sum(data_len), dtype=np.intp)
    for pos, (b, i) in enumerate(order):
        if i < data_len[b]:
            out[starts[b] + i] = pos
    return out


def read_grid(image: npt.NDArray[np.uint8], version: int) -> bytes | None:
    """The byte-mode payload of the version-``version`` symbol centred in ``image`` at one
    pixel per module with a 4-module quiet zone, or None if it is not one we can read here.
    Unchecked: see the module docstring."""
    if not 1 <= version <= 40:
        return None
    size = version * 4 + 17
    at = (image.shape[0] - (size + 2 * QUIET_ZONE)) // 2 + QUIET_ZONE
    if at < QUIET_ZONE or image.shape[0] != image.shape[1]:
        return None
    dark = image[at:at + size, at:at + size] < 128
    if dark.shape != (size, size):
        return None
    bits = [dark[i, 8] for i in (0, 1, 2, 3, 4, 5, 7, 8)] + [dark[8, 7]] + [
        dark[8, x] for x in (5, 4, 3, 2, 1, 0)]
    code = sum(int(b) << i for i, b in enumerate(bits))
    found = _FORMATS.get(code)
    if found is None:
        return None
    ecc, mask = found
    rows, cols = _placement(version)
    stream = np.packbits(dark[rows, cols] ^ _mask_bits(version, mask))
    data = stream[_data_order(version, ecc)].tobytes()
    value = int.from_bytes(data, "big")
    total = len(data) * 8

    def take(at: int, n: int) -> int:
        return (value >> (total - at - n)) & ((1 << n) - 1) if at + n <= total else -1

    pos = 0
    if take(0, 4) == 0b0111:  # an ECI designator first (zxing marks bytes as ECI 899)
        lead = take(4, 8)
        width = 8 if lead < 0x80 else 16 if lead < 0xC0 else 24
        pos = 4 + width
    if take(pos, 4) != 0b0100:  # byte mode
        return None
    count_bits = 8 if version < 10 else 16
    length = take(pos + 4, count_bits)
    start = pos + 4 + count_bits
    end = start + 8 * length
    if length < 0 or end > total:
        return None
    if take(end, 4) > 0:  # another segment follows (a writer may put digits in numeric mode)
        return None  # left to the standard reader
    return take(start, 8 * length).to_bytes(length, "big") if length else b""
