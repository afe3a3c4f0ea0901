"""The video-segment backend: bodies as QR codes in MP4 segments (docs/format.md)."""

from __future__ import annotations

from .store import VideoStore

__all__ = ["VideoStore"]
