"""QR symbols and video frames: the only module that imports ``av`` and ``zxingcpp``.

Encode: payload bytes -> QR module matrix (zxing-cpp writer: an ECI 899 designator, then
byte mode, with a run of digits sometimes in a numeric segment; docs/format.md) -> gray
frame -> one key frame per QR in an .mp4 (GOP 1). Decode: one packet, read by offset from
the .mvi, through a fresh decoder -> gray plane -> ``Barcode.bytes`` (never ``.text``).
Reads that the frame index can check take a shorter way first (``read_frame_payload``).
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import zxingcpp
from av.video.codeccontext import VideoCodecContext
from av.video.stream import VideoStream

from ...core.errors import StorageError
from . import qrgrid

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
QUIET_ZONE = qrgrid.QUIET_ZONE  # what the writer renders is what the grid reader expects
# What zxing-cpp's writer accepts at version 40 (2 bytes under the spec's byte-mode capacity).
CAPACITY = {"L": 2951, "M": 2329, "Q": 1661, "H": 1271}
_QR = zxingcpp.BarcodeFormat.QRCode
_QR_ONLY = zxingcpp.BarcodeFormats(_QR)
GRID_CODECS = frozenset({"ffv1"})  # lossless: a frame's pixels are its modules exactly


@dataclass(frozen=True, slots=True)
class EncodeSettings:
    """One rung of a profile's ladder: codec, pixel format, module size, ECC."""

    profile: str
    encoder: str  # PyAV encoder name
    pix_fmt: str
    px_per_module: int
    ecc: str
    options: tuple[tuple[str, str], ...] = ()
    mask: int | None = 1  # fixed QR data mask: 9x faster writer, same bytes (ADR 0009)
    rate: int = 10

    @property
    def capacity(self) -> int:
        return CAPACITY[self.ecc]


_FFV1 = (("level", "3"), ("coder", "1"), ("context", "1"))
_FFV1_ONE_SLICE = (*_FFV1, ("slices", "1"))  # 3% smaller; FFV1 refuses it above ~256x256


def _x264(crf: int, params: str = "") -> tuple[tuple[str, str], ...]:
    opts = (("crf", str(crf)), ("preset", "medium"), ("threads", "1"), ("bf", "0"))
    return (*opts, ("x264-params", params)) if params else opts


# Intra-only QR frames: trellis and 8x8 transforms cost a third of the encode time for 0.2%.
_FAST_INTRA = "trellis=0:no-8x8dct=1"


# First rung is the default; later rungs are the safer re-encodes used when seal-time
# verification finds a frame that does not decode to its payload.
PROFILES: dict[str, tuple[EncodeSettings, ...]] = {
    "archival": (
        EncodeSettings("archival", "ffv1", "gray", 1, "L", _FFV1_ONE_SLICE),
        EncodeSettings("archival", "ffv1", "gray", 2, "M", _FFV1, mask=None),
        EncodeSettings("archival", "ffv1", "gray", 4, "Q", _FFV1, mask=None),
    ),
    "portable": (
        EncodeSettings("portable", "libx264", "yuv420p", 4, "L", _x264(26, _FAST_INTRA)),
        EncodeSettings("portable", "libx264", "yuv420p", 4, "M", _x264(18), mask=None),
        EncodeSettings("portable", "libx264", "yuv420p", 8, "Q", _x264(12), mask=None),
    ),
}


def qr_modules(payload: bytes, ecc: str, mask: int | None = None) -> Image:
    """The symbol at 1 pixel per module with its quiet zone: 0 is dark, 255 light."""
    extra = {} if mask is None else {"data_mask": mask}
    try:
        barcode = zxingcpp.create_barcode(payload, _QR, ec_level=ecc, **extra)
    except ValueError as exc:
        raise StorageError(f"QR encode of {len(payload)} bytes failed: {exc}") from None
    return np.asarray(barcode.to_image(scale=1, add_quiet_zones=True), dtype=np.uint8)


def qr_version(modules: Image) -> int:
    return int(modules.shape[0] - 2 * QUIET_ZONE - 17) // 4


