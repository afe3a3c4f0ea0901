"""Every body a segment file still holds, read without its ``.mvi`` or the manifest.

Since the WAL no longer keeps the text of sealed bodies (ADR 0018), a segment is their only
copy: when the manifest line that located a body or the segment's frame index is damaged,
recovery reads the ``.mp4`` through its container, frame by frame, and rebuilds the bodies
from each frame's piece table (docs/format.md). The caller matches them to records by size
and SHA-256, so nothing unverified is ever served.
"""

from __future__ import annotations

from pathlib import Path

from ...core.errors import CorruptionError
from . import codec, framing


def segment_bodies(mp4: Path) -> list[bytes]:
    """The non-empty bodies in the frames that decode, in segment order (a body with a piece
    in a frame that does not decode comes out incomplete and matches no record)."""
    pieces: dict[int, list[bytes]] = {}
    dictionary_frames: dict[int, framing.Frame] = {}
    dictionary: framing.SegmentDictionary | None = None
    for image in codec.container_images(mp4):
        payload = codec.read_qr(image)
        if payload is None:
            continue
        try:
            try:
                decoded = framing.decode_frame(payload, str(mp4), dictionary)
            except framing.DictionaryNeeded:  # the dictionary frames come first (ADR 0029)
                dictionary = framing.assemble_dictionary(dictionary_frames, str(mp4))
                decoded = framing.decode_frame(payload, str(mp4), dictionary)
        except CorruptionError:
            continue
        if decoded.flags & framing.FLAG_DICT_PIECE:
            dictionary_frames[decoded.index] = decoded
            continue
        offset = 0
        for n, length in enumerate(decoded.piece_lengths):
            pieces.setdefault(decoded.first_ordinal + n, []).append(
                decoded.content[offset: offset + length])
            offset += length
    return [b"".join(parts) for _, parts in sorted(pieces.items())]
