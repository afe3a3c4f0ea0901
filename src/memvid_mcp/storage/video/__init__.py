"""The video-segment backend: bodies as QR codes in MP4 segments (docs/format.md).

``VideoStore`` is imported on first use, so reading a manifest (backend detection) does not
load PyAV."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import VideoStore

__all__ = ["VideoStore"]


def __getattr__(name: str) -> Any:
    if name == "VideoStore":
        from .store import VideoStore

        return VideoStore
    raise AttributeError(name)
