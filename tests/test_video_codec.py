"""QR + video round trips through real zxing-cpp and PyAV, and the import rule."""

from __future__ import annotations

import ast
import random
import re
from pathlib import Path

import pytest

import memvid_mcp
from memvid_mcp.storage.video import VideoStore, codec, framing, mvi

PACKAGE = Path(memvid_mcp.__file__).parent


def _payloads(n: int, capacity: int) -> list[bytes]:
    rng = random.Random(n)
    bodies = [rng.randbytes(rng.randint(1, 3000)) for _ in range(n)]
    return framing.Packer(capacity, level=3).pack(bodies).payloads


@pytest.mark.parametrize("profile", ["archival", "portable"])
def test_segment_round_trip(tmp_path: Path, profile: str) -> None:
    settings = codec.PROFILES[profile][0]
    payloads = [*_payloads(6, settings.capacity), b"short tail frame"]
    symbols, versions = codec.encode_symbols(payloads, settings)
    assert versions[0] == 40 and versions[-1] < 40  # the tail frame uses a smaller symbol
    written = codec.write_segment(tmp_path / "s.mp4", symbols, settings)
    assert written.width == written.height == 186 * settings.px_per_module
    assert len(written.packets) == len(payloads)
    data = (tmp_path / "s.mp4").read_bytes()
    assert data[4:8] == b"ftyp" and len(data) == written.size
    for (offset, size, _pts), payload in zip(written.packets, payloads, strict=True):
        packet = data[offset : offset + size]
        got = codec.decode_payload(
            written.codec, written.extradata, written.width, written.height, packet
        )
        assert got == payload


@pytest.mark.parametrize(
    "settings",
    [s for ladder in codec.PROFILES.values() for s in ladder[1:]],
    ids=lambda s: f"{s.profile}-{s.px_per_module}px-{s.ecc}",
)
def test_safer_rungs_round_trip_full_frames(tmp_path: Path, settings: codec.EncodeSettings) -> None:
    payloads = _payloads(3, settings.capacity)
    symbols, versions = codec.encode_symbols(payloads, settings)
    assert versions[0] == 40
    written = codec.write_segment(tmp_path / "r.mp4", symbols, settings)
    data = (tmp_path / "r.mp4").read_bytes()
    for (offset, size, _pts), payload in zip(written.packets, payloads, strict=True):
        got = codec.decode_payload(
            written.codec,
            written.extradata,
            written.width,
            written.height,
            data[offset : offset + size],
            settings.px_per_module,
        )
        assert got == payload


def test_archival_is_lossless_and_small(tmp_path: Path) -> None:
    settings = codec.PROFILES["archival"][0]
    payloads = _payloads(8, settings.capacity)
    images, _ = codec.encode_images(payloads, settings)
    symbols, _ = codec.encode_symbols(payloads, settings)
    written = codec.write_segment(tmp_path / "a.mp4", symbols, settings)
    assert written.codec == "ffv1" and images[0].shape == (186, 186)
    # random payloads are the worst case: ~1.1 bits per module, ~1.5 bytes per payload byte
    pairs = zip(written.packets, payloads, strict=True)
    full = [size for (_o, size, _p), pl in pairs if len(pl) > 2900]
    assert full and max(full) < 1.5 * 2951
    packet = (tmp_path / "a.mp4").read_bytes()[written.packets[0][0] :][: written.packets[0][1]]
    image = codec.decode_image(
        written.codec, written.extradata, written.width, written.height, packet
    )
    assert (image == images[0]).all()


def test_any_qr_reader_sees_the_payload() -> None:
    settings = codec.PROFILES["archival"][0]
    payload = framing.Packer(settings.capacity).pack([b"hello from a frame"]).payloads[0]
    (image,), _ = codec.encode_images([payload], settings)
    assert codec.read_qr(image) == payload  # byte mode, .bytes, not .text


def test_determinism(tmp_path: Path) -> None:
    settings = codec.PROFILES["archival"][0]
    symbols, _ = codec.encode_symbols(_payloads(5, settings.capacity), settings)
    codec.write_segment(tmp_path / "1.mp4", symbols, settings)
    codec.write_segment(tmp_path / "2.mp4", symbols, settings)
    assert (tmp_path / "1.mp4").read_bytes() == (tmp_path / "2.mp4").read_bytes()


def test_garbage_packet_decodes_to_none() -> None:
    assert codec.decode_payload("ffv1", b"", 186, 186, b"\x00" * 100) is None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_codec_imports_av_and_zxingcpp() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "codec.py" and _imports(path) & {"av", "zxingcpp"}
    ]
    assert offenders == []
    assert {"av", "zxingcpp"} <= _imports(PACKAGE / "storage" / "video" / "codec.py")


def test_format_doc_recipe_reads_a_real_frame(tmp_path: Path) -> None:
    """docs/format.md's Python recipe, fed the frame ffmpeg would extract."""
    store = VideoStore(tmp_path)
    bodies = [f"note {i}: Grüße ✓ the ferry leaves at nine".encode() * 20 for i in range(60)]
    store.put_many([(f"n{i}", b) for i, b in enumerate(bodies)])
    (mvi_path,) = (tmp_path / "segments").glob("*.mvi")
    index = mvi.loads(mvi_path.read_bytes())
    entry = index.frames[0]
    packet = mvi_path.with_suffix(".mp4").read_bytes()[entry.offset : entry.offset + entry.size]
    frame = codec.decode_image(index.codec, index.extradata, index.width, index.height, packet)
    doc = (PACKAGE.parents[1] / "docs" / "format.md").read_text(encoding="utf-8")
    recipe = re.search(r"```python\n(.*?)```", doc, re.S)
    assert recipe is not None
    code = recipe.group(1).replace("from PIL import Image\n", "")
    code = code.replace('Image.open("out.png")', "frame")
    namespace: dict[str, object] = {"frame": frame}
    exec(code, namespace)
    assert namespace["index"] == 0
    assert bytes(namespace["text"]).startswith(bodies[0])  # type: ignore[call-overload]
