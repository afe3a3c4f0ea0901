"""memvid-mcp: durable, searchable memory for LLM agents, bodies kept as QR codes in video."""

from __future__ import annotations

__version__ = "0.1.0"