def render(modules: Image, px: int, side_modules: int) -> Image:
    """Upscale to ``px`` pixels per module and centre on a white square, block-aligned."""
    if px > 1:
        modules = np.repeat(np.repeat(modules, px, axis=0), px, axis=1)
    side = side_modules * px
    if modules.shape[0] == side:
        return np.ascontiguousarray(modules)
    canvas = np.full((side, side), 255, dtype=np.uint8)
    at = (side_modules - modules.shape[0] // px) // 2 * px
    canvas[at : at + modules.shape[0], at : at + modules.shape[1]] = modules
    return canvas


def encode_symbols(
    payloads: Sequence[bytes], settings: EncodeSettings
) -> tuple[list[Image], list[int]]:
    """QR symbols at 1 px per module (rendered per frame later), and each one's version."""
    symbols = [qr_modules(p, settings.ecc, settings.mask) for p in payloads]
    return symbols, [qr_version(s) for s in symbols]


def frame_side(symbols: Sequence[Image]) -> int:
    """Frame side in modules: the largest symbol, rounded up to even for 4:2:0 chroma."""
    side = max(s.shape[0] for s in symbols)
    return int(side + side % 2)


def encode_images(
    payloads: Sequence[bytes], settings: EncodeSettings
) -> tuple[list[Image], list[int]]:
    """Rendered gray frames (all the same size) for the payloads, and each QR version."""
    symbols, versions = encode_symbols(payloads, settings)
    side = frame_side(symbols)
    return [render(s, settings.px_per_module, side) for s in symbols], versions


@dataclass(frozen=True, slots=True)
class WrittenSegment:
    codec: str  # decoder name
    width: int
    height: int
    time_base: tuple[int, int]
    extradata: bytes
    packets: list[tuple[int, int, int]]  # (byte offset, size, pts) per frame, in order
    packet_crcs: list[int]  # CRC32 of each packet's bytes in the file
    size: int


def _video_frame(image: Image, pix_fmt: str) -> av.VideoFrame:
    if pix_fmt == "gray":
        return av.VideoFrame.from_ndarray(image, format="gray")
    h, w = image.shape
    planar = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
    planar[:h] = image
    return av.VideoFrame.from_ndarray(planar, format=pix_fmt)


def write_segment(path: Path, symbols: Sequence[Image], settings: EncodeSettings) -> WrittenSegment:
    """Render and encode ``symbols`` one frame at a time into an .mp4 at ``path`` (fsynced),
    then index its packets. Rendering per frame keeps memory flat at 4 px per module."""
    px = settings.px_per_module
    side = frame_side(symbols) * px
    try:
        with av.open(str(path), mode="w", format="mp4") as container:
            stream = container.add_stream(settings.encoder, rate=settings.rate)
            assert isinstance(stream, VideoStream)
            stream.width = stream.height = side
            stream.pix_fmt = settings.pix_fmt
            stream.codec_context.gop_size = 1
            stream.codec_context.thread_count = 1
            stream.codec_context.options = dict(settings.options)
            stream.time_base = Fraction(1, settings.rate)
            for i, symbol in enumerate(symbols):
                frame = _video_frame(render(symbol, px, side // px), settings.pix_fmt)
                frame.pts = i
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
        return _index(path)
    except (av.FFmpegError, OSError) as exc:
        raise StorageError(f"{path}: writing the segment failed: {exc}") from exc


def _index(path: Path) -> WrittenSegment:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        tb = stream.time_base or Fraction(1, 1)
        packets = [
            (int(p.pos), int(p.size), int(p.pts or 0))
            for p in container.demux(stream)
            if p.size and p.pos is not None
        ]
        name, width, height = ctx.name, ctx.width, ctx.height
        extradata = bytes(ctx.extradata or b"")
    data = path.read_bytes()
    crcs = [zlib.crc32(data[off : off + size]) for off, size, _ in packets]
    return WrittenSegment(
        name, width, height, (tb.numerator, tb.denominator), extradata, packets, crcs, len(data)
    )


def container_images(path: Path) -> Iterator[Image]:
    """The luma plane of every frame of an ``.mp4``, read through its container (no frame
    index needed: salvage). Stops quietly where the file stops decoding."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                plane = frame.planes[0]
                rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(
                    plane.height, plane.line_size)
                yield np.ascontiguousarray(rows[:, : plane.width])
    except (av.FFmpegError, OSError, ValueError) as exc:
        log.warning("%s: stopped decoding: %s", path, exc)


def _open_decoder(codec: str, extradata: bytes, width: int, height: int) -> VideoCodecContext:
    ctx = av.CodecContext.create(codec, "r")
    if not isinstance(ctx, VideoCodecContext):
        raise ValueError(f"{codec} is not a video codec")
    if extradata:
        ctx.extradata = extradata
    ctx.width, ctx.height = width, height
    ctx.thread_count = 1
    return ctx


def _luma(frame: av.VideoFrame) -> Image:
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def decode_image(codec: str, extradata: bytes, width: int, height: int, packet: bytes) -> Image:
    """The luma plane of one key-frame packet, decoded without opening the container."""
    ctx = _open_decoder(codec, extradata, width, height)
    frames = ctx.decode(av.Packet(packet)) or ctx.decode(None)  # flush only if it held one
    if not frames:
        raise ValueError("no frame decoded")
    return _luma(frames[0])


class _Decoders(threading.local):
    """This thread's open FFV1 decoders, by stream configuration (a few at most): opening
    one costs a third of decoding a frame. Only for reads whose result is checked: a reused
    FFV1 decoder conceals a damaged packet with the picture it decoded before."""

    def __init__(self) -> None:
        self.open: OrderedDict[tuple[str, bytes, int, int], VideoCodecContext] = OrderedDict()

    def decode(self, codec: str, extradata: bytes, width: int, height: int,
               packet: bytes) -> Image | None:
        key = (codec, extradata, width, height)
        ctx = self.open.pop(key, None) or _open_decoder(codec, extradata, width, height)
        frames = ctx.decode(av.Packet(packet))
        if not frames:
            return None  # it holds the frame back: the full path decodes it
        self.open[key] = ctx
        while len(self.open) > DECODERS_PER_THREAD:
            self.open.popitem(last=False)
        return _luma(frames[0])


DECODERS_PER_THREAD = 4
_decoders = _Decoders()


def read_frame_payload(codec: str, extradata: bytes, width: int, height: int, packet: bytes,
                       px_per_module: int, qr_version: int, length: int, crc: int
                       ) -> bytes | None:
    """The payload of a frame whose length and CRC32 the frame index gives: the read path.

    A lossless frame at one pixel per module is decoded by this thread's open decoder and
    read from its module grid (``qrgrid``: ~0.1 ms against zxing's ~0.4); a result that
    does not match the index (damage, or anything the grid reader does not handle) is
    decoded again the full way, with a fresh decoder and zxing, as seal verification does.
    """
    if px_per_module == 1 and codec in GRID_CODECS:
        try:
            image = _decoders.decode(codec, extradata, width, height, packet)
        except (av.FFmpegError, ValueError) as exc:
            log.debug("frame decode failed: %s", exc)
            image = None
        if image is not None:
            got = qrgrid.read_grid(image, qr_version)
            if got is not None and len(got) == length and zlib.crc32(got) == crc:
                return got
    return decode_payload(codec, extradata, width, height, packet, px_per_module)


def read_qr(image: Image, px_per_module: int = 1) -> bytes | None:
    """The payload bytes of the QR symbol in ``image``, or None if none decodes.

    Upscaled frames are first read from one pixel at each module's centre (16x fewer
    pixels at 4 px/module, and the centre is where lossy coding errs least).
    """
    candidates = [image]
    if px_per_module > 1:
        centre = px_per_module // 2
        candidates.insert(
            0, np.ascontiguousarray(image[centre::px_per_module, centre::px_per_module])
        )
    for candidate in candidates:
        found = zxingcpp.read_barcodes(
            candidate,
            formats=_QR_ONLY,
            is_pure=True,
            try_rotate=False,
            try_invert=False,
            try_downscale=False,
        )
        if not found:  # the generic detector, as any QR reader would use
            found = zxingcpp.read_barcodes(candidate, formats=_QR_ONLY)
        for barcode in found:
            if barcode.valid:
                return bytes(barcode.bytes)
    return None


def decode_payload(
    codec: str, extradata: bytes, width: int, height: int, packet: bytes, px_per_module: int = 1
) -> bytes | None:
    """Packet bytes to QR payload; None when the frame or the symbol does not decode."""
    try:
        image = decode_image(codec, extradata, width, height, packet)
    except (av.FFmpegError, ValueError) as exc:
        log.debug("frame decode failed: %s", exc)
        return None
    return read_qr(image, px_per_module)
